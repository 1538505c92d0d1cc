"""
Bluesky author profiles (handle, followers, verification) from the public
AppView, looked up in batches and cached: the stream carries only DIDs.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Optional

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred, succeed

from monitor.backoff import Backoff
from monitor.collect.base import clean


class ProfileLookupFailed(Exception):
    """
    The AppView did not answer a profile lookup; C{wait} is how long it
    asked us to stay away, if it said.
    """

    def __init__(self, message: str, wait: Optional[float] = None) -> None:
        super().__init__(message)
        self.wait = wait


class ProfileCache:
    """
    Author profiles, looked up C{batch} at a time (the AppView takes at most
    25 actors a call) and kept for C{ttl} seconds.  A lookup never fails its
    caller: a profile that cannot be had is C{None}.  After an error the
    cache stops asking for a while (backing off) instead of hammering a
    struggling AppView, and the queue of names to look up is bounded, so a
    slow AppView costs followers, never memory.
    """

    def __init__(
        self,
        clock,
        fetch: Callable[[list[str]], Deferred],
        ttl: float = 3600.0,
        batch: int = 25,
        delay: float = 0.05,
        max_inflight: int = 2,
        max_queue: int = 500,
        max_entries: int = 100_000,
        on_trouble: Callable[[Optional[str]], None] = lambda why: None,
    ) -> None:
        self.clock = clock
        self.fetch = fetch
        self.ttl, self.batch, self.delay = ttl, batch, delay
        self.max_inflight, self.max_queue, self.max_entries = max_inflight, max_queue, max_entries
        self.on_trouble = on_trouble
        self.backoff = Backoff(first=5.0, cap=300.0)
        self.lookups = 0
        self.failures = 0
        self._cache: OrderedDict[str, tuple[float, Optional[dict]]] = OrderedDict()
        self._waiting: dict[str, list[Deferred]] = {}
        self._queue: list[str] = []
        self._inflight: set[Deferred] = set()
        self._timer = None
        self._quiet_until = 0.0
        self._troubled = False

    def get(self, did: str) -> tuple[bool, Optional[dict]]:
        """
        C{(True, profile)} if C{did} is cached (a profile, or C{None} for
        an actor the AppView does not know), else C{(False, None)}.
        """
        entry = self._cache.get(did)
        if entry is None:
            return False, None
        if entry[0] <= self.clock.seconds():
            del self._cache[did]
            return False, None
        self._cache.move_to_end(did)
        return True, entry[1]

    def pending(self, did: str) -> bool:
        """
        Whether a lookup of C{did} is queued or under way.
        """
        return did in self._waiting

    def want(self, did: str) -> Deferred:
        """
        The profile of C{did}, from the cache or the next batch; fires with
        C{None} when it cannot be had.
        """
        found, profile = self.get(did)
        if found:
            return succeed(profile)
        waiters = self._waiting.get(did)
        if waiters is None:
            if self.clock.seconds() < self._quiet_until or len(self._queue) >= self.max_queue:
                return succeed(None)
            waiters = self._waiting[did] = []
            self._queue.append(did)
        d = Deferred()
        waiters.append(d)
        self._schedule()
        return d

    def _schedule(self) -> None:
        if not self._queue or len(self._inflight) >= self.max_inflight:
            return
        if len(self._queue) >= self.batch:
            self._flush()
        elif self._timer is None:
            # Wait a moment so that one call carries many actors.
            self._timer = self.clock.callLater(self.delay, self._flush)

    def _flush(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        while self._queue and len(self._inflight) < self.max_inflight:
            dids, self._queue = self._queue[: self.batch], self._queue[self.batch :]
            self.lookups += 1
            d = maybeDeferred(self.fetch, dids)
            self._inflight.add(d)
            d.addCallbacks(self._got, self._failed, callbackArgs=(dids,), errbackArgs=(dids,))
            d.addBoth(self._finished, d)

    def _finished(self, _, d: Deferred) -> None:
        self._inflight.discard(d)
        self._schedule()

    def _got(self, profiles: dict, dids: list[str]) -> None:
        self.backoff.reset()
        if self._troubled:
            self._troubled = False
            self.on_trouble(None)
        expires = self.clock.seconds() + self.ttl
        for did in dids:
            profile = profiles.get(did)
            self._cache[did] = (expires, profile)
            self._cache.move_to_end(did)
            self._answer(did, profile)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)

    def _failed(self, failure, dids: list[str]) -> None:
        if failure.check(CancelledError):
            for did in dids:
                self._answer(did, None)
            return
        self.failures += 1
        wait = getattr(failure.value, "wait", None)
        if wait is None:
            wait = self.backoff.next()
        self._quiet_until = max(self._quiet_until, self.clock.seconds() + wait)
        if not self._troubled:
            self._troubled = True
            self.on_trouble(f"profile lookups failed ({failure.getErrorMessage()}); pausing them for {wait:.0f}s")
        # Nobody waits through a pause: what is queued gets no profile.
        for did in dids + self._queue:
            self._answer(did, None)
        self._queue = []

    def _answer(self, did: str, profile: Optional[dict]) -> None:
        for d in self._waiting.pop(did, ()):
            d.callback(profile)

    def stop(self) -> None:
        """
        Give up every lookup (at the service's stop).
        """
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        for d in list(self._inflight):
            d.cancel()
        for did in list(self._waiting):
            self._answer(did, None)
        self._queue = []


def profile_from_view(view: Any) -> Optional[tuple[str, dict]]:
    """
    C{(did, profile)} from an AppView C{profileView}, keeping only what a
    post needs; C{None} if it has no DID.
    """
    if not isinstance(view, dict) or not isinstance(view.get("did"), str):
        return None
    handle = view.get("handle")
    followers = view.get("followersCount")
    verification = view.get("verification")
    return view["did"], {
        "handle": clean(handle) if isinstance(handle, str) and handle != "handle.invalid" else None,
        "followers": followers if type(followers) is int and followers >= 0 else None,
        "verified": isinstance(verification, dict) and verification.get("verifiedStatus") == "valid",
    }


__all__ = ["ProfileCache", "ProfileLookupFailed", "profile_from_view"]
