"""
The seams of the hub.  Each part of the data flow is reached only through
one of these interfaces, so the hub is assembled from configuration and every
part can be tested, or replaced, on its own.
"""

from zope.interface import Attribute, Interface

from twisted.application.service import IService


class ISource(IService):
    """
    A collector: a service that turns one source into L{monitor.model.Post}s
    and puts them on the queue, honouring its backpressure.
    """

    name = Attribute("The configured name of the source, unique in the hub.")
    kind = Attribute("The kind of source: C{replay}, C{demo}, C{bluesky} ...")

    def status():
        """
        The state of the collector as a JSON-ready dict: at least C{name},
        C{kind}, C{state}, C{last_error}, C{last_post_at}, C{posts}
        (collected since start) and C{malformed}.
        """


class IQueue(Interface):
    """
    The buffer between collectors and analysis.  Bounded: a full queue makes
    C{put} wait, which is how collectors are slowed down.
    """

    def put(post):
        """
        Offer one post.  Returns a Deferred that fires when the queue has
        accepted it: at once while there is room, later when it is full.
        """

    def get(max_items):
        """
        Take up to C{max_items} posts.  Returns a Deferred that fires with a
        non-empty list as soon as there is at least one post.
        """

    def ack(posts):
        """
        Say that C{posts}, taken with C{get}, are fully processed.  A queue
        that survives a crash hands unacknowledged posts out again.
        Returns a Deferred.
        """

    def size():
        """
        How many posts wait in the queue now (for metrics).
        """

    def drained():
        """
        Whether this hub has nothing left in the queue that it must process
        before it may stop: the memory queue when it is empty; a queue
        shared by several hubs always (what this hub has not read stays for
        the others, or for this hub after a restart).
        """


class IAnalyzer(Interface):
    """
    Sentiment and classification for a batch of posts, off the reactor
    thread: in a local thread pool or on remote nodes.
    """

    def analyze(posts):
        """
        Analyse a list of posts.  Returns a Deferred firing with a list of
        L{monitor.model.Analysis}, one per post, in the same order.  An
        analyzer that is a service fails with
        L{monitor.analysis.local.AnalyzerNotRunning} while it is not
        running (tests/analysis/test_contract.py holds every provider to
        this).
        """


class IAnalysisNode(Interface):
    """
    One registered analysis node as the hub's node pool sees it, whatever
    carries the work there (AMP to another process, a fake in tests).
    """

    name = Attribute("The node's name, unique among connected nodes.")
    address = Attribute("Where the node connects from, for people.")
    workers = Attribute("How many processes score on the node.")
    capacity = Attribute("How many batches the node takes at once.")
    versions = Attribute("The node's L{monitor.analysis.versions}().")

    def analyze(texts):
        """
        Score a list of texts.  Returns a Deferred firing with one row
        (L{monitor.analysis.process.to_row}) per text, in order; it fails
        when the node errs or the connection is lost.
        """

    def ping():
        """
        Returns a Deferred firing when the node has answered.
        """

    def disconnect():
        """
        Drop the node.  Its batches in flight fail (and are sent elsewhere).
        """


class IStore(IService):
    """
    Durable state: posts with their analysis, collector cursors, topics and
    dead letters.  Idempotent on a post's C{uid}.
    """

    def store_batch(posts, cursors, rejected=(), collected=None, updates=()):
        """
        Write analysed posts, keep the payloads in C{rejected}
        (L{monitor.model.Rejected}) as dead letters and advance collector
        cursors, in one transaction.  C{cursors} maps a source name to its
        new position.  Posts whose uid is already stored are ignored.
        C{collected} (posts per source the batch accounts for, also those
        not stored) and the rejected payloads are added to the sources'
        all-time counters in the same transaction.  C{updates}
        (L{monitor.model.Enriched}) set the author fields of stored posts,
        after this batch's posts are written.  A post's C{story} is stored
        with it.
        Returns a Deferred firing with the uids of the posts newly stored
        (each once, in the order of C{posts}): the pipeline tells only
        those to the rest of the hub.
        """

    def source_counters(source):
        """
        Returns a Deferred firing with C{{"posts": n, "malformed": m}}, the
        all-time counters of C{source}.
        """

    def get_cursor(source):
        """
        Returns a Deferred firing with the saved position of C{source}, or
        C{None}.
        """

    def dead_letter(source, raw, error, context):
        """
        Keep a malformed payload aside: its raw bytes, what was wrong with it
        and where it came from.  Returns a Deferred.
        """

    def dead_letters(source=None, limit=100):
        """
        Returns a Deferred firing with the newest dead letters as dicts.
        """

    def query_posts(query):
        """
        Search posts with a L{monitor.store.PostQuery}.  Returns a Deferred
        firing with C{(posts, next_cursor)}, posts as API dicts.
        """

    def stats(query):
        """
        Aggregate posts with a L{monitor.store.StatsQuery}.  Returns a
        Deferred firing with the stats dict of the API.
        """

    def update_scores(changes):
        """
        Write re-scored posts' C{(sentiment, sentiment_by, labels, id)} and
        keep the statistics' rollups in step, in one transaction.  Returns
        a Deferred.
        """

    def story_state():
        """
        Returns a Deferred firing with the stories' state saved last by
        L{save_story_state} (a dict), or C{None} if none was.
        """

    def save_story_state(state):
        """
        Keep C{state}, a JSON object as text, as the stories' saved state,
        replacing the last one.  Returns a Deferred.
        """

    def sync_file_topics(topics):
        """
        Make the stored topics that came from the configuration file equal
        C{topics}; topics edited in the web UI are left alone.  Returns a
        Deferred.
        """

    def list_topics():
        """
        Returns a Deferred firing with every stored L{monitor.model.Topic}.
        """


