"""
An analysis node: a process that dials the hub, proves it shares the
secret, and scores the batches the hub sends it in its own worker
processes.

The node dials out (like a Buildbot worker), so it can sit behind NAT and the
hub needs no list of nodes.  L{ClientService} redials forever, backing off;
a refused handshake backs off further each time, so a node with the wrong
secret does not hammer the hub.
"""

from __future__ import annotations

import hmac
import os
import secrets
import socket
from typing import Any, Callable, Optional

from twisted.application.internet import ClientService
from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols import amp

from monitor.analysis import Classifier, versions as analysis_versions
from monitor.analysis.process import from_row, to_learned_row
from monitor.backoff import Backoff
from monitor.learn.apply import ModelSet, applied
from monitor.learn.linear import ModelFormatError
from monitor.nodes import wire

__all__ = ["AnalysisNode", "NodeProtocol", "default_name"]

#: Seconds the hub has to answer each step of the handshake.
HANDSHAKE_TIMEOUT = 10.0

#: Silence from the hub, in heartbeats, after which the node redials.
SILENT_HEARTBEATS = 3


def default_name() -> str:
    """
    Host name and process id: unique per node process, readable in logs.
    """
    return f"{socket.gethostname()}-{os.getpid()}"


class NodeProtocol(amp.AMP):
    """
    The node's end of one connection to the hub.
    """

    log = Logger()

    def __init__(self, node: "AnalysisNode") -> None:
        super().__init__()
        self.node = node
        self.is_registered = False
        self._silence: Optional[float] = None
        self._watchdog = None

    def registered(self, heartbeat: float) -> None:
        """
        The handshake is done: accept work, and expect to hear from the hub
        at least every C{heartbeat} seconds.
        """
        self.is_registered = True
        if heartbeat > 0:
            self._silence = SILENT_HEARTBEATS * heartbeat
            self._watchdog = self.node.reactor.callLater(self._silence, self._silent)

    def _silent(self) -> None:
        self._watchdog = None
        self.log.warn("heard nothing from the hub for {seconds}s; reconnecting", seconds=self._silence)
        self.transport.abortConnection()

    def ampBoxReceived(self, box) -> None:
        if self._watchdog is not None:
            self._watchdog.reset(self._silence)
        super().ampBoxReceived(box)

    def connectionLost(self, reason) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self.is_registered = False
        super().connectionLost(reason)

    @wire.Analyze.responder
    def analyze(self, classifier: str, texts: Any, models: Optional[str] = None, langs: Any = None) -> defer.Deferred:
        if not self.is_registered:
            raise wire.NotRegistered("the handshake is not finished")
        if classifier != self.node.digest:
            raise wire.ClassifierMismatch("this node was given other word lists")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise wire.AnalysisFailed("texts must be a list of strings")
        held = self.node.models
        if models is not None:
            if models != held.tag:
                raise wire.StaleModels(f"this node holds the models {held.tag or 'none'!r}, not {models!r}")
            if langs is None:
                langs = [None] * len(texts)
            if (
                not isinstance(langs, list)
                or len(langs) != len(texts)
                or not all(lang is None or (isinstance(lang, str) and len(lang) <= 35) for lang in langs)
            ):
                raise wire.AnalysisFailed("langs must be a list of language tags, one per text")
        d = defer.maybeDeferred(self.node.analyzer.score, texts)
        if models is not None:
            # The set held when the batch came, even if a new one arrives meanwhile.
            d.addCallback(self._learned, texts, langs, held)
        d.addCallbacks(lambda rows: {"results": rows}, self._failed, errbackArgs=(len(texts),))
        return d

    def _learned(self, rows, texts, langs, held) -> defer.Deferred:
        analyses = [from_row(r) for r in rows]
        d = defer.maybeDeferred(applied, self.node.reactor, analyses, texts, langs, held.active)
        return d.addCallback(lambda out: [to_learned_row(a) for a in out])

    @wire.Models.responder
    def models(self, tag: str, models: Any) -> dict:
        if not self.is_registered:
            raise wire.NotRegistered("the handshake is not finished")
        try:
            held = ModelSet.from_payload(models)
        except ModelFormatError as e:
            self.log.error("the hub sent models this node cannot read: {error}", error=e)
            raise wire.ModelsRefused(str(e)) from None
        if held.tag != tag:
            raise wire.ModelsRefused(f"the models sent are {held.tag!r}, not {tag!r}")
        self.node.models = held
        self.log.info("holding the hub's learned models {versions}", versions=held.versions)
        return {"tag": held.tag}

    def _failed(self, failure, count: int):
        self.log.failure("could not analyse a batch of {count} texts", failure, count=count)
        raise wire.AnalysisFailed(f"{failure.type.__name__}: {failure.getErrorMessage()}")

    @wire.Ping.responder
    def ping(self) -> dict:
        return {}


class _NodeFactory(Factory):
    noisy = False

    def __init__(self, node: "AnalysisNode") -> None:
        self.node = node

    def buildProtocol(self, addr) -> NodeProtocol:
        protocol = NodeProtocol(self.node)
        protocol.factory = self
        return protocol


def _process_analyzer(classifier: Classifier, workers: int, reactor) -> Service:
    from monitor.analysis.process import ProcessAnalyzer

    return ProcessAnalyzer(classifier, workers, reactor=reactor)


