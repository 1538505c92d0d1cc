"""
Framing of long-lived response bodies: lines (X's stream, newline-delimited
JSON) and server-sent events (Mastodon's streaming API), on Twisted's
L{LineOnlyReceiver} and L{TimeoutMixin}.

A response body is read through the transport C{deliverBody} hands its
protocol, a producer: pausing it is the backpressure, and stopping it
(L{IPushProducer.stopProducing}) drops the connection, which is how a
stalled or unwanted stream is ended.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.protocols.basic import LineOnlyReceiver
from twisted.protocols.policies import TimeoutMixin


class StallTimer(TimeoutMixin):
    """
    Call C{on_stall} when C{touch} has not been called for C{timeout}
    seconds: a stream that sends nothing, not even keep-alives, is dead
    even if its TCP connection looks alive.  For a collector that watches a
    connection it does not own the protocol of (a WebSocket).
    """

    def __init__(self, clock, timeout: float, on_stall: Callable[[], None]) -> None:
        self.callLater = clock.callLater
        self.timeout = timeout
        self.on_stall = on_stall

    def start(self) -> None:
        self.setTimeout(self.timeout)

    def touch(self) -> None:
        self.resetTimeout()

    def stop(self) -> None:
        self.setTimeout(None)

    def timeoutConnection(self) -> None:
        self.on_stall()


class LineFramer(LineOnlyReceiver):
    """
    Split a byte stream into lines (C{\\n} or C{\\r\\n}), never holding more
    than C{max_length} bytes of one line: a longer line is reported to
    C{on_too_long} with its first bytes and skipped, and reading goes on
    with the next line (L{LineOnlyReceiver} would drop the connection, and
    a stream that is dropped is only sent the same line again).
    """

    delimiter = b"\n"

    def __init__(
        self,
        on_line: Callable[[bytes], None],
        on_too_long: Callable[[bytes], None],
        max_length: int = 1 << 20,
    ) -> None:
        self.on_line = on_line
        self.on_too_long = on_too_long
        self.max_length = max_length
        # One more for the CR of a CRLF: the limit is on the line itself.
        self.MAX_LENGTH = max_length + 1
        self._skipping = False

    def dataReceived(self, data: bytes) -> None:
        # Hand LineOnlyReceiver one line at a time: it stops at a line too
        # long, and the lines after it in the same read must still count.
        start = 0
        while start < len(data) and not self.transport.disconnecting:
            end = data.find(b"\n", start)
            stop = len(data) if end < 0 else end + 1
            piece, start = data[start:stop], stop
            if self._skipping:
                self._skipping = end < 0
                continue
            super().dataReceived(piece)

    def lineReceived(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self.max_length:
            self.on_too_long(line[:1024])
            return
        self.on_line(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        if self._buffer:
            # An unfinished line already too long: drop what is held and
            # the rest of it, up to its end.
            self._buffer = b""
            self._skipping = True
        elif line.endswith(b"\r"):
            line = line[:-1]
        self.on_too_long(line[:1024])

    @property
    def pending(self) -> bytes:
        """
        The unterminated bytes held so far (an incomplete last line).
        """
        return self._buffer


class _Body:
    """
    The transport a response body arrives on, as L{LineOnlyReceiver} wants
    one: a producer that also says whether it is being dropped.
    """

    disconnecting = False

    def __init__(self, producer) -> None:
        self.producer = producer

    def pauseProducing(self) -> None:
        self.producer.pauseProducing()

    def resumeProducing(self) -> None:
        self.producer.resumeProducing()

    def stopProducing(self) -> None:
        if not self.disconnecting:
            self.disconnecting = True
            self.producer.stopProducing()

    loseConnection = stopProducing


class LineStream(LineFramer, TimeoutMixin):
    """
    A long-lived response body read one line at a time, with backpressure:
    while lines wait for the reader the transport is paused, so a slow
    consumer holds at most one network read, never a growing buffer.  No
    bytes at all (not even keep-alives) for C{stall_timeout} seconds while
    the reader waits drops the connection (C{stalled} is then true).

    Give it to C{response.deliverBody}; then C{await stream.next()} until
    it gives C{None} (the end; C{reason} says why, C{pending} holds an
    unfinished last line).  Lines longer than C{max_length} go to
    C{on_too_long} with their first bytes.
    """

    def __init__(
        self,
        clock,
        stall_timeout: float,
        on_too_long: Callable[[bytes], None],
        max_length: int = 1 << 20,
    ) -> None:
        super().__init__(self._lines_append, on_too_long, max_length)
        self.callLater = clock.callLater
        self.stall_timeout = stall_timeout
        self.stalled = False
        self.reason = None
        self._lines: deque[bytes] = deque()
        self._waiter: Optional[Deferred] = None
        self._paused = False

    def makeConnection(self, transport) -> None:
        super().makeConnection(_Body(transport))

    def connectionMade(self) -> None:
        self.setTimeout(self.stall_timeout)

    def _lines_append(self, line: bytes) -> None:
        self._lines.append(line)

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        super().dataReceived(data)
        if self._lines and self._waiter is not None:
            d, self._waiter = self._waiter, None
            d.callback(self._lines.popleft())
        if self._lines and self._waiter is None and not self._paused and self.reason is None:
            self._paused = True
            # We stop reading, so the server's silence is ours, not a stall.
            self.setTimeout(None)
            self.transport.pauseProducing()

    def next(self) -> Deferred:
        """
        The next line (bytes, without its line ending), or C{None} at the end.
        """
        if self._lines:
            return succeed(self._lines.popleft())
        if self.reason is not None:
            return succeed(None)
        self._waiter = Deferred(self._cancel)
        if self._paused:
            self._paused = False
            self.setTimeout(self.stall_timeout)
            self.transport.resumeProducing()
        return self._waiter

    def abort(self) -> None:
        """
        Drop the connection now.
        """
        if self.reason is None:
            self.transport.stopProducing()

    def _cancel(self, d: Deferred) -> None:
        if self._waiter is d:
            self._waiter = None
        self.abort()

    def timeoutConnection(self) -> None:
        self.stalled = True
        self.abort()

    def connectionLost(self, reason) -> None:
        self.setTimeout(None)
        self.reason = reason
        if self._waiter is not None:
            d, self._waiter = self._waiter, None
            d.callback(None)


@dataclass(frozen=True)
class ServerSentEvent:
    """
    One dispatched event: its type (C{message} unless named), its data
    (the C{data} lines joined by LF), and the last event id seen.
    """

    event: str
    data: bytes
    id: Optional[str] = None


class EventDecoder:
    """
    Server-sent events (the WHATWG C{text/event-stream} format) from the
    lines of a L{LineStream}: C{field: value} lines, a blank line ends an
    event, lines starting with C{:} are comments (Mastodon's C{:)} and
    C{:thump} heartbeats).  An event whose data grows past C{max_size} is
    reported to C{on_too_large} with its first bytes and dropped; the next
    event reads normally.

    @ivar retry: the reconnection delay the server asked for, in seconds.
    @ivar last_id: the last event id, kept across events as the format says.
    """

    def __init__(self, on_too_large: Callable[[bytes], None], max_size: int = 1 << 20) -> None:
        self.on_too_large = on_too_large
        self.max_size = max_size
        self.retry: Optional[float] = None
        self.last_id: Optional[str] = None
        self._reset()

    def _reset(self) -> None:
        self._event: Optional[str] = None
        self._data: list[bytes] = []
        self._size = 0
        self._dropping = False

    def line(self, line: bytes) -> Optional[ServerSentEvent]:
        """
        Take one line (without its line ending); the event it completes, if any.
        """
        if not line:
            event = None
            if self._data and not self._dropping:
                event = ServerSentEvent(self._event or "message", b"\n".join(self._data), self.last_id)
            self._reset()
            return event
        if line.startswith(b":"):
            return None
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            if self._dropping:
                return None
            self._size += len(value)
            if self._size > self.max_size:
                self.on_too_large(b"\n".join(self._data)[:1024])
                self._data, self._dropping = [], True
                return None
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id":
            if b"\x00" not in value:
                self.last_id = value.decode("utf-8", "replace")
        elif name == b"retry":
            if value.isdigit():
                self.retry = int(value) / 1000
        return None


__all__ = ["EventDecoder", "LineFramer", "LineStream", "ServerSentEvent", "StallTimer"]
