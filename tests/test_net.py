"""
The collectors' shared network pieces: backoff, stall timer, line framing,
Retry-After.
"""

from twisted.internet.task import Clock

from monitor.collect.net import Backoff, LineFramer, StallTimer, retry_after


def test_backoff_exponential_capped_with_jitter_bounds():
    """Exponential delays double up to the cap; jitter stays within its fraction."""
    b = Backoff(first=5, cap=320, jitter=0.0)
    assert [b.next() for _ in range(9)] == [5, 10, 20, 40, 80, 160, 320, 320, 320]
    b.reset()
    assert b.next() == 5
    low = Backoff(first=10, jitter=0.2, rng=lambda: 0.0)
    high = Backoff(first=10, jitter=0.2, rng=lambda: 0.999999)
    assert low.next() == 8.0 and 11.99 < high.next() < 12.0


def test_backoff_linear():
    """Linear delays grow by a fixed step up to the cap (X's rule for network errors)."""
    b = Backoff(first=0.25, step=0.25, cap=16, jitter=0.0)
    delays = [b.next() for _ in range(70)]
    assert delays[:4] == [0.25, 0.5, 0.75, 1.0] and delays[-1] == 16


def test_stall_timer():
    """The timer fires only after a full quiet period; touching postpones it."""
    clock = Clock()
    fired = []
    t = StallTimer(clock, 20, lambda: fired.append(clock.seconds()))
    t.start()
    clock.advance(15)
    t.touch()
    clock.advance(15)
    assert fired == []
    clock.advance(5)
    assert fired == [35]
    t.start()
    t.stop()
    clock.advance(100)
    assert fired == [35]


def test_line_framer_splits_and_bounds():
    """Lines split on LF or CRLF across chunks; an over-long line is reported once and skipped."""
    lines, long = [], []
    f = LineFramer(lines.append, long.append, max_length=10)
    f.feed(b"ab\r\ncd")
    f.feed(b"e\n\r\n")
    assert lines == [b"ab", b"cde", b""]
    f.feed(b"0123456789ABC")
    f.feed(b"DEF")
    f.feed(b"GH\nok\n")
    assert long == [b"0123456789ABC"] and lines[-1] == b"ok"
    f.feed(b"x" * 11 + b"\nz\n")
    assert len(long) == 2 and lines[-1] == b"z"
    f.feed(b"partial")
    assert f.pending == b"partial"


def test_retry_after():
    """Retry-After as seconds or an HTTP date; junk gives None."""
    assert retry_after(b"120", 0) == 120.0
    assert retry_after("Thu, 01 Jan 2026 12:00:30 GMT", 1767268800.0) == 30.0
    assert retry_after("soon", 0) is None and retry_after(None, 0) is None
