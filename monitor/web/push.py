"""
The live channel: analysed posts, statistics, alerts and source states
pushed to browsers over a WebSocket at C{/ws}.

Autobahn writes every C{sendMessage} straight into the transport, so a
client that stops reading would make the hub buffer without bound.  Here
every client has a bounded queue of pending messages and is a streaming
producer of its transport: when the transport's buffer is full Twisted
pauses it and nothing more is written; new messages replace the oldest
pending ones (counted, and the client is told how many it lost); a client
paused longer than C{stall_timeout} is disconnected.  Messages are encoded
once and shared by every client.

There is no budget of frames or bytes per interval: a client that reads as
fast as posts are stored gets every one.  A post is sent as soon as it is
stored when the hub is idle; under load, frames are coalesced for a delay
that follows what the last flush cost (like Nagle's algorithm, which waits
only while something is in flight), at most C{interval}.  Only a client
whose transport is really full (Twisted paused it) has messages queued, and
only past C{queue_limit} of them are any dropped.

Wire format: each frame is a JSON array of envelopes
C{{"type": ..., "data": ...}}.  Types: C{post}, C{stats}, C{alert},
C{source}, and the control types C{hello}, C{subscribed}, C{lost},
C{error}.  The client sends C{{"type": "subscribe", "kinds": [...],
"topics": [...], "sentiments": [...], "labels": [...], "sources": [...],
"geo": false}}; an empty or missing list means "any".
"""

from __future__ import annotations

import json
import time
from collections import deque
from typing import Any, Optional
from urllib.parse import urlsplit

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.application.service import Service
from twisted.internet.interfaces import IPushProducer, ISSLTransport
from twisted.logger import Logger
from zope.interface import implementer

from monitor.interfaces import ISink
from monitor.model import LABELS, SENTIMENTS, iso8601
from monitor.status import Status
from monitor.web.sessions import ISessionSocket

__all__ = ["KINDS", "Filters", "PushHub", "PushProtocol", "PushResource", "post_json"]

#: The message kinds a publisher may send.
KINDS = ("post", "stats", "alert", "source")

#: Kinds of which only the newest pending message matters.
_SNAPSHOTS = ("stats", "source")

#: Most bytes of envelopes put in one frame; the rest follows at once in
#: further frames (a frame is a unit of parsing for the browser, not a
#: budget).
FRAME_BYTES = 64 * 1024

#: The coalescing delay is this many times what the last flush cost, so
#: that sending never takes more than about 1/(1 + BUSY_RATIO) of the
#: reactor's time, however many clients and posts there are.
BUSY_RATIO = 4.0

#: Most clients connected at once, and per user.
MAX_CLIENTS = 2000
PER_USER = 16

#: Most entries in one filter list, and longest entry.
_MAX_FILTER_ITEMS = 200
_MAX_FILTER_TEXT = 200

#: Longest message a client may send (a subscription), in bytes.
MAX_CLIENT_MESSAGE = 16 * 1024

#: Messages a client may send: a burst of this many, then this many per
#: second.
CLIENT_BURST = 20
CLIENT_RATE = 2.0

#: Close codes the hub ends a connection with (4000-4999 are the
#: application's own).
CLOSE_TOO_BIG = 1009
CLOSE_POLICY = 1008

#: The session cookie (set by the web UI).
SESSION_COOKIE = "monitor_session"


def post_json(post) -> dict[str, Any]:
    """
    A stored L{monitor.model.Post} in the shape the API returns for posts.
    """
    return post.to_api()


def _encode(kind: str, data: Any) -> bytes:
    return json.dumps({"type": kind, "data": data}, ensure_ascii=False, separators=(",", ":"), default=str).encode(
        "utf-8"
    )