class AnalysisNode(MultiService):
    """
    The node's root service: the connection to the hub, and the worker
    processes, started at the first handshake with the hub's word lists.

    @ivar analyzer: what scores texts (a L{ProcessAnalyzer} unless
        C{analyzer_factory} says otherwise); C{None} before the first
        handshake.
    @ivar digest: the L{wire.classifier_digest} of the word lists in use.
    """

    log = Logger()

    def __init__(
        self,
        hub,
        secret: bytes,
        workers: int,
        name: Optional[str] = None,
        reactor: Optional[Any] = None,
        analyzer_factory: Optional[Callable[[Classifier, int, Any], Service]] = None,
        retry_policy: Optional[Callable[[int], float]] = None,
        versions: Optional[dict] = None,
        hub_description: Optional[str] = None,
    ) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers!r}")
        self.reactor = reactor
        self.hub = hub_description or repr(hub)
        self.secret = secret
        self.workers = workers
        self.capacity = 2 * workers  # one batch working and one waiting per worker
        self.node_name = name or default_name()
        self.versions = analysis_versions() if versions is None else versions
        self.analyzer_factory = analyzer_factory or _process_analyzer
        self.analyzer: Optional[Service] = None
        self.digest: Optional[str] = None
        #: The hub's learned models this node applies (none until sent).
        self.models = ModelSet({})
        self.failures = 0
        self.registrations = 0
        # ClientService's retryPolicy shape: the delay for a failure count.
        self._policy = retry_policy or Backoff(first=1.0, cap=60.0, factor=1.5).delay
        self.client = ClientService(
            hub,
            _NodeFactory(self),
            retryPolicy=self._retry_delay,
            clock=reactor,
            prepareConnection=self.handshake,
        )
        self.client.setName("hub-link")
        self.client.setServiceParent(self)

    def _retry_delay(self, attempt: int) -> float:
        # ClientService counts only failed connects; a refused handshake
        # follows a successful connect, so it is counted here.
        return self._policy(max(attempt, self.failures))

    def stopService(self) -> defer.Deferred:
        """
        Drop the hub first (it sends the batches in flight elsewhere), then
        stop the workers.
        """
        Service.stopService(self)
        d = defer.maybeDeferred(self.client.stopService)

        def stop_analyzer(_):
            if self.analyzer is not None and self.analyzer.running:
                return self.analyzer.stopService()

        return d.addCallback(stop_analyzer)

    # -- the handshake --

    def handshake(self, protocol) -> defer.Deferred:
        """
        ClientService's C{prepareConnection}: version, mutual proof of the
        secret, registration.

        It never fails.  A failed handshake closes the connection and
        returns normally: ClientService (Twisted 26.10) cannot take a
        rejected connection that then closes (no transition for a
        disconnect in its waiting state), so the node redials through the
        ordinary connection-lost path, with L{_retry_delay} backing off.
        """
        return defer.ensureDeferred(self._handshake(protocol))

    def _call(self, protocol, command, **kw) -> defer.Deferred:
        return protocol.callRemote(command, **kw).addTimeout(HANDSHAKE_TIMEOUT, self.reactor)

    async def _handshake(self, protocol) -> None:
        try:
            nonce = secrets.token_bytes(wire.NONCE_BYTES)
            hello = await self._call(protocol, wire.Hello, version=wire.PROTOCOL_VERSION, nonce=nonce)
            answer = await self._call(
                protocol,
                wire.Register,
                name=self.node_name,
                proof=wire.proof(self.secret, b"node", hello["nonce"], nonce),
                workers=self.workers,
                capacity=self.capacity,
                analyzers=[*wire.ANALYZERS, wire.MODELS],
                versions=self.versions,
                models=self.models.tag,
            )
            expected = wire.proof(self.secret, b"hub", nonce, hello["nonce"])
            if not hmac.compare_digest(answer["proof"], expected):
                raise wire.AuthenticationFailed("the hub does not know the secret")
            self._use_classifier(answer["classifier"])
        except Exception as e:
            self.failures += 1
            self.log.error(
                "handshake with the hub at {hub} failed: {kind}: {error}; retrying later",
                hub=self.hub,
                kind=type(e).__name__,
                error=e,
            )
            if protocol.transport is not None:  # None once the connection is gone
                protocol.transport.loseConnection()
            return
        self.failures = 0
        self.registrations += 1
        protocol.registered(answer["heartbeat"])
        self.log.info(
            "registered with the hub at {hub} as {name}: {workers} workers, {capacity} batches at once",
            hub=self.hub,
            name=self.node_name,
            workers=self.workers,
            capacity=self.capacity,
        )

    def _use_classifier(self, lists: dict) -> None:
        """
        Score with the hub's word lists; new worker processes only when
        they changed (a hub restarted with another configuration).
        """
        digest = wire.classifier_digest(lists)
        if digest == self.digest and self.analyzer is not None:
            return
        classifier = Classifier.from_dict(lists)
        old, self.analyzer = self.analyzer, None
        if old is not None:
            self.log.info("the hub's word lists changed; starting new workers")
            d = defer.maybeDeferred(self.removeService, old)
            d.addErrback(lambda f: self.log.failure("could not stop the old workers", f))
        analyzer = self.analyzer_factory(classifier, self.workers, self.reactor)
        analyzer.setServiceParent(self)
        self.analyzer = analyzer
        self.digest = digest
