"""
The hub's side of analysis nodes: the listener they dial, and the analyzer
that spreads batches over them.

L{NodePool} is the hub's L{IAnalyzer}.  With no node registered it hands
each batch whole to the hub's own analyzers.  With nodes, it cuts a batch
into chunks (at most L{MAX_CHUNK_POSTS} posts and about L{MAX_CHUNK_BYTES}
of text each) and gives each chunk to the node with the most free credit
(its announced capacity minus its chunks in flight); chunks that find no
credit wait for the next answer.  A chunk whose node errs, times out or
vanishes goes to another node that has not tried it, or, when none is
left, to the hub's own analyzers.  Each chunk has exactly one attempt alive
at a time and fills its slots of the batch once, so a batch is never lost
and never answered twice.
"""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict, deque
from typing import Any, Optional, Sequence

from twisted.application.service import Service
from twisted.internet import defer, threads
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import implementer

from monitor.analysis import Classifier, versions as analysis_versions
from monitor.analysis.local import AnalyzerNotRunning, with_features
from monitor.analysis.process import from_row
from monitor.interfaces import IAnalysisNode, IAnalyzer
from monitor.learn.apply import ModelSet, applied
from monitor.model import iso8601
from monitor.nodes import wire
from monitor.nodes.secret import read_secret

__all__ = ["HubProtocol", "NodePool", "AMPNode"]

#: Seconds a new connection has to finish the handshake.
HANDSHAKE_TIMEOUT = 10.0

#: An idle node is pinged this often (seconds); the node drops a hub it has
#: not heard from in three times as long.
HEARTBEAT = 10.0

#: Most posts in one chunk sent to a node.
MAX_CHUNK_POSTS = 100

#: A chunk is closed once its texts reach this many bytes (UTF-8), so that
#: it nearly always fits in one AMP value; a longer single post travels
#: alone, spread over several values (see L{wire.BigJSON}).
MAX_CHUNK_BYTES = 48 * 1024

#: A chunk is tried on at most this many nodes before the hub does it.
MAX_NODE_ATTEMPTS = 3

#: Bytes an unauthenticated peer may send before it is dropped.
PRE_AUTH_BYTES = 64 * 1024

#: Disconnected nodes kept in L{NodePool.status}.
MAX_DEPARTED = 32

#: A node name: what a person can read in a log line.
MAX_NAME = 100


@implementer(IAnalysisNode)
class AMPNode:
    """
    A registered node reached over its AMP connection.
    """

    def __init__(
        self,
        protocol: "HubProtocol",
        name: str,
        workers: int,
        capacity: int,
        versions: dict,
        address: str,
        digest: str,
        supports_models: bool = False,
        models_tag: Optional[str] = None,
    ) -> None:
        self.protocol = protocol
        self.name = name
        self.workers = workers
        self.capacity = capacity
        self.versions = versions
        self.address = address
        self.digest = digest
        #: Whether the node applies the hub's learned models itself, and
        #: the tag of the set it announced at registration.
        self.supports_models = supports_models
        self.models_tag = models_tag
        #: Set when the connection is lost, so a join scheduled just before
        #: does not add a dead node.
        self.closed = False

    def analyze(self, texts: list[str], langs: Optional[list] = None, models: Optional[str] = None) -> defer.Deferred:
        d = self.protocol.callRemote(wire.Analyze, classifier=self.digest, texts=texts, models=models,
                                     langs=langs if models is not None else None)  # fmt: skip
        d.addCallback(lambda answer: answer["results"])
        return d

    def send_models(self, models: ModelSet) -> defer.Deferred:
        d = self.protocol.callRemote(wire.Models, tag=models.tag, models=models.payload())
        d.addCallback(lambda answer: answer["tag"])
        return d

    def ping(self) -> defer.Deferred:
        return self.protocol.callRemote(wire.Ping)

    def disconnect(self) -> None:
        self.protocol.transport.abortConnection()


