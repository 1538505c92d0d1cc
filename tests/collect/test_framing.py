"""
Framing of long-lived bodies: the stall timer, lines (LF or CRLF, bounded)
and server-sent events.
"""

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from monitor.collect.framing import EventDecoder, LineFramer, LineStream, ServerSentEvent, StallTimer
from tests.fakes.body import FakeResponse


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
    f.makeConnection(StringTransport())
    f.dataReceived(b"ab\r\ncd")
    f.dataReceived(b"e\n\r\n")
    assert lines == [b"ab", b"cde", b""]
    f.dataReceived(b"0123456789ABC")
    f.dataReceived(b"DEF")
    f.dataReceived(b"GH\nok\n")
    assert long == [b"0123456789ABC"] and lines[-1] == b"ok"
    f.dataReceived(b"x" * 11 + b"\nz\n")
    assert len(long) == 2 and lines[-1] == b"z"
    f.dataReceived(b"partial")
    assert f.pending == b"partial"


def test_line_framer_limit_is_on_the_line_not_its_crlf():
    """A line of exactly max_length bytes passes with LF or CRLF; one byte more is refused, its neighbours kept."""
    lines, long = [], []
    f = LineFramer(lines.append, long.append, max_length=4)
    f.makeConnection(StringTransport())
    f.dataReceived(b"abcd\r\nabcd\nabcde\r\nok\r\n")
    assert lines == [b"abcd", b"abcd", b"ok"] and long == [b"abcde"]


def open_stream(clock, on_too_long=lambda head: None, max_length=1 << 20):
    """A LineStream (stall timeout 20 s) reading a hand-fed response body."""
    r = FakeResponse()
    s = LineStream(clock, 20, on_too_long, max_length)
    r.deliverBody(s)
    return r, s


def assert_stalls_after(seconds, clock, r, s, waiting):
    """A second short of the stall timeout the stream is up; then it is dropped, stalled, and the wait ends."""
    clock.advance(seconds - 1)
    assert not r.transport.aborted
    clock.advance(1)
    assert r.transport.aborted and s.stalled
    r.finish(ConnectionError("gone"))
    assert waiting.result is None


def test_line_stream_pauses_while_lines_wait():
    """Lines wait with the transport paused; reading them all resumes it; the end gives None."""
    clock = Clock()
    r, s = open_stream(clock)
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
    clock = Clock()
    r, s = open_stream(clock)
    d = s.next()
    for _ in range(3):
        clock.advance(15)
        s.dataReceived(b"\r\n")
        assert d.result == b""
        d = s.next()
    assert_stalls_after(20, clock, r, s, d)


def test_line_stream_paused_is_not_stalled():
    """While lines wait for the reader the silence is ours: no stall however long."""
    clock = Clock()
    r, s = open_stream(clock)
    s.dataReceived(b"one\r\n")
    clock.advance(100)
    assert not r.transport.aborted and not s.stalled
    assert s.next().result == b"one"
    assert_stalls_after(20, clock, r, s, s.next())


def test_line_stream_cancel_aborts():
    """Cancelling the wait for a line drops the connection; the later end is quiet."""
    clock = Clock()
    r, s = open_stream(clock)
    d = s.next()
    d.cancel()
    d.addErrback(lambda f: None)
    assert r.transport.aborted
    r.finish(ConnectionError("gone"))
    assert s.next().result is None


def test_line_stream_reports_long_lines_and_goes_on():
    """An over-long line goes to on_too_long with its head; the lines after it in the same read still arrive."""
    clock = Clock()
    long = []
    r, s = open_stream(clock, long.append, max_length=8)
    s.dataReceived(b"first\r\n" + b"y" * 50 + b"\r\nafter\r\n")
    assert long == [b"y" * 50] and not r.transport.aborted
    assert s.next().result == b"first" and s.next().result == b"after"


def sse(text: bytes, max_size: int = 1 << 20):
    """Decode a whole event stream (split as LineFramer splits it); return the events and the too-large heads."""
    too_large, events = [], []
    decoder = EventDecoder(too_large.append, max_size)
    lines = []
    f = LineFramer(lines.append, too_large.append)
    f.makeConnection(StringTransport())
    f.dataReceived(text)
    for line in lines:
        event = decoder.line(line)
        if event is not None:
            events.append(event)
    return events, too_large, decoder


def test_sse_events_types_and_multi_line_data():
    """event names the type (default message); several data lines join with LF; a blank line dispatches."""
    events, _, _ = sse(b'event: update\ndata: {"a":\ndata: 1}\n\ndata: plain\n\nevent: delete\ndata: 11\n\n')
    assert events == [
        ServerSentEvent("update", b'{"a":\n1}'),
        ServerSentEvent("message", b"plain"),
        ServerSentEvent("delete", b"11"),
    ]


def test_sse_comments_and_crlf_and_no_space():
    """Comment lines (Mastodon's :) and :thump) are ignored; CRLF works as LF; the space after the colon is optional."""
    events, _, _ = sse(b":)\r\n:thump\r\nevent:update\r\ndata:x\r\n\r\n:thump\r\n\r\n")
    assert events == [ServerSentEvent("update", b"x")]


def test_sse_id_and_retry_fields():
    """id is kept across events (not one with NUL); retry in milliseconds sets the delay (digits only)."""
    events, _, decoder = sse(b"id: 7\nretry: 2500\ndata: a\n\ndata: b\n\nid: x\x00y\nretry: soon\ndata: c\n\n")
    assert [(e.data, e.id) for e in events] == [(b"a", "7"), (b"b", "7"), (b"c", "7")]
    assert decoder.retry == 2.5 and decoder.last_id == "7"


def test_sse_event_without_data_is_not_dispatched():
    """An event: line alone dispatches nothing, and its type does not leak into the next event."""
    events, _, _ = sse(b"event: update\n\ndata: d\n\n")
    assert events == [ServerSentEvent("message", b"d")]


def test_sse_oversize_event_reported_and_dropped():
    """An event whose data outgrows the limit is reported with its head and dropped whole; the next one reads."""
    events, too_large, _ = sse(
        b"event: update\ndata: 0123\ndata: 456789\ndata: tail\n\nevent: update\ndata: ok\n\n", max_size=8
    )
    assert too_large == [b"0123"] and events == [ServerSentEvent("update", b"ok")]
