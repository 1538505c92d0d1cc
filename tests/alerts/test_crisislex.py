"""
The real timeline of the 2013 LA airport shooting (CrisisLex T26): 2,746
tweets over two weeks, a handful an hour until the shooting (about 16:20
UTC on 1 November), then hundreds.  The spike rule with its defaults must
fire on the rise, within the first hour of the surge, and never before it;
whatever the batching, and through the real pipeline replaying the file
flat out.
"""

import csv
import json
from datetime import datetime, timezone

import pytest
import pytest_twisted
from twisted.internet.task import deferLater

from monitor.alerts.config import check_rule_spec
from monitor.alerts.detector import Detector
from monitor.model import Analysis, Post, parse_time
from tests.stack import running

EVENT = "crisislex/T26_2013_LA_airport_shootings/2013_LA_airport_shootings"
#: The first tweet of the surge (the shooting began at about 16:20).
SURGE = datetime(2013, 11, 1, 16, 27, tzinfo=timezone.utc).timestamp()
KEYWORDS = ["lax", "airport", "#laxshooting", "lax shooting", "lax shooter", "lax suspect"]


def timeline(shared_data):
    """(unix time, tweet id, text) for every tweet, oldest first; text where CrisisLex has it."""
    texts = {}
    with open(shared_data / f"{EVENT}-tweets_labeled.csv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, skipinitialspace=True):
            texts[row["Tweet ID"].strip()] = row["Tweet Text"]
    rows = []
    with open(shared_data / f"{EVENT}-tweetids_entire_period.csv", encoding="utf-8", newline="") as f:
        reader = csv.reader(f, skipinitialspace=True)
        next(reader)
        for stamp, tweet_id, _ in reader:
            t = datetime.strptime(stamp, "%a %b %d %H:%M:%S %z %Y").timestamp()
            tweet_id = tweet_id.strip()
            rows.append((t, tweet_id, texts.get(tweet_id, "LAX airport")))
    rows.sort()
    return rows


def spike_rule():
    rule, problems = check_rule_spec({"name": "lax-spike", "type": "volume_spike", "topics": ["LAX"]})
    assert rule is not None, problems
    return rule


def test_the_timeline_is_what_we_think(shared_data):
    """The data: a quiet morning, then the surge at 16:27."""
    rows = timeline(shared_data)
    assert len(rows) == 2746
    before = [t for t, _, _ in rows if t < SURGE]
    assert len(before) == 6 and max(before) < SURGE - 30 * 60
    assert sum(1 for t, _, _ in rows if SURGE <= t < SURGE + 3600) > 100


@pytest.mark.parametrize("batch", [1, 37, 500, 5000])
def test_spike_fires_on_the_rise_whatever_the_batching(shared_data, batch):
    """Default spike rule: opens within the first hour of the surge, not before, at the same minute for any batching."""
    rows = timeline(shared_data)
    posts = [Post(source="crisislex", network="twitter", native_id=i, text=text, author="someone", created_at=t,
                  topics=("LAX",), analysis=Analysis(0.0, 0.0, 1.0, 0.0, "neutral"))
             for t, i, text in rows]  # fmt: skip
    detector = Detector([spike_rule()])
    for start in range(0, len(posts), batch):
        detector.observe(posts[start : start + batch])
    detector.advance(rows[-1][0] + 3600)
    changes, _ = detector.book.drain()
    opened = [parse_time(c.snapshot["opened_at"]) for c in changes if c.event == "opened"]
    first = opened[0]
    assert SURGE <= first <= SURGE + 3600
    # On the rise: the busiest hour (17:00-18:00) is still to come.
    assert first < datetime(2013, 11, 1, 17, 0, tzinfo=timezone.utc).timestamp()
    # Not a flood: a couple of incidents over two weeks.
    assert len(opened) <= 3
    assert first == datetime(2013, 11, 1, 16, 51, tzinfo=timezone.utc).timestamp()


@pytest_twisted.ensureDeferred
async def test_replayed_flat_out_through_the_pipeline(reactor, tmp_path, shared_data):
    """The archive replayed as fast as possible through queue, analysis, store and alerts gives the same incident."""
    from monitor.alerts.engine import AlertEngine
    from monitor.analysis import Classifier
    from monitor.analysis.local import LocalAnalyzer
    from monitor.collect.replay import ReplaySource
    from monitor.config import parse_config
    from monitor.metrics import Metrics
    from monitor.pipeline import Pipeline
    from monitor.queue.memory import MemoryQueue
    from monitor.store.sqlite import SQLiteStore
    from monitor.store.sqlite_alerts import SQLiteAlerts
    from monitor.topics import TopicSet

    rows = timeline(shared_data)
    with open(tmp_path / "lax.jsonl", "w", encoding="utf-8") as f:
        for t, tweet_id, text in rows:
            f.write(json.dumps({"id": tweet_id, "text": text, "author": "someone", "created_at": t}) + "\n")
    config = parse_config({
        "sources": [{"kind": "replay", "name": "crisislex", "path": str(tmp_path / "lax.jsonl")}],
        "topics": [{"name": "LAX", "terms": KEYWORDS}],
        "rules": [{"name": "lax-spike", "type": "volume_spike", "topics": ["LAX"]},
                  {"name": "shooting", "type": "keyword", "phrases": ["shooting", "shooter", "gunman"], "topics": ["LAX"],
                   "escalate_at": 50}],
        "alerts": {"live": False},
    }, environ={})  # fmt: skip
    metrics = Metrics()
    store = SQLiteStore(tmp_path / "monitor.sqlite", reactor=reactor)
    queue = MemoryQueue(1000, reactor=reactor)
    topics = TopicSet(store)
    analyzer = LocalAnalyzer(Classifier(), threads=1, reactor=reactor)
    pipeline = Pipeline(queue, topics, analyzer, store, metrics, batch_size=200, reactor=reactor)
    source = ReplaySource("crisislex", queue, store, metrics, path=str(tmp_path / "lax.jsonl"), reactor=reactor)
    engine = AlertEngine(
        config, store=SQLiteAlerts(store), metrics=metrics, topics=topics, sources=[source], reactor=reactor
    )
    pipeline.add_sink(engine)
    steps = [(store, True), lambda: topics.seed(config.topics), (engine, True), (analyzer, False),
             (pipeline, False), (source, False)]  # fmt: skip
    async with running(steps):
        for _ in range(600):
            if source.state == "finished" and queue.size() == 0 and metrics.stored.labels("crisislex")._value.get():
                break
            await deferLater(reactor, 0.1, lambda: None)
        await deferLater(reactor, 0.5, lambda: None)
        incidents, _ = await engine.incidents({"rule": "lax-spike"}, limit=50)
        shooting, _ = await engine.incidents({"rule": "shooting"}, limit=500)
    stored = metrics.stored.labels("crisislex")._value.get()
    assert stored > 2500
    first = min(parse_time(i["opened_at"]) for i in incidents)
    assert first == datetime(2013, 11, 1, 16, 51, tzinfo=timezone.utc).timestamp()
    (spike,) = [i for i in incidents if parse_time(i["opened_at"]) == first]
    assert spike["signal"]["count"] >= 20 or spike["peak"]["count"] >= 20
    assert spike["samples"] and spike["notifications"] == []
    # It says why, at its peak: the event's words rose, in the timeline's own posts.
    why = spike["explanation"]
    terms = {w for t in why["terms"] for w in t["term"].split()}
    assert terms & {
        "shots",
        "shooting",
        "shooter",
        "shot",
        "gunfire",
        "fired",
        "custody",
        "suspect",
        "tsa",
        "checkpoint",
    }, why["terms"]
    assert not terms & {"lax", "airport"}
    assert why["sources"][0]["source"] == "crisislex" and len(why["top_posts"]) == 3
    # The keyword rule grouped the shooting tweets and escalated once.
    biggest = max(shooting, key=lambda i: i["posts"])
    assert biggest["posts"] >= 50 and biggest["severity"] == "critical"
    assert SURGE <= parse_time(biggest["opened_at"]) < SURGE + 3600