class IAnnotator(Interface):
    """
    Something that gives matched, analysed posts a field of its own before
    they are stored, so the stored row, the API and the live push all carry
    it: the stories (L{monitor.model.Post.story}).
    """

    def annotate(posts):
        """
        Called on the reactor thread, in queue order, with each batch's
        matched posts after analysis and before the store; sets fields on
        them in place.  Must not block; may return a Deferred (the batch,
        and those after it, wait for it).  An exception or a failed
        Deferred is logged and the posts are stored as they are.
        """


class ISink(Interface):
    """
    Something that receives every analysed post after it is stored: the
    live push channel, the alert engine, window statistics.
    """

    def posts_stored(posts):
        """
        Called on the reactor thread with a batch of stored posts.  Must not
        block; exceptions are logged and do not reach the pipeline.
        """


class INotifier(Interface):
    """
    One way to tell people about an incident: a Slack webhook, e-mail, a
    signed webhook, the live channel to browsers.  A notifier makes one
    attempt and reports how it went; the outbox owns retries, rate limits
    and the record of every attempt.
    """

    name = Attribute("The configured name of the channel, unique in the hub.")
    kind = Attribute("The kind of channel: C{slack}, C{email}, C{webhook}, C{live}.")

    def send(notification):
        """
        Deliver one L{monitor.alerts.notifiers.Notification} (its C{id} is
        the same on every retry).  Returns a Deferred firing with a
        L{monitor.alerts.notifiers.Delivery}: sent, retry (maybe after a
        given delay), failed, disabled (stop using this channel) or
        skipped.  Delivery problems are outcomes, never errors; the
        Deferred may be cancelled when the attempt takes too long.
        """


class ICluster(Interface):
    """
    The hubs that work as one (L{monitor.cluster}): alone with the memory
    queue, several on a Redis queue.  Also an L{ISink} of the pipeline, for
    what this hub stored.
    """

    solo = Attribute("True when this hub is alone (every leased service simply runs).")
    hub_name = Attribute("This hub's name among the others ([hub] name).")

    def leased(name, service):
        """
        The service to run in C{service}'s place: one that runs it only
        while this hub holds the lease C{name} (alone: C{service} itself).
        """

    def add_listener(sink):
        """
        Give the L{ISink} C{sink} every batch of posts stored by another hub.
        """

    def notify(what, **fields):
        """
        Tell the other hubs that C{what} (e.g. C{"rules"}) changed in the
        shared store; fire and forget (alone: nothing).
        """

    def on_change(what, callback):
        """
        Call C{callback(notice)} for each notice of C{what} from another
        hub (a dict: C{hub}, C{what} and the fields given to L{notify}).
        """

    def hubs():
        """
        A Deferred list of the live hubs' heartbeats (dicts with C{name},
        C{host}, C{pid}, C{started}, C{last_seen}, C{leases},
        C{posts_per_second}, C{this}).
        """

    def holders():
        """
        A Deferred dict: lease name to the name of the hub that holds it.
        """

    def holder_of(lease):
        """
        The name of the hub that holds C{lease} as last seen (C{None}: none
        known), without waiting: for pages and the live status.
        """
