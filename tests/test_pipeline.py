"""
The pipeline: matching, analysis, ordered storing with cursors, retries
and draining, driven synchronously with Clock and in-memory doubles.
"""

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from zope.interface import implementer

from monitor.bus import STORED
from monitor.interfaces import IAnnotator, ISink
from monitor.match import Matcher
from monitor.metrics import Metrics
from monitor.model import Analysis, Post, Topic
from monitor.pipeline import Pipeline
from monitor.queue.memory import MemoryQueue


def post(i, text="acme is great", source="s"):
    return Post(
        source=source, network=source, native_id=str(i), text=text, author="a", created_at=1000.0 + i, cursor=str(i)
    )


class Topics:
    def __init__(self, *names):
        self.matcher = Matcher([Topic(name=n, terms=(n.lower(),)) for n in names])


class ControlledAnalyzer:
    """Analyses when told to, so tests choose the order batches finish in."""

    def __init__(self):
        self.calls = []

    def analyze(self, posts):
        d = Deferred()
        self.calls.append((posts, d))
        return d

    def finish(self, i):
        posts, d = self.calls[i]
        d.callback([Analysis(0.5, 0.5, 0.5, 0.0, "positive") for _ in posts])


class RecordingStore:
    def __init__(self, failures=0):
        self.batches = []
        self.failures = failures
        self.stored = set()

    def store_batch(self, posts, cursors, rejected=(), collected=None, updates=()):
        if self.failures:
            self.failures -= 1
            return fail(OSError("disk full"))
        self.batches.append(([p.uid for p in posts], dict(cursors)))
        # Idempotent on the uid, as IStore says: the new uids, each once.
        new = [uid for uid in dict.fromkeys(p.uid for p in posts) if uid not in self.stored]
        self.stored.update(new)
        return succeed(new)


@implementer(ISink)
class Sink:
    def __init__(self):
        self.seen = []

    def posts_stored(self, posts):
        self.seen.extend(p.uid for p in posts)


def make(store=None, analyzer=None, batch_size=3, size=100):
    clock = Clock()
    q = MemoryQueue(size, reactor=clock)
    store = store or RecordingStore()
    analyzer = analyzer or ControlledAnalyzer()
    p = Pipeline(q, Topics("Acme"), analyzer, store, Metrics(), batch_size=batch_size, reactor=clock)
    return clock, q, store, analyzer, p


def test_unmatched_posts_dropped_but_cursor_advances():
    """Posts matching no topic are not analysed or stored, yet their cursor is committed."""
    clock, q, store, analyzer, p = make()
    p.startService()
    q.put(post(1))
    q.put(post(2, text="nothing relevant"))
    clock.advance(0)
    ((posts, _),) = analyzer.calls
    assert [x.uid for x in posts] == ["s:1"]
    assert posts[0].topics == ("Acme",)
    analyzer.finish(0)
    assert store.batches == [(["s:1"], {"s": "2"})]
    assert p.metrics.unmatched.labels("s")._value.get() == 1


def test_batches_stored_in_queue_order():
    """A later batch that is analysed first still waits for the earlier one to be stored."""
    clock, q, store, analyzer, p = make(batch_size=2)
    sink = Sink()
    p.add_sink(sink)
    p.startService()
    for i in range(4):
        q.put(post(i))
    clock.advance(0)
    assert len(analyzer.calls) == 2
    analyzer.finish(1)
    assert store.batches == []
    analyzer.finish(0)
    assert [b[0] for b in store.batches] == [["s:0", "s:1"], ["s:2", "s:3"]]
    assert [b[1] for b in store.batches] == [{"s": "1"}, {"s": "3"}]
    assert sink.seen == ["s:0", "s:1", "s:2", "s:3"]


def test_store_failure_retried_with_backoff():
    """A failing store is retried after a delay; the batch is stored once it recovers."""
    clock, q, store, analyzer, p = make(store=RecordingStore(failures=2))
    p.startService()
    q.put(post(1))
    clock.advance(0)
    analyzer.finish(0)
    assert store.batches == []
    clock.advance(0.5)
    assert store.batches == []
    clock.advance(1.0)
    assert store.batches == [(["s:1"], {"s": "1"})]
    assert p.metrics.store_errors._value.get() == 2


def test_stop_drains_queue():
    """Stopping processes everything still queued before the stop Deferred fires."""
    clock, q, store, analyzer, p = make(batch_size=2)
    p.startService()
    for i in range(5):
        q.put(post(i))
    stopped = []
    p.stopService().addCallback(stopped.append)
    clock.advance(0)
    for i in range(3):
        while len(analyzer.calls) <= i:
            clock.advance(0)
        analyzer.finish(i)
        clock.advance(0)
    assert stopped == [None]
    assert sum(len(b[0]) for b in store.batches) == 5
    assert q.size() == 0


def test_stop_when_idle():
    """Stopping an idle pipeline fires at once."""
    clock, q, store, analyzer, p = make()
    p.startService()
    clock.advance(0)
    stopped = []
    p.stopService().addCallback(stopped.append)
    assert stopped == [None]


