"""
Accounts and learning on one PostgreSQL database shared by several hubs:
each "hub" here is its own L{PostgreSQLStore} (its own pool) on the same
database, as two processes would be.  What one writes the other reads, and
the decisions that depend on the others' writes (the first admin, the last
admin, merging corrections, the one active model) hold when they race;
API tokens and the active models, which a hub keeps in memory, are read
again in time.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet.defer import DeferredList, gatherResults
from twisted.internet.task import Clock, deferLater
from twisted.internet.threads import deferToThread

from monitor.analysis import Classifier
from monitor.learn.feedback import Feedback
from monitor.learn.learner import Learner
from monitor.learn.linear import LinearModel
from monitor.model import Analysis, Post
from monitor.store.interfaces import LastAdmin
from monitor.store.postgresql import PostgreSQLStore
from monitor.store.postgresql_accounts import PostgreSQLAccounts
from monitor.store.postgresql_learning import PostgreSQLLearning
from monitor.web.users import TOKENS_EVERY, Users

pytestmark = pytest.mark.timeout(60)

T0 = 1_700_000_000.0
HUBS = 2
CALLS_EACH = 6


@pytest_twisted.async_yield_fixture
async def stores(reactor, postgres_dsn):
    """Two started stores on one new database."""
    made = [PostgreSQLStore(postgres_dsn, pool_size=CALLS_EACH, reactor=reactor) for _ in range(HUBS)]
    for store in made:
        await store.startService()
    try:
        yield made
    finally:
        for store in made:
            await store.stopService()


@pytest_twisted.ensureDeferred
async def test_of_many_racing_first_admins_exactly_one_is_made(stores):
    """Hubs opening the first admin at once, many calls each: one call makes it, the others make nobody."""
    accounts = [PostgreSQLAccounts(store) for store in stores]
    calls = [a.add_first_admin(f"root{hub}-{n}", "h", T0) for n in range(CALLS_EACH) for hub, a in enumerate(accounts)]
    made = await gatherResults(calls, consumeErrors=True)
    assert made.count(True) == 1 and made.count(False) == len(calls) - 1
    users = await accounts[1].list_users()
    assert [u.role for u in users] == ["admin"]


@pytest_twisted.ensureDeferred
async def test_two_hubs_demoting_the_two_admins_at_once_keep_one(stores):
    """Two admins demoted at once on two hubs: one demotion goes through, the other is LastAdmin."""
    one, two = (PostgreSQLAccounts(store) for store in stores)
    await one.add_user("ann", "admin", "h", T0)
    await one.add_user("bob", "admin", "h", T0)
    results = await DeferredList([one.set_role("ann", "viewer"), two.set_role("bob", "viewer")], consumeErrors=True)
    failures = [r for ok, r in results if not ok]
    assert len(failures) == 1 and failures[0].check(LastAdmin)
    assert [u.role for u in await two.list_users()].count("admin") == 1


@pytest_twisted.ensureDeferred
async def test_a_session_opened_on_one_hub_is_seen_touched_and_closed_on_the_other(stores):
    """Sessions live in the shared database: opened here, refreshed and ended there."""
    one, two = (PostgreSQLAccounts(store) for store in stores)
    await one.add_user("ann", "editor", "h", T0)
    ann = await two.user_by_name("ann")
    await one.open_session("key", ann.id, "csrf", T0)
    (record,) = await two.sessions(["key"])
    assert (record.user, record.role, record.csrf) == ("ann", "editor", "csrf")
    await two.touch_session("key", T0 + 300)
    await one.touch_session("key", T0 + 200)  # a late refresh does not move it back
    assert (await one.sessions(["key"]))[0].last_seen_at == T0 + 300
    await two.close_session("key")
    assert await one.sessions(["key"]) == []


@pytest_twisted.ensureDeferred
async def test_a_login_form_is_taken_once_across_hubs(stores):
    """The same pre-session posted to two hubs at once gives its token to one of them."""
    one, two = (PostgreSQLAccounts(store) for store in stores)
    await one.open_login_form("form", "csrf", T0, T0 - 3600, 100)
    taken = await gatherResults([one.take_login_form("form", T0 - 10), two.take_login_form("form", T0 - 10)])
    assert sorted(taken, key=str) == [None, "csrf"]


def _post(n):
    return Post(source="s", network="s", native_id=str(n), text=f"post {n}", author="a", created_at=T0 + n,
                lang="en", topics=("Acme",), analysis=Analysis(0.1, 0.0, 1.0, 0.0, "neutral", ()))  # fmt: skip


@pytest_twisted.ensureDeferred
async def test_racing_corrections_of_one_post_all_merge(stores):
    """Each hub corrects its own labels of one post at once: every label is in the merged correction."""
    await stores[0].store_batch([_post(1)], {})
    learnings = [PostgreSQLLearning(store) for store in stores]
    calls = [
        learning.put_correction("s:1", None, False, {f"label{hub}{n}": True}, f"user{hub}", T0 + n)
        for n in range(CALLS_EACH)
        for hub, learning in enumerate(learnings)
    ]
    await gatherResults(calls, consumeErrors=True)
    merged = await learnings[1].correction("s:1")
    assert set(merged.labels) == {f"label{hub}{n}" for hub in range(HUBS) for n in range(CALLS_EACH)}


def _model(version):
    return LinearModel("sentiment", version, ("negative", "neutral", "positive"), [0.0, 0.0, 0.0], {},
                       language="en", examples=30, evaluation={"macro_f1": 0.8})  # fmt: skip


@pytest_twisted.ensureDeferred
async def test_racing_activations_leave_one_active_version(stores):
    """Hubs storing and activating versions of one model at once: each is stored, one is active."""
    learnings = [PostgreSQLLearning(store) for store in stores]
    calls = [
        learning.add_model(_model(f"sentiment-{hub}-{n}"), T0, True, T0 + n)
        for n in range(CALLS_EACH)
        for hub, learning in enumerate(learnings)
    ]
    await gatherResults(calls, consumeErrors=True)
    assert await learnings[0].version_counts() == {("sentiment", "en"): HUBS * CALLS_EACH}
    assert len(await learnings[1].active_models()) == 1


@pytest_twisted.ensureDeferred
async def test_a_token_made_or_revoked_on_one_hub_counts_on_the_other_within_the_reload(reactor, stores):
    """API tokens are checked in memory: each hub reads them again every TOKENS_EVERY seconds."""
    clock = Clock()
    one, two = (Users(PostgreSQLAccounts(store), clock) for store in stores)
    for users in (one, two):
        await users.startService()

    async def two_comes_to(token, live):
        """Whether hub two, after the reload's time, comes to find the token C{live} (or not)."""
        clock.advance(TOKENS_EVERY)
        for _ in range(200):  # the reload's query on the real server: a bounded wait
            if two.check_token(token.encode()) is live:
                return True
            await deferLater(reactor, 0.01, lambda: None)
        return False

    try:
        token = await one.create_token("ci", "root")
        assert not two.check_token(token.encode())
        assert await two_comes_to(token, True)
        [listed] = await one.list_tokens()
        assert await one.revoke_token(listed["id"], "root")
        assert two.check_token(token.encode())  # until the reload
        assert await two_comes_to(token, False)
    finally:
        for users in (one, two):
            await users.stopService()