class HubProtocol(amp.AMP):
    """
    One connection from a node, on the hub: it answers the handshake and,
    once the node is registered, carries the pool's calls to it.
    """

    log = Logger()

    def __init__(self, pool: "NodePool") -> None:
        super().__init__()
        self.pool = pool
        self.node: Optional[AMPNode] = None
        self._node_nonce: Optional[bytes] = None
        self._hub_nonce: Optional[bytes] = None
        self._closing = False
        self._received = 0
        self._timer = None

    def _address(self) -> str:
        peer = self.transport.getPeer()
        host, port = getattr(peer, "host", None), getattr(peer, "port", None)
        return f"{host}:{port}" if host is not None else str(peer)

    def connectionMade(self) -> None:
        super().connectionMade()
        self.pool._connections.add(self)
        self._timer = self.pool.clock.callLater(HANDSHAKE_TIMEOUT, self._too_slow)

    def _too_slow(self) -> None:
        self._timer = None
        self._refuse("timeout", "did not finish the handshake within {seconds}s", seconds=HANDSHAKE_TIMEOUT)

    def dataReceived(self, data: bytes) -> None:
        if self.node is None:
            self._received += len(data)
            if self._received > PRE_AUTH_BYTES:
                if not self._closing:
                    self._refuse("oversized", "sent more than {limit} bytes before the handshake", limit=PRE_AUTH_BYTES)
                return
        super().dataReceived(data)

    def _refuse(self, reason: str, why: str, **fields: Any) -> None:
        """
        Log and count the refusal and close the connection once the error
        answer (if any) has been written.
        """
        self._closing = True
        self.pool.metrics.nodes_refused.labels(reason).inc()
        self.log.error("refused an analysis node from {address}: " + why, address=self._address(), **fields)
        self.pool.clock.callLater(0, self.transport.loseConnection)

    @wire.Hello.responder
    def hello(self, version: int, nonce: bytes) -> dict:
        if self._closing or self._hub_nonce is not None:
            raise wire.Refused("unexpected Hello")
        if version != wire.PROTOCOL_VERSION:
            self._refuse(
                "version", "it speaks protocol {theirs}, the hub {ours}", theirs=version, ours=wire.PROTOCOL_VERSION
            )
            raise wire.VersionMismatch(f"the hub speaks protocol version {wire.PROTOCOL_VERSION}, not {version}")
        if len(nonce) != wire.NONCE_BYTES:
            self._refuse("protocol", "its nonce is {size} bytes", size=len(nonce))
            raise wire.Refused(f"the nonce must be {wire.NONCE_BYTES} bytes")
        self._node_nonce = nonce
        self._hub_nonce = secrets.token_bytes(wire.NONCE_BYTES)
        return {"version": wire.PROTOCOL_VERSION, "nonce": self._hub_nonce}

    @wire.Register.responder
    def register(
        self,
        name: str,
        proof: bytes,
        workers: int,
        capacity: int,
        analyzers: list,
        versions: Any,
        models: Optional[str] = None,
    ) -> dict:
        if self._closing or self._hub_nonce is None or self.node is not None:
            raise wire.Refused("Register must follow one Hello")
        expected = wire.proof(self.pool.secret, b"node", self._hub_nonce, self._node_nonce)
        if not hmac.compare_digest(proof, expected):
            self._refuse("secret", "node {name!r} does not have the secret", name=name[:MAX_NAME])
            raise wire.AuthenticationFailed("the proof does not match the hub's secret")
        if versions != self.pool.versions:
            differ = self.pool.version_difference(versions)
            self._refuse(
                "version", "node {name!r} would score differently ({differ})", name=name[:MAX_NAME], differ=differ
            )
            raise wire.VersionMismatch(f"the hub's analysis differs: {differ}")
        missing = [a for a in wire.ANALYZERS if a not in analyzers]
        problem = None
        if missing:
            problem = f"it lacks the analyzers {', '.join(missing)}"
        elif not name or len(name) > MAX_NAME or not name.isprintable():
            problem = f"its name must be 1 to {MAX_NAME} printable characters"
        elif not (1 <= workers <= 4096 and 1 <= capacity <= 4096):
            problem = "workers and capacity must be from 1 to 4096"
        if problem:
            self._refuse("refused", "node {name!r}: {problem}", name=name[:MAX_NAME], problem=problem)
            raise wire.Refused(problem)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.node = AMPNode(
            self,
            name,
            workers,
            capacity,
            versions,
            self._address(),
            self.pool.digest,
            supports_models=wire.MODELS in analyzers,
            models_tag=models,
        )
        # Join once this answer is on the wire: work must not overtake it.
        self.pool.clock.callLater(0, self.pool._joined, self.node)
        return {
            "proof": wire.proof(self.pool.secret, b"hub", self._node_nonce, self._hub_nonce),
            "classifier": self.pool.classifier,
            "heartbeat": HEARTBEAT,
        }

    def connectionLost(self, reason: Failure) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.pool._connections.discard(self)
        if self.node is None and self._hub_nonce is not None and not self._closing:
            self.log.warn(
                "an analysis node from {address} left during the handshake ({reason})",
                address=self._address(),
                reason=reason.getErrorMessage(),
            )
        # Leave the pool before AMP fails the calls in flight, so that
        # they are not sent straight back to this node.
        if self.node is not None:
            self.node.closed = True
            self.pool._left(self.node, reason)
        super().connectionLost(reason)
        self.pool._connection_closed()


