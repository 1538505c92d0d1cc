"""
A local Jetstream and Bluesky AppView that speak the real wire formats
(PROTOCOLS.md section 1), for tests and for running the Bluesky collector
without the internet.

C{FakeJetstream} keeps an event log.  A client on C{/subscribe} gets the
events from its C{cursor} (a unix time in microseconds; none means the live
tail) and then every event added later, filtered by C{wantedCollections}
(commit events only; identity and account events always pass) and
C{maxMessageSizeBytes}.  A test scripts it: C{add}/C{post} events,
C{add_raw} garbage, C{drop_after} N frames, C{hang} (stop sending and stop
reading, so not even pongs come back), C{refuse} the handshake with an HTTP
status, C{ping_interval} for server keep-alives.  The AppView at
C{/xrpc/app.bsky.actor.getProfiles} answers from C{profiles} (or makes
plausible ones), after C{appview_delay} seconds, or with the statuses queued
in C{appview_fail}.

By hand::

    python -m tests.fakes.jetstream --port 8765

streams plausible posts forever at ws://127.0.0.1:8765/subscribe, with the
AppView at http://127.0.0.1:8765 (see etc/offline.toml).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
from typing import Any, Optional

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

_NSID = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]*(\.[a-zA-Z0-9-]+)+(\.\*)?$")
POST = "app.bsky.feed.post"


def _facet(text: str, fragment: str, feature: dict, start_at: int = 0) -> dict:
    """
    A facet over the first C{fragment} in C{text}, in UTF-8 byte offsets.
    """
    char_start = text.index(fragment, start_at)
    start = len(text[:char_start].encode("utf-8"))
    end = start + len(fragment.encode("utf-8"))
    return {"index": {"byteStart": start, "byteEnd": end}, "features": [feature]}


def tag_facet(text: str, tag: str) -> dict:
    return _facet(text, "#" + tag, {"$type": "app.bsky.richtext.facet#tag", "tag": tag})


def mention_facet(text: str, handle: str, did: str) -> dict:
    return _facet(text, "@" + handle, {"$type": "app.bsky.richtext.facet#mention", "did": did})


def link_facet(text: str, shown: str, uri: str) -> dict:
    return _facet(text, shown, {"$type": "app.bsky.richtext.facet#link", "uri": uri})


def fake_profile(did: str) -> dict:
    """
    A plausible profile, the same every time for one DID.
    """
    h = int(hashlib.sha256(did.encode()).hexdigest()[:8], 16)
    name = did.rsplit(":", 1)[-1][:12].lower()
    return {
        "did": did,
        "handle": f"{name}.bsky.social",
        "displayName": name.title(),
        "followersCount": h % 50_000,
        "followsCount": h % 700,
        "postsCount": h % 9_000,
        "indexedAt": "2025-11-02T10:00:00.000Z",
        "createdAt": "2023-05-01T00:00:00.000Z",
        "labels": [],
    }


class _Event:
    __slots__ = ("time_us", "frame", "kind", "collection")

    def __init__(self, time_us: int, frame: bytes, kind: Optional[str], collection: Optional[str]) -> None:
        self.time_us, self.frame, self.kind, self.collection = time_us, frame, kind, collection


class JetstreamServerProtocol(WebSocketServerProtocol):
    """
    One subscriber: replays from its cursor, then follows the live log.
    """

    fake: "FakeJetstream"

    def onConnect(self, request):
        fake = self.factory.fake
        fake.requests.append(request.params)
        if fake.refuse:
            code = fake.refuse[0] if isinstance(fake.refuse, list) else fake.refuse
            if isinstance(fake.refuse, list):
                fake.refuse.pop(0)
            raise ConnectionDeny(code, "refused by the fake")
        wanted = request.params.get("wantedCollections", [])
        if len(wanted) > 100 or not all(_NSID.match(w) for w in wanted):
            raise ConnectionDeny(400, "invalid wantedCollections")
        self.wanted = wanted
        cursor = request.params.get("cursor", [None])[0]
        try:
            self.cursor = int(cursor) if cursor not in (None, "") else None
        except ValueError:
            raise ConnectionDeny(400, "invalid cursor")
        size = request.params.get("maxMessageSizeBytes", ["0"])[0]
        try:
            self.max_size = max(0, int(size))
        except ValueError:
            self.max_size = 0
        # Without a cursor (or one in the future) the client gets the live tail.
        if self.cursor is None or (fake.events and self.cursor > fake.events[-1].time_us):
            self.position = len(fake.events)
        else:
            self.position = 0
        self.replay_end = len(fake.events)
        self.sent = 0
        self.hung = False
        return None

    def onOpen(self):
        fake = self.factory.fake
        fake.clients.append(self)
        self._ping_call = None
        if fake.ping_interval:
            self._ping_call = fake.reactor.callLater(fake.ping_interval, self._ping)
        self.send_pending()

    def _ping(self):
        if self.state == self.STATE_OPEN and not self.hung and self.factory.fake.ping_interval:
            self.sendPing()
            self._ping_call = self.factory.fake.reactor.callLater(self.factory.fake.ping_interval, self._ping)

    def _wants(self, event: _Event, index: int) -> bool:
        if index < self.replay_end and self.cursor is not None and event.time_us < self.cursor:
            return False
        if self.max_size and not self.factory.fake.ignore_max_size and len(event.frame) > self.max_size:
            return False
        if event.kind == "commit" and self.wanted:
            return any(
                event.collection == w or (w.endswith(".*") and (event.collection or "").startswith(w[:-1]))
                for w in self.wanted
            )
        return True

    def send_pending(self) -> None:
        fake = self.factory.fake
        while self.state == self.STATE_OPEN and not self.hung and self.position < len(fake.events):
            if fake.hang:
                self.hang()
                return
            index = self.position
            event = fake.events[index]
            self.position += 1
            if not self._wants(event, index):
                continue
            self.sendMessage(event.frame, isBinary=False)
            self.sent += 1
            fake.frames_sent += 1
            if fake.drop_after is not None and self.sent >= fake.drop_after:
                # Close the TCP connection without a WebSocket goodbye.
                fake.drop_after = None
                self.hung = True  # nothing more on this connection
                self.transport.loseConnection()
                return

    def hang(self) -> None:
        """
        Go silent: send nothing, read nothing (so pings get no pong).
        """
        self.hung = True
        self.transport.pauseProducing()

    def onClose(self, wasClean, code, reason):
        fake = self.factory.fake
        if self in fake.clients:
            fake.clients.remove(self)
        call = getattr(self, "_ping_call", None)
        if call is not None and call.active():
            call.cancel()


class _Profiles(Resource):
    isLeaf = True

    def __init__(self, fake: "FakeJetstream") -> None:
        super().__init__()
        self.fake = fake

    def render_GET(self, request):
        fake = self.fake
        actors = [a.decode("utf-8") for a in request.args.get(b"actors", [])]
        fake.appview_requests.append(actors)
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        if fake.appview_fail:
            code = fake.appview_fail.pop(0)
            request.setResponseCode(code)
            if code == 429:
                reset = int(fake.reactor.seconds()) + fake.appview_retry
                request.setHeader(b"ratelimit-limit", b"3000")
                request.setHeader(b"ratelimit-remaining", b"0")
                request.setHeader(b"ratelimit-reset", str(reset).encode())
                request.setHeader(b"retry-after", str(fake.appview_retry).encode())
                return b'{"error":"RateLimitExceeded","message":"Rate Limit Exceeded"}'
            return b'{"error":"InternalServerError","message":"Internal Server Error"}'
        if not actors or len(actors) > 25:
            request.setResponseCode(400)
            return b'{"error":"InvalidRequest","message":"Input/actors must have between 1 and 25 items"}'
        profiles = []
        for did in actors:
            if did in fake.profiles:
                if fake.profiles[did] is not None:
                    profiles.append(fake.profiles[did])
            elif fake.auto_profiles:
                profiles.append(fake_profile(did))
        body = json.dumps({"profiles": profiles}).encode("utf-8")
        if not fake.appview_delay:
            return body

        def later():
            if not request.finished and not request._disconnected:
                request.write(body)
                request.finish()

        fake.reactor.callLater(fake.appview_delay, later)
        return NOT_DONE_YET


class FakeJetstream:
    """
    The scriptable server (see the module docstring).
    """

    def __init__(self, reactor=None, start_us: int = 1_767_225_600_000_000) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.events: list[_Event] = []
        self.clients: list[JetstreamServerProtocol] = []
        self.requests: list[dict] = []
        self.refuse: Any = None
        self.drop_after: Optional[int] = None
        self.hang = False
        self.ignore_max_size = False
        self.ping_interval: Optional[float] = None
        self.frames_sent = 0
        self.profiles: dict[str, Optional[dict]] = {}
        self.auto_profiles = True
        self.appview_delay = 0.0
        self.appview_fail: list[int] = []
        self.appview_retry = 30
        self.appview_requests: list[list[str]] = []
        self._next_us = start_us

    # -- the log ---------------------------------------------------------------

    def add(self, event: dict) -> dict:
        """
        Append an event (its C{time_us} filled in if missing) and send it to
        every live subscriber.
        """
        if "time_us" not in event:
            event["time_us"] = self.next_time_us()
        commit = event.get("commit") if isinstance(event.get("commit"), dict) else {}
        try:
            frame = json.dumps(event, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates travel escaped
            frame = json.dumps(event).encode("ascii")
        self._append(_Event(event["time_us"], frame, event.get("kind"), commit.get("collection")))
        return event

    def add_raw(self, frame: bytes, time_us: Optional[int] = None) -> None:
        """
        Append a frame as it is (garbage, truncated JSON...).
        """
        self._append(_Event(time_us if time_us is not None else self.next_time_us(), frame, None, None))

    def _append(self, event: _Event) -> None:
        self.events.append(event)
        for client in list(self.clients):
            client.send_pending()

    def next_time_us(self) -> int:
        self._next_us += 1000
        return self._next_us

    def post(
        self,
        did: str,
        rkey: str,
        text: str,
        time_us: Optional[int] = None,
        rev: Optional[str] = None,
        facets: Optional[list] = None,
        langs=("en",),
        created_at: str = "2026-01-01T00:00:00.000Z",
        **record: Any,
    ) -> dict:
        """
        Append a C{create} commit of a post.
        """
        rec = {"$type": POST, "text": text, "createdAt": created_at, **record}
        if langs is not None:
            rec["langs"] = list(langs)
        if facets:
            rec["facets"] = facets
        event = {
            "did": did,
            "kind": "commit",
            "commit": {
                "rev": rev or f"rev{rkey}",
                "operation": "create",
                "collection": POST,
                "rkey": rkey,
                "cid": f"bafy{rkey}",
                "record": rec,
            },
        }
        if time_us is not None:
            event["time_us"] = time_us
        return self.add(event)

    def delete(self, did: str, rkey: str) -> dict:
        return self.add(
            {
                "did": did,
                "kind": "commit",
                "commit": {"rev": f"del{rkey}", "operation": "delete", "collection": POST, "rkey": rkey},
            }
        )

    def identity(self, did: str, handle: str) -> dict:
        return self.add(
            {
                "did": did,
                "kind": "identity",
                "identity": {"did": did, "handle": handle, "seq": 1, "time": "2026-01-01T00:00:02.000Z"},
            }
        )

    def account(self, did: str, active: bool = False) -> dict:
        body = {"active": active, "did": did, "seq": 2, "time": "2026-01-01T00:00:03.000Z"}
        if not active:
            body["status"] = "deactivated"
        return self.add({"did": did, "kind": "account", "account": body})

    def disconnect_all(self) -> None:
        for client in list(self.clients):
            client.transport.abortConnection()

    # -- serving ----------------------------------------------------------------

    def ws_factory(self) -> WebSocketServerFactory:
        """
        The WebSocket side alone (for in-memory tests).
        """
        factory = WebSocketServerFactory(reactor=self.reactor)
        factory.protocol = JetstreamServerProtocol
        factory.fake = self
        # Autobahn's timers run on the global reactor; tests use a Clock.
        factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0, autoPingInterval=0)
        return factory

    def resource(self) -> Resource:
        """
        C{/subscribe} (WebSocket) and the AppView's C{getProfiles}.
        """
        root = Resource()
        root.putChild(b"subscribe", WebSocketResource(self.ws_factory()))
        xrpc = Resource()
        xrpc.putChild(b"app.bsky.actor.getProfiles", _Profiles(self))
        root.putChild(b"xrpc", xrpc)
        return root

    def site(self) -> Site:
        return Site(self.resource(), reactor=self.reactor)


# -- plausible traffic, for running by hand -------------------------------------------

_BRANDS = ["Acme", "Globex", "Initech"]
_LINES = [
    "Is {b} down for anyone else? 😩 #{t}down",
    "Loving the new {b} dashboard 🎉 so much faster",
    "{b} support fixed my billing issue in 5 minutes, impressed 👏",
    "Thinking of switching from {b} to {o}, any recommendations?",
    "Third outage this week. {b} please fix this 😡 #{t}down",
    "Just migrated our stack to {b}, smooth so far ☁️",
    "Anyone else charged twice by {b} this month?",
    "The weather is lovely today 🌞",
    "Reading about federated social networks, fascinating stuff",
    "Coffee first, code later ☕",
]


def plausible(fake: FakeJetstream, rng: random.Random, now_us: int) -> None:
    """
    Add one plausible event: mostly posts (with emoji, hashtags, mentions
    and shortened links, all with correct byte offsets), some deletes,
    identity and account events.
    """
    did = f"did:plc:{rng.choice('abcdefgh')}{rng.randrange(200):04d}fake"
    roll = rng.random()
    if roll < 0.05:
        fake.add(
            {
                "did": did,
                "time_us": now_us,
                "kind": "identity",
                "identity": {
                    "did": did,
                    "handle": fake_profile(did)["handle"],
                    "seq": 1,
                    "time": "2026-01-01T00:00:00.000Z",
                },
            }
        )
        return
    if roll < 0.08:
        fake.add(
            {
                "did": did,
                "time_us": now_us,
                "kind": "commit",
                "commit": {"rev": f"r{now_us}", "operation": "delete", "collection": POST, "rkey": "3old"},
            }
        )
        return
    brand, other = rng.sample(_BRANDS, 2)
    text = rng.choice(_LINES).format(b=brand, o=other, t=brand.lower())
    facets = []
    if f"#{brand.lower()}down" in text:
        facets.append(tag_facet(text, f"{brand.lower()}down"))
    if rng.random() < 0.3:
        handle = f"{brand.lower()}support.bsky.social"
        text += f" @{handle}"
        facets.append(mention_facet(text, handle, f"did:plc:{brand.lower()}support"))
    if rng.random() < 0.2:
        uri = f"https://status.{brand.lower()}.example/incidents/{rng.randrange(10**6)}"
        shown = uri.split("://", 1)[1][:22] + "..."
        text += f" {shown}"
        facets.append(link_facet(text, shown, uri))
    rkey = f"3l{now_us:x}"
    created = now_us / 1e6 - rng.random() * 2
    from datetime import datetime, timezone

    stamp = datetime.fromtimestamp(created, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    fake.post(did, rkey, text, time_us=now_us, facets=facets, langs=["en"], created_at=stamp)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="A fake Jetstream and AppView on localhost.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--rate", type=float, default=5.0, help="events per second")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)

    from twisted.internet import reactor, task
    from twisted.logger import globalLogBeginner, textFileLogObserver

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    fake = FakeJetstream(reactor)
    rng = random.Random(args.seed)
    last = [0]

    def tick():
        now_us = max(int(reactor.seconds() * 1_000_000), last[0] + 1)
        last[0] = now_us
        plausible(fake, rng, now_us)
        # Keep the last hour, like a (short) replay window.
        if len(fake.events) > int(args.rate * 3600):
            removed = len(fake.events) // 2
            del fake.events[:removed]
            for client in fake.clients:
                client.position = max(0, client.position - removed)
                client.replay_end = max(0, client.replay_end - removed)

    task.LoopingCall(tick).start(1.0 / args.rate)
    port = reactor.listenTCP(args.port, fake.site(), interface=args.interface)
    host = port.getHost()
    print(
        f"fake Jetstream on ws://{host.host}:{host.port}/subscribe, AppView on http://{host.host}:{host.port}",
        flush=True,
    )
    reactor.run()


if __name__ == "__main__":
    main()