def test_stop_while_every_slot_is_busy():
    """
    A stop that arrives while every slot is busy and the queue is empty
    fires once those batches are stored: the loop must not go back to
    waiting on the empty queue, which no collector fills any more.
    """
    clock, q, store, analyzer, p = make(batch_size=1)
    p.startService()
    q.put(post(1))
    q.put(post(2))
    clock.advance(0)
    assert len(analyzer.calls) == 2 and q.size() == 0
    stopped = []
    p.stopService().addCallback(stopped.append)
    analyzer.finish(0)
    analyzer.finish(1)
    clock.advance(0)
    assert stopped == [None]
    assert [b[0] for b in store.batches] == [["s:1"], ["s:2"]]


def test_failing_sink_does_not_stop_pipeline():
    """A sink that raises is logged; other sinks and later batches go on."""
    clock, q, store, analyzer, p = make(batch_size=1)

    @implementer(ISink)
    class Broken:
        def posts_stored(self, posts):
            raise RuntimeError("boom")

    good = Sink()
    p.add_sink(Broken())
    p.add_sink(good)
    p.startService()
    q.put(post(1))
    q.put(post(2))
    clock.advance(0)
    analyzer.finish(0)
    clock.advance(0)
    analyzer.finish(1)
    assert good.seen == ["s:1", "s:2"]


def test_listeners_see_only_the_posts_the_store_inserted():
    """
    A post stored before (a replay after a restart) or twice in one batch
    is published once, so that no listener de-duplicates by itself.
    """
    clock, q, store, analyzer, p = make(batch_size=4)
    sink = Sink()
    p.add_sink(sink)
    published = []
    p.bus.subscribe(STORED, lambda posts: published.append([x.uid for x in posts]))
    p.startService()
    for i in (1, 2, 2, 3):
        q.put(post(i))
    clock.advance(0)
    analyzer.finish(0)
    for i in (2, 3, 4):
        q.put(post(i))
    clock.advance(0)
    analyzer.finish(1)
    assert [b[0] for b in store.batches] == [["s:1", "s:2", "s:2", "s:3"], ["s:2", "s:3", "s:4"]]
    assert sink.seen == ["s:1", "s:2", "s:3", "s:4"]
    assert published == [["s:1", "s:2", "s:3"], ["s:4"]]
    for i in (1, 4):
        q.put(post(i))
    clock.advance(0)
    analyzer.finish(2)
    assert published == [["s:1", "s:2", "s:3"], ["s:4"]]  # nothing new: nothing published


class StoryStore(RecordingStore):
    """Keeps the story each post had when it was stored."""

    def __init__(self):
        super().__init__()
        self.stories = {}

    def store_batch(self, posts, cursors, rejected=(), collected=None, updates=()):
        self.stories.update((p.uid, p.story) for p in posts)
        return super().store_batch(posts, cursors, rejected, collected, updates)


@implementer(IAnnotator)
class CountingAnnotator:
    """Names each post's story after the order it saw the posts in."""

    def __init__(self, fail_on=None):
        self.seen = []
        self.fail_on = fail_on

    def annotate(self, posts):
        for p in posts:
            if p.uid == self.fail_on:
                raise RuntimeError("clustering broke")
            self.seen.append(p.uid)
            p.story = f"story{len(self.seen)}"


def make_annotated(annotator, batch_size=2):
    clock = Clock()
    q = MemoryQueue(100, reactor=clock)
    store, analyzer = StoryStore(), ControlledAnalyzer()
    p = Pipeline(q, Topics("Acme"), analyzer, store, Metrics(), batch_size=batch_size, reactor=clock,
                 annotators=[annotator])  # fmt: skip
    return clock, q, store, analyzer, p


def test_annotators_see_matched_posts_in_queue_order_before_the_store():
    """A later batch analysed first is annotated after the earlier one; the stored and pushed posts carry the story."""
    annotator = CountingAnnotator()
    clock, q, store, analyzer, p = make_annotated(annotator)
    stories = []
    sink = Sink()
    sink.posts_stored = lambda posts: stories.extend(x.story for x in posts)
    p.add_sink(sink)
    p.startService()
    for i in range(4):
        q.put(post(i, text="acme again" if i != 1 else "nothing to match"))
    clock.advance(0)
    analyzer.finish(1)
    assert annotator.seen == []
    analyzer.finish(0)
    assert annotator.seen == ["s:0", "s:2", "s:3"]
    assert store.stories == {"s:0": "story1", "s:2": "story2", "s:3": "story3"}
    assert stories == ["story1", "story2", "story3"]


def test_a_failing_annotator_costs_the_story_never_the_post():
    """An annotator that raises is logged; its batch is stored (story None) and the next batch is annotated."""
    from twisted.logger import globalLogPublisher

    logged = []
    globalLogPublisher.addObserver(logged.append)
    try:
        annotator = CountingAnnotator(fail_on="s:0")
        clock, q, store, analyzer, p = make_annotated(annotator, batch_size=1)
        p.startService()
        q.put(post(0))
        q.put(post(1))
        clock.advance(0)
        analyzer.finish(0)
        analyzer.finish(1)
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert [b[0] for b in store.batches] == [["s:0"], ["s:1"]]
    assert store.stories == {"s:0": None, "s:1": "story1"}
    [failure] = [e for e in logged if e.get("log_failure") is not None]
    assert "clustering broke" in str(failure["log_failure"].value)
    assert failure["count"] == 1
    failure["log_failure"].cleanFailure()