class Filters:
    """
    What one client wants.  C{None} for a list means "any".
    """

    def __init__(self, kinds=(), topics=None, sentiments=None, labels=None, sources=None, geo=False) -> None:
        self.kinds = frozenset(kinds)
        self.topics = frozenset(topics) if topics else None
        self.sentiments = frozenset(sentiments) if sentiments else None
        self.labels = frozenset(labels) if labels else None
        self.sources = frozenset(sources) if sources else None
        self.geo = bool(geo)
        # Clients with equal filters share one decision per message.
        self.key = (
            self.kinds,
            self.topics,
            self.sentiments,
            self.labels,
            self.sources,
            self.geo,
        )

    @classmethod
    def parse(cls, message: dict) -> "Filters":
        """
        Filters from a C{subscribe} message.  Raises C{ValueError} naming
        the bad field.
        """

        def strings(name, allowed=None):
            value = message.get(name)
            if value is None:
                return None
            if not isinstance(value, list) or len(value) > _MAX_FILTER_ITEMS:
                raise ValueError(f"{name}: must be a list of at most {_MAX_FILTER_ITEMS} strings")
            for v in value:
                if not isinstance(v, str) or len(v) > _MAX_FILTER_TEXT:
                    raise ValueError(f"{name}: must be a list of strings")
                if allowed is not None and v not in allowed:
                    raise ValueError(f"{name}: {v!r} is not one of {', '.join(allowed)}")
            return value

        kinds = strings("kinds", KINDS)
        geo = message.get("geo", False)
        if not isinstance(geo, bool):
            raise ValueError("geo: must be true or false")
        return cls(
            kinds=KINDS if kinds is None else kinds,
            topics=strings("topics"),
            sentiments=strings("sentiments", SENTIMENTS),
            labels=strings("labels", LABELS),
            sources=strings("sources"),
            geo=geo,
        )

    def to_dict(self) -> dict[str, Any]:
        def listed(s):
            return sorted(s) if s is not None else None

        return {
            "kinds": sorted(self.kinds),
            "topics": listed(self.topics),
            "sentiments": listed(self.sentiments),
            "labels": listed(self.labels),
            "sources": listed(self.sources),
            "geo": self.geo,
        }

    def accepts(self, kind: str, data: Any) -> bool:
        if kind not in self.kinds:
            return False
        if kind == "post":
            if self.topics is not None and self.topics.isdisjoint(data.get("topics") or ()):
                return False
            if self.sentiments is not None and (data.get("sentiment") or {}).get("label") not in self.sentiments:
                return False
            if self.labels is not None and self.labels.isdisjoint(data.get("labels") or ()):
                return False
            if self.sources is not None and data.get("source") not in self.sources:
                return False
            if self.geo and (data.get("lat") is None or data.get("lon") is None):
                return False
        elif kind == "alert" and self.topics is not None:
            topic = data.get("topic") if isinstance(data, dict) else None
            if topic is not None and topic not in self.topics:
                return False
        return True


NOTHING = Filters()


