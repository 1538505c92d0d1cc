"""
The Bluesky source: every new post on the network, live, from a Jetstream
server (a JSON view of the firehose over WebSocket; no account needed).

Jetstream replays from a time (its cursor is a unix time in microseconds),
so after a disconnect or a restart the collector asks for the stream again
from C{rewind} seconds before the last event it processed and drops what it
has already seen: the server's times are not strictly increasing, and the
store ignores a post it already has, so nothing is lost and nothing is kept
twice.  Handles and follower counts are not in the stream; they come from
the public AppView in batches, cached.  A post of an author not yet looked
up goes out at once with what is known (the handle from identity events,
else the DID) and the profile follows it through the queue when it comes
(L{monitor.model.Enriched}): the store updates the post, and the rules that
need followers see it then.  C{profile_wait}, if set, holds such a post back
for at most that long instead.
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict, deque
from typing import Any, Optional
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.defer import CancelledError, Deferred

from monitor.backoff import Backoff, retry_after
from monitor.collect.base import BACKING_OFF, CONNECTED, RATE_LIMITED, clean
from monitor.collect.bluesky.profiles import ProfileCache, ProfileLookupFailed, profile_from_view
from monitor.collect.bluesky.records import DID, POST_COLLECTION, RKEY, MalformedEvent, post_from_commit, str_field
from monitor.collect.framing import StallTimer
from monitor.collect.http import USER_AGENT, HTTPCollector, RateLimits, read_body
from monitor.collect.kinds import BLUESKY_APPVIEW, BLUESKY_URL, SOURCE_KINDS
from monitor.model import PROFILE_PENDING, Enriched, Post

#: The keys' defaults, from the kinds table (written there only).
DEFAULTS = SOURCE_KINDS["bluesky"].defaults()

#: The defaults of C{url} and C{appview_url} (L{monitor.collect.kinds}).
DEFAULT_URL = BLUESKY_URL
DEFAULT_APPVIEW = BLUESKY_APPVIEW


#: Posts waiting for profiles at most; beyond this the socket is paused.
MAX_HELD = 2000
#: Authors whose posts went out before their profile, remembered at most,
#: and posts of one author remembered at most.
MAX_LATE, MAX_LATE_POSTS = 20_000, 100
#: Seconds between two looks for posts whose profile wait is over, at most.
_PROFILE_TIMEOUT = 10.0


class _Held:
    """
    A post waiting (until C{deadline}) for its author's profile, or (with
    no post) a late profile's L{Enriched}, ready to go.
    """

    __slots__ = ("post", "did", "deadline", "ready", "update")

    def __init__(self, post: Optional[Post], did: str, deadline: float, update: Optional[Enriched] = None) -> None:
        self.post, self.did, self.deadline, self.ready = post, did, deadline, update is not None
        self.update = update

    def profile_arrived(self, profile, source: "BlueskySource"):
        self.ready = True
        source._pump()
        return profile


class _JetstreamProtocol(WebSocketClientProtocol):
    """
    One connection; everything it hears goes straight to the source.
    """

    def connectionMade(self):
        super().connectionMade()
        self.factory.source._connection_made(self)

    def dataReceived(self, data):
        self.factory.source._touch()
        super().dataReceived(data)

    opened = False

    def onOpen(self):
        self.opened = True
        self.factory.source._opened(self)

    def onMessage(self, payload, isBinary):
        self.factory.source._frame(payload, isBinary)

    def connectionLost(self, reason):
        super().connectionLost(reason)
        self.factory.source._connection_lost(self, reason)


class _JetstreamFactory(WebSocketClientFactory):
    protocol = _JetstreamProtocol
    noisy = False  # the source logs its own state changes

    def __init__(self, source: "BlueskySource", url: str, reactor) -> None:
        super().__init__(url, useragent=USER_AGENT, reactor=reactor)
        self.source = source
        # Autobahn's own timers run on the global reactor; the source's
        # stall timer (on its own clock) covers handshake and close instead.
        # Invalid UTF-8 is one bad frame (a dead letter), not a reason to
        # drop the connection and be sent it again.
        self.setProtocolOptions(
            utf8validateIncoming=False,
            maxFramePayloadSize=source.max_message,
            maxMessagePayloadSize=source.max_message,
            openHandshakeTimeout=0,
            closeHandshakeTimeout=0,
            serverConnectionDropTimeout=0,
            autoPingInterval=0,
        )


class BlueskySource(HTTPCollector):
    """
    Posts from a Jetstream server (see the module docstring).

    @ivar events: counts of every event heard, by what it was (C{create},
        C{update}, C{delete}, C{identity}, C{account}, C{other_collection},
        C{duplicate}...), including those that make no post.
    """

    kind = "bluesky"
    network = "bluesky"

    def __init__(
        self,
        name,
        queue,
        store,
        metrics,
        url=DEFAULTS["url"],
        appview_url=DEFAULTS["appview_url"],
        stall_timeout=DEFAULTS["stall_timeout"],
        rewind=DEFAULTS["rewind"],
        profile_wait=DEFAULTS["profile_wait"],
        profile_ttl=DEFAULTS["profile_ttl"],
        max_message=DEFAULTS["max_message"],
        reactor=None,
        endpoint_factory=None,
    ):
        super().__init__(name, queue, store, metrics, reactor=reactor)
        self.url = url
        self.appview_url = appview_url.rstrip("/")
        self.stall_timeout = stall_timeout
        self.rewind = rewind
        self.profile_wait = profile_wait
        self.max_message = max_message
        self.endpoint_factory = endpoint_factory
        self.events: Counter = Counter()
        self.backoff = Backoff(first=1.0, cap=60.0)
        self.appview_limits = RateLimits(self.reactor)
        self.profiles = (
            ProfileCache(self.reactor, self._fetch_profiles, ttl=profile_ttl, on_trouble=self._profile_trouble)
            if self.appview_url
            else None
        )
        #: The highest time_us processed: the resume point.
        self.time_us: Optional[int] = None
        self._seen: dict[tuple, int] = {}
        self._since_prune = 0
        self._handles: OrderedDict[str, str] = OrderedDict()
        #: Authors looked up whose posts went out without a profile: their uids.
        self._late: OrderedDict[str, list[str]] = OrderedDict()
        self._frames: deque = deque()
        self._held: deque[_Held] = deque()
        self._emitting: Optional[Deferred] = None
        self._deadline_call = None
        self._pumping = False
        self._proto: Optional[_JetstreamProtocol] = None
        self._ended: Optional[Deferred] = None
        self._paused = False
        self._stalled = False
        self._session_events = 0
        self._opened_at: Optional[float] = None
        self._tail_from: Optional[int] = None
        self._stopped = False
        self._stall = StallTimer(self.reactor, stall_timeout, self._on_stall)
        # Half the stall time without a byte: ping, so a quiet but live
        # server answers (a pong is bytes) and only a dead one stalls.
        self._idle = StallTimer(self.reactor, stall_timeout / 2, self._ping)

    # -- status --------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        s = super().status()
        s["events"] = dict(self.events)
        s["waiting_for_profiles"] = len(self._held)
        s["cursor_time_us"] = self.time_us
        return s

    # -- the connection loop ---------------------------------------------------

    async def run(self) -> None:
        # Start from what the store has: anything later was never stored.
        self.time_us = self._tail_from = None
        self._seen.clear()
        saved = await self.store.get_cursor(self.name)
        if saved:
            try:
                self.time_us = int(saved)
            except ValueError:
                self.log.warn(
                    "source {source}: ignoring unreadable saved cursor {cursor!r}", source=self.name, cursor=saved
                )
        while True:
            self._session_events = 0
            self._opened_at = None
            try:
                why, wait = await self._session(self.subscribe_url())
            except CancelledError:
                raise
            except Exception as e:
                why, wait = f"cannot connect: {e.__class__.__name__}: {e}", None
            # A connection that worked for a while earns a quick retry.
            if self._session_events or (
                self._opened_at is not None and self.reactor.seconds() - self._opened_at >= self.stall_timeout
            ):
                self.backoff.reset()
            if wait is not None:
                await self.wait(wait, RATE_LIMITED, why)
            else:
                await self.wait(self.backoff.next(), BACKING_OFF, why)

    def subscribe_url(self) -> str:
        """
        The URL to connect to now: posts only, frames no bigger than we
        accept (so the server skips them rather than we drop the line),
        and a cursor a little before the last event processed.
        """
        parts = urlsplit(self.url)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("cursor", "maxMessageSizeBytes")]
        if not any(k == "wantedCollections" for k, _ in query):
            query.append(("wantedCollections", POST_COLLECTION))
        query.append(("maxMessageSizeBytes", str(self.max_message)))
        resume = self.time_us if self.time_us is not None else self._tail_from
        if resume is not None:
            query.append(("cursor", str(max(0, resume - int(self.rewind * 1_000_000)))))
        return urlunsplit(parts._replace(query=urlencode(query)))

    def _endpoint(self, host: str, port: int, secure: bool):
        if self.endpoint_factory is not None:
            return self.endpoint_factory(host, port, secure)
        from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
        from twisted.internet.ssl import optionsForClientTLS

        endpoint = HostnameEndpoint(self.reactor, host, port, timeout=self.stall_timeout)
        if secure:
            endpoint = wrapClientTLS(optionsForClientTLS(host), endpoint)
        return endpoint

    async def _session(self, url: str) -> tuple[str, Optional[float]]:
        """
        Connect and read until the connection ends; return why it ended and
        how long the server asked us to wait, if it did.
        """
        factory = _JetstreamFactory(self, url, self.reactor)
        self._stalled = False
        self._ended = ended = Deferred(self._cancel_session)
        await self._endpoint(factory.host, factory.port, factory.isSecure).connect(factory)
        return await ended

    def _cancel_session(self, d: Deferred) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.abortConnection()

    # -- protocol callbacks ------------------------------------------------------

    def _connection_made(self, proto) -> None:
        self._proto = proto
        self._paused = False
        self._stall.start()

    def _touch(self) -> None:
        self._stall.touch()
        self._idle.touch()

    def _opened(self, proto) -> None:
        self._opened_at = self.reactor.seconds()
        if self.time_us is None and self._tail_from is None:
            # Read from the live tail: if this connection drops before any
            # event, what it would have sent started about now.
            self._tail_from = int(self._opened_at * 1_000_000)
        self._idle.start()
        self.set_state(CONNECTED)
        self._pump()  # pause at once if posts are still waiting for room

    def _ping(self) -> None:
        proto = self._proto
        if proto is not None and proto.state == proto.STATE_OPEN and not self._paused:
            proto.sendPing()
            self._idle.start()

    def _on_stall(self) -> None:
        self._stalled = True
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.abortConnection()

    def _connection_lost(self, proto, reason) -> None:
        if proto is not self._proto:
            return
        self._proto = None
        self._stall.stop()
        self._idle.stop()
        self._paused = False
        wait = None
        if proto.wasMaxMessagePayloadSizeExceeded or proto.wasMaxFramePayloadSizeExceeded:
            why = f"a frame larger than {self.max_message} bytes"
            self.malformed(b"", why, self._context())
        elif self._stalled:
            why = f"stalled: nothing received for {self.stall_timeout:g}s"
        elif not proto.opened:
            why = f"handshake failed: {proto.wasNotCleanReason or reason.getErrorMessage()}"
            if "[429]" in why:
                headers = getattr(proto, "http_headers", None) or {}
                wait = retry_after(headers.get("retry-after"), self.reactor.seconds()) or 60.0
        elif proto.remoteCloseCode is not None:
            why = f"closed by the server ({proto.remoteCloseCode} {proto.remoteCloseReason or ''})".rstrip()
        else:
            why = f"connection lost: {proto.wasNotCleanReason or reason.getErrorMessage()}"
        ended, self._ended = self._ended, None
        if ended is not None and not ended.called:
            ended.callback((why, wait))

    # -- frames ---------------------------------------------------------------------

    def _context(self) -> str:
        return f"{urlsplit(self.url).netloc} after time_us {self.time_us}"

    def _frame(self, payload: bytes, is_binary: bool) -> None:
        self._frames.append((payload, is_binary))
        self._pump()

    def _pump(self) -> None:
        """
        Move frames to posts and posts to the queue, in order, as far as
        the queue and the profile waits allow; pause the socket otherwise.
        """
        if self._pumping or self._stopped:
            return
        self._pumping = True
        try:
            while True:
                self._release()
                if not self._frames or len(self._held) >= MAX_HELD:
                    break
                self._read(*self._frames.popleft())
        finally:
            self._pumping = False
        self._set_paused(bool(self._frames) or self._emitting is not None or len(self._held) >= MAX_HELD)
        self._schedule_deadline()

    def _set_paused(self, paused: bool) -> None:
        if paused == self._paused:
            return
        proto = self._proto
        if proto is None or proto.transport is None:
            self._paused = False
            return
        self._paused = paused
        if paused:
            # We stop reading, so the server's silence is ours, not a stall.
            self._stall.stop()
            self._idle.stop()
            proto.transport.pauseProducing()
        else:
            self._stall.start()
            self._idle.start()
            proto.transport.resumeProducing()

    def _release(self) -> None:
        now = self.reactor.seconds()
        while self._held and self._emitting is None:
            head = self._held[0]
            if not head.ready and head.deadline > now:
                return
            self._held.popleft()
            post = head.post
            if post is None:
                d = self.enqueue(head.update)
            else:
                if not self._fill_author(post, head.did):
                    self._profile_follows(post, head.did)
                d = self.emit(post)
            if not d.called:
                self._emitting = d
                d.addBoth(self._emitted)

    def _emitted(self, result) -> None:
        self._emitting = None
        self._pump()

    def _schedule_deadline(self) -> None:
        if self._deadline_call is not None and self._deadline_call.active():
            self._deadline_call.cancel()
        self._deadline_call = None
        if self._held and self._emitting is None and not self._stopped:
            delay = max(0.0, self._held[0].deadline - self.reactor.seconds())
            self._deadline_call = self.reactor.callLater(delay, self._pump)

    def _read(self, payload: bytes, is_binary: bool) -> None:
        if is_binary:
            self.malformed(payload[:4096], "a binary frame (compression is not asked for)", self._context())
            return
        try:
            event = json.loads(payload)
        except (ValueError, RecursionError) as e:
            self.malformed(payload, f"invalid JSON: {e}", self._context())
            return
        try:
            self._event(event)
        except MalformedEvent as e:
            self.malformed(payload, e.reason, self._context())

    def _event(self, event: Any) -> None:
        if not isinstance(event, dict):
            raise MalformedEvent("not a JSON object")
        did, time_us, kind = event.get("did"), event.get("time_us"), event.get("kind")
        if not isinstance(did, str) or not DID.match(did):
            raise MalformedEvent(f"did: not a DID: {str(did)[:80]!r}")
        if type(time_us) is not int or time_us < 0:
            raise MalformedEvent(f"time_us: must be a non-negative integer, not {str(time_us)[:40]!r}")
        if not isinstance(kind, str):
            raise MalformedEvent("kind: must be a string")
        self._session_events += 1
        if kind == "commit":
            post = self._commit(did, time_us, event.get("commit"))
        else:
            self.events[kind if kind in ("identity", "account") else "other"] += 1
            if kind == "identity":
                identity = event.get("identity")
                handle = identity.get("handle") if isinstance(identity, dict) else None
                if isinstance(handle, str) and handle:
                    self._remember_handle(did, clean(handle))
            post = None
        # Processed: this is the resume point, even if it made no post.
        if self.time_us is None or time_us > self.time_us:
            self.time_us = time_us
        if post is not None:
            post.cursor = str(self.time_us)
            self._hold(post, did)

    def _commit(self, did: str, time_us: int, commit: Any) -> Optional[Post]:
        if not isinstance(commit, dict):
            raise MalformedEvent("commit: must be an object")
        operation = str_field(commit, "operation", "commit.")
        collection = str_field(commit, "collection", "commit.")
        rkey = str_field(commit, "rkey", "commit.")
        rev = str_field(commit, "rev", "commit.")
        if collection != POST_COLLECTION:
            self.events["other_collection"] += 1
            return None
        if operation != "create":
            self.events[operation if operation in ("update", "delete") else "other"] += 1
            return None
        if not RKEY.match(rkey):
            raise MalformedEvent(f"commit.rkey: not a record key: {rkey[:80]!r}")
        key = (did, collection, rkey, rev)
        if key in self._seen:
            self.events["duplicate"] += 1
            return None
        post = post_from_commit(self.name, did, time_us, commit)
        self.events["create"] += 1
        self._remember(key, time_us)
        return post

    def _remember(self, key: tuple, time_us: int) -> None:
        """
        Keep what was seen for as long as a resume can send it again.
        """
        self._seen[key] = time_us
        self._since_prune += 1
        if self._since_prune >= 1000:
            self._since_prune = 0
            horizon = (self.time_us or time_us) - int((2 * self.rewind + 60) * 1_000_000)
            self._seen = {k: t for k, t in self._seen.items() if t >= horizon}

    def _remember_handle(self, did: str, handle: str) -> None:
        self._handles[did] = handle
        self._handles.move_to_end(did)
        if len(self._handles) > 50_000:
            self._handles.popitem(last=False)

    # -- profiles ---------------------------------------------------------------------

    def _hold(self, post: Post, did: str) -> None:
        held = _Held(post, did, self.reactor.seconds() + self.profile_wait)
        if self.profiles is None:
            held.ready = True
        else:
            found, _ = self.profiles.get(did)
            if found or self.profile_wait <= 0:
                held.ready = True
            if not found:
                d = self.profiles.want(did)
                if not held.ready:
                    d.addCallback(held.profile_arrived, self)
                d.addCallback(self._profile_came, did)
        self._held.append(held)

    def _fill_author(self, post: Post, did: str) -> bool:
        """
        Give C{post} what is known of its author; C{False} if the profile
        is not (yet) known.
        """
        found, profile = self.profiles.get(did) if self.profiles is not None else (False, None)
        handle = (profile or {}).get("handle") or self._handles.get(did)
        if handle:
            post.author = handle
        if profile:
            post.author_followers = profile["followers"]
            post.author_verified = profile["verified"]
        return found

    def _profile_follows(self, post: Post, did: str) -> None:
        """
        C{post} goes out before its author's profile: if a lookup is under
        way, remember it, so that the profile follows it through the queue.
        """
        if self.profiles is None or not self.profiles.pending(did):
            return
        uids = self._late.get(did)
        if uids is None:
            uids = self._late[did] = []
            if len(self._late) > MAX_LATE:
                self._late.popitem(last=False)
        if len(uids) < MAX_LATE_POSTS:
            uids.append(post.uid)
            post.extra[PROFILE_PENDING] = True

    def _profile_came(self, profile: Optional[dict], did: str) -> None:
        uids = self._late.pop(did, None)
        if not uids or not profile or self._stopped:
            return
        update = Enriched(
            self.name,
            uids,
            profile.get("handle") or self._handles.get(did),
            profile["followers"],
            profile["verified"],
            received_at=self.reactor.seconds(),
        )
        self._held.append(_Held(None, did, 0.0, update))
        self._pump()

    def _profile_trouble(self, why: Optional[str]) -> None:
        if why:
            self.last_error = why
            self.log.warn("source {source}: {why}", source=self.name, why=why)
        else:
            self.log.info("source {source}: profile lookups work again", source=self.name)

    async def _fetch_profiles(self, dids: list[str]) -> dict:
        """
        One C{getProfiles} call: C{{did: profile}} for the actors the
        AppView knows.
        """
        url = self.appview_url + "/xrpc/app.bsky.actor.getProfiles"
        response = await self.request(
            "GET",
            url,
            _PROFILE_TIMEOUT,
            params=[("actors", did) for did in dids],
            headers=self.headers({"Accept": "application/json"}),
        )
        body = await read_body(response, 1 << 20, self.reactor, timeout=_PROFILE_TIMEOUT)
        if response.code != 200:
            wait = self.appview_limits.retry_delay(response.headers) if response.code == 429 else None
            raise ProfileLookupFailed(f"AppView answered HTTP {response.code}", wait)
        try:
            views = json.loads(body)["profiles"]
            if not isinstance(views, list):
                raise TypeError("profiles is not a list")
        except (ValueError, KeyError, TypeError) as e:
            self.malformed(body[:65536], f"AppView getProfiles: {e}", url)
            raise ProfileLookupFailed("AppView sent an unreadable answer")
        profiles = {}
        for view in views:
            found = profile_from_view(view)
            if found is not None:
                profiles[found[0]] = found[1]
        return profiles

    # -- service ------------------------------------------------------------------------

    def startService(self):
        self._stopped = False
        super().startService()

    def stopService(self):
        self._stopped = True
        self._stall.stop()
        self._idle.stop()
        if self._deadline_call is not None and self._deadline_call.active():
            self._deadline_call.cancel()
        if self.profiles is not None:
            self.profiles.stop()
        self._frames.clear()
        self._held.clear()
        self._late.clear()
        d = super().stopService()
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.abortConnection()
        return d


__all__ = ["DEFAULT_APPVIEW", "DEFAULT_URL", "BlueskySource"]
