"""
A local Slack incoming-webhook receiver, for tests and for trying alerts by
hand, speaking HTTP as PROTOCOLS.md section 6.1 describes: C{POST} a JSON
message with C{text} and/or C{blocks}; the answer is plain text, C{ok} on
200, or an error code (C{invalid_payload}, C{no_text}, C{action_prohibited},
C{channel_not_found}, C{no_service}, C{channel_is_archived},
C{rollup_error}); 429 carries C{Retry-After}.

Tests C{script} the next answers for a path, and read C{messages} (the
parsed JSON of every accepted message, by path) and C{requests} (every
request, accepted or not).

By hand::

    python -m tests.fakes.slack --port 8083

prints every message; the path chooses the behaviour:

    /services/T000/B000/ok           200 ok
    /services/T000/B000/ratelimited  429 with Retry-After: 2 every other message
    /services/T000/B000/flaky        500 rollup_error every other message
    /services/T000/B000/gone         404 no_service
    /services/T000/B000/archived     410 channel_is_archived
    /services/T000/B000/forbidden    403 action_prohibited
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Optional, Union

from twisted.web.resource import Resource


def _phrase(code: int) -> bytes:
    try:
        return HTTPStatus(code).phrase.encode("ascii")
    except ValueError:
        return b"Unknown"


__all__ = ["FakeSlack", "Seen", "main"]

#: Block Kit limits the fake enforces like Slack does.
_HEADER, _SECTION = 150, 3000


@dataclass
class Seen:
    """One request the fake received, and what it answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    code: int = 0


@dataclass
class Scripted:
    code: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


_FIXED = {
    "gone": Scripted(404, {}, b"no_service"),
    "archived": Scripted(410, {}, b"channel_is_archived"),
    "forbidden": Scripted(403, {}, b"action_prohibited"),
}


def _check_blocks(blocks: Any) -> Optional[str]:
    if not isinstance(blocks, list) or len(blocks) > 50:
        return "invalid_blocks"
    for block in blocks:
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            return "invalid_blocks"
        text = block.get("text")
        if text is not None:
            if not isinstance(text, dict) or text.get("type") not in ("plain_text", "mrkdwn"):
                return "invalid_blocks"
            limit = _HEADER if block["type"] == "header" else _SECTION
            if not isinstance(text.get("text"), str) or not 0 < len(text["text"]) <= limit:
                return "invalid_blocks"
        for f in block.get("fields") or ():
            if not isinstance(f, dict) or not isinstance(f.get("text"), str) or len(f["text"]) > 2000:
                return "invalid_blocks"
    return None


class FakeSlack(Resource):
    """
    Incoming webhooks under C{/services/...}.

    @ivar messages: accepted messages (parsed JSON) by path.
    @ivar requests: every request seen, in order.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.messages: dict[str, list[dict]] = defaultdict(list)
        self.requests: list[Seen] = []
        self._scripts: dict[str, deque[Scripted]] = defaultdict(deque)
        self._counts: dict[str, int] = defaultdict(int)

    def script(self, path: str, answers: list[Union[int, tuple]]) -> None:
        """
        Answer the next requests to C{path} with C{answers}: a status, or
        C{(status, headers)} or C{(status, headers, body)}; then behave
        normally again.
        """
        for answer in answers:
            answer = (answer,) if isinstance(answer, int) else tuple(answer)
            code = answer[0]
            headers = answer[1] if len(answer) > 1 else {}
            body = answer[2] if len(answer) > 2 else None
            if body is None:
                body = {200: b"ok", 429: b"rate_limited", 500: b"rollup_error", 404: b"no_service",
                        403: b"action_prohibited", 410: b"channel_is_archived"}.get(code, b"error")  # fmt: skip
            self._scripts[path].append(Scripted(code, dict(headers), body))

    def render_POST(self, request):
        path = request.path.decode("utf-8", "replace")
        body = request.content.read()
        seen = Seen(
            "POST",
            path,
            {k.decode().lower(): v[-1].decode() for k, v in request.requestHeaders.getAllRawHeaders()},
            body,
        )
        self.requests.append(seen)
        answer = self._answer(path, body, request)
        seen.code = answer.code
        request.setResponseCode(answer.code, _phrase(answer.code))
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        for name, value in answer.headers.items():
            request.setHeader(name.encode(), str(value).encode())
        return answer.body

    def render_GET(self, request):
        request.setResponseCode(405)
        return b"invalid_request"

    def _answer(self, path: str, body: bytes, request) -> Scripted:
        if self._scripts[path]:
            scripted = self._scripts[path].popleft()
            if scripted.code == 200:
                self._accept(path, body, request)
            return scripted
        if not path.startswith("/services/") or path.count("/") != 4:
            return Scripted(404, {}, b"no_service")
        mode = path.rsplit("/", 1)[1]
        if mode in _FIXED:
            return _FIXED[mode]
        self._counts[path] += 1
        if mode == "ratelimited" and self._counts[path] % 2:
            return Scripted(429, {"Retry-After": "2"}, b"rate_limited")
        if mode == "flaky" and self._counts[path] % 2:
            return Scripted(500, {}, b"rollup_error")
        return self._accept(path, body, request)

    def _accept(self, path: str, body: bytes, request) -> Scripted:
        ctype = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
        if ctype != b"application/json":
            return Scripted(400, {}, b"invalid_payload")
        try:
            message = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return Scripted(400, {}, b"invalid_payload")
        if not isinstance(message, dict):
            return Scripted(400, {}, b"invalid_payload")
        if not message.get("text") and not message.get("blocks"):
            return Scripted(400, {}, b"no_text")
        if "blocks" in message:
            problem = _check_blocks(message["blocks"])
            if problem:
                return Scripted(400, {}, problem.encode())
        self.messages[path].append(message)
        return Scripted(200, {}, b"ok")


def main(argv=None) -> None:
    import argparse
    import sys

    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver
    from twisted.web.server import Site

    parser = argparse.ArgumentParser(description="A fake Slack incoming-webhook receiver.")
    parser.add_argument("--port", type=int, default=8083)
    parser.add_argument("--interface", default="127.0.0.1")
    args = parser.parse_args(argv)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])

    class Printing(FakeSlack):
        def _accept(self, path, body, request):
            answer = super()._accept(path, body, request)
            if answer.code == 200:
                print(f"--- {path}\n{json.dumps(self.messages[path][-1], indent=2, ensure_ascii=False)}", flush=True)
            return answer

    reactor.listenTCP(args.port, Site(Printing()), interface=args.interface)
    print(f"fake Slack: http://{args.interface}:{args.port}/services/T000/B000/ok", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
