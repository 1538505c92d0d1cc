"""
The replay and demo collectors, driven by Clock: pacing, resuming from a
saved position, following a growing file, bad lines, and backpressure.
"""

import json

from twisted.internet.task import Clock

from monitor.collect.base import FAILING, FINISHED, IDLE
from monitor.collect.demo import DemoSource
from monitor.collect.jsonl import MAX_LINE
from monitor.collect.replay import ReplaySource
from monitor.metrics import Metrics
from monitor.model import Post, Rejected
from monitor.queue.memory import MemoryQueue
from tests.fakes.store import CursorStore


def line(i, created="2026-01-01T00:00:00Z", text=None):
    return json.dumps({"id": i, "text": text or f"acme post {i}", "author": "a", "created_at": created}) + "\n"


def drain(clock, queue, n=10000):
    """Take everything the queue holds (letting the collector refill it)."""
    out = []
    for _ in range(1000):
        clock.advance(0)
        got = []
        if queue.size():
            queue.get(n).addCallback(got.extend)
        if not got and not queue.size():
            clock.advance(0)
            if not queue.size():
                break
        out.extend(got)
    return out


def replay(tmp_path, lines, store=None, size=10000, **kw):
    path = tmp_path / "posts.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    clock = Clock()
    queue = MemoryQueue(size, reactor=clock)
    store = store or CursorStore()
    source = ReplaySource("r", queue, store, Metrics(), str(path), reactor=clock, **kw)
    return clock, queue, store, source, path


def test_reads_everything_with_cursors_and_keeps_bad_lines(tmp_path):
    """A flat-out replay emits every good post with its position; bad lines become dead letters."""
    lines = [line(1), "{broken\n", "\n", line(2), '{"id": 3, "text": "x"}\n', line(4)]
    clock, queue, store, source, _ = replay(tmp_path, lines)
    source.startService()
    items = drain(clock, queue)
    posts = [p for p in items if isinstance(p, Post)]
    assert [p.native_id for p in posts] == ["1", "2", "4"]
    offsets = [int(p.cursor.split(":")[0]) for p in posts]
    assert offsets == [len("".join(lines[: i + 1]).encode()) for i in (0, 3, 5)]
    assert [p.cursor.split(":")[1] for p in posts] == ["1", "4", "6"]
    # Bad lines go through the queue, in order, each with the position after it.
    rejected = [r for r in items if isinstance(r, Rejected)]
    assert [type(i).__name__ for i in items] == ["Post", "Rejected", "Post", "Rejected", "Post"]
    assert [(r.context, r.error.split(":")[0], r.cursor) for r in rejected] == [
        (f"{tmp_path}/posts.jsonl:2", "invalid JSON", f"{len(''.join(lines[:2]).encode())}:2"),
        (f"{tmp_path}/posts.jsonl:5", "author", f"{len(''.join(lines[:5]).encode())}:5"),
    ]
    assert rejected[0].raw == b"{broken\n" and store.letters == []
    assert source.state == FINISHED
    status = source.status()
    assert status["posts"] == 3 and status["malformed"] == 2 and status["state"] == "finished"


def test_resumes_from_saved_position(tmp_path):
    """With a saved position, only the lines after it are read, and line numbers go on."""
    lines = [line(i) for i in range(5)]
    offset = len("".join(lines[:3]).encode())
    clock, queue, store, source, _ = replay(tmp_path, lines, store=CursorStore(f"{offset}:3"))
    source.startService()
    posts = drain(clock, queue)
    assert [p.native_id for p in posts] == ["3", "4"]
    assert posts[-1].cursor.endswith(":5")


def test_shorter_file_read_from_start(tmp_path):
    """A saved position beyond the end (the file was replaced) restarts at the beginning."""
    clock, queue, store, source, _ = replay(tmp_path, [line(1)], store=CursorStore("99999:40"))
    source.startService()
    assert [p.native_id for p in drain(clock, queue)] == ["1"]


def test_speed_keeps_original_spacing(tmp_path):
    """speed=1 emits posts at their created_at spacing; speed=10 ten times faster."""
    lines = [line(i, f"2026-01-01T00:00:{i * 10:02d}Z") for i in range(4)]
    for speed, step in ((1.0, 10.0), (10.0, 1.0)):
        clock, queue, store, source, _ = replay(tmp_path, lines, speed=speed)
        source.startService()
        got = drain(clock, queue)
        assert [p.native_id for p in got] == ["0"]
        clock.advance(step - 0.01)
        assert drain(clock, queue) == []
        clock.advance(0.01)
        assert [p.native_id for p in drain(clock, queue)] == ["1"]
        clock.advance(2 * step)
        assert [p.native_id for p in drain(clock, queue)] == ["2", "3"]


def test_backpressure_waits_for_room(tmp_path):
    """With a full queue the replay stops reading until room is made."""
    lines = [line(i) for i in range(10)]
    clock, queue, store, source, _ = replay(tmp_path, lines, size=3)
    source.startService()
    clock.advance(0)
    assert queue.size() == 3 and queue.waiting_puts() == 1
    assert source.posts == 4
    got = []
    queue.get(2).addCallback(got.extend)
    clock.advance(0)
    assert [p.native_id for p in got] == ["0", "1"]
    assert queue.size() == 3