class _HubFactory(Factory):
    noisy = False

    def __init__(self, pool: "NodePool") -> None:
        self.pool = pool

    def buildProtocol(self, addr) -> HubProtocol:
        protocol = HubProtocol(self.pool)
        protocol.factory = self
        return protocol


class _Slot:
    """
    The pool's bookkeeping for one node.
    """

    def __init__(self, node: IAnalysisNode, since: float) -> None:
        self.node = node
        self.name = node.name
        self.connected_since = since
        self.disconnected_at: Optional[float] = None
        self.last_answer = since
        self.in_flight = 0
        self.batches = 0
        self.posts = 0
        self.errors = 0
        self.seconds = 0.0
        self.last_error: Optional[str] = None
        #: The learned models' tag the node holds, and the one being sent.
        self.supports_models = bool(getattr(node, "supports_models", False))
        self.models_tag: Optional[str] = getattr(node, "models_tag", None)
        self.sending: Optional[str] = None

    @property
    def free(self) -> int:
        if self.disconnected_at is not None:
            return 0
        return self.node.capacity - self.in_flight

    def status(self) -> dict:
        return {
            "name": self.name,
            "address": self.node.address,
            "state": "connected" if self.disconnected_at is None else "disconnected",
            "connected_since": iso8601(self.connected_since),
            "disconnected_at": None if self.disconnected_at is None else iso8601(self.disconnected_at),
            "workers": self.node.workers,
            "capacity": self.node.capacity,
            "batches_in_flight": self.in_flight,
            "batches_done": self.batches,
            "posts_done": self.posts,
            "errors": self.errors,
            "last_error": self.last_error,
            "average_latency_ms": round(self.seconds / self.batches * 1000, 1) if self.batches else None,
            "versions": dict(self.node.versions),
            "applies_models": self.supports_models,
            "models": self.models_tag if self.supports_models else None,
        }


class _Batch:
    """
    One call of L{NodePool.analyze}: where each chunk's results go.
    """

    def __init__(self, size: int, chunks: int) -> None:
        self.results: list = [None] * size
        self.remaining = chunks
        self.deferred: defer.Deferred = defer.Deferred()

    def fill(self, start: int, analyses: list) -> None:
        if self.deferred.called:
            return
        self.results[start : start + len(analyses)] = analyses
        self.remaining -= 1
        if not self.remaining:
            self.deferred.callback(self.results)

    def fail(self, failure: Failure) -> None:
        if not self.deferred.called:
            self.deferred.errback(failure)


class _Chunk:
    def __init__(self, batch: _Batch, start: int, posts: list) -> None:
        self.batch = batch
        self.start = start
        self.posts = posts
        self.texts = [p.text for p in posts]
        self.langs = [p.lang for p in posts]
        self.tried: set[str] = set()


def chunked(posts: Sequence, max_posts: int = MAX_CHUNK_POSTS, max_bytes: int = MAX_CHUNK_BYTES) -> list[list]:
    """
    Cut posts into runs of at most C{max_posts} posts whose texts together
    stay under C{max_bytes} (a longer single text makes a run of its own).
    """
    runs: list[list] = []
    run: list = []
    size = 0
    for post in posts:
        text = post.text
        n = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        if run and (len(run) >= max_posts or size + n > max_bytes):
            runs.append(run)
            run, size = [], 0
        run.append(post)
        size += n
    if run:
        runs.append(run)
    return runs


