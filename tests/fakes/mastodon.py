"""
A local Mastodon instance that speaks the real wire formats (PROTOCOLS.md
section 2): REST timelines with C{min_id}/C{since_id}/C{max_id} paging,
C{Link} headers and the rate-limit headers (C{X-RateLimit-Reset} an ISO
time with microseconds), 429 when the allowance is used up, and the
streaming API over server-sent events (C{:)} first, C{:thump} heartbeats,
C{update}/C{status.update}/C{delete} events; a bare id for delete).

A test scripts it: C{status()} adds a status (pushed to matching streams),
C{fail} queues HTTP statuses for the next REST calls (C{garbage}: bodies), C{rate_limit} sets the
allowance per C{rate_window}, C{token} is what streaming requires (a
missing or wrong one gets 401), C{stream_refuse} refuses streaming with a
status, C{hang} silences every stream (no heartbeats either),
C{drop_streams} cuts them, C{stream_raw} writes garbage into them.

By hand::

    python -m tests.fakes.mastodon --port 8766 [--token SECRET]

makes plausible statuses forever at http://127.0.0.1:8766 (see
etc/offline.toml).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from datetime import datetime, timezone
from typing import Any, Optional
from urllib.parse import urlencode

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site


def iso(ts: float, digits: int = 3) -> str:
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}"[:digits] + "Z"


class _Stream:
    """
    One open streaming response.
    """

    def __init__(self, fake: "FakeMastodon", request, path: str, tag: Optional[str]) -> None:
        self.fake, self.request, self.path, self.tag = fake, request, path, tag
        self.open = True
        self._beat = None

    def wants(self, status: dict) -> bool:
        local = status["_local"]
        if self.path.startswith("/api/v1/streaming/hashtag"):
            if self.tag is None or self.tag.lower() not in [t["name"].lower() for t in status["tags"]]:
                return False
            return local or not self.path.endswith("/local")
        if self.path.endswith("/public/local"):
            return local
        if self.path.endswith("/public/remote"):
            return not local
        return True

    def write(self, data: bytes) -> None:
        if self.open and not self.fake.hang:
            self.request.write(data)

    def start(self) -> None:
        self.write(b":)\n")
        self._schedule()

    def _schedule(self) -> None:
        if self.fake.heartbeat:
            self._beat = self.fake.reactor.callLater(self.fake.heartbeat, self._thump)

    def _thump(self) -> None:
        self.write(b":thump\n")
        self._schedule()

    def close(self) -> None:
        self.open = False
        if self._beat is not None and self._beat.active():
            self._beat.cancel()
        if self in self.fake.streams:
            self.fake.streams.remove(self)


class _Root(Resource):
    isLeaf = True

    def __init__(self, fake: "FakeMastodon") -> None:
        super().__init__()
        self.fake = fake

    def render_GET(self, request):
        fake = self.fake
        path = request.path.decode("utf-8")
        args = {k.decode(): [v.decode() for v in vs] for k, vs in request.args.items()}
        auth = (request.getHeader(b"authorization") or b"").decode()
        fake.requests.append((path, args, auth))
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        if path.startswith("/api/v1/streaming"):
            return fake.render_stream(request, path, args, auth)
        if path == "/api/v2/instance":
            return json.dumps(fake.instance_info()).encode()
        if path.startswith("/api/v1/timelines/"):
            return fake.render_timeline(request, path, args, auth)
        request.setResponseCode(404)
        return b'{"error":"Record not found"}'


class FakeMastodon:
    """
    The scriptable instance (see the module docstring).
    """

    def __init__(self, reactor=None, domain: str = "mastodon.test", token: Optional[str] = None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.domain = domain
        self.token = token
        self.statuses: list[dict] = []
        self.requests: list[tuple[str, dict, str]] = []
        self.fail: list[int] = []
        self.garbage: list[bytes] = []
        self.rate_limit = 300
        self.rate_window = 300.0
        self.used = 0
        self._window_start: Optional[float] = None
        self.timelines_need_token = False
        self.stream_refuse: Optional[int] = None
        self.heartbeat: Optional[float] = 15.0
        self.hang = False
        self.streams: list[_Stream] = []
        self.streaming_url: Optional[str] = None
        self.base_url = f"https://{domain}"
        self._next_id = 113_500_000_000_000_000

    # -- content -------------------------------------------------------------------

    def status(
        self,
        content: str = "<p>Hello</p>",
        tags=(),
        acct: str = "bob",
        local: bool = True,
        uri: Optional[str] = None,
        reblog: Optional[dict] = None,
        created_at: Optional[str] = None,
        push: bool = True,
        **fields: Any,
    ) -> dict:
        """
        Add a status (ids keep growing) and push it to matching streams.
        """
        self._next_id += 1 + len(self.statuses) % 7
        sid = str(self._next_id)
        domain = self.domain if local else "remote.example"
        user = acct.split("@")[0]
        status = {
            "id": sid,
            "created_at": created_at or iso(self.reactor.seconds() or 1767268800.0),
            "in_reply_to_id": None,
            "in_reply_to_account_id": None,
            "sensitive": False,
            "spoiler_text": "",
            "visibility": "public",
            "language": "en",
            "uri": uri or f"https://{domain}/users/{user}/statuses/{sid}",
            "url": f"https://{domain}/@{user}/{sid}",
            "replies_count": 0,
            "reblogs_count": 0,
            "favourites_count": 0,
            "edited_at": None,
            "content": content,
            "reblog": reblog,
            "account": {
                "id": str(1000 + len(user)),
                "username": user,
                "acct": acct if (local or "@" in acct) else f"{user}@{domain}",
                "display_name": user.title(),
                "bot": False,
                "locked": False,
                "followers_count": 812,
                "following_count": 120,
                "statuses_count": 5000,
                "url": f"https://{domain}/@{user}",
                "created_at": "2022-11-01T00:00:00.000Z",
            },
            "media_attachments": [],
            "mentions": [],
            "tags": [{"name": t, "url": f"https://{self.domain}/tags/{t}"} for t in tags],
            "emojis": [],
            "card": None,
            "poll": None,
            "_local": local,
        }
        status.update(fields)
        self.statuses.append(status)
        if push:
            self.push("update", self.public(status), status)
        return status

    @staticmethod
    def public(status: dict) -> dict:
        return {k: v for k, v in status.items() if not k.startswith("_")}

    def push(self, event: str, payload: Any, status: Optional[dict] = None) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        for stream in list(self.streams):
            if status is None or stream.wants(status):
                stream.write(f"event: {event}\ndata: {data}\n\n".encode("utf-8"))

    def delete(self, status_id: str) -> None:
        self.push("delete", status_id)

    def edit(self, status: dict, content: str) -> None:
        status["content"] = content
        status["edited_at"] = iso(self.reactor.seconds() or 1767268800.0)
        self.push("status.update", self.public(status), status)

    def stream_raw(self, data: bytes) -> None:
        for stream in list(self.streams):
            stream.write(data)

    def drop_streams(self) -> None:
        for stream in list(self.streams):
            stream.close()
            stream.request.channel.transport.abortConnection()

    def end_streams(self) -> None:
        for stream in list(self.streams):
            stream.close()
            stream.request.finish()

    def instance_info(self) -> dict:
        return {
            "domain": self.domain,
            "title": "Fake",
            "version": "4.5.0",
            "configuration": {"urls": {"streaming": self.streaming_url or self.base_url.replace("http", "ws", 1)}},
        }

    # -- REST --------------------------------------------------------------------------

    def _rate(self, request) -> bool:
        """
        Count a request against the allowance and set the headers; False
        if it is used up.
        """
        now = self.reactor.seconds()
        if self._window_start is None or now >= self._window_start + self.rate_window:
            self._window_start, self.used = now, 0
        reset = iso(self._window_start + self.rate_window, digits=6)
        self.used += 1
        remaining = max(0, self.rate_limit - self.used)
        request.setHeader(b"x-ratelimit-limit", str(self.rate_limit).encode())
        request.setHeader(b"x-ratelimit-remaining", str(remaining).encode())
        request.setHeader(b"x-ratelimit-reset", reset.encode())
        return self.used <= self.rate_limit

    def render_timeline(self, request, path: str, args: dict, auth: str) -> bytes:
        if not self._rate(request):
            request.setResponseCode(429)
            return b'{"error":"Too many requests"}'
        if self.fail:
            code = self.fail.pop(0)
            request.setResponseCode(code)
            return json.dumps({"error": f"fake failure {code}"}).encode()
        if self.garbage:
            return self.garbage.pop(0)
        if self.timelines_need_token and auth != f"Bearer {self.token}":
            request.setResponseCode(401)
            return b'{"error":"The access token is invalid"}'
        local = args.get("local", ["false"])[0] == "true"
        remote = args.get("remote", ["false"])[0] == "true"
        if path.startswith("/api/v1/timelines/tag/"):
            tag = path[len("/api/v1/timelines/tag/") :].lower()
            if tag == "unknown":
                request.setResponseCode(404)
                return b'{"error":"Record not found"}'
            items = [s for s in self.statuses if tag in [t["name"].lower() for t in s["tags"]]]
        elif path == "/api/v1/timelines/public":
            items = list(self.statuses)
        else:
            request.setResponseCode(404)
            return b'{"error":"Record not found"}'
        if local:
            items = [s for s in items if s["_local"]]
        if remote:
            items = [s for s in items if not s["_local"]]
        try:
            limit = min(40, max(1, int(args.get("limit", ["20"])[0])))
        except ValueError:
            limit = 20
        key = lambda s: (len(s["id"]), s["id"])  # noqa: E731
        items.sort(key=key)
        if "min_id" in args:
            floor = (len(args["min_id"][0]), args["min_id"][0])
            page = [s for s in items if key(s) > floor][:limit][::-1]
        else:
            if "max_id" in args:
                ceiling = (len(args["max_id"][0]), args["max_id"][0])
                items = [s for s in items if key(s) < ceiling]
            if "since_id" in args:
                floor = (len(args["since_id"][0]), args["since_id"][0])
                items = [s for s in items if key(s) > floor]
            page = items[-limit:][::-1]
        if page:
            base = f"{self.base_url}{path}"
            keep = [(k, v[0]) for k, v in args.items() if k in ("local", "remote", "limit")]
            older = urlencode(keep + [("max_id", page[-1]["id"])])
            newer = urlencode(keep + [("min_id", page[0]["id"])])
            request.setHeader(b"link", f'<{base}?{older}>; rel="next", <{base}?{newer}>; rel="prev"'.encode())
        return json.dumps([self.public(s) for s in page], ensure_ascii=False).encode("utf-8")

    # -- streaming -----------------------------------------------------------------------

    def render_stream(self, request, path: str, args: dict, auth: str):
        if path == "/api/v1/streaming/health":
            request.setHeader(b"content-type", b"text/plain")
            return b"OK"
        if self.stream_refuse:
            request.setResponseCode(self.stream_refuse)
            return json.dumps({"error": f"refused ({self.stream_refuse})"}).encode()
        if self.token is None or auth != f"Bearer {self.token}":
            request.setResponseCode(401)
            return b'{"error":"Error: Missing access token"}'
        known = (
            "/api/v1/streaming/public",
            "/api/v1/streaming/public/local",
            "/api/v1/streaming/public/remote",
            "/api/v1/streaming/hashtag",
            "/api/v1/streaming/hashtag/local",
        )
        if path not in known:
            request.setResponseCode(400)
            return b'{"error":"Unknown channel requested"}'
        request.setHeader(b"content-type", b"text/event-stream")
        request.setHeader(b"cache-control", b"no-store")
        stream = _Stream(self, request, path, args.get("tag", [None])[0])
        self.streams.append(stream)
        request.notifyFinish().addBoth(lambda _: stream.close())
        stream.start()
        return NOT_DONE_YET

    def resource(self) -> Resource:
        return _Root(self)

    def site(self) -> Site:
        return Site(self.resource(), reactor=self.reactor)


# -- plausible traffic, for running by hand -------------------------------------------

_BRANDS = ["Acme", "Globex", "Initech"]
_LINES = [
    "Is {link} down again? Nothing loads 😩",
    "Shoutout to {mention} for fixing my account so fast 🎉",
    "Comparing {b} and {o} for our team, which is better? 🤔",
    "{link} outage day three. Never again. #fail",
    "Migrated the blog to {b} this weekend &amp; it just works ✨",
    "Anyone else getting 500s from {b}? {link}",
    "Good morning fediverse ☀️",
    "Knitting a scarf for winter 🧶",
]


def plausible(fake: FakeMastodon, rng: random.Random) -> None:
    brand, other = rng.sample(_BRANDS, 2)
    tag = brand.lower()
    link = f'<a href="https://{fake.domain}/tags/{tag}" class="mention hashtag" rel="tag">#<span>{tag}</span></a>'
    mention = (
        f'<span class="h-card"><a href="https://{fake.domain}/@{tag}support" class="u-url mention">'
        f"@<span>{tag}support</span></a></span>"
    )
    text = rng.choice(_LINES).format(b=brand, o=other, link=link, mention=mention)
    local = rng.random() < 0.6
    user = rng.choice(["alice", "bob", "carol", "dave", "erin", "frank"])
    tags = [tag] if link in text else []
    fields: dict[str, Any] = {"favourites_count": rng.randrange(20), "reblogs_count": rng.randrange(5)}
    if rng.random() < 0.1:
        fields["spoiler_text"] = f"{brand} rant"
    fake.status(f"<p>{text}</p>", tags=tags, acct=user, local=local, **fields)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="A fake Mastodon instance on localhost.")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--rate", type=float, default=2.0, help="statuses per second")
    parser.add_argument("--token", default=None, help="the token streaming requires (none: no streaming)")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)

    from twisted.internet import reactor, task
    from twisted.logger import globalLogBeginner, textFileLogObserver

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    fake = FakeMastodon(reactor, domain="mastodon.local", token=args.token)
    rng = random.Random(args.seed)

    def tick():
        plausible(fake, rng)
        if len(fake.statuses) > 20_000:
            del fake.statuses[:10_000]

    port = reactor.listenTCP(args.port, fake.site(), interface=args.interface)
    host = port.getHost()
    fake.base_url = f"http://{host.host}:{host.port}"
    task.LoopingCall(tick).start(1.0 / args.rate)
    print(f"fake Mastodon on {fake.base_url}" + (" (streaming with the given token)" if args.token else ""), flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
