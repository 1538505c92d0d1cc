"""
The store of a hub whose posts live in PostgreSQL (C{[store] kind =
"postgresql"}) while the parts that have no PostgreSQL provider yet keep
theirs in the SQLite file at C{[store] path}.

Posts, collector cursors, source counters, dead letters, topics and the
stories' state (L{monitor.interfaces.IStore}, with the topic editing and
search counts of the pages) go to PostgreSQL; so do accounts (users,
sessions, login forms, API tokens: L{monitor.store.postgresql_accounts})
and learning (corrections and models: L{monitor.store.postgresql_learning}),
whose providers the hub builds over L{SplitStore.posts}.  Alert rules,
incidents and deliveries (L{IN_FILE}) still run their own SQLite SQL
through C{run_read}/C{run_write}, so they go to the file.  What reads posts
through that SQL sees none of PostgreSQL's: L{NOT_YET} lists it, the hub
logs it at start and docs/configuration.rst says it.
"""

from __future__ import annotations

from twisted.application.service import MultiService, Service
from twisted.internet.defer import maybeDeferred
from zope.interface import implementer

from monitor.interfaces import IStore

__all__ = ["IN_FILE", "NOT_YET", "SplitStore"]

#: What a PostgreSQL hub still keeps in the SQLite file (not shared with
#: the other hubs): for the start-up warning and the docs.
IN_FILE = ("alert rules, incidents and deliveries",)

#: What does not see the posts stored in PostgreSQL yet (it reads posts
#: with SQLite SQL of its own): for the start-up warning and the docs.
NOT_YET = (
    "the map, advocates and detractors, volume per topic and topic origins of the pages (monitor.web.queries)",
    "alert history at start and rule backtests (monitor.alerts.sql, monitor.alerts.backtest)",
)


@implementer(IStore)
class SplitStore(MultiService):
    """
    L{IStore} from C{posts}; C{run_read}/C{run_write} from C{rest}, a
    L{monitor.store.sqlite.SQLiteStore}.  Starts both at once and stops
    C{rest} last.
    """

    def __init__(self, posts, rest) -> None:
        super().__init__()
        self.posts = posts
        self.rest = rest
        rest.setServiceParent(self)
        posts.setServiceParent(self)

    @property
    def path(self) -> str:
        return self.rest.path

    def startService(self):
        """
        Start the SQLite file and PostgreSQL together, so that work handed
        to either meanwhile (a login page served while the file migrates)
        waits for it rather than finding it not running; fails as the file
        failed, else as PostgreSQL did.
        """
        Service.startService(self)
        rest = maybeDeferred(self.rest.startService)
        posts = maybeDeferred(self.posts.startService)

        def rest_failed(failure):
            posts.addErrback(lambda _: None)  # the file's problem is the one reported
            return failure

        rest.addCallbacks(lambda _: posts, rest_failed)
        return rest

    def stopService(self):
        """Stop PostgreSQL, then the file, each when its work is done."""
        Service.stopService(self)
        d = maybeDeferred(self.posts.stopService)
        d.addBoth(lambda _: self.rest.stopService())
        return d

    def ready(self):
        """Fires when both are open; fails as the first that failed to start."""
        d = self.rest.ready()
        d.addCallback(lambda _: self.posts.ready())
        return d

    # -- the posts seam, in PostgreSQL ----------------------------------------

    def store_batch(self, posts, cursors, rejected=(), collected=None, updates=()):
        return self.posts.store_batch(posts, cursors, rejected, collected, updates)

    def source_counters(self, source):
        return self.posts.source_counters(source)

    def get_cursor(self, source):
        return self.posts.get_cursor(source)

    def dead_letter(self, source, raw, error, context):
        return self.posts.dead_letter(source, raw, error, context)

    def dead_letters(self, source=None, limit=100):
        return self.posts.dead_letters(source, limit)

    def query_posts(self, query):
        return self.posts.query_posts(query)

    def count_matching(self, query, most=10_000):
        return self.posts.count_matching(query, most)

    def count_posts(self):
        return self.posts.count_posts()

    def update_scores(self, changes):
        return self.posts.update_scores(changes)

    def stats(self, query):
        return self.posts.stats(query)

    def story_state(self):
        return self.posts.story_state()

    def save_story_state(self, state):
        return self.posts.save_story_state(state)

    def sync_file_topics(self, topics):
        return self.posts.sync_file_topics(topics)

    def list_topics(self):
        return self.posts.list_topics()

    def save_topic(self, topic, origin="web"):
        return self.posts.save_topic(topic, origin)

    def delete_topic(self, name):
        return self.posts.delete_topic(name)

    # -- the rest, in the SQLite file -------------------------------------------

    def run_read(self, interaction, *args):
        return self.rest.run_read(interaction, *args)

    def run_write(self, interaction, *args):
        return self.rest.run_write(interaction, *args)
