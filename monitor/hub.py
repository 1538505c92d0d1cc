"""
The hub: every service of the data flow, assembled from a configuration.
"""

from __future__ import annotations

import functools
import os
import secrets
import psycopg2

from twisted.application.service import IService, Service
from twisted.internet.defer import ensureDeferred, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from monitor.alerts.engine import AlertEngine
from monitor.analysis import Classifier
from monitor.analysis.local import LocalAnalyzer
from monitor.bus import ALERT, STATUS, EventBus
from monitor.analysis.process import ProcessAnalyzer
from monitor.cluster import make_cluster
from monitor.collect import make_source
from monitor.config import Config, ConfigProblem, parse_duration
from monitor.lag import ReactorLag
from monitor.learn.feedback import Feedback
from monitor.learn.learner import Learner
from monitor.learn.rescore import Rescorer
from monitor.learn.seed import SeedCorrections, seed_path
from monitor.metrics import Metrics
from monitor.nodes.pool import NodePool
from monitor.pipeline import Pipeline
from monitor.queue import make_queue
from monitor.stories import StoryClusterer, StoryService, features
from monitor.analysis.trending import excluded_words
from monitor.service import OrderedMultiService
from monitor.status import StatusService
from monitor.store.sqlite import OPEN_ERRORS, SQLiteStore, check_openable
from monitor.store.sqlite_accounts import SQLiteAccounts
from monitor.store.sqlite_alerts import SQLiteAlerts
from monitor.store.sqlite_learning import SQLiteLearning
from monitor.topics import TopicSet
from monitor.web.api import Api, TokenAuth
from monitor.web.pages.base import StoryView
from monitor.web.push import PushHub
from monitor.web.setup import SetupLink, setup_token_path, write_owner_only
from monitor.web.site import WebService
from monitor.web.ui import WebUI
from monitor.web.users import Users

#: The environment variable that holds the API token.
TOKEN_ENV = "MONITOR_API_TOKEN"

log = Logger()


def api_token(path: str, environ=os.environ, config_path: str = "the configuration") -> str:
    """
    The API token: from C{MONITOR_API_TOKEN} if set, else from C{path},
    made (readable by the owner only) at first start.  A file that cannot
    be read or written is a L{ConfigProblem} naming C{[web] token_file}.
    """
    token = environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    try:
        try:
            with open(path, encoding="utf-8") as f:
                token = f.read().strip()
        except FileNotFoundError:
            token = ""
        if not token:
            token = secrets.token_urlsafe(32)
            write_owner_only(path, token)
            log.info("made a new API token; it is in {path}", path=os.path.abspath(path))
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigProblem(config_path, "web.token_file", f"cannot use the API token file {path}: {_reason(e)}")
    return token


def _reason(e: Exception) -> str:
    """An OS error as a person says it: "Permission denied", not errno 13."""
    if isinstance(e, (FileExistsError, NotADirectoryError)):
        return "a part of the path is a file, not a directory"
    return getattr(e, "strerror", None) or str(e)


def make_store(config: Config, reactor):
    """
    The hub's store from C{[store]}: the SQLite file at C{path}; or, with
    C{kind = "postgresql"}, the database at C{dsn}, which keeps everything
    (C{path} is not opened then).
    """
    if config.store["kind"] != "postgresql":
        return SQLiteStore(config.resolve(config.store["path"]), reactor=reactor)
    from monitor.store.postgresql import PostgreSQLStore

    return PostgreSQLStore(config.store["dsn"], pool_size=config.store["pool_size"], reactor=reactor)


#: How often a hub on a shared store reads the active learned models again.
MODELS_EVERY = 30.0


