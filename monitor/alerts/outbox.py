"""
The outbox: notifications are written to the store together with the
incident event they are about, and only then handed here for delivery, so a
crash or a restart never loses one: pending notifications are loaded again
at start and retried.

Each channel delivers its notifications one at a time, in order (an
incident's "resolved" never overtakes its "opened"), at most C{rate_limit}
per minute.  A failed attempt is retried with doubling delays capped at
C{retry_max}, or after the receiver's C{Retry-After}; after
C{give_up_after} a notification is marked failed.  A receiver that says the
channel is gone (Slack 403/404/410) disables the channel until it is
enabled again (API) or its configuration changes; its notifications wait.
Every attempt is recorded with its outcome.  Before each attempt the hub
claims the notification in the store, so that two hubs sharing one (while
the lead passes from one to the other) never send it at the same time, and
one that was sent elsewhere is dropped here.

Nothing here runs on the pipeline's path: the engine hands notifications
over and returns at once; a slow or failing receiver only delays its own
channel.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
from collections import deque
from typing import Any, Callable, Optional

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, TimeoutError, ensureDeferred, maybeDeferred, succeed
from twisted.logger import Logger

from monitor.alerts.notifiers import DISABLE, FAILED, RETRY, SENT, SKIPPED, Delivery, Notification
from monitor.backoff import Backoff
from monitor.fields import parse_duration
from monitor.model import iso8601
from monitor.redact import channel_secrets, redact
from monitor.store.interfaces import DeliveryAttempt
from monitor.store.writes import WriteQueue

__all__ = ["Outbox", "WriteQueue", "fingerprint", "new_notification_id"]

#: First retry delay, in seconds; it doubles with each attempt.
RETRY_FIRST = 5.0

#: How much longer than a channel's timeout a hub holds its claim on the
#: notification it is delivering (the time to record the attempt).
CLAIM_MARGIN = 30.0


def new_notification_id() -> str:
    return "msg_" + secrets.token_hex(12)


def fingerprint(spec: dict[str, Any]) -> str:
    """
    A digest of a channel's settings: a channel disabled by its receiver
    stays disabled across restarts until its settings change.
    """
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode("utf-8")).hexdigest()


class _Channel:
    """
    The delivery state of one channel.
    """

    def __init__(self, spec: dict[str, Any], notifier) -> None:
        self.spec = spec
        self.notifier = notifier
        self.name: str = spec["name"]
        self.kind: str = spec["kind"]
        self.fingerprint = fingerprint(spec)
        self.secrets = channel_secrets(spec)
        self.spacing = 60.0 / spec["rate_limit"]
        self.timeout = parse_duration(spec["timeout"])
        self.queue: deque[Notification] = deque()
        self.busy = False
        self.timer = None
        self.in_flight: Optional[Deferred] = None
        self.next_send_at = 0.0
        self.paused_until = 0.0
        self.disabled_reason: Optional[str] = None
        self.disabled_at: Optional[float] = None
        self.last_error: Optional[str] = None
        self.last_sent_at: Optional[float] = None


class Outbox(Service):
    """
    Deliver persisted notifications through their channels' notifiers.

    @param channels: C{(spec, notifier)} pairs; the spec is the channel's
        checked configuration table (C{name}, C{kind}, C{rate_limit},
        C{timeout} in seconds...).
    @param alerts: the L{monitor.store.interfaces.IAlertStore} that keeps
        each attempt and each channel's state, written through C{writer}
        (a L{monitor.store.writes.WriteQueue}) in the order they happened.
    @param on_disabled: called with C{(name, reason)} when a receiver
        disables a channel; C{on_enabled} with C{name} when it is enabled.
    """

    name = "outbox"
    log = Logger()

    def __init__(
        self,
        channels,
        alerts,
        writer: WriteQueue,
        metrics=None,
        reactor=None,
        retry_first: float = RETRY_FIRST,
        retry_max: float = 600.0,
        give_up_after: float = 86400.0,
        on_disabled: Optional[Callable[[str, str], None]] = None,
        on_enabled: Optional[Callable[[str], None]] = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.alerts = alerts
        self.writer = writer
        self.metrics = metrics
        self.retry_first = retry_first
        self.retry_max = retry_max
        self.give_up_after = give_up_after
        self.on_disabled = on_disabled
        self.on_enabled = on_enabled
        self.channels: dict[str, _Channel] = {}
        for spec, notifier in channels:
            self.channels[spec["name"]] = _Channel(spec, notifier)
        for ch in self.channels.values():
            self._gauge(ch)

    # -- service ---------------------------------------------------------

    def startService(self):
        super().startService()
        for ch in self.channels.values():
            self._kick(ch)

    def stopService(self):
        """
        Stop sending: timers cancelled, attempts under way cancelled (their
        notifications stay pending in the store and go out after a
        restart; receivers drop the duplicate by its id).
        """
        super().stopService()
        for ch in self.channels.values():
            if ch.timer is not None and ch.timer.active():
                ch.timer.cancel()
            ch.timer = None
            if ch.in_flight is not None:
                ch.in_flight.cancel()
        return succeed(None)

    # -- state -----------------------------------------------------------

    def restore(self, states: dict[str, tuple], pending: list[Notification]) -> None:
        """
        Take back what a previous run left: channels disabled by their
        receiver (unless their settings changed since) and pending
        notifications.
        """
        now = self.reactor.seconds()
        for name, (digest, reason, at) in states.items():
            ch = self.channels.get(name)
            if ch is None or reason is None:
                continue
            if digest == ch.fingerprint:
                ch.disabled_reason, ch.disabled_at = redact(reason, ch.secrets), at
                self._gauge(ch)
                self.log.warn("channel {channel} stays disabled: {reason}", channel=name, reason=reason)
            else:
                self.log.info("channel {channel} was changed; enabling it again", channel=name)
                self.writer.submit(self.alerts.save_channel, name, ch.fingerprint, None, None)
        orphans = []
        for n in pending:
            ch = self.channels.get(n.channel)
            if ch is None:
                orphans.append(n)
            else:
                ch.queue.append(n)
        for n in orphans:
            self._finish(n, "failed", f"channel {n.channel!r} is no longer configured", now, None)
        if pending:
            self.log.info(
                "{count} undelivered notifications from before the restart", count=len(pending) - len(orphans)
            )
        for ch in self.channels.values():
            self._pending_gauge(ch)

    def forget(self) -> None:
        """
        Drop what is queued in memory (stopped first): it stays pending in
        the store, for the hub that delivers next to take back.
        """
        for ch in self.channels.values():
            ch.queue.clear()
            ch.busy = False
            self._pending_gauge(ch)

    def enqueue(self, notifications: list[Notification]) -> None:
        """
        Deliver notifications already written to the store.
        """
        touched = {}
        for n in notifications:
            ch = self.channels.get(n.channel)
            if ch is None:
                self.log.warn("no channel {channel} for notification {id}", channel=n.channel, id=n.id)
                continue
            ch.queue.append(n)
            touched[ch.name] = ch
        for ch in touched.values():
            self._pending_gauge(ch)
            self._kick(ch)

    def status(self) -> list[dict[str, Any]]:
        """
        Per channel: whether it delivers, why not, and what waits.
        """
        now = self.reactor.seconds()
        out = []
        for ch in self.channels.values():
            if not ch.spec["enabled"]:
                state = "off"
            elif ch.disabled_reason:
                state = "disabled"
            elif ch.paused_until > now:
                state = "rate limited"
            elif ch.queue and ch.queue[0].attempts:
                state = "retrying"
            else:
                state = "ok"
            out.append(
                {
                    "name": ch.name,
                    "kind": ch.kind,
                    "state": state,
                    "enabled": ch.disabled_reason is None and bool(ch.spec["enabled"]),
                    "disabled_reason": ch.disabled_reason,
                    "disabled_at": iso8601(ch.disabled_at) if ch.disabled_at else None,
                    "pending": len(ch.queue),
                    "last_error": ch.last_error,
                    "last_sent_at": iso8601(ch.last_sent_at) if ch.last_sent_at else None,
                    "resume_at": iso8601(ch.paused_until) if ch.paused_until > now else None,
                    "min_severity": ch.spec.get("min_severity"),
                    "rules": list(ch.spec.get("rules") or ()),
                    "rate_limit": ch.spec.get("rate_limit"),
                }
            )
        return out

    def enable(self, name: str) -> bool:
        """
        Use a channel disabled by its receiver again; what waited for it
        goes out.  Returns whether it was disabled.
        """
        ch = self.channels[name]
        if ch.disabled_reason is None:
            return False
        ch.disabled_reason = ch.disabled_at = None
        self.writer.submit(self.alerts.save_channel, name, ch.fingerprint, None, None)
        self._gauge(ch)
        self.log.info("channel {channel} enabled again", channel=name)
        if self.on_enabled is not None:
            self.on_enabled(name)
        self._kick(ch)
        return True

    # -- delivery --------------------------------------------------------

    def _kick(self, ch: _Channel) -> None:
        if not self.running or ch.busy or ch.disabled_reason or not ch.queue or not ch.spec["enabled"]:
            return
        if ch.timer is not None and ch.timer.active():
            ch.timer.cancel()
        ch.timer = None
        now = self.reactor.seconds()
        at = max(ch.queue[0].next_attempt_at, ch.next_send_at, ch.paused_until)
        if at > now:
            ch.timer = self.reactor.callLater(at - now, self._woken, ch)
            return
        ch.busy = True
        d = ensureDeferred(self._attempt(ch, ch.queue[0]))
        d.addErrback(lambda f: self.log.failure("delivery on channel {channel} failed", f, channel=ch.name))
        d.addBoth(lambda _: self._done(ch))

    def _woken(self, ch: _Channel) -> None:
        ch.timer = None
        self._kick(ch)

    def _done(self, ch: _Channel) -> None:
        ch.busy = False
        self._pending_gauge(ch)
        self._kick(ch)

    def _backoff(self, attempts: int) -> float:
        return Backoff(first=self.retry_first, cap=self.retry_max, jitter=0.0).delay(attempts - 1)

    async def _attempt(self, ch: _Channel, n: Notification) -> None:
        started = self.reactor.seconds()
        if started - n.created_at > self.give_up_after:
            ch.queue.popleft()
            self._finish(n, "failed", f"gave up after {self.give_up_after:.0f}s undelivered", started, None)
            return
        # Another hub sharing the store may have it too (the one that led
        # before): deliver only what this hub holds, after what it wrote.
        claim = await self.writer.submit(self.alerts.claim_notification, n.id, ch.timeout + CLAIM_MARGIN)
        if not claim.taken:
            if claim.wait is None:
                ch.queue.popleft()
                self.log.info("notification {id} was delivered or given up elsewhere", id=n.id)
            else:
                n.next_attempt_at = self.reactor.seconds() + claim.wait
            return
        d = maybeDeferred(ch.notifier.send, n)
        ch.in_flight = d
        d.addTimeout(ch.timeout, self.reactor)
        try:
            delivery = await d
        except (CancelledError, TimeoutError):
            why = "the hub stopped" if not self.running else f"no answer within {ch.timeout:g}s"
            delivery = Delivery(RETRY, None, why)
        except Exception as e:
            # Not log.failure: a traceback may quote the channel's URL.
            error = redact(f"{e.__class__.__name__}: {e}", ch.secrets)
            self.log.error("notifier {channel} raised {error}", channel=ch.name, error=error)
            delivery = Delivery(RETRY, None, error)
        finally:
            ch.in_flight = None
        # Whatever a notifier or its receiver said may quote the endpoint.
        delivery = dataclasses.replace(delivery, detail=redact(delivery.detail, ch.secrets))
        now = self.reactor.seconds()
        elapsed = now - started
        n.attempts += 1
        ch.next_send_at = started + ch.spacing
        if self.metrics is not None:
            self.metrics.notifications.labels(ch.name, delivery.outcome).inc()
            self.metrics.notification_seconds.observe(elapsed)
        attempt = DeliveryAttempt(n.id, started, delivery.outcome, delivery.status, delivery.detail[:500], elapsed)
        if delivery.outcome in (SENT, SKIPPED):
            ch.last_sent_at = now if delivery.outcome == SENT else ch.last_sent_at
            ch.last_error = None if delivery.outcome == SENT else ch.last_error
            ch.queue.popleft()
            self._finish(n, delivery.outcome, None, now, attempt)
            self.log.debug(
                "notified {channel} of {event} {incident}", channel=ch.name, event=n.event, incident=n.incident_id
            )
            return
        ch.last_error = delivery.detail
        n.last_error = delivery.detail
        if delivery.outcome == FAILED:
            ch.queue.popleft()
            self.log.error(
                "channel {channel} refused a notification for good: {detail}", channel=ch.name, detail=delivery.detail
            )
            self._finish(n, "failed", delivery.detail, now, attempt)
            return
        if delivery.outcome == DISABLE:
            self._write(n, attempt)
            self._disable(ch, delivery.detail, now)
            return
        # RETRY
        if delivery.retry_after is not None:
            wait = delivery.retry_after
            ch.paused_until = now + wait
        else:
            wait = self._backoff(n.attempts)
        n.next_attempt_at = now + wait
        self.log.warn(
            "channel {channel}: attempt {attempts} failed ({detail}); next in {wait:.0f}s",
            channel=ch.name,
            attempts=n.attempts,
            detail=delivery.detail,
            wait=wait,
        )
        self._write(n, attempt)

    def _disable(self, ch: _Channel, reason: str, now: float) -> None:
        ch.disabled_reason, ch.disabled_at = reason, now
        self.writer.submit(self.alerts.save_channel, ch.name, ch.fingerprint, reason, now)
        self._gauge(ch)
        self.log.error("channel {channel} disabled: {reason}", channel=ch.name, reason=reason)
        if self.on_disabled is not None:
            self.on_disabled(ch.name, reason)

    def _finish(self, n: Notification, state: str, error: Optional[str], now: float, attempt) -> None:
        n.state = state
        n.finished_at = now
        if error is not None:
            n.last_error = error
        if attempt is None and state == "failed":
            attempt = DeliveryAttempt(n.id, now, "failed", None, error or "", 0.0)
        self._write(n, attempt)

    def _write(self, n: Notification, attempt: Optional[DeliveryAttempt]) -> None:
        # The state as it is now: later changes to n must not leak into
        # this write while it waits its turn.
        self.writer.submit(self.alerts.record_attempt, dataclasses.replace(n), attempt)

    def _gauge(self, ch: _Channel) -> None:
        if self.metrics is not None:
            self.metrics.channel_up.labels(ch.name, ch.kind).set(0 if ch.disabled_reason else 1)

    def _pending_gauge(self, ch: _Channel) -> None:
        if self.metrics is not None:
            self.metrics.outbox_pending.labels(ch.name).set(len(ch.queue))