@implementer(IAnalyzer)
class NodePool(Service):
    """
    The hub's analyzer: remote nodes when there are any, the hub's own
    analyzers otherwise.

    @ivar local: the hub's own analyzers, tried in order (worker processes,
        then the thread pool).
    @ivar secret: the shared secret; C{None} only without C{endpoint}.
    @ivar endpoint: a Twisted server endpoint description to listen on
        for nodes, or C{None} for none.
    @ivar timeout: seconds a node has to answer one call.
    @ivar features: the stories' per-post features
        (L{monitor.stories.features}) or C{None}: nodes do not send them,
        so they are worked out for the posts a node analysed in the
        reactor's thread pool, off the event loop (the hub's own analyzers
        work them out themselves).
    """

    name = "nodes"
    log = Logger()

    def __init__(
        self,
        local: Sequence[IAnalyzer],
        classifier: Classifier,
        metrics,
        endpoint: Optional[str] = None,
        secret: Optional[bytes] = None,
        timeout: float = 10.0,
        reactor: Optional[Any] = None,
        versions: Optional[dict] = None,
        features=None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.features = features
        if endpoint and not secret:
            raise ValueError("a node listener needs a secret")
        self.local = list(local)
        self.clock = self.reactor = reactor
        self.metrics = metrics
        self.endpoint = endpoint
        self.secret = secret
        self.timeout = timeout
        self.classifier = classifier.to_dict()
        self.digest = wire.classifier_digest(self.classifier)
        self.versions = analysis_versions() if versions is None else versions
        #: The active learned models (L{set_models}): nodes that can apply
        #: them get them, others' answers and local ones have them applied here.
        self.models = ModelSet({})
        self._slots: dict[str, _Slot] = {}
        self._departed: OrderedDict[int, _Slot] = OrderedDict()
        self._pending: deque[_Chunk] = deque()
        self._dispatching = False
        self._again = False
        self._connections: set[HubProtocol] = set()
        self._closed_waiters: list[defer.Deferred] = []
        self._port = None
        self._heartbeat: Optional[LoopingCall] = None

    @classmethod
    def from_config(
        cls, nodes: dict, local: Sequence[IAnalyzer], classifier: Classifier, metrics, reactor=None, features=None
    ) -> "NodePool":
        """
        The pool of the C{[nodes]} section; reads the secret (file or
        C{MONITOR_NODE_SECRET}) only when there is a listener.
        """
        endpoint = nodes["endpoint"]
        secret = read_secret(nodes["secret_file"]) if endpoint else None
        return cls(
            local,
            classifier,
            metrics,
            endpoint=endpoint,
            secret=secret,
            timeout=nodes["timeout"],
            reactor=reactor,
            features=features,
        )

    # -- lifecycle --

    def startService(self):
        super().startService()
        self._heartbeat = LoopingCall(self._ping_idle)
        self._heartbeat.clock = self.clock
        self._heartbeat.start(HEARTBEAT, now=False).addErrback(
            lambda f: self.log.failure("the node heartbeat stopped", f)
        )
        if self.endpoint is None:
            return None
        # Listen here rather than through strports.service, so that a port
        # that cannot be had fails the hub's start instead of only a log line.
        d = serverFromString(self.reactor, self.endpoint).listen(_HubFactory(self))

        def listening(port):
            self._port = port
            self.log.info("listening for analysis nodes on {endpoint}", endpoint=self.endpoint)

        return d.addCallback(listening)

    def stopService(self):
        """
        Stop listening and drop every node (the pipeline has drained by
        now, so nothing is in flight).
        """
        super().stopService()
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        port, self._port = self._port, None
        d = defer.maybeDeferred(port.stopListening) if port is not None else defer.succeed(None)
        for connection in list(self._connections):
            connection.transport.abortConnection()
        d.addCallback(lambda _: self._all_closed())
        return d

    def _all_closed(self) -> defer.Deferred:
        if not self._connections:
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        self._closed_waiters.append(d)
        return d

    def _connection_closed(self) -> None:
        if not self._connections:
            waiters, self._closed_waiters = self._closed_waiters, []
            for d in waiters:
                d.callback(None)

    # -- nodes come and go --

    def _joined(self, node: IAnalysisNode) -> None:
        """
        Add a registered node; a node of the same name is presumed gone (a
        restart or a reconnect before the old connection noticed) and is
        dropped.
        """
        if getattr(node, "closed", False) or not self.running:
            return
        old = self._slots.get(node.name)
        if old is not None:
            self.log.warn(
                "node {name} connected again from {address}; dropping its old connection",
                name=node.name,
                address=node.address,
            )
            self._drop(old, "replaced by a new connection")
        slot = self._slots[node.name] = _Slot(node, self.clock.seconds())
        self.metrics.nodes_connected.set(len(self._slots))
        self.metrics.node_in_flight.labels(node.name).set(0)
        self.log.info(
            "analysis node {name} joined from {address}: {workers} workers, {capacity} batches at once",
            name=node.name,
            address=node.address,
            workers=node.workers,
            capacity=node.capacity,
        )
        if not self._current(slot):
            self._send_models(slot)
        self._dispatch()

    # -- learned models --

    def set_models(self, active) -> None:
        """
        The active learned models changed: send the new set to every node
        that applies them; until one has it, it gets no work.
        """
        models = ModelSet(active)
        if models.tag == self.models.tag:
            return
        self.models = models
        self.log.info(
            "active learned models {versions}; sending them to {count} analysis nodes",
            versions=models.versions,
            count=sum(1 for s in self._slots.values() if s.supports_models),
        )
        for slot in list(self._slots.values()):
            if not self._current(slot):
                self._send_models(slot)

    def _current(self, slot: _Slot) -> bool:
        return not slot.supports_models or slot.models_tag == self.models.tag

    def _send_models(self, slot: _Slot) -> None:
        models = self.models
        if slot.sending == models.tag or slot.disconnected_at is not None:
            return
        slot.sending = models.tag
        try:
            d = slot.node.send_models(models)
        except Exception:
            d = defer.fail()
        d.addTimeout(self.timeout, self.clock)
        d.addCallbacks(self._models_held, self._models_failed, callbackArgs=(slot,), errbackArgs=(slot, models))
        d.addErrback(lambda f: self.log.failure("lost track of a node's models", f))

    def _models_held(self, tag: str, slot: _Slot) -> None:
        slot.sending = None
        slot.models_tag = tag
        if slot.disconnected_at is not None:
            return
        if tag != self.models.tag:
            self._send_models(slot)  # the set changed meanwhile
            return
        self.log.info(
            "analysis node {name} holds the learned models {versions}", name=slot.name, versions=self.models.versions
        )
        self._dispatch()

    def _models_failed(self, failure: Failure, slot: _Slot, models: ModelSet) -> None:
        slot.sending = None
        if slot.disconnected_at is not None:
            return
        slot.errors += 1
        slot.last_error = f"could not take the learned models: {failure.getErrorMessage()}"
        self.log.warn(
            "analysis node {name} could not take the learned models {versions} ({error}); dropping it",
            name=slot.name,
            versions=models.versions,
            error=failure.getErrorMessage(),
        )
        self._drop(slot, "could not take the learned models")

    def _left(self, node: IAnalysisNode, reason: Failure) -> None:
        slot = self._slots.get(node.name)
        if slot is None or slot.node is not node:
            return
        del self._slots[node.name]
        slot.disconnected_at = self.clock.seconds()
        self._departed[id(slot)] = slot
        while len(self._departed) > MAX_DEPARTED:
            self._departed.popitem(last=False)
        self.metrics.nodes_connected.set(len(self._slots))
        self.log.info(
            "analysis node {name} left ({reason}); {count} batches in flight go elsewhere",
            name=node.name,
            reason=reason.getErrorMessage(),
            count=slot.in_flight,
        )

    def _drop(self, slot: _Slot, why: str) -> None:
        """
        Stop using a node at once, then close its connection; its calls in
        flight fail when the connection is lost and go elsewhere.
        """
        self._left(slot.node, Failure(ConnectionDone(why)))
        slot.node.disconnect()

    def add_node(self, node: IAnalysisNode) -> None:
        """
        Use C{node} (an in-process node, or a fake in tests).
        """
        self._joined(node)

    def remove_node(self, node: IAnalysisNode) -> None:
        """
        Stop using C{node}; what it has in flight still counts until it fails.
        """
        self._left(node, Failure(ConnectionDone("removed")))

    def version_difference(self, theirs: Any) -> str:
        if not isinstance(theirs, dict):
            return "no versions given"
        keys = sorted(set(theirs) | set(self.versions))
        return ", ".join(
            f"{k}: {theirs.get(k)!r} on the node, {self.versions.get(k)!r} here"
            for k in keys
            if theirs.get(k) != self.versions.get(k)
        )

    def _ping_idle(self) -> None:
        now = self.clock.seconds()
        for slot in list(self._slots.values()):
            if slot.in_flight or now - slot.last_answer < HEARTBEAT:
                continue
            d = slot.node.ping()
            d.addTimeout(self.timeout, self.clock)
            d.addCallbacks(self._pong, self._no_pong, callbackArgs=(slot,), errbackArgs=(slot,))

    def _pong(self, _, slot: _Slot) -> None:
        slot.last_answer = self.clock.seconds()

    def _no_pong(self, failure: Failure, slot: _Slot) -> None:
        if slot.disconnected_at is not None:
            return
        slot.errors += 1
        slot.last_error = f"no answer to a ping: {failure.getErrorMessage()}"
        self.log.warn(
            "analysis node {name} did not answer a ping ({error}); dropping it",
            name=slot.name,
            error=failure.getErrorMessage(),
        )
        self._drop(slot, "no answer to a ping")

    # -- analysis --

    def analyze(self, posts) -> defer.Deferred:
        """
        Analyse C{posts} on the nodes, or here if there are none.  Fires
        with one L{monitor.model.Analysis} per post, in order.
        """
        if not self.running:
            return defer.fail(AnalyzerNotRunning("analyze() called while the node pool is not running"))
        if not posts:
            return defer.succeed([])
        if not self._slots:
            return self._locally(posts)
        runs = chunked(posts)
        batch = _Batch(len(posts), len(runs))
        start = 0
        for run in runs:
            self._pending.append(_Chunk(batch, start, run))
            start += len(run)
        self._dispatch()
        return batch.deferred

    def _locally(self, posts: list) -> defer.Deferred:
        self.metrics.analysed_locally.inc(len(posts))
        d = defer.ensureDeferred(self._try_local(posts))
        return d.addCallback(self._apply_here, posts, self.models)

    def _apply_here(self, analyses: list, posts: list, models: ModelSet):
        return applied(self.reactor, analyses, [p.text for p in posts], [p.lang for p in posts], models.active)

    async def _try_local(self, posts: list) -> list:
        for i, analyzer in enumerate(self.local):
            try:
                return await analyzer.analyze(posts)
            except Exception:
                if i + 1 == len(self.local):
                    raise
                self.log.failure(
                    "the hub's analyzer {name} failed on {count} posts; trying the next one",
                    name=getattr(analyzer, "name", analyzer),
                    count=len(posts),
                )
        raise AnalyzerNotRunning("the hub has no analyzer of its own")

    def _dispatch(self) -> None:
        # Sending can fail at once (a connection that just closed) and
        # re-enter here; the outer call then goes round again.
        if self._dispatching:
            self._again = True
            return
        self._dispatching = True
        try:
            self._again = True
            while self._again:
                self._again = False
                self._dispatch_once()
        finally:
            self._dispatching = False

    def _dispatch_once(self) -> None:
        pending, self._pending = self._pending, deque()
        while pending:
            chunk = pending.popleft()
            if chunk.batch.deferred.called:
                continue
            candidates = [s for s in self._slots.values() if s.name not in chunk.tried and self._current(s)]
            if not candidates or len(chunk.tried) >= MAX_NODE_ATTEMPTS:
                self._fallback(chunk)
                continue
            best = max(candidates, key=lambda s: (s.free, -s.in_flight, -s.batches))
            if best.free <= 0:
                self._pending.append(chunk)
                continue
            self._send(chunk, best)

    def _fallback(self, chunk: _Chunk) -> None:
        d = self._locally(chunk.posts)
        d.addCallbacks(lambda analyses: chunk.batch.fill(chunk.start, analyses), chunk.batch.fail)

    def _send(self, chunk: _Chunk, slot: _Slot) -> None:
        chunk.tried.add(slot.name)
        slot.in_flight += 1
        self.metrics.node_in_flight.labels(slot.name).inc()
        started = self.clock.seconds()
        models = self.models
        try:
            if slot.supports_models:
                d = slot.node.analyze(chunk.texts, chunk.langs, models.tag)
            else:
                d = slot.node.analyze(chunk.texts)
        except Exception:
            d = defer.fail()
        d.addTimeout(self.timeout, self.clock)

        def answered(result):
            slot.in_flight -= 1
            self.metrics.node_in_flight.labels(slot.name).dec()
            return result

        d.addBoth(answered)
        d.addCallback(self._decode, chunk, slot, models)
        d.addCallbacks(self._done, self._failed, callbackArgs=(chunk, slot, started), errbackArgs=(chunk, slot))
        d.addErrback(lambda f: self.log.failure("lost a chunk while handling a node's answer", f))

    def _decode(self, rows: Any, chunk: _Chunk, slot: _Slot, models: ModelSet):
        if not isinstance(rows, list) or len(rows) != len(chunk.texts):
            raise ValueError(
                f"the node answered {len(rows) if isinstance(rows, list) else rows!r} results "
                f"for {len(chunk.texts)} texts"
            )
        if slot.supports_models:
            analyses = [from_row(row, models.labels) for row in rows]
        else:
            # A node that does not apply the models (an older one): here.
            analyses = self._apply_here([from_row(row) for row in rows], chunk.posts, models)
        return self._with_features(analyses, chunk.posts) if self.features is not None else analyses

    def _with_features(self, analyses, posts: list):
        """
        C{analyses} (or a Deferred of them) once each carries its post's
        story features, worked out in the reactor's thread pool (at once
        on a reactor without one, as in tests on a Clock).
        """
        if isinstance(analyses, defer.Deferred):
            return analyses.addCallback(self._with_features, posts)
        args = (analyses, [p.text for p in posts], [p.lang for p in posts], self.features)
        if not hasattr(self.reactor, "getThreadPool"):
            return with_features(*args)
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), with_features, *args)

    def _done(self, analyses: list, chunk: _Chunk, slot: _Slot, started: float) -> None:
        now = self.clock.seconds()
        slot.last_answer = now
        slot.batches += 1
        slot.posts += len(analyses)
        slot.seconds += now - started
        self.metrics.node_batches.labels(slot.name).inc()
        self.metrics.node_posts.labels(slot.name).inc(len(analyses))
        self.metrics.node_seconds.labels(slot.name).observe(now - started)
        chunk.batch.fill(chunk.start, analyses)
        self._dispatch()

    def _failed(self, failure: Failure, chunk: _Chunk, slot: _Slot) -> None:
        slot.errors += 1
        slot.last_error = failure.getErrorMessage() or failure.type.__name__
        self.metrics.node_errors.labels(slot.name).inc()
        timed_out = failure.check(defer.TimeoutError) is not None
        self.log.warn(
            "analysis node {name} {what} a batch of {count} posts ({error}); sending it elsewhere",
            name=slot.name,
            what="did not answer in time for" if timed_out else "failed",
            count=len(chunk.texts),
            error=slot.last_error,
        )
        if slot.disconnected_at is None:
            if timed_out:
                # A node that sits on a batch this long is stuck or cut
                # off; it reconnects by itself if it is alive.
                self._drop(slot, f"no answer within {self.timeout}s")
            elif failure.check(wire.StaleModels):
                slot.models_tag = None
                self._send_models(slot)
            elif failure.check(wire.ClassifierMismatch, wire.NotRegistered):
                # Out of step with this hub: a new handshake puts it right.
                self._drop(slot, "out of step with the hub")
        self._pending.appendleft(chunk)
        self._dispatch()

    # -- reporting --

    def status(self) -> list[dict]:
        """
        Every connected node, then the last few that left, as JSON-ready
        dicts: C{name}, C{address}, C{state}, C{connected_since},
        C{disconnected_at}, C{workers}, C{capacity}, C{batches_in_flight},
        C{batches_done}, C{posts_done}, C{errors}, C{last_error},
        C{average_latency_ms}, C{versions}, C{applies_models} and
        C{models} (the tag of the learned models it holds).
        """
        slots = sorted(self._slots.values(), key=lambda s: s.name)
        departed = sorted(self._departed.values(), key=lambda s: -(s.disconnected_at or 0))
        return [s.status() for s in slots + departed]
