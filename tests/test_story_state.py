"""
Stories through the pipeline and a restart, on a real SQLite store: every
matched post is stored with its story, the clusterer's state is saved
every minute and at stop, and a hub started again on the same file has
the same stories under the same ids, which new posts of a story join.
"""

import json

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread
from twisted.logger import globalLogPublisher

from monitor.match import Matcher
from monitor.metrics import Metrics
from monitor.model import Analysis, Post, Topic
from monitor.pipeline import Pipeline
from monitor.queue.memory import MemoryQueue
from monitor.store import PostQuery
from monitor.store.sqlite import SQLiteStore
from monitor.stories import COPY_WAIT, StoryClusterer, StoryService, encode_state

T0 = 1.7e9

OUTAGE = [
    "acme outage: the payments api is down again, checkout fails",
    "payments down at acme, checkout fails with an api error",
    "acme checkout fails again, payments api outage this morning",
]
PHONE = [
    "the new acme phone camera is superb, lovely colours",
    "lovely colours from the acme phone camera at night",
]


class Topics:
    matcher = Matcher([Topic(name="Acme", terms=("acme",))])


class Analyzer:
    def analyze(self, posts):
        return succeed([Analysis(-0.4, 0.0, 0.6, 0.4, "negative") for _ in posts])


def post(i, text, source="bluesky"):
    return Post(source=source, network=source, native_id=str(i), text=text, author=f"a{i}", created_at=T0 + i,
                cursor=str(i))  # fmt: skip


class Hub:
    """The part of the hub stories live in: store, stories, pipeline, started and stopped in the hub's order."""

    def __init__(self, path, reactor):
        self.clock = Clock()
        self.store = SQLiteStore(path, reactor=reactor)
        self.clusterer = StoryClusterer()
        self.stories = StoryService(self.clusterer, self.clock, store=self.store, in_thread=deferToThread)
        self.queue = MemoryQueue(100, reactor=reactor)
        self.pipeline = Pipeline(self.queue, Topics(), Analyzer(), self.store, Metrics(), reactor=reactor,
                                 annotators=[self.stories])  # fmt: skip

    async def start(self):
        await self.store.startService()
        await self.stories.startService()
        self.pipeline.startService()

    async def run(self, posts):
        """Store C{posts}: the pipeline drains the queue when it stops."""
        for p in posts:
            await self.queue.put(p)
        await self.pipeline.stopService()
        self.pipeline.startService()

    async def stop(self):
        await self.pipeline.stopService()
        await self.stories.stopService()
        await self.store.stopService()

    async def story_of(self, uid):
        posts, _ = await self.store.query_posts(PostQuery(limit=500))
        return {p["id"]: p["story"] for p in posts}[uid]


@pytest.fixture
def path(tmp_path):
    return tmp_path / "monitor.sqlite"


@pytest_twisted.ensureDeferred
async def test_stories_and_their_ids_survive_a_restart(path, reactor):
    """Stopped and started again on the same file, the hub has its stories back; a new post joins the same id."""
    hub = Hub(path, reactor)
    await hub.start()
    await hub.run([post(i, t) for i, t in enumerate(OUTAGE + PHONE)] + [post(99, "nothing to see here")])
    outage, phone = await hub.story_of("bluesky:0"), await hub.story_of("bluesky:3")
    assert outage and phone and outage != phone
    assert [await hub.story_of(f"bluesky:{i}") for i in range(5)] == [outage] * 3 + [phone] * 2
    before = {s["id"]: s for s in hub.clusterer.list()}
    assert before[outage]["size"] == 3
    await hub.stop()

    again = Hub(path, reactor)
    await again.start()
    try:
        assert {s["id"]: s for s in again.clusterer.list()} == before
        await again.run([post(10, "acme payments api down, checkout fails for everyone", source="mastodon")])
        assert await again.story_of("mastodon:10") == outage
        assert again.clusterer.get(outage)["size"] == 4
        assert again.clusterer.get(outage)["sources"] == {"bluesky": 3, "mastodon": 1}
        # A story made after the restart gets an id never used before.
        await again.run([post(11, "gardening tips: acme tomatoes love sunny windows"),
                         post(12, "sunny windows and acme tomatoes, gardening tips")])  # fmt: skip
        fresh = await again.story_of("bluesky:11")
        assert fresh not in before
        posts, _ = await again.store.query_posts(PostQuery(story=outage))
        assert sorted(p["id"] for p in posts) == ["bluesky:0", "bluesky:1", "bluesky:2", "mastodon:10"]
    finally:
        await again.stop()


