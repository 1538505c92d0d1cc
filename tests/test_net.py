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


class FakeBodyTransport:
    """What Response.deliverBody hands a body protocol: a proxy producer over the connection."""

    def __init__(self):
        self.paused = False
        self.aborted = False
        self._producer = self

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False

    def stopProducing(self):
        self.aborted = True

    def abortConnection(self):
        self.aborted = True


class FakeResponse:
    """A response whose body the test feeds by hand."""

    def __init__(self):
        self.transport = FakeBodyTransport()
        self.protocol = None

    def deliverBody(self, protocol):
        self.protocol = protocol
        protocol.makeConnection(self.transport)

    def finish(self, exc=None):
        from twisted.python.failure import Failure
        from twisted.web.client import ResponseDone

        self.protocol.connectionLost(Failure(exc or ResponseDone()))


def test_read_body_bounded_and_timed():
    """read_body returns the whole body, refuses one over the limit, and gives up on a trickle."""
    from twisted.internet.defer import TimeoutError

    from monitor.collect.net import BodyTooLarge, read_body

    clock = Clock()
    r = FakeResponse()
    d = read_body(r, 10, clock, timeout=5)
    r.protocol.dataReceived(b"hello ")
    r.protocol.dataReceived(b"you")
    r.finish()
    assert d.result == b"hello you"

    r = FakeResponse()
    d = read_body(r, 10, clock)
    r.protocol.dataReceived(b"0123456789")
    r.protocol.dataReceived(b"!")
    f = []
    d.addErrback(f.append)
    assert f[0].check(BodyTooLarge) and f[0].value.head == b"0123456789" and r.transport.aborted
    r.finish()  # the late connectionLost is ignored

    r = FakeResponse()
    d = read_body(r, 10, clock, timeout=5)
    r.protocol.dataReceived(b"a")
    clock.advance(5)
    f = []
    d.addErrback(f.append)
    assert f[0].check(TimeoutError) and r.transport.aborted


def test_line_stream_pauses_while_lines_wait():
    """Lines wait with the transport paused; reading them all resumes it; the end gives None."""
    from monitor.collect.net import LineStream

    clock = Clock()
    r = FakeResponse()
    s = LineStream(clock, 20, lambda head: None)
    r.deliverBody(s)
    s.dataReceived(b"one\r\ntwo\r\nthr")
    assert r.transport.paused
    assert s.next().result == b"one" and s.next().result == b"two"
    d = s.next()
    assert not r.transport.paused and not d.called
    s.dataReceived(b"ee\r\n")
    assert d.result == b"three" and not r.transport.paused
    s.dataReceived(b"\r\ntail")
    assert s.next().result == b""
    r.finish()
    assert s.next().result is None and s.pending == b"tail"


def test_line_stream_stall_drops_connection():
    """Only keep-alives, then silence: after stall_timeout the stream is aborted and marked stalled."""
    from monitor.collect.net import LineStream

    clock = Clock()
    r = FakeResponse()
    s = LineStream(clock, 20, lambda head: None)
    r.deliverBody(s)
    d = s.next()
    for _ in range(3):
        clock.advance(15)
        s.dataReceived(b"\r\n")
        assert d.result == b""
        d = s.next()
    clock.advance(19)
    assert not r.transport.aborted
    clock.advance(1)
    assert r.transport.aborted and s.stalled
    r.finish(ConnectionError("gone"))
    assert d.result is None


def test_line_stream_cancel_aborts():
    """Cancelling the wait for a line drops the connection; the later end is quiet."""
    from monitor.collect.net import LineStream

    clock = Clock()
    r = FakeResponse()
    s = LineStream(clock, 20, lambda head: None)
    r.deliverBody(s)
    d = s.next()
    d.cancel()
    d.addErrback(lambda f: None)
    assert r.transport.aborted
    r.finish(ConnectionError("gone"))
    assert s.next().result is None
