"""
The hub: every service of the data flow, assembled from a configuration.
"""

from __future__ import annotations

import os
import secrets

from twisted.application.service import Service
from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger

from monitor.alerts.engine import AlertEngine
from monitor.analysis import Classifier
from monitor.analysis.local import LocalAnalyzer
from monitor.analysis.process import ProcessAnalyzer
from monitor.collect import make_source
from monitor.config import Config
from monitor.metrics import Metrics
from monitor.nodes.pool import NodePool
from monitor.pipeline import Pipeline
from monitor.queue import make_queue
from monitor.service import OrderedMultiService
from monitor.store.sqlite import SQLiteStore
from monitor.topics import TopicSet
from monitor.web.api import Api, TokenAuth
from monitor.web.site import WebService

#: The environment variable that holds the API token.
TOKEN_ENV = "MONITOR_API_TOKEN"

log = Logger()


def api_token(path: str, environ=os.environ) -> str:
    """
    The API token: from C{MONITOR_API_TOKEN} if set, else from C{path},
    made (readable by the owner only) at first start.
    """
    token = environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except FileNotFoundError:
        token = ""
    if not token:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(token + "\n")
        log.info("made a new API token; it is in {path}", path=os.path.abspath(path))
    return token


class _TopicSeed(Service):
    """
    Load the file's topics into the store once the store is open.
    """

    name = "topics"

    def __init__(self, topics: TopicSet, file_topics) -> None:
        self.topics = topics
        self.file_topics = file_topics

    def startService(self):
        super().startService()
        return ensureDeferred(self.topics.seed(self.file_topics))


class Hub(OrderedMultiService):
    """
    The root service.  Children start in data-flow order (store first,
    collectors last) and stop in reverse: collectors stop, the pipeline
    drains the queue into the store, then the store closes.
    """

    def __init__(self, config: Config, reactor=None) -> None:
        super().__init__(reactor)
        reactor = self.reactor
        self.config = config
        self.metrics = Metrics()
        self.store = SQLiteStore(config.resolve(config.store["path"]), reactor=reactor)
        self.queue = make_queue(config.queue, reactor)
        self.topics = TopicSet(self.store)
        a = config.analysis
        classifier = Classifier(
            crisis_words=a["crisis_words"],
            complaint_words=a["complaint_words"],
            purchase_intent_words=a["purchase_intent_words"],
        )
        # The hub's own analyzers, in the order the node pool falls back on
        # them: worker processes ([analysis] workers >= 1), then threads.
        self.local_analyzers = [LocalAnalyzer(classifier, threads=a["threads"], reactor=reactor)]
        if a.get("workers", 0) >= 1:
            self.local_analyzers.insert(0, ProcessAnalyzer(classifier, a["workers"], reactor=reactor))
        # Remote analysis nodes while any are connected, else the above.
        self.nodes = NodePool.from_config(config.nodes, self.local_analyzers, classifier, self.metrics, reactor)
        self.analyzer = self.nodes
        self.pipeline = Pipeline(
            self.queue, self.topics, self.analyzer, self.store, self.metrics, batch_size=a["batch_size"], reactor=reactor
        )
        self.sources = [
            make_source(spec, self.queue, self.store, self.metrics, config.topics, reactor, self.topics)
            for spec in config.sources
        ]
        # Alerts see every stored batch; started before the pipeline so
        # that they have their history before the first batch.
        self.alerts = AlertEngine(self, config, reactor=reactor)
        self.pipeline.add_sink(self.alerts)
        token = api_token(config.resolve(config.web["token_file"]))
        self.api = Api(self, TokenAuth([token]))
        self.web = WebService(self, reactor)  # pages, /api, /ws and /static on one port
        self.web.setName("web")

        children = (
            self.store,
            _TopicSeed(self.topics, config.topics),
            self.alerts,
            *self.local_analyzers,
            self.nodes,
            self.pipeline,
            self.web,
        )
        for child in children:
            child.setServiceParent(self)
        for source in self.sources:
            source.setServiceParent(self)

    def stopService(self):
        """
        Stop within C{hub.shutdown_timeout} seconds, whatever hangs.
        """
        timeout = self.config.hub["shutdown_timeout"]

        def gave_up(result, timeout):
            log.error("shutdown took longer than {timeout}s; stopping anyway", timeout=timeout)

        d = super().stopService()
        d.addTimeout(timeout, self.reactor, onTimeoutCancel=gave_up)
        return d