@implementer(IPushProducer, ISessionSocket)
class PushProtocol(WebSocketServerProtocol):
    """
    One browser.  Admitted only with a live session cookie and the site's
    own Origin; then a producer of its transport, so the hub knows when to
    stop writing.  (Autobahn's own C{log} is kept: it filters its very
    chatty debug output.)
    """

    def __init__(self) -> None:
        super().__init__()
        self.session = None
        self.filters = NOTHING
        self.pending: deque = deque()
        self.snapshots: dict[str, bytes] = {}
        self.paused = False
        self.lost = 0
        self.lost_total = 0
        self.sent = 0
        self._stall_call = None
        self._open = False
        self._allowance = float(CLIENT_BURST)
        self._allowance_at: Optional[float] = None

    # -- connection --------------------------------------------------------

    def connectionMade(self):
        # The transport comes from the HTTP channel that parsed the upgrade
        # request; it is still that channel's producer.  Become ours.
        transport = self.transport
        try:
            transport.unregisterProducer()
        except Exception:
            pass  # nothing was registered
        transport.registerProducer(self, True)
        super().connectionMade()

    async def onConnect(self, request):
        hub: PushHub = self.factory.push
        headers = request.headers
        if not hub.same_origin(headers.get("origin"), headers.get("host"), self._secure()):
            hub.log.info("refused a WebSocket from origin {origin!r}", origin=headers.get("origin"))
            hub.refused("origin")
            raise ConnectionDeny(403, "Forbidden: cross-origin WebSocket")
        session = await hub.session_of(headers.get("cookie"))
        if session is None:
            hub.refused("session")
            raise ConnectionDeny(401, "Unauthorized: log in first")
        if len(hub.clients) >= hub.max_clients:
            hub.refused("full")
            raise ConnectionDeny(503, "Service Unavailable: too many live connections")
        if hub.sessions is not None and hub.sessions.count_user(session.user_id) >= hub.per_user:
            hub.refused("user limit")
            raise ConnectionDeny(429, "Too Many Requests: too many live connections for this user")
        self.session = session
        # Held from now on (not from onOpen), so that handshakes racing
        # each other cannot pass the per-user cap together.
        if hub.sessions is not None:
            hub.sessions.attach(self)
        return None

    def _secure(self) -> bool:
        return ISSLTransport.providedBy(self.transport)

    def onOpen(self):
        self._open = True
        self.factory.push.add(self)

    def onMessage(self, payload, isBinary):
        hub: PushHub = self.factory.push
        if self not in hub.clients:
            return  # being closed
        if len(payload) > hub.max_message:
            self.end("oversized", CLOSE_TOO_BIG, f"messages to the hub are at most {hub.max_message} bytes")
            return
        if not self._allowed():
            self.end("flood", CLOSE_POLICY, "too many messages")
            return
        try:
            if isBinary:
                raise ValueError("send JSON text")
            message = json.loads(payload.decode("utf-8"))
            if not isinstance(message, dict) or message.get("type") != "subscribe":
                raise ValueError('type: the only message is {"type": "subscribe", ...}')
            self.filters = Filters.parse(message)
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            hub.control(self, "error", {"message": str(e)[:300]})
            return
        hub.control(self, "subscribed", self.filters.to_dict())

    def _allowed(self) -> bool:
        """
        A token bucket: whether the client may send one more message now.
        """
        hub: PushHub = self.factory.push
        now = hub.reactor.seconds()
        if self._allowance_at is None:
            self._allowance = float(hub.message_burst)
        else:
            self._allowance = min(hub.message_burst, self._allowance + (now - self._allowance_at) * hub.message_rate)
        self._allowance_at = now
        if self._allowance < 1:
            return False
        self._allowance -= 1
        return True

    def _max_message_size_exceeded(self, msg_size, max_msg_size, reason):
        # Autobahn's own hard limit (the frame budget), hit before the whole
        # message is read: counted like ours.
        self.factory.push.disconnected("oversized")
        super()._max_message_size_exceeded(msg_size, max_msg_size, reason)

    def end(self, why: str, code: int, reason: str) -> None:
        """
        Close this connection for C{why} (counted in the metrics): nothing
        more is queued or sent to it but the close frame.
        """
        hub: PushHub = self.factory.push
        hub.log.info(
            "closing the live connection of {user}: {why}",
            user=self.session.user if self.session else "?",
            why=why,
        )
        hub.disconnected(why)
        self.pending.clear()
        self.snapshots.clear()
        self._open = False
        hub.remove(self)
        # sendClose takes only 1000 and 3000-4999; the protocol's own codes
        # (1008, 1009) go through the frame method.
        self.sendCloseFrame(code=code, reasonUtf8=reason.encode("utf-8")[:123], isReply=False)

    def onClose(self, wasClean, code, reason):
        if self._open and not wasClean and "ping" in str(getattr(self, "wasNotCleanReason", "") or "").lower():
            # Auto-ping found the peer dead (or not reading at all).
            self.factory.push.disconnected("ping timeout")
        self._open = False
        self._cancel_stall()
        self.pending.clear()
        self.snapshots.clear()
        if self.factory is not None and getattr(self.factory, "push", None) is not None:
            self.factory.push.remove(self)

    # -- IPushProducer -------------------------------------------------------

    def pauseProducing(self):
        # Twisted may say this several times in a row.
        if self.paused:
            return
        self.paused = True
        hub: PushHub = self.factory.push
        if hub.stall_timeout and self._stall_call is None:
            self._stall_call = hub.reactor.callLater(hub.stall_timeout, self._stalled)

    def resumeProducing(self):
        if not self.paused:
            return
        self.paused = False
        self._cancel_stall()
        if self.pending or self.snapshots:
            self.factory.push.schedule()

    def stopProducing(self):
        self._cancel_stall()
        self.pending.clear()
        self.snapshots.clear()

    def _cancel_stall(self):
        if self._stall_call is not None and self._stall_call.active():
            self._stall_call.cancel()
        self._stall_call = None

    def _stalled(self):
        self._stall_call = None
        hub: PushHub = self.factory.push
        hub.log.info(
            "disconnecting {user}: not read for {seconds}s, {lost} messages lost",
            user=self.session.user if self.session else "?",
            seconds=hub.stall_timeout,
            lost=self.lost_total,
        )
        hub.disconnected("stalled")
        self.dropConnection(abort=True)

    # -- queueing ----------------------------------------------------------

    def enqueue(self, kind: str, encoded: bytes, limit: int) -> None:
        """
        Queue a message, within the client's bound: every kind counts,
        replies to the client's own messages too; past the bound the
        oldest goes (and is counted).
        """
        if kind in _SNAPSHOTS:
            self.snapshots[kind] = encoded
            return
        if len(self.pending) >= limit and not self.paused and self in self.factory.push.clients:
            # A client that is reading is never given drops: send what it
            # has now rather than wait for the coalescing delay.
            self.factory.push.send_to(self)
        if len(self.pending) >= limit:
            self.pending.popleft()
            self.lost += 1
            self.lost_total += 1
            self.factory.push.dropped(1)
        self.pending.append(encoded)

    def frame(self) -> Optional[bytes]:
        """
        The next frame: a lost-count notice, the newest snapshots, then
        pending messages up to L{FRAME_BYTES}.
        """
        parts: list[bytes] = []
        size = 2
        if self.lost:
            parts.append(_encode("lost", {"count": self.lost, "total": self.lost_total}))
            size += len(parts[-1]) + 1
            self.lost = 0
        for kind in _SNAPSHOTS:
            encoded = self.snapshots.pop(kind, None)
            if encoded is not None:
                parts.append(encoded)
                size += len(encoded) + 1
        pending = self.pending
        while pending and (size + len(pending[0]) + 1 <= FRAME_BYTES or not parts):
            encoded = pending.popleft()
            parts.append(encoded)
            size += len(encoded) + 1
        if not parts:
            return None
        self.sent += len(parts)
        return b"[" + b",".join(parts) + b"]"

    def has_pending(self) -> bool:
        return bool(self.pending or self.snapshots or self.lost)