def test_follow_reads_appended_lines_whole(tmp_path):
    """follow=true waits at the end, then reads lines appended later, never half a line."""
    clock, queue, store, source, path = replay(tmp_path, [line(1)], follow=True)
    source.startService()
    assert [p.native_id for p in drain(clock, queue)] == ["1"]
    clock.advance(29.0)
    assert source.state == "connected"
    clock.advance(1.0)
    assert source.state == IDLE
    with open(path, "a") as f:
        f.write(line(2) + line(3)[:10])
    clock.advance(0.25)
    assert [p.native_id for p in drain(clock, queue)] == ["2"]
    assert source.state == "connected"
    with open(path, "a") as f:
        f.write(line(3)[10:])
    clock.advance(0.25)
    assert [p.native_id for p in drain(clock, queue)] == ["3"]


def test_overlong_line_skipped(tmp_path):
    """A line over the limit is a dead letter (its start kept) and the next line is read."""
    long_line = '{"id": 1, "text": "' + "a" * (MAX_LINE + 10) + '"}\n'
    clock, queue, store, source, _ = replay(tmp_path, [long_line, line(2)])
    source.startService()
    rejected, post = drain(clock, queue)
    assert post.native_id == "2" and rejected.cursor == f"{len(long_line.encode())}:1"
    assert "too long" in rejected.error and rejected.context.endswith(":1") and len(rejected.raw) == 1024


def test_missing_file(tmp_path):
    """A missing file is failing for a plain replay, idle (waiting) for a followed one, and read once it appears."""
    clock = Clock()
    queue = MemoryQueue(10, reactor=clock)
    path = tmp_path / "later.jsonl"
    plain = ReplaySource("a", queue, CursorStore(), Metrics(), str(path), reactor=clock)
    followed = ReplaySource("b", queue, CursorStore(), Metrics(), str(path), follow=True, reactor=clock)
    plain.startService()
    followed.startService()
    clock.advance(0)
    assert plain.state == FAILING and "does not exist" in plain.last_error
    assert followed.state == IDLE
    # Waiting for a followed file is no error: a note, not last_error.
    assert followed.last_error is None and followed.status()["note"] == f"waiting for {path} to appear"
    path.write_text(line(1))
    clock.advance(5.0)
    got = drain(clock, queue)
    assert sorted(p.source for p in got) == ["a", "b"]


def test_stop_cancels_waiting_put(tmp_path):
    """Stopping a collector blocked on a full queue withdraws its waiting post."""
    clock, queue, store, source, _ = replay(tmp_path, [line(i) for i in range(5)], size=1)
    source.startService()
    clock.advance(0)
    assert queue.waiting_puts() == 1
    source.stopService()
    assert queue.waiting_puts() == 0 and queue.size() == 1


def test_demo_generates_at_rate_and_stamps_now():
    """The demo source emits about rate posts per second, stamped with the clock's time, about the brands."""
    clock = Clock()
    clock.advance(1.7e9)
    queue = MemoryQueue(100000, reactor=clock)
    source = DemoSource(
        "d", queue, CursorStore(), Metrics(), ["Acme", "Globex"], rate=5.0, burst_every=1e9, seed=3, reactor=clock
    )
    source.startService()
    for _ in range(600):
        clock.advance(0.1)
    posts = drain(clock, queue)
    assert 200 <= len(posts) <= 420
    # Posts are written a moment before the hub hears of them.
    assert all(p.received_at - 3 <= p.created_at <= p.received_at for p in posts)
    assert all("acme" in p.text.lower() or "globex" in p.text.lower() for p in posts)
    assert len({p.uid for p in posts}) == len(posts)
    source.stopService()


def test_source_kinds_table_matches_the_collectors():
    """
    Each kind in monitor.collect.kinds names a collector class of that kind
    that takes every one of the kind's keys, so what the loader accepts the
    collector can be built with.
    """
    import inspect

    from monitor.collect import make_source
    from monitor.collect.kinds import SOURCE_KINDS
    from monitor.config import parse_config

    assert set(SOURCE_KINDS) == {"bluesky", "demo", "mastodon", "replay", "rss", "x"}
    for kind, entry in SOURCE_KINDS.items():
        cls = entry.load()
        assert cls.kind == kind
        params = inspect.signature(cls.__init__).parameters
        assert set(entry.fields) <= set(params), (kind, set(entry.fields) - set(params))
        # A collector built by hand behaves as one built from a file that
        # leaves the key out (an empty tuple stands for an empty list).
        for key, field in entry.fields.items():
            default = params[key].default
            if default is not inspect.Parameter.empty and not field.required:
                assert default == field.default or (default == () and field.default == []), (kind, key)
    # Built from the table: a checked replay source, with its defaults.
    cfg = parse_config({"sources": [{"kind": "replay", "name": "r", "path": "p.jsonl"}]})
    clock = Clock()
    source = make_source(cfg.sources[0], MemoryQueue(10, reactor=clock), CursorStore(), Metrics(), [], clock)
    assert isinstance(source, ReplaySource) and source.name == "r"
