"""
The store of a hub whose posts live in PostgreSQL (C{[store] kind =
"postgresql"}) while the parts that have no PostgreSQL provider yet keep
theirs in the SQLite file at C{[store] path}.

Posts, collector cursors, source counters, dead letters, topics and the
stories' state (L{monitor.interfaces.IStore}, with the topic editing and
search counts of the pages) and the pages' reads of the posts
(L{monitor.store.interfaces.IPostReads}: the map, advocates and
detractors, volume per topic, trending terms) go to PostgreSQL; so do
accounts (users, sessions, login forms, API tokens:
L{monitor.store.postgresql_accounts}), learning (corrections and models:
L{monitor.store.postgresql_learning}) and the alerts
(L{monitor.store.postgresql_alerts}), whose providers the hub builds over
L{SplitStore.posts}.  What still runs its own SQLite SQL through
C{run_read}/C{run_write} goes to the file (L{IN_FILE}; nothing now); what
reads posts through that SQL sees none of PostgreSQL's (L{NOT_YET};
nothing now): the hub logs both at start when they are not empty.
"""

from __future__ import annotations

from twisted.application.service import MultiService, Service
from twisted.internet.defer import maybeDeferred
from zope.interface import implementer

from monitor.interfaces import IStore
from monitor.store.interfaces import IPostReads

__all__ = ["IN_FILE", "NOT_YET", "SplitStore"]

#: What a PostgreSQL hub still keeps in the SQLite file (not shared with
#: the other hubs): for the start-up warning and the docs.
IN_FILE: tuple[str, ...] = ()

#: What does not see the posts stored in PostgreSQL yet (it reads posts
#: with SQLite SQL of its own): for the start-up warning and the docs.
NOT_YET: tuple[str, ...] = ()


@implementer(IStore, IPostReads)
class SplitStore(MultiService):
    """
    L{IStore} and L{IPostReads} from C{posts}; C{run_read}/C{run_write}
    from C{rest}, a L{monitor.store.sqlite.SQLiteStore}.  Starts both at
    once and stops C{rest} last.
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

    # -- the pages' reads, in PostgreSQL ------------------------------------------

    def oldest_post(self, topic=None, since=None):
        return self.posts.oldest_post(topic, since)

    def geo_posts(self, topic=None, since=None, until=None, limit=1000):
        return self.posts.geo_posts(topic, since, until, limit)

    def author_sentiment(self, topic=None, since=None, until=None, min_posts=2, limit=10):
        return self.posts.author_sentiment(topic, since, until, min_posts, limit)

    def topic_volume(self, since=None, until=None):
        return self.posts.topic_volume(since, until)

    def recent_posts(self, limit=2000):
        return self.posts.recent_posts(limit)

    def topic_origins(self):
        return self.posts.topic_origins()

    def term_counts(self, topic, since, until, words=False, least=1, limit=None, only=None):
        return self.posts.term_counts(topic, since, until, words, least, limit, only)

    # -- the rest, in the SQLite file -------------------------------------------

    def run_read(self, interaction, *args):
        return self.rest.run_read(interaction, *args)

    def run_write(self, interaction, *args):
        return self.rest.run_write(interaction, *args)