class PushResource(WebSocketResource):
    """
    C{/ws} in the web site.  The HTTP channel that handed over its transport
    must not time it out later.
    """

    def render(self, request):
        channel = request.channel
        if channel is not None and hasattr(channel, "setTimeout"):
            channel.setTimeout(None)
        return super().render(request)


@implementer(ISink)
class PushHub(Service):
    """
    Every live client, and what is sent to them.  An L{ISink} for posts;
    L{relay_status} for the hub's status events (L{monitor.bus.STATUS});
    C{publish(kind, payload)} for everything else (the hub relays the
    alerts' C{alert} events through it).

    @ivar queue_limit: most messages pending per client before the oldest
        are dropped.
    @ivar interval: the longest a message waits to be coalesced with others
        when sending is costly (an idle hub sends at once).
    @ivar timer: what the cost of a flush is measured with (seconds).
    @ivar stall_timeout: seconds a client may block its connection before
        it is disconnected (0: never).
    @ivar sessions: the L{monitor.web.sessions.SessionRegistry} that ends
        a client with its session.
    @ivar per_user: most clients of one user at once.
    @ivar max_message: longest message a client may send; a longer one
        ends its connection (1009).
    @ivar message_rate: messages per second a client may send after a
        burst of C{message_burst}; more end its connection (1008).
    """

    name = "push"
    log = Logger()

    def __init__(
        self,
        reactor,
        users=None,
        metrics=None,
        queue_limit: int = 1000,
        interval: float = 0.25,
        stall_timeout: float = 30.0,
        ping_interval: float = 20.0,
        max_clients: int = MAX_CLIENTS,
        max_message: int = MAX_CLIENT_MESSAGE,
        message_rate: float = CLIENT_RATE,
        message_burst: int = CLIENT_BURST,
        sessions=None,
        per_user: int = PER_USER,
        timer=time.perf_counter,
    ) -> None:
        self.reactor = reactor
        self.users = users
        self.sessions = sessions
        self.per_user = per_user
        self.queue_limit = queue_limit
        self.interval = interval
        self.stall_timeout = stall_timeout
        self.max_clients = max_clients
        self.max_message = max_message
        self.message_rate = message_rate
        self.message_burst = message_burst
        self.clients: set[PushProtocol] = set()
        self.dropped_total = 0
        self._flush_call = None
        self._flush_cost = 0.0
        self._timer = timer
        self._counts = self._empty_counts()
        self._metrics = _PushMetrics(metrics.registry) if metrics is not None else None

        self.factory = WebSocketServerFactory(reactor=reactor)
        self.factory.protocol = PushProtocol
        self.factory.push = self
        self.factory.setProtocolOptions(
            webStatus=False,
            maxFramePayloadSize=64 * 1024,
            maxMessagePayloadSize=64 * 1024,
            autoPingInterval=ping_interval or 0,
            autoPingTimeout=max(5.0, ping_interval / 2) if ping_interval else 0,
            autoPingSize=12,
            openHandshakeTimeout=10,
            closeHandshakeTimeout=5,
            # Tell a client why it is cut off (a close frame), rather than
            # only dropping the TCP connection.
            failByDrop=False,
        )
        self.resource = PushResource(self.factory)

    # -- service -----------------------------------------------------------

    def stopService(self):
        super().stopService()
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        for client in list(self.clients):
            try:
                client.sendClose(1001, "the hub is stopping")
            except Exception:
                client.dropConnection(abort=True)

    # -- admission ---------------------------------------------------------

    @staticmethod
    def same_origin(origin: Optional[str], host: Optional[str], secure: bool) -> bool:
        """
        Whether the C{Origin} of a handshake is this site: its host and port
        must be those of the C{Host} header (a TLS proxy in front may change
        the scheme, so http and https are both accepted).
        """
        if not origin or not host:
            return False
        try:
            parts = urlsplit(origin.strip())
            if parts.scheme not in ("http", "https") or not parts.hostname:
                return False
            port = parts.port or (443 if parts.scheme == "https" else 80)
            wanted = urlsplit("//" + host.strip())
            wanted_port = wanted.port or (443 if secure else 80)
        except ValueError:
            return False
        if wanted.port is None and parts.port is None:
            # Both on the default port of their scheme.
            return parts.hostname == (wanted.hostname or "").lower()
        return parts.hostname == (wanted.hostname or "").lower() and port == wanted_port

    async def session_of(self, cookie_header: Optional[str]):
        if self.users is None or not cookie_header:
            return None
        token = None
        for part in cookie_header.split(";"):
            name, _, value = part.strip().partition("=")
            if name == SESSION_COOKIE:
                token = value
        return await self.users.session(token)

    def refused(self, why: str) -> None:
        if self._metrics:
            self._metrics.refused.labels(why).inc()

    def disconnected(self, why: str) -> None:
        if self._metrics:
            self._metrics.disconnects.labels(why).inc()

    def dropped(self, count: int) -> None:
        self.dropped_total += count
        if self._metrics:
            self._metrics.dropped.inc(count)

    def add(self, client: PushProtocol) -> None:
        self.clients.add(client)
        if self._metrics:
            self._metrics.clients.set(len(self.clients))
        self.log.debug("live client {user} connected", user=client.session.user)
        self.control(
            client,
            "hello",
            {
                "user": client.session.user,
                "role": client.session.role,
                "kinds": list(KINDS),
                "queue": self.queue_limit,
                "interval": self.interval,
            },
        )

    def remove(self, client: PushProtocol) -> None:
        self.clients.discard(client)
        if self.sessions is not None:
            self.sessions.detach(client)
        if self._metrics:
            self._metrics.clients.set(len(self.clients))

    # -- sending -----------------------------------------------------------

    def control(self, client: PushProtocol, kind: str, data: Any) -> None:
        """
        A message for one client only; sent with its next frame, and
        queued within the client's bound like any other.
        """
        if client not in self.clients:
            return
        client.enqueue(kind, _encode(kind, data), self.queue_limit)
        self.schedule()

    def publish(self, kind: str, payload: Any) -> int:
        """
        Send a message to every client whose filters accept it.  Returns
        how many clients it was queued for.  Never blocks, never raises for
        a broken client.
        """
        if kind not in KINDS:
            raise ValueError(f"kind: must be one of {', '.join(KINDS)}, not {kind!r}")
        if not self.clients:
            return 0
        encoded = _encode(kind, payload)
        decided: dict[tuple, bool] = {}
        queued = 0
        for client in self.clients:
            filters = client.filters
            ok = decided.get(filters.key)
            if ok is None:
                ok = decided[filters.key] = filters.accepts(kind, payload)
            if ok:
                client.enqueue(kind, encoded, self.queue_limit)
                queued += 1
        if queued:
            self.schedule()
        return queued

    def posts_stored(self, posts) -> None:
        """
        L{ISink}: push each stored post, and count it for C{stats}.
        """
        counts = self._counts
        for post in posts:
            counts["posts"] += 1
            a = post.analysis
            if a is not None:
                counts["sentiment"][a.sentiment] = counts["sentiment"].get(a.sentiment, 0) + 1
                for label in a.labels:
                    counts["labels"][label] = counts["labels"].get(label, 0) + 1
            for topic in post.topics:
                counts["topics"][topic] = counts["topics"].get(topic, 0) + 1
        if not self.clients:
            return
        for post in posts:
            self.publish("post", post_json(post))

    def schedule(self) -> None:
        """
        Flush soon: at once when the last flush was cheap, later (at most
        C{interval}) when sending has been costly, so that a flood travels
        in few large frames and a quiet hub answers in milliseconds.
        """
        if self._flush_call is None or not self._flush_call.active():
            delay = min(self.interval, self._flush_cost * BUSY_RATIO)
            self._flush_call = self.reactor.callLater(delay, self.flush)

    def flush(self) -> None:
        """
        Send each client that is not blocked everything it has pending, in
        frames of at most L{FRAME_BYTES}, until its transport says it is
        full.
        """
        self._flush_call = None
        started = self._timer()
        for client in list(self.clients):
            if not client.paused and client.has_pending():
                self.send_to(client)
        # The cost of the next flush is much like this one's.
        self._flush_cost = self._timer() - started
        # Paused clients are picked up again by resumeProducing.

    def send_to(self, client: PushProtocol) -> None:
        """
        Write frames to C{client} until nothing is pending or its transport
        pauses it (Twisted does so from inside C{write} once its buffer is
        full).
        """
        while not client.paused and client.has_pending():
            payload = client.frame()
            if payload is None:
                return
            try:
                client.sendMessage(payload, False)
            except Exception:
                # A peer that is closing; it will be removed in onClose.
                self.log.debug("could not send to a closing client")
                client.pending.clear()
                client.snapshots.clear()
                return
            if self._metrics:
                self._metrics.frames.inc()

    # -- periodic ------------------------------------------------------------

    @staticmethod
    def _empty_counts() -> dict[str, Any]:
        return {"posts": 0, "sentiment": {}, "labels": {}, "topics": {}}

    def relay_status(self, status: Status) -> None:
        """
        A status event (L{monitor.status}): send C{stats}, the counts of
        the posts stored since the last one (if any were), then C{source},
        the collectors', queue's and nodes' state.
        """
        counts, self._counts = self._counts, self._empty_counts()
        if not self.clients:
            return
        if counts["posts"]:
            counts["at"] = iso8601(status.at)
            counts["interval"] = status.interval
            self.publish("stats", counts)
        self.publish("source", status.state)


class _PushMetrics:
    def __init__(self, registry) -> None:
        from prometheus_client import Counter, Gauge

        self.clients = Gauge("monitor_ws_clients", "Live WebSocket clients connected.", registry=registry)
        self.frames = Counter("monitor_ws_frames", "WebSocket frames sent to live clients.", registry=registry)
        self.dropped = Counter(
            "monitor_ws_messages_dropped",
            "Messages dropped because a live client was not reading fast enough.",
            registry=registry,
        )
        self.disconnects = Counter(
            "monitor_ws_disconnects", "Live clients disconnected by the hub.", ["reason"], registry=registry
        )
        self.refused = Counter("monitor_ws_refused", "WebSocket handshakes refused.", ["reason"], registry=registry)