@pytest_twisted.ensureDeferred
async def test_a_replayed_post_is_not_counted_twice(path, reactor):
    """A post the hub has seen (a collector's replay), even across a restart, keeps its story and its count."""
    hub = Hub(path, reactor)
    await hub.start()
    await hub.run([post(i, t) for i, t in enumerate(OUTAGE)])
    sid = await hub.story_of("bluesky:0")
    await hub.run([post(1, OUTAGE[1]), post(2, OUTAGE[2])])
    assert hub.clusterer.get(sid)["size"] == 3
    await hub.stop()

    again = Hub(path, reactor)
    await again.start()
    try:
        await again.run([post(2, OUTAGE[2])])
        assert again.clusterer.get(sid)["size"] == 3
        assert await again.store.count_posts() == 3
    finally:
        await again.stop()


@pytest_twisted.ensureDeferred
async def test_the_state_is_saved_every_minute(path, reactor):
    """The minute's save writes the clusterer's snapshot as JSON; a minute with nothing new writes nothing."""
    hub = Hub(path, reactor)
    await hub.start()
    try:
        await hub.run([post(i, t) for i, t in enumerate(OUTAGE)])
        assert await hub.store.story_state() is None
        hub.clock.advance(60)
        await hub.stories._saving
        state = await hub.store.story_state()
        assert state["clusterer"] == json.loads(json.dumps(hub.clusterer.snapshot()))
        assert [uid for uid, _ in state["recent"]] == ["bluesky:0", "bluesky:1", "bluesky:2"]
        hub.clock.advance(60)
        assert hub.stories._saving is None
    finally:
        await hub.stop()


@pytest_twisted.ensureDeferred
async def test_a_state_that_cannot_be_loaded_starts_empty(path, reactor):
    """A saved state the clusterer refuses is logged; the hub starts with no stories and clusters on."""
    hub = Hub(path, reactor)
    await hub.start()
    await hub.store.save_story_state(
        json.dumps({"version": 1, "clusterer": {"stories": [["not", "a", "story"]]}, "recent": []})
    )
    await hub.pipeline.stopService()
    await hub.store.stopService()
    logged = []
    globalLogPublisher.addObserver(logged.append)
    again = Hub(path, reactor)
    try:
        await again.start()
    finally:
        globalLogPublisher.removeObserver(logged.append)
    try:
        [failure] = [e for e in logged if e.get("log_failure") is not None]
        assert "could not load the saved stories" in failure["log_format"]
        failure["log_failure"].cleanFailure()
        await again.run([post(i, t) for i, t in enumerate(OUTAGE)])
        assert await again.story_of("bluesky:0") is not None
    finally:
        await again.stop()


class Threads:
    """Runs each job when the test says, as a thread would, later."""

    def __init__(self):
        self.jobs = []

    def __call__(self, f, *args):
        d = Deferred()
        self.jobs.append((f, args, d))
        return d

    def run_next(self):
        f, args, d = self.jobs.pop(0)
        d.callback(f(*args))


class TextStore:
    def __init__(self):
        self.saved = []

    def story_state(self):
        return succeed(None)

    def save_story_state(self, text):
        self.saved.append(json.loads(text))
        return succeed(None)