@pytest_twisted.ensureDeferred
async def test_sessions_and_tokens_written_again_are_written_once(stores):
    """What a retry after an unreported commit does: the same session or token stored twice is one, no error."""
    accounts = PostgreSQLAccounts(stores[0])
    await accounts.add_user("ann", "editor", "h", T0)
    ann = await accounts.user_by_name("ann")
    for _ in range(2):
        await accounts.open_session("key", ann.id, "csrf", T0)
        await accounts.add_token("ci", "hash", "root", T0)
    assert len(await accounts.sessions(["key"])) == 1
    assert [t.name for t in await accounts.list_tokens()] == ["ci"]


@pytest_twisted.ensureDeferred
async def test_a_login_during_a_server_restart_waits_and_lands(reactor, postgres_server, stores):
    """A session opened while the server is down is stored once it is back: a restart logs nobody out."""
    accounts = PostgreSQLAccounts(stores[0])
    await accounts.add_user("ann", "editor", "h", T0)
    ann = await accounts.user_by_name("ann")
    await deferToThread(postgres_server.stop)
    reactor.callLater(0.5, lambda: deferToThread(postgres_server.start))
    await accounts.open_session("key", ann.id, "csrf", T0)
    (record,) = await PostgreSQLAccounts(stores[1]).sessions(["key"])
    assert record.user == "ann" and stores[0].reconnects >= 1


@pytest_twisted.ensureDeferred
async def test_a_model_activated_on_one_hub_applies_on_the_other_within_the_reload(reactor, stores):
    """A hub applies the active models another hub stored once it reads them again (every reload_every s)."""
    clock = Clock()
    settings = {"enabled": False, "min_examples": 20, "min_per_class": 3, "retrain_after": 10, "delay": 0,
                "folds": 3, "auto_activate": True}  # fmt: skip
    learning = PostgreSQLLearning(stores[1])
    learner = Learner(learning, Feedback(learning, clock), Classifier(), settings, reactor=clock, reload_every=30.0)
    told = []
    learner.listeners.append(lambda: told.append(dict(learner.versions())))
    await learner.startService()
    try:
        assert learner.active == {}
        await PostgreSQLLearning(stores[0]).add_model(_model("sentiment-7"), T0, True, T0)
        clock.advance(30.0)
        for _ in range(200):  # the reload's query on the real server: a bounded wait
            if learner.active:
                break
            await deferLater(reactor, 0.01, lambda: None)
        assert [m.version for m in learner.active.values()] == ["sentiment-7"]
        assert len(told) == 1
        clock.advance(30.0)  # nothing changed: nobody is told again
        await deferLater(reactor, 0.2, lambda: None)
        assert len(told) == 1
    finally:
        await learner.stopService()