def make_store_areas(config: Config, store, hub_name: str):
    """
    C{(accounts, alerts, learning)}: the providers of the store's other
    areas (L{monitor.store.interfaces}) over C{store}, the one
    L{make_store} made.  With C{kind = "postgresql"} all three are in
    PostgreSQL, over the store's pool, so every hub on the database
    shares them (C{hub_name} names this hub's claims on notifications).
    """
    if config.store["kind"] != "postgresql":
        return SQLiteAccounts(store), SQLiteAlerts(store), SQLiteLearning(store)
    from monitor.store.postgresql_accounts import PostgreSQLAccounts
    from monitor.store.postgresql_alerts import PostgreSQLAlerts
    from monitor.store.postgresql_learning import PostgreSQLLearning

    return PostgreSQLAccounts(store), PostgreSQLAlerts(store, hub_name), PostgreSQLLearning(store)


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
        # What happened, for whoever listens (monitor.bus): stored posts to
        # the alerts and the browsers, incidents to the browsers.
        self.bus = EventBus()
        self.store = make_store(config, reactor)
        self.queue = make_queue(config.queue, reactor, hub_name=config.hub["name"])
        # The other hubs (on a Redis queue) or none: who runs which collector
        # and the alerts, who is alive, what the others stored.
        self.cluster = make_cluster(config, reactor)
        # The store's other areas, each behind its own interface
        # (monitor.store.interfaces), handed to the parts that use them.
        self.accounts, self.alert_store, self.learning = make_store_areas(config, self.store, self.cluster.hub_name)
        self.topics = TopicSet(self.store)
        self.feedback = Feedback(self.learning, reactor)
        a = config.analysis
        classifier = Classifier(
            crisis_words=a["crisis_words"],
            complaint_words=a["complaint_words"],
            purchase_intent_words=a["purchase_intent_words"],
        )
        # The hub's own analyzers, in the order the node pool falls back on
        # them: worker processes ([analysis] workers >= 1), then threads.
        # With stories on, they work out each post's story features too
        # (what depends on the post alone), so that the reactor only
        # assigns posts to stories.
        s = config.stories
        story_features = features if s["enabled"] else None
        self.local_analyzers = [
            LocalAnalyzer(classifier, threads=a["threads"], reactor=reactor, features=story_features)
        ]
        if a["workers"] >= 1:
            self.local_analyzers.insert(
                0, ProcessAnalyzer(classifier, a["workers"], reactor=reactor, features=story_features)
            )
        # Remote analysis nodes while any are connected, else the above.
        self.nodes = NodePool.from_config(
            config.nodes, self.local_analyzers, classifier, self.metrics, reactor, features=story_features
        )
        # Models learned from people's corrections, applied after the built-in
        # analysis: by the nodes (the pool sends them each new set), else here.
        # On a store several hubs share, what another hub trained (or an
        # admin switched there) applies here within MODELS_EVERY seconds.
        shared = config.store["kind"] == "postgresql"
        self.learner = Learner(self.learning, self.feedback, classifier, config.learning, reactor=reactor,
                               reload_every=MODELS_EVERY if shared else None)  # fmt: skip
        learner, nodes = self.learner, self.nodes
        learner.listeners.append(lambda: nodes.set_models(learner.active))
        self.analyzer = self.nodes
        seed = seed_path(config.learning["seed"], config.resolve)
        if seed is not None and not seed.is_file():
            raise ConfigProblem(config.path, "learning.seed", f"no such file: {seed}")
        self.seed = SeedCorrections(self.store, self.learning, self.feedback, seed, classifier, reactor)
        self.rescorer = Rescorer(self.learning, self.learner, reactor)
        # Stories: every matched post put in a cluster by its words, links and
        # place before it is stored; the clusterer's state kept in the store.
        self.story_clusterer = StoryClusterer(
            threshold=s["threshold"],
            half_life=parse_duration(s["half_life"]),
            geo_weight=s["geo_weight"],
            max_stories=s["max_stories"],
            exclude=excluded_words(config.topics),
        )
        self.stories = StoryService(
            self.story_clusterer,
            reactor,
            fade_after=parse_duration(s["fade_after"]),
            # Off: no story is made, and the saved ones are left as they are.
            store=self.store if s["enabled"] else None,
        )
        self.pipeline = Pipeline(
            self.queue,
            self.topics,
            self.analyzer,
            self.store,
            self.metrics,
            batch_size=a["batch_size"],
            reactor=reactor,
            annotators=[self.stories] if s["enabled"] else [],
            bus=self.bus,
        )
        self.sources = [
            make_source(spec, self.queue, self.store, self.metrics, config.topics, reactor, self.topics)
            for spec in config.sources
        ]
        # Alerts see every stored batch; started before the pipeline so
        # that they have their history before the first batch.  The
        # pipeline puts posts in their stories before the store, so the
        # alerts see each post's story.
        self.alerts = AlertEngine(
            config,
            store=self.alert_store,
            metrics=self.metrics,
            topics=self.topics,
            sources=self.sources,
            bus=self.bus,
            reactor=reactor,
            stories=self.stories.clusterer if s["enabled"] else None,
            lead=False,
            # Rules saved on one hub reach the others' engines (the leader's).
            peers=self.cluster if config.store["kind"] == "postgresql" and not self.cluster.solo else None,
        )
        self.pipeline.add_sink(self.alerts)
        self.pipeline.add_sink(self.cluster)
        self.cluster.add_listener(self.alerts)
        # The collectors', queue's and nodes' state on the bus every few
        # seconds, with the hub that runs each collector (its lease).
        self.status = StatusService(
            self.bus,
            reactor,
            sources=self.sources,
            queue=self.queue,
            nodes=self.nodes,
            runs_on=functools.partial(_runs_on, self.cluster),
        )
        self._build_web(config, reactor)

        children = (
            ReactorLag(reactor, self.metrics.reactor_stall),
            self.store,
            # A queue with connections of its own (Redis) stops after the
            # pipeline has finished with what it read.
            *([self.queue] if IService.providedBy(self.queue) else []),
            self.cluster,
            _TopicSeed(self.topics, config.topics),
            self.learner,
            self.seed,
            self.rescorer,
            self.alerts,
            # Evaluates the rules here: alone always, else while this hub
            # holds the alerts lease.
            self.cluster.leased("alerts", self.alerts.evaluation),
            # Loads the saved stories before the pipeline starts, and saves
            # them after it has drained.
            self.stories,
            *self.local_analyzers,
            self.nodes,
            self.pipeline,
            self.status,
            self.web,
        )
        for child in children:
            child.setServiceParent(self)
        for source in self.sources:
            # Each collector runs on one hub at a time (alone: here).
            self.cluster.leased(_collector_lease(source.name), source).setServiceParent(self)

    def _build_web(self, config: Config, reactor) -> None:
        """
        The web part: the users, the live channel (which listens to the
        bus and the other hubs), the API, the pages, and the port that
        serves them all.
        """
        web = config.web
        self.users = Users(self.accounts, reactor, idle=web["session_hours"] * 3600, scrypt_n=web["scrypt_n"])
        self.push = PushHub(
            reactor,
            users=self.users,
            sessions=self.users.sockets,
            per_user=web["ws_per_user"],
            metrics=self.metrics,
            queue_limit=web["ws_queue"],
            interval=web["ws_interval"],
            stall_timeout=web["ws_stall_timeout"],
            ping_interval=web["ws_ping_interval"],
            max_message=web["ws_max_message"],
            message_rate=web["ws_message_rate"],
            message_burst=web["ws_message_burst"],
        )
        self.pipeline.add_sink(self.push)
        self.bus.subscribe(ALERT, functools.partial(self.push.publish, "alert"))
        self.bus.subscribe(STATUS, self.push.relay_status)
        self.cluster.add_listener(self.push)
        stories = StoryView(self.stories.clusterer, config.stories["enabled"])
        # The configured token, and those made on the admin page.
        token = api_token(config.resolve(web["token_file"]), config_path=config.path)
        self.api = Api(
            TokenAuth([token], stored=self.users),
            store=self.store,
            topics=self.topics,
            sources=self.sources,
            queue=self.queue,
            metrics=self.metrics,
            feedback=self.feedback,
            learner=self.learner,
            rescorer=self.rescorer,
            stories=stories,
            nodes=self.nodes,
            cluster=self.cluster,
            alerts=self.alerts,
        )
        setup = SetupLink(self.users, setup_token_path(config.resolve(web["token_file"])))
        ui = WebUI(
            self.users,
            reactor,
            store=self.store,
            topics=self.topics,
            sources=self.sources,
            status=self.status,
            stories=stories,
            alerts=self.alerts,
            feedback=self.feedback,
            learner=self.learner,
            learning=self.learning,
            rescorer=self.rescorer,
            setup=setup,
            config_path=config.path,
            tile_url=web["tile_url"],
            tile_attribution=web["tile_attribution"],
            cookie_secure=web["cookie_secure"],
        )
        self.web = WebService(web, self.users, self.push, setup, ui, self.api, reactor)

    def privilegedStartService(self):
        """
        Open the listening ports (before twistd drops privileges).  A port
        that is taken is one line naming the key to change, then exit.
        """
        Service.privilegedStartService(self)
        self._check_store()
        for child in self:
            try:
                child.privilegedStartService()
            except CannotListenError as e:
                key = "web.endpoint" if child is self.web else "nodes.endpoint"
                free = _free_port(e.port)
                problem = ConfigProblem(self.config.path, key, _cannot_listen(e))
                if free is not None and child is self.web:
                    problem.suggestion = f'endpoint = "tcp:{free}:interface={e.interface or "127.0.0.1"}"'
                _give_up(problem)

    def _check_store(self) -> None:
        """
        Try the store once before anything starts (the SQLite file at
        C{path}, or with kind = "postgresql" the server at C{dsn}), so a
        store that cannot work is one line and a non-zero exit, not a
        failed start.
        """
        if self.config.store["kind"] == "postgresql":
            # Blocking, like the file's check: the reactor is not running yet.
            try:
                psycopg2.connect(self.config.store["dsn"], connect_timeout=10).close()
            except psycopg2.Error as e:
                _give_up(ConfigProblem(self.config.path, "store.dsn", self._cannot_use_postgresql(e)))
            return
        path = self.config.resolve(self.config.store["path"])
        try:
            check_openable(path)
        except OPEN_ERRORS as e:
            _give_up(ConfigProblem(self.config.path, "store.path", f"cannot open the store {path}: {_reason(e)}"))

    def _cannot_use_postgresql(self, e: Exception) -> str:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"cannot use PostgreSQL at {self.store.where}: {reason}"

    async def _start(self) -> None:
        """
        Start the children in order, turning the problems a user fixes in
        the configuration into one line; then say where the hub is.
        """
        if self.config.store["kind"] == "postgresql":
            log.info(
                "everything is kept in PostgreSQL ({where}), shared by every hub on it: posts, "
                "accounts, alerts, learning and rollups; [store] path is not used",
                where=self.store.where,
            )
        for child in list(self):
            try:
                await maybeDeferred(child.startService)
            except CannotListenError as e:
                raise ConfigProblem(self.config.path, "nodes.endpoint", _cannot_listen(e)) from None
            except psycopg2.Error as e:
                if child is not self.store:
                    raise
                raise ConfigProblem(self.config.path, "store.dsn", self._cannot_use_postgresql(e)) from None
            except OPEN_ERRORS as e:
                if child is not self.store or self.config.store["kind"] == "postgresql":
                    raise
                where = self.config.store["path"]
                raise ConfigProblem(
                    self.config.path, "store.path", f"cannot open the store {where}: {_reason(e)}"
                ) from None
        await self.web.announce()

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


def _collector_lease(source: str) -> str:
    """The lease a hub holds while it runs the collector C{source}."""
    return f"collector:{source}"


def _runs_on(cluster, source: str):
    """Which hub runs the collector C{source}: the holder of its lease."""
    return cluster.holder_of(_collector_lease(source))


def _give_up(problem: ConfigProblem):
    """Say what to change, in one line, and exit before the reactor runs."""
    log.critical("{problem}", problem=str(problem))
    raise SystemExit(2)


def _free_port(taken) -> int | None:
    """A port near C{taken} that is free now, to suggest instead."""
    import socket

    try:
        start = int(taken)
    except (TypeError, ValueError):
        return None
    for port in range(start + 1, start + 20):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return None


def _cannot_listen(e: CannotListenError) -> str:
    reason = _reason(e.socketError) if e.socketError is not None else "refused"
    hint = " (is another hub running?)" if "in use" in reason else ""
    return f"cannot listen on {e.interface or '*'}:{e.port}: {reason}{hint}"
