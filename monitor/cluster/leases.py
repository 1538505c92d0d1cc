"""
Leases in Redis: what only one hub of a cluster may do at a time (run a
collector, evaluate the alert rules).

A lease is one key holding the name of the hub that has it, with an expiry:
C{SET key hub NX PX ttl} takes a free lease; the holder renews it (a Lua
script that extends the expiry only if the key still names this hub) and
releases it on a clean stop (the same compare, then C{DEL}).  A hub that dies
stops renewing, the key expires, and another hub takes the lease at its next
try: within C{ttl} plus one renewal interval.

L{LeasedService} runs a service only while its hub holds the lease, and
stops it as soon as the lease is lost or cannot be confirmed in time, so two
hubs never run it together for longer than the clocks of the two differ.
"""

from __future__ import annotations

from typing import Optional

from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

__all__ = ["Lease", "LeasedService"]

#: Extend the expiry only if the key still names us.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

#: Delete the key only if it still names us (a lease another hub took after
#: ours expired is left alone).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease:
    """
    One named lease, as seen by one hub.

    @param redis: a txredisapi connection (anything with C{execute_command}).
    @param key: the Redis key of the lease.
    @param holder: this hub's name, written into the key.
    @param ttl: seconds the lease lasts without a renewal.
    """

    def __init__(self, redis, key: str, holder: str, ttl: float) -> None:
        self.redis = redis
        self.key = key
        self.holder = holder
        self.ttl = ttl

    @property
    def _ms(self) -> str:
        return str(max(1, int(self.ttl * 1000)))

    def acquire(self) -> Deferred:
        """
        Take the lease if it is free (or ours already, as after a restart
        under the same name).  Fires with whether this hub holds it now.
        """
        return ensureDeferred(self._acquire())

    async def _acquire(self) -> bool:
        reply = await self.redis.execute_command("SET", self.key, self.holder, "NX", "PX", self._ms)
        if reply == "OK":
            return True
        return await self._renew()

    def renew(self) -> Deferred:
        """
        Extend the lease by C{ttl} if this hub still holds it.  Fires with
        whether it does.
        """
        return ensureDeferred(self._renew())

    async def _renew(self) -> bool:
        reply = await self.redis.execute_command("EVAL", _RENEW, "1", self.key, self.holder, self._ms)
        return int(reply or 0) == 1

    def release(self) -> Deferred:
        """
        Give the lease up if this hub holds it.  Fires with whether it did.
        """
        return ensureDeferred(self._release())

    async def _release(self) -> bool:
        reply = await self.redis.execute_command("EVAL", _RELEASE, "1", self.key, self.holder)
        return int(reply or 0) == 1

    def holder_now(self) -> Deferred:
        """
        The name of the hub that holds the lease now (C{None}: nobody).
        """
        return self.redis.execute_command("GET", self.key)


class LeasedService(Service):
    """
    Run C{service} only while this hub holds C{lease}: try to take (or
    renew) it every C{every} seconds (a third of its ttl), start the service
    when it is taken, stop it when it is lost, and give the lease up when
    stopped.

    A renewal that fails (Redis away or slow) leaves the service running
    until the lease may be about to expire: two thirds of its ttl after the
    last confirmation the service is stopped (a timer of its own, not the
    renewals, which may hang), before another hub can take the lease.

    @ivar holding: whether this hub holds the lease (and runs the service).
    @ivar lost: how many times the lease was lost while running.
    """

    log = Logger()

    def __init__(self, lease: Lease, service, reactor, every: Optional[float] = None, label: str = "") -> None:
        self.lease = lease
        self.service = service
        self.reactor = reactor
        self.every = every if every is not None else lease.ttl / 3
        self.label = label or lease.key
        self.name = f"lease {self.label}"
        self.holding = False
        self.lost = 0
        self._confirmed_at = 0.0
        self._loop: Optional[LoopingCall] = None
        self._tick_d: Optional[Deferred] = None
        self._watchdog = None

    def startService(self):
        super().startService()
        self._loop = LoopingCall(self.tick)
        self._loop.clock = self.reactor
        self._loop.start(self.every, now=True).addErrback(
            lambda f: self.log.failure("the lease loop of {lease} stopped", f, lease=self.label)
        )

    def tick(self) -> Deferred:
        """
        One look at the lease: take it, renew it, or notice it is gone.
        """
        self._tick_d = d = ensureDeferred(self._tick())
        return d

    async def _tick(self) -> None:
        was_holding = self.holding
        try:
            attempt = self.lease.renew() if was_holding else self.lease.acquire()
            # A hung Redis must not hold the renewals up past the lease.
            held: Optional[bool] = await attempt.addTimeout(self.every, self.reactor)
        except Exception as e:
            held = None
            self.log.warn("could not reach Redis for the lease {lease}: {error}", lease=self.label, error=e)
        now = self.reactor.seconds()
        if not self.running:
            if held and not was_holding:
                await self._release()
            return
        if held:
            self._confirmed_at = now
            self._watch()
            if not self.holding:
                await self._take()
        elif held is False and self.holding:
            await self._drop("another hub holds it now")

    def _watch(self) -> None:
        """
        Stop the service two thirds of the ttl after the last confirmation
        unless another comes first, whatever the renewals are waiting for.
        """
        margin = self.lease.ttl * 2 / 3
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.reset(margin)
        else:
            self._watchdog = self.reactor.callLater(margin, self._unconfirmed)

    def _unconfirmed(self) -> None:
        self._watchdog = None
        if self.holding and self.running:
            d = ensureDeferred(self._drop("it could not be renewed in time"))
            d.addErrback(lambda f: self.log.failure("error stopping {lease}", f, lease=self.label))

    def _unwatch(self) -> None:
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._watchdog = None

    async def _take(self) -> None:
        self.holding = True
        self.log.info("took the lease {lease}: starting it here", lease=self.label)
        try:
            await maybeDeferred(self.service.startService)
        except Exception:
            self.log.failure("could not start {lease}; giving the lease up", lease=self.label)
            self.holding = False
            self._unwatch()
            await self._release()

    async def _drop(self, why: str) -> None:
        if not self.holding:
            return
        self._unwatch()
        self.holding = False
        self.lost += 1
        self.log.warn("lost the lease {lease} ({why}): stopping it here", lease=self.label, why=why)
        await self._stop_service()

    async def _stop_service(self) -> None:
        if not self.service.running:
            return
        try:
            await maybeDeferred(self.service.stopService)
        except Exception:
            self.log.failure("error stopping {lease}", lease=self.label)

    async def _release(self) -> None:
        try:
            await self.lease.release().addTimeout(min(self.every, 2.0), self.reactor)
        except Exception as e:
            # It expires by itself within its ttl.
            self.log.warn("could not give the lease {lease} up: {error}", lease=self.label, error=e)

    def stopService(self):
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._unwatch()
        return ensureDeferred(self._stop())

    async def _stop(self) -> None:
        if self._tick_d is not None and not self._tick_d.called:
            # Not waited for: a stop must not wait on a Redis that is away.
            # A lease taken meanwhile unknown to us expires by itself.
            self._tick_d.cancel()
            try:
                await self._tick_d
            except Exception:
                pass
        if self.holding:
            self.holding = False
            await self._stop_service()
            await self._release()
            self.log.info("gave the lease {lease} up", lease=self.label)
