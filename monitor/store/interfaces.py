"""
The narrow store interfaces the rest of the hub calls, one per area, with
the records and errors they speak in.

L{monitor.interfaces.IStore} is the posts side (batches, cursors, topics,
searches), with L{IPostReads} for what the pages read beyond that; these
are the others: accounts (L{IAccounts}), alerts (L{IAlertStore}) and what
is learned from people's corrections (L{ILearningStore}).  Callers pass and get domain values, never SQL; every
statement lives in a provider under C{monitor/store/} (the SQLite ones are
in C{sqlite_accounts.py}, C{sqlite_alerts.py}, C{sqlite_learning.py} and
C{sqlite_pages.py}; the PostgreSQL ones in C{postgresql_alerts.py} and
C{postgresql_pages.py}).
Every method returns a Deferred; a provider runs its statements off the
reactor thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from zope.interface import Interface

__all__ = [
    "Claim",
    "Correction",
    "DeliveryAttempt",
    "Duplicate",
    "IAccounts",
    "IAlertStore",
    "ILearningStore",
    "IPostReads",
    "LastAdmin",
    "NoSuchUser",
    "SessionRecord",
    "StoreConflict",
    "StoredRule",
    "TokenRecord",
    "UserRecord",
]


# -- errors ------------------------------------------------------------------


class StoreConflict(Exception):
    """
    The store refused a write because of what it already holds; the
    message says what (callers turn it into their own error).
    """


class Duplicate(StoreConflict):
    """A row with this unique key exists (a user name)."""


class NoSuchUser(StoreConflict):
    """No user has this name."""


class LastAdmin(StoreConflict):
    """The change would leave no admin."""


# -- records -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    name: str
    role: str
    password_hash: str
    created_at: float
    last_login_at: Optional[float] = None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """
    A stored session with its user; C{key} is the SHA-256 of the cookie.
    """

    key: str
    user_id: int
    user: str
    role: str
    csrf: str
    created_at: float
    last_seen_at: float


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: int
    name: str
    token_hash: str
    created_by: str
    created_at: float
    last_used_at: Optional[float] = None
    revoked_at: Optional[float] = None


@dataclass(frozen=True, slots=True)
class StoredRule:
    """
    A rule as stored: C{spec} is C{None} when the stored text is not JSON.
    """

    name: str
    spec: Optional[dict]
    origin: str


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """
    One try at delivering a notification (C{status}: the receiver's HTTP
    status or SMTP code, if any; C{seconds}: how long it took).
    """

    notification_id: str
    at: float
    outcome: str
    status: Optional[int]
    detail: str
    seconds: Optional[float]


@dataclass(frozen=True, slots=True)
class Claim:
    """
    The answer to taking a notification for delivery: C{taken}, this hub
    delivers it now; else C{wait} is how many seconds another hub still
    holds it, or C{None} when it is no longer pending (delivered or given
    up, maybe by another hub).
    """

    taken: bool
    wait: Optional[float] = None


@dataclass(frozen=True, slots=True)
class Correction:
    """
    The latest word of people on a post: its sentiment and the labels that
    do (C{True}) or do not (C{False}) apply.  C{text} is the post's text
    when the read joined it, else C{None}.
    """

    post_id: str
    sentiment: Optional[str]
    labels: dict
    by: str
    created_at: Optional[float]
    updated_at: Optional[float]
    text: Optional[str] = None


# -- interfaces --------------------------------------------------------------


class IAccounts(Interface):
    """
    Users, their login sessions and pre-login forms, and API tokens.  Only
    hashes of secrets reach the store.
    """

    def add_user(name, role, password_hash, now):
        """
        Create a user; fails with L{Duplicate} if the name is taken.
        """

    def add_first_admin(name, password_hash, now):
        """
        Create an admin unless one exists, in one write transaction; fires
        with whether this call made it (L{Duplicate} if the name is taken).
        """

    def user_by_name(name):
        """The L{UserRecord} of C{name}, or C{None}."""

    def list_users():
        """Every L{UserRecord}, by name."""

    def count_users():
        """How many users there are."""

    def has_admin():
        """Whether an admin exists."""

    def set_password(name, password_hash):
        """
        Replace the password hash and end the user's sessions; fires with
        the user's id, or C{None} if there is no such user.
        """

    def replace_hash(user_id, old, new):
        """
        Replace the hash C{old} by C{new} only if it is still C{old}; fires
        with whether it was.
        """

    def set_role(name, role):
        """
        Fires with the user's id; L{NoSuchUser}, or L{LastAdmin} if the
        last admin would lose the role.
        """

    def delete_user(name):
        """
        Fires with the deleted user's id; L{NoSuchUser}, or L{LastAdmin}.
        """

    def open_session(key, user_id, csrf, now):
        """Store a session (and the user's last login time)."""

    def sessions(keys):
        """The L{SessionRecord}s of those of C{keys} that are stored."""

    def touch_session(key, now):
        """Note that a session was used at C{now}."""

    def close_session(key):
        """Forget a session (nothing if there is none)."""

    def sweep(seen_before, created_before, forms_before):
        """
        Forget sessions last seen before C{seen_before} or created before
        C{created_before}, and login forms made before C{forms_before}.
        """

    def open_login_form(key, csrf, now, forms_before, most):
        """
        Store a pre-session; first forget those made before
        C{forms_before} and, oldest first, enough to keep at most C{most}.
        """

    def take_login_form(key, made_after):
        """
        Forget the pre-session C{key}; fires with its csrf token if it was
        made at C{made_after} or later, else C{None}.
        """

    def count_login_forms():
        """How many pre-sessions are stored."""

    def add_token(name, token_hash, created_by, now):
        """Store an API token (its hash)."""

    def live_tokens():
        """The L{TokenRecord}s not revoked."""

    def list_tokens():
        """Every L{TokenRecord}: live first, newest first."""

    def touch_token(token_id, now):
        """Note that a token was used at C{now}."""

    def revoke_token(token_id, now):
        """Revoke a live token; fires with whether one was."""


class IAlertStore(Interface):
    """
    Alert rules, incidents, notifications and their delivery attempts,
    channel states, and the reads of stored posts that the alerts need.
    """

    def sync_file_rules(specs, now):
        """
        Make the rules of origin C{file} equal C{specs} (rules saved
        through the API keep theirs); fires with the names removed.
        """

    def save_rule(name, spec, origin, now):
        """Create or replace a rule."""

    def delete_rule(name):
        """Remove a rule; fires with whether there was one."""

    def list_rules():
        """Every L{StoredRule}, by name."""

    def save_incidents(incidents, notifications, now):
        """
        Upsert L{monitor.alerts.incidents.Incident}s and add new
        L{monitor.alerts.notifiers.Notification}s, in one transaction (a
        notification already stored is left as it is).
        """

    def open_incidents():
        """The open and acknowledged incidents, oldest first."""

    def incident_state(incident_id):
        """An incident's state, or C{None} if there is no such incident."""

    def query_incidents(filters, limit, cursor):
        """
        A page of incidents (as dicts, each with its notifications and
        their attempts), newest opened first, and the next page's cursor.
        Filters: C{state} (or C{active}), C{rule}, C{topic}, C{source},
        C{severity}, C{since}, C{until}.  A bad cursor is a
        C{ValueError("cursor: ...")}.
        """

    def get_incident(incident_id):
        """One incident as in L{query_incidents}, or C{None}."""

    def pending_notifications():
        """The notifications still to deliver, oldest first."""

    def claim_notification(notification_id, seconds):
        """
        Take a pending notification for delivery by this hub for the next
        C{seconds} (or until its attempt is recorded): no other hub sharing
        the store takes it meanwhile.  Fires with a L{Claim}.
        """

    def record_attempt(notification, attempt):
        """
        A notification's new delivery state and, unless C{None}, the
        L{DeliveryAttempt} that led to it, in one transaction; this hub's
        claim on it ends.  Recording the same attempt again changes
        nothing, and a notification no longer pending stays as it is.
        """

    def save_channel(name, fingerprint, reason, at):
        """A channel's settings digest and why (and when) it is disabled."""

    def channel_states():
        """C{{name: (fingerprint, disabled_reason, disabled_at)}}."""

    def channel_counts():
        """C{{channel: {state: notifications}}}."""

    def latest_post_time():
        """The newest stored post's C{created_at}, or C{None}."""

    def minute_history(topics, since, until=None):
        """
        C{(counts, first)}: per topic, C{{minute: (posts, negative)}} from
        C{since} (up to C{until}), and the time of its first post ever.
        """

    def recent_posts(since, limit):
        """
        The newest stored posts' C{(uid, engagement, received_at)} created
        since C{since}, newest first, at most C{limit}.
        """

    def replay(topics, since, until, warm_from, limit, run):
        """
        Fire with C{run(topics, history, posts)}, called off the reactor
        (it may be slow): C{topics} the given ones or, if C{None}, every
        stored topic; C{history} the L{minute_history} of those topics from
        C{warm_from} up to C{since} (C{None} if C{warm_from} is); C{posts}
        an iterator over at most C{limit} stored L{monitor.model.Post}s of
        those topics (any post if C{topics} is C{None}) created in
        C{[since, until)}, oldest first.
        """


class ILearningStore(Interface):
    """
    People's corrections, the models learned from them, and the rewrites
    of stored posts' labels that re-scoring makes.
    """

    def put_correction(uid, sentiment, given, labels, by, now):
        """
        Merge a correction into the post's (C{given}: whether C{sentiment}
        was given; a label C{None} forgets the earlier word on it).  Fires
        with the merged L{Correction} (all empty if nothing is left, and
        then none is stored), or C{None} if there is no such post.
        """

    def correction(uid):
        """The L{Correction} of a post, with its text, or C{None}."""

    def corrections(uids):
        """C{{uid: Correction}} for those posts that have one (no text)."""

    def delete_correction(uid):
        """Forget a post's correction; fires with whether there was one."""

    def correction_page(limit, after=None, by=None, label=None):
        """
        C{(corrections, more)}: at most C{limit}, latest change first
        (ties by post id, descending), after the C{(updated_at, uid)} of
        C{after}; only those by C{by}, or that name C{label}.
        """

    def training_rows():
        """
        Every correction of a stored post as a dict (C{uid}, C{sentiment},
        C{labels}, C{updated_at}, C{text}, C{lang}), oldest first.
        """

    def is_fresh():
        """Whether there is no correction and no learned model yet."""

    def seed_corrections(corrections, now):
        """
        Add C{(uid, sentiment, labels, by)} corrections, leaving those of
        posts that have one already.
        """

    def latest_versions():
        """C{{(name, language): (examples, trained_through)}} of the newest version of each model."""

    def version_counts():
        """C{{(name, language): versions stored}}."""

    def is_held(name, language):
        """Whether an admin switched this model off."""

    def add_model(model, trained_through, activate, now):
        """
        Store a new L{monitor.learn.linear.LinearModel} version; if
        C{activate}, it becomes the model's only active version.
        """

    def set_active(name, language, on, by, version, now):
        """
        Activate the model's latest version (or C{version}) and lift any
        hold, or switch the model off and hold it; fires with whether
        there was such a version.
        """

    def active_models():
        """The active models' JSON, oldest version first."""

    def model_versions():
        """
        C{{(name, language): [version dict, ...]}}, oldest first: C{version},
        C{state}, C{examples}, C{evaluation}, C{created_at},
        C{activated_by}, C{held}.
        """

    def sentiment_sources(topic, latest):
        """
        Of the latest C{latest} posts (of C{topic}), how many have their
        sentiment from a learned model (C{model}), from VADER (C{vader})
        or none (C{unscored}).
        """

    def count_posts():
        """How many posts are stored (what a re-scoring goes through)."""

    def scored_posts(after, limit):
        """
        Up to C{limit} analysed stored posts with a row id over C{after},
        by id: C{(id, text, lang, sentiment, sentiment_by, labels)}.
        """

    def rescore(changes):
        """Write C{(sentiment, sentiment_by, labels, id)} rewrites."""


class IPostReads(Interface):
    """
    What the pages and dashboards read from the stored posts beyond
    C{IStore.query_posts} and C{IStore.stats}; provided by the posts store
    itself.  A C{topic} of C{None} means every post; times are unix
    seconds, C{since} inclusive and C{until} exclusive, on the time a post
    was filed under the topic (post time without a topic).
    """

    def oldest_post(topic=None, since=None):
        """When the oldest post (of C{topic}) since C{since} was written, or C{None}."""

    def geo_posts(topic=None, since=None, until=None, limit=1000):
        """The newest posts with coordinates, as the map's dicts, newest first."""

    def author_sentiment(topic=None, since=None, until=None, min_posts=2, limit=10):
        """
        C{{"advocates": [...], "detractors": [...]}}: the authors with at
        least C{min_posts} analysed posts, most positive (average compound
        at least 0.05) and most negative (at most -0.05) first.
        """

    def topic_volume(since=None, until=None):
        """C{[{"topic", "count"}]}, most posts first (then by name)."""

    def recent_posts(limit=2000):
        """The newest stored posts as L{monitor.model.Post}s, newest first."""

    def topic_origins():
        """C{{name: {"origin", "updated_at"}}} of the stored topics."""

    def term_counts(topic, since, until, words=False, least=1, limit=None, only=None):
        """
        Fire with C{(counts, forms, posts)} for C{topic}'s posts (every post
        for C{None}) in C{[since, until)}: how many posts use each term
        (words and phrases; only words with C{words}), at least C{least},
        the C{limit} most used, or only those in C{only}; the form each is
        shown in; and how many posts there are.  Exact, over every post.
        """
