"""
A minimal WebSocket client for tests, on the real reactor: it can complete
a handshake with any headers, send a subscribe message, collect frames, and
stop reading (to play a stalled browser).
"""

import json
import os
import struct

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol


def masked_frame(text: str) -> bytes:
    payload = text.encode("utf-8")
    mask = os.urandom(4)
    head = bytes([0x81])
    if len(payload) < 126:
        head += bytes([0x80 | len(payload)])
    elif len(payload) < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", len(payload))
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", len(payload))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawClient(Protocol):
    """Speaks just enough WebSocket: the handshake, and unmasked server frames."""

    def __init__(self, host, origin, cookie=None):
        self.host, self.origin, self.cookie = host, origin, cookie
        self.buffer = b""
        self.status = None
        self.handshake = Deferred()
        self.closed = Deferred()
        self.envelopes = []
        self.waiters = []
        self.bytes_received = 0
        self.close_code = None

    def connectionMade(self):
        lines = [
            "GET /ws HTTP/1.1",
            f"Host: {self.host}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ]
        if self.origin:
            lines.append(f"Origin: {self.origin}")
        if self.cookie:
            lines.append(f"Cookie: {self.cookie}")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))

    def dataReceived(self, data):
        self.bytes_received += len(data)
        self.buffer += data
        if self.status is None:
            if b"\r\n\r\n" not in self.buffer:
                return
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            self.status = int(head.split(b" ", 2)[1])
            self.handshake.callback(self.status)
        while True:
            frame = self._frame()
            if frame is None:
                break
            opcode, payload = frame
            if opcode == 1:
                self.envelopes.extend(json.loads(payload))
                self._check()
            elif opcode == 8 and self.close_code is None:
                self.close_code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
                self.transport.loseConnection()

    def _frame(self):
        b = self.buffer
        if len(b) < 2:
            return None
        length, offset = b[1] & 0x7F, 2
        if length == 126:
            if len(b) < 4:
                return None
            length, offset = struct.unpack(">H", b[2:4])[0], 4
        elif length == 127:
            if len(b) < 10:
                return None
            length, offset = struct.unpack(">Q", b[2:10])[0], 10
        if len(b) < offset + length:
            return None
        self.buffer = b[offset + length :]
        return b[0] & 0x0F, b[offset : offset + length]

    def send_json(self, message):
        self.transport.write(masked_frame(json.dumps(message)))

    def send_text(self, text):
        self.transport.write(masked_frame(text))

    def wait_for(self, predicate):
        """A Deferred that fires once predicate(envelopes) is true."""
        d = Deferred()
        self.waiters.append((predicate, d))
        self._check()
        return d

    def _check(self):
        for entry in list(self.waiters):
            predicate, d = entry
            if predicate(self.envelopes):
                self.waiters.remove(entry)
                d.callback(self.envelopes)

    def connectionLost(self, reason):
        if self.status is None:
            self.handshake.errback(reason)
        self.closed.callback(None)
