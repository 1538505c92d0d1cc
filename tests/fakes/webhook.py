"""
A local receiver of Standard Webhooks (PROTOCOLS.md section 6.4), for tests
and for trying alerts by hand.  It checks what a careful receiver checks,
with its own code (not the hub's): the C{webhook-signature} is
C{v1,<base64 HMAC-SHA256>} of C{"{webhook-id}.{webhook-timestamp}.{raw
body}"} with the key from the C{whsec_} secret, compared in constant time
with each signature given; a timestamp more than five minutes off is
refused; a C{webhook-id} seen before is a duplicate (answered 200, not
counted again).  Bad signatures get 401.

Tests C{script} the next answers (200, 429 with Retry-After, 500, 404...)
and read C{deliveries}, C{duplicates} and C{requests}.

By hand::

    python -m tests.fakes.webhook --port 8084 --secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw

prints every verified delivery.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Optional, Union

from twisted.web.resource import Resource


def _phrase(code: int) -> bytes:
    try:
        return HTTPStatus(code).phrase.encode("ascii")
    except ValueError:
        return b"Unknown"


__all__ = ["Delivered", "FakeWebhookReceiver", "main"]

TOLERANCE = 300


@dataclass
class Delivered:
    """One accepted delivery."""

    id: str
    timestamp: int
    signature: str
    body: bytes
    payload: Any
    verified: bool


class FakeWebhookReceiver(Resource):
    """
    Accept signed webhooks at any path.

    @param secret: C{whsec_...} (or a plain string, used as its bytes);
        C{None} accepts unsigned requests.
    @param clock: for the timestamp check.
    """

    isLeaf = True

    def __init__(self, secret: Optional[str] = None, clock=None) -> None:
        super().__init__()
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        if secret is None:
            self.key = None
        elif secret.startswith("whsec_"):
            self.key = base64.b64decode(secret[len("whsec_") :])
        else:
            self.key = secret.encode("utf-8")
        self.deliveries: list[Delivered] = []
        self.duplicates: list[str] = []
        self.requests: list[tuple[str, dict[str, str], bytes, int]] = []
        self._script: deque = deque()

    def script(self, answers: list[Union[int, tuple]]) -> None:
        """
        Answer the next requests with C{answers} (a status, or C{(status,
        headers)}), before looking at them; then behave normally again.
        """
        for answer in answers:
            if isinstance(answer, int):
                answer = (answer, {})
            self._script.append((answer[0], dict(answer[1])))

    def _verify(self, headers: dict[str, str], body: bytes) -> tuple[bool, str]:
        try:
            msg_id = headers["webhook-id"]
            timestamp = int(headers["webhook-timestamp"])
        except (KeyError, ValueError):
            return False, "missing webhook-id or webhook-timestamp"
        if abs(self.clock.seconds() - timestamp) > TOLERANCE:
            return False, "timestamp too far from now"
        if self.key is None:
            return True, ""
        expected = base64.b64encode(
            hmac.new(self.key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
        ).decode()
        for entry in headers.get("webhook-signature", "").split():
            version, _, signature = entry.partition(",")
            if version == "v1" and hmac.compare_digest(signature, expected):
                return True, ""
        return False, "no valid signature"

    def render_POST(self, request):
        headers = {k.decode().lower(): v[-1].decode() for k, v in request.requestHeaders.getAllRawHeaders()}
        body = request.content.read()
        if self._script:
            code, extra = self._script.popleft()
            self.requests.append((request.path.decode(), headers, body, code))
            request.setResponseCode(code, _phrase(code))
            for name, value in extra.items():
                request.setHeader(name.encode(), str(value).encode())
            return b""
        ok, why = self._verify(headers, body)
        if not ok:
            self.requests.append((request.path.decode(), headers, body, 401))
            request.setResponseCode(401)
            return why.encode()
        self.requests.append((request.path.decode(), headers, body, 200))
        msg_id = headers["webhook-id"]
        if any(d.id == msg_id for d in self.deliveries):
            self.duplicates.append(msg_id)
            return b""
        try:
            payload = json.loads(body)
        except ValueError:
            request.setResponseCode(400)
            return b"not JSON"
        self.deliveries.append(
            Delivered(msg_id, int(headers["webhook-timestamp"]), headers.get("webhook-signature", ""), body,
                      payload, self.key is not None)
        )  # fmt: skip
        request.setResponseCode(204)
        return b""


def main(argv=None) -> None:
    import argparse
    import sys

    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver
    from twisted.web.server import Site

    parser = argparse.ArgumentParser(description="A fake receiver of signed webhooks.")
    parser.add_argument("--port", type=int, default=8084)
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--secret", default=None, help="whsec_... (omit to accept unsigned requests)")
    args = parser.parse_args(argv)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])

    class Printing(FakeWebhookReceiver):
        def render_POST(self, request):
            before = len(self.deliveries)
            answer = super().render_POST(request)
            if len(self.deliveries) > before:
                d = self.deliveries[-1]
                print(f"--- {d.id} (verified: {d.verified})\n{json.dumps(d.payload, indent=2, ensure_ascii=False)}",
                      flush=True)  # fmt: skip
            return answer

    reactor.listenTCP(args.port, Site(Printing(args.secret, reactor)), interface=args.interface)
    print(f"fake webhook receiver: http://{args.interface}:{args.port}/hook", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
