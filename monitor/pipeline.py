"""
The pipeline: queue -> matcher -> analysis -> annotators -> store -> events.

Batches are analysed concurrently (up to C{max_inflight}) but stored strictly
in the order they left the queue, so that a collector's cursor, committed in
the same transaction as the batch, never runs ahead of a post that is not yet
stored.  A store failure is retried (the queue fills and slows the
collectors meanwhile); nothing taken from the queue is dropped.  The
annotators (the stories) see the matched posts in that same order, just
before the store, so that what they add is stored and pushed with the post.
The posts the store really inserted are published on the hub's event bus
(L{monitor.bus.STORED}), so that no listener sees a post twice.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from typing import Optional

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, DeferredSemaphore, ensureDeferred, maybeDeferred, succeed
from twisted.internet.task import deferLater
from twisted.logger import Logger

from monitor.backoff import Backoff
from monitor.bus import ENRICHED, STORED, EventBus
from monitor.config import default
from monitor.interfaces import IAnnotator, ISink
from monitor.model import PROFILE_PENDING, Enriched, Rejected

#: Store retry delays in seconds: doubling, capped.
_RETRY_FIRST, _RETRY_CAP = 0.5, 30.0

#: Matched posts stored without their author's followers, remembered so
#: that a late profile (L{Enriched}) lets follower rules see them once.
UNENRICHED = 10_000


class Pipeline(Service):
    """
    Consume the queue and carry every post through to the store, then
    publish the new ones on C{bus}.

    @ivar topics: anything with a C{matcher} attribute; read per batch so a
        topic change applies to the next batch without a restart.
    @ivar annotators: L{IAnnotator}s given every batch's matched posts, in
        queue order, before they are stored.
    """

    name = "pipeline"
    log = Logger()

    def __init__(
        self,
        queue,
        topics,
        analyzer,
        store,
        metrics,
        batch_size=default("analysis", "batch_size"),
        max_inflight=2,
        reactor=None,
        annotators=(),
        bus: Optional[EventBus] = None,
    ):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.queue = queue
        self.topics = topics
        self.analyzer = analyzer
        self.store = store
        self.metrics = metrics
        self.batch_size = batch_size
        self.bus = bus if bus is not None else EventBus()
        self.annotators = [IAnnotator(a) for a in annotators]
        self._slots = DeferredSemaphore(max_inflight)
        self._tail: Deferred = succeed(None)
        self._get: Optional[Deferred] = None
        self._loop: Optional[Deferred] = None
        self._stopping = False
        self._unenriched: OrderedDict[str, object] = OrderedDict()

    def add_sink(self, sink) -> None:
        """
        Subscribe an L{ISink} to the new posts of every stored batch (and,
        if it has C{posts_enriched}, to posts whose profile came late).
        """
        sink = ISink(sink)
        self.bus.subscribe(STORED, sink.posts_stored)
        enriched = getattr(sink, "posts_enriched", None)
        if enriched is not None:
            self.bus.subscribe(ENRICHED, enriched)

    def startService(self):
        super().startService()
        self._stopping = False
        self._loop = ensureDeferred(self._run())
        self._loop.addErrback(lambda f: self.log.failure("the pipeline stopped on an error", f))

    def stopService(self):
        """
        Drain: process what is in the queue, then stop.  The collectors are
        stopped before this, so the queue only shrinks.
        """
        super().stopService()
        self._stopping = True
        if self._get is not None and self.queue.drained():
            self._get.cancel()
        return self._loop

    async def _run(self) -> None:
        while not (self._stopping and self.queue.drained()):
            await self._slots.acquire()
            if self._stopping and self.queue.drained():
                # The stop came while every slot was busy: nothing will fill
                # the queue now, so waiting on it would never end.
                self._slots.release()
                break
            self._get = self.queue.get(self.batch_size)
            try:
                posts = await self._get
            except CancelledError:
                self._slots.release()
                break
            finally:
                self._get = None
            self.metrics.queue_depth.set(self.queue.size())
            previous, done = self._tail, Deferred()
            self._tail = done
            d = ensureDeferred(self._process(posts, previous))
            d.addErrback(lambda f: self.log.failure("a batch failed", f))
            d.addBoth(lambda _, done=done: (done.callback(None), self._slots.release()))
        await self._tail

    async def _process(self, posts: list, previous: Deferred) -> None:
        matcher = self.topics.matcher
        cursors: dict[str, str] = {}
        matched = []
        rejected = []
        updates = []
        unmatched: Counter[str] = Counter()
        for post in posts:
            if post.cursor is not None:
                cursors[post.source] = post.cursor
            if isinstance(post, Rejected):
                rejected.append(post)
                continue
            if isinstance(post, Enriched):
                updates.append(post)
                continue
            post.topics = matcher.match(post)
            # A collector's mark, not part of the post: a late profile
            # (Enriched) will follow this one.
            pending = post.extra.pop(PROFILE_PENDING, False) if post.extra else False
            if post.topics:
                matched.append(post)
                if pending:
                    self._unenriched[post.uid] = post
            else:
                unmatched[post.source] += 1
        while len(self._unenriched) > UNENRICHED:
            self._unenriched.popitem(last=False)
        for source, n in unmatched.items():
            self.metrics.unmatched.labels(source).inc(n)

        if matched:
            started = self.reactor.seconds()
            results = await self.analyzer.analyze(matched)
            self.metrics.analysis_seconds.observe(self.reactor.seconds() - started)
            for post, analysis in zip(matched, results):
                post.analysis = analysis

        # Store in queue order: wait for the batch before this one.
        await previous
        if matched:
            await self._annotate(matched)
        collected = Counter(post.source for post in posts if not isinstance(post, (Rejected, Enriched)))
        inserted = await self._store(matched, cursors, rejected, collected, updates)
        await self.queue.ack(posts)
        if inserted:
            new = set(inserted)
            # The first of each uid: a batch may hold a post twice.
            fresh = []
            for post in matched:
                if post.uid in new:
                    new.discard(post.uid)
                    fresh.append(post)
            self.bus.publish(STORED, fresh)
        if updates:
            self._enriched(updates)

    async def _annotate(self, posts: list) -> None:
        """
        Let each annotator add its fields; one that fails costs its fields
        (a story stays C{None}), never the posts or their order.
        """
        for annotator in self.annotators:
            try:
                await maybeDeferred(annotator.annotate, posts)
            except Exception:
                self.log.failure(
                    "annotator {annotator!r} failed on {count} posts; they are stored without its fields",
                    annotator=annotator,
                    count=len(posts),
                )

    def _enriched(self, updates: list) -> None:
        """
        Give late profiles to the posts in memory that lacked them, and
        show those posts to the sinks that care (follower rules, once).
        """
        posts = []
        for update in updates:
            for uid in update.uids:
                post = self._unenriched.pop(uid, None)
                if post is None:
                    continue
                if update.author:
                    post.author = update.author
                if update.author_followers is not None:
                    post.author_followers = update.author_followers
                post.author_verified = update.author_verified
                posts.append(post)
        if posts:
            self.bus.publish(ENRICHED, posts)

    async def _store(self, posts: list, cursors: dict, rejected: list, collected: Counter, updates=()) -> list:
        backoff = Backoff(first=_RETRY_FIRST, cap=_RETRY_CAP, jitter=0.0)
        while True:
            started = self.reactor.seconds()
            try:
                inserted = await self.store.store_batch(posts, cursors, rejected, collected, updates)
            except Exception as e:
                self.metrics.store_errors.inc()
                delay = backoff.next()
                self.log.error(
                    "could not store {count} posts ({error}); retrying in {delay}s",
                    count=len(posts),
                    error=e,
                    delay=delay,
                )
                await deferLater(self.reactor, delay)
                continue
            now = self.reactor.seconds()
            self.metrics.store_seconds.observe(now - started)
            self.metrics.duplicates.inc(len(posts) - len(inserted))
            for source, n in Counter(post.source for post in posts).items():
                self.metrics.stored.labels(source).inc(n)
            observe = self.metrics.latency.observe
            for post in posts:
                observe(now - post.received_at)
            return inserted
