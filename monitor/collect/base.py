"""
What every collector shares: state reporting, counting, backpressure and
the dead-letter path for payloads it cannot read.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Optional

from zope.interface import implementer

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.task import deferLater
from twisted.logger import Logger

from monitor.interfaces import ISource
from monitor.model import Post, Rejected, iso8601
from monitor.redact import redact

#: Collector states, as reported by C{status()}.
STARTING = "starting"
CONNECTED = "connected"
IDLE = "idle"
BACKING_OFF = "backing off"
RATE_LIMITED = "rate limited"
FAILING = "failing"
FINISHED = "finished"
STOPPED = "stopped"


def clean(text: str) -> str:
    """
    A string any store can keep: JSON allows lone surrogates and NUL,
    UTF-8 and SQLite do not.
    """
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")


@implementer(ISource)
class Collector(Service):
    """
    Base class for a source.  Subclasses implement C{async def run()},
    which reads the source for as long as the service runs, calling L{emit}
    for each post (waiting on its Deferred: that is the backpressure) and
    L{malformed} for each payload they cannot read.  Stopping cancels
    C{run} wherever it waits.

    @ivar network: the uid namespace of this source's posts.
    """

    kind = "?"
    log = Logger()

    def __init__(self, name: str, queue, store, metrics, reactor=None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.name = name
        self.queue = queue
        self.store = store
        self.metrics = metrics
        self.reactor = reactor
        self.state = STARTING
        self.last_error: Optional[str] = None
        #: What the current state means when it is not a problem, such as
        #: a followed file that does not exist yet.
        self.note: Optional[str] = None
        self.last_post_at: Optional[float] = None
        #: Posts collected and payloads found malformed since this start.
        self.posts = 0
        self.malformed_count = 0
        #: The same counts from before this start, read from the store.
        self.earlier = {"posts": 0, "malformed": 0}
        self.rate_limit_remaining: Optional[int] = None
        self.resume_at: Optional[float] = None
        self._pending_put: Optional[Deferred] = None
        self._task: Optional[Deferred] = None
        self._collected = metrics.collected.labels(name)
        # Posts per whole second over the last minute: [second, count] pairs.
        self._per_second: deque[list] = deque()

    # ISource

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "state": self.state,
            "last_error": redact(self.last_error) if self.last_error else None,
            "note": self.note,
            "last_post_at": iso8601(self.last_post_at) if self.last_post_at else None,
            "posts": self.earlier["posts"] + self.posts,
            "posts_per_minute": self.posts_per_minute(),
            "malformed": self.earlier["malformed"] + self.malformed_count,
            "rate_limit_remaining": self.rate_limit_remaining,
            "resume_at": iso8601(self.resume_at) if self.resume_at else None,
        }

    def posts_per_minute(self) -> int:
        """
        Posts collected in the last 60 seconds.
        """
        since = int(self.reactor.seconds()) - 60
        return sum(n for second, n in self._per_second if second > since)

    # for subclasses

    def set_state(self, state: str, error: Optional[str] = None, note: Optional[str] = None) -> None:
        """
        Record a state change; one log line per change, never per post.
        An C{error} is a problem (kept as C{last_error}); a C{note} only
        explains the state, and lasts until the next call.
        """
        if error is not None:
            # Errors quote endpoints, and endpoints carry credentials.
            error = self.last_error = redact(error)
        self.note = note
        if state == self.state:
            return
        self.state = state
        self.metrics.source_up.labels(self.name, self.kind).set(1 if state in (CONNECTED, IDLE) else 0)
        self.log.info(
            "source {source} ({kind}) is {state}{why}",
            source=self.name,
            kind=self.kind,
            state=state,
            why=f": {error or note}" if error or note else "",
        )

    def emit(self, post: Post) -> Deferred:
        """
        Hand one post to the queue.  The returned Deferred fires when the
        queue has taken it; wait for it before reading more.
        """
        now = self.reactor.seconds()
        post.received_at = now
        self.posts += 1
        self.last_post_at = now
        second = int(now)
        if self._per_second and self._per_second[-1][0] == second:
            self._per_second[-1][1] += 1
        else:
            self._per_second.append([second, 1])
            while self._per_second[0][0] <= second - 60:
                self._per_second.popleft()
        self._collected.inc()
        return self.enqueue(post)

    def enqueue(self, item) -> Deferred:
        """
        Hand an item (a post, a L{Rejected}, an L{Enriched}) to the queue,
        in order with what came before; wait for it as for L{emit}.
        """
        d = self.queue.put(item)
        if d.called:
            # Taken at once (the usual case): nothing is pending, and a
            # callback per post to say so would cost more than the put.
            self._pending_put = None
            return d
        self._pending_put = d
        d.addBoth(self._put_done)
        return d

    def _put_done(self, result):
        self._pending_put = None
        return result

    def malformed(self, raw: bytes, error: str, context: str, cursor: Optional[str] = None) -> Deferred:
        """
        Count, log and keep aside a payload that could not be read.

        @param cursor: the position after the payload, for a source that
            resumes at a position of its own (a file offset): the payload
            then goes through the queue and is dead-lettered together with
            the position moving past it, so that it is judged once.  Wait
            for the Deferred before reading more, as for L{emit}.
        """
        self.malformed_count += 1
        self.metrics.malformed.labels(self.name).inc()
        context, error = redact(context), redact(error)
        self.log.warn(
            "source {source}: malformed payload at {context}: {error}",
            source=self.name,
            context=context,
            error=error,
        )
        if cursor is not None:
            rejected = Rejected(self.name, bytes(raw), error, context, cursor, self.reactor.seconds())
            return self.enqueue(rejected)
        d = self.store.dead_letter(self.name, raw, error, context)
        d.addErrback(lambda f: self.log.failure("could not keep a dead letter", f))
        return d

    def cancel_pending(self) -> None:
        """
        Withdraw a post still waiting for room in the queue: its cursor was
        never committed, so the next start reads it again.
        """
        if self._pending_put is not None:
            self._pending_put.cancel()

    async def run(self) -> None:
        raise NotImplementedError

    async def wait(self, seconds: float, state: Optional[str] = None, error: Optional[str] = None) -> None:
        """
        Pause C{seconds} (backing off, rate limited...), reporting C{state}
        and when collecting resumes.
        """
        if state is not None:
            self.resume_at = self.reactor.seconds() + seconds
            self.set_state(state, error)
        try:
            await deferLater(self.reactor, seconds)
        finally:
            self.resume_at = None

    def startService(self):
        super().startService()
        self._task = ensureDeferred(self._begin())
        self._task.addErrback(self._crashed)

    async def _begin(self) -> None:
        # The counters are all-time: read them before collecting anything,
        # so that no batch of this run is counted twice.
        load = getattr(self.store, "source_counters", None)
        if load is not None:
            try:
                self.earlier = await load(self.name)
            except Exception as e:
                self.log.warn("source {source}: could not read its counters: {error}", source=self.name, error=e)
        await self.run()

    def _crashed(self, failure):
        if failure.check(CancelledError):
            return
        self.log.failure("source {source} stopped on an error", failure, source=self.name)
        self.set_state(FAILING, failure.getErrorMessage())

    def stopService(self):
        super().stopService()
        self.cancel_pending()
        if self._task is not None:
            self._task.cancel()
        self.set_state(STOPPED)