def test_a_batch_waits_while_the_clusterer_is_copied():
    """While a thread copies the clusterer, the next batch waits (a Deferred), then joins its story; none is lost."""
    clock, threads, store = Clock(), Threads(), TextStore()
    service = StoryService(StoryClusterer(), clock, store=store, in_thread=threads)
    service.startService()
    first = [post(0, OUTAGE[0])]
    assert service.annotate(first) is None and first[0].story
    clock.advance(60)
    [(copy, _, _)] = threads.jobs
    assert copy == service.clusterer.snapshot
    later = [post(1, OUTAGE[1])]
    waiting = service.annotate(later)
    assert isinstance(waiting, Deferred) and not waiting.called and later[0].story is None
    threads.run_next()
    assert waiting.called and later[0].story == first[0].story
    threads.run_next()  # the encoding, while posts go on joining stories
    [saved] = store.saved
    assert [uid for uid, _ in saved["recent"]] == ["bluesky:0"]
    assert [s["size"] for s in saved["clusterer"]["stories"]] == [1]
    stopped = service.stopService()
    threads.run_next()
    threads.run_next()
    assert stopped.called and len(store.saved) == 2
    assert [s["size"] for s in store.saved[-1]["clusterer"]["stories"]] == [2]


def test_the_encoding_is_plain_json():
    """The piecewise encoding reads back as the value, whatever it holds."""
    value = {"a": [1, 2.5, None, {"x": ["<b>é</b>", True]}], "b": {str(i): i for i in range(100)}, "c": "\u2028\"'"}
    assert json.loads(encode_state(value)) == value
    # Big enough to be encoded in pieces: leaves in slices, containers item by item.
    big = {"df": {f"w{i}": i for i in range(3000)}, "ids": list(range(2500)), "posts": [[i, f"s{i}", [i] * 3] for i in range(2000)],
           "stories": [{"id": f"s{i}", "terms": {f"t{j}": j for j in range(40)}} for i in range(100)], "empty": {}}  # fmt: skip
    assert json.loads(encode_state(big)) == big
    assert json.loads(encode_state({"version": 1, "clusterer": StoryClusterer().snapshot(), "recent": []}))


def test_a_post_carries_its_story_everywhere():
    """to_dict/from_dict keep a post's story, a post queued before stories existed has none, the live push shows it."""
    from monitor.web.push import post_json

    p = post(1, OUTAGE[0])
    p.story = "s9"
    assert Post.from_dict(json.loads(json.dumps(p.to_dict()))).story == "s9"
    old = p.to_dict()
    del old["story"]
    assert Post.from_dict(old).story is None
    assert post_json(p)["story"] == "s9"


class BrokenClusterer(StoryClusterer):
    """Fails on posts that say so, as a clusterer bug would."""

    def add(self, post):
        if "boom" in post.text:
            raise ZeroDivisionError("float division by zero")
        return super().add(post)


def test_a_post_the_clusterer_fails_on_keeps_no_story():
    """One post that breaks the clusterer is logged and keeps story None; the rest of its batch get theirs."""
    logged = []
    globalLogPublisher.addObserver(logged.append)
    try:
        service = StoryService(BrokenClusterer(), Clock())
        batch = [post(0, OUTAGE[0]), post(1, "acme boom"), post(2, OUTAGE[1])]
        assert service.annotate(batch) is None
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert [p.story is None for p in batch] == [False, True, False]
    [failure] = [e for e in logged if e.get("log_failure") is not None]
    assert failure["uid"] == "bluesky:1"
    failure["log_failure"].cleanFailure()


def test_a_batch_waits_for_a_copy_five_seconds_at_most():
    """A copy that does not end lets the waiting batch through after COPY_WAIT; the late copy's save still ends."""
    clock, threads, store = Clock(), Threads(), TextStore()
    service = StoryService(StoryClusterer(), clock, store=store, in_thread=threads)
    service.startService()
    service.annotate([post(0, OUTAGE[0])])
    clock.advance(60)
    later = [post(1, OUTAGE[1])]
    waiting = service.annotate(later)
    clock.advance(COPY_WAIT - 0.1)
    assert not waiting.called
    clock.advance(0.1)
    assert waiting.called and later[0].story is not None
    assert service.annotate([post(2, OUTAGE[2])]) is None  # no longer held
    threads.run_next()
    threads.run_next()
    assert len(store.saved) == 1 and len(clock.getDelayedCalls()) == 1  # the next minute only
