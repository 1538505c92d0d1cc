"""
The contract of L{monitor.store.interfaces.IAccounts}, run against every
store provider (see C{conftest.PROVIDERS}).
"""

from __future__ import annotations

import pytest
import pytest_twisted
from zope.interface.verify import verifyObject

from monitor.store.interfaces import Duplicate, IAccounts, LastAdmin, NoSuchUser, SessionRecord, TokenRecord, UserRecord
from tests.store.conftest import ACCOUNTS_KINDS, backend_fixture

# Only the store kinds that provide accounts so far (see conftest).
backend = backend_fixture(ACCOUNTS_KINDS)

T0 = 1_700_000_000.0


def test_provides_the_interface(backend):
    """Every method of IAccounts is there with its signature."""
    assert verifyObject(IAccounts, backend.accounts)


@pytest_twisted.ensureDeferred
async def test_users_round_trip_in_name_order(backend):
    """A user comes back as written; the list is by name; counts follow."""
    a = backend.accounts
    assert await a.count_users() == 0 and not await a.has_admin()
    await a.add_user("zed", "viewer", "hash-z", T0)
    await a.add_user("ann", "admin", "hash-a", T0 + 1)
    ann = await a.user_by_name("ann")
    assert isinstance(ann, UserRecord)
    assert (ann.name, ann.role, ann.password_hash, ann.created_at, ann.last_login_at) == (
        "ann",
        "admin",
        "hash-a",
        T0 + 1,
        None,
    )
    assert await a.user_by_name("nobody") is None
    assert [u.name for u in await a.list_users()] == ["ann", "zed"]
    assert await a.count_users() == 2 and await a.has_admin()


@pytest_twisted.ensureDeferred
async def test_a_name_is_unique(backend):
    """A second user of the same name is refused and the first is left as it was."""
    a = backend.accounts
    await a.add_user("ann", "editor", "first", T0)
    with pytest.raises(Duplicate):
        await a.add_user("ann", "viewer", "second", T0)
    with pytest.raises(Duplicate):
        await a.add_first_admin("ann", "third", T0)
    user = await a.user_by_name("ann")
    assert (user.role, user.password_hash) == ("editor", "first")
    assert await a.count_users() == 1


@pytest_twisted.ensureDeferred
async def test_only_one_first_admin(backend):
    """The first admin is made once; after that the call makes nobody."""
    a = backend.accounts
    assert await a.add_first_admin("root", "h", T0) is True
    assert await a.add_first_admin("other", "h", T0) is False
    assert [u.name for u in await a.list_users()] == ["root"]


@pytest_twisted.ensureDeferred
async def test_password_change_ends_sessions_and_rehash_is_conditional(backend):
    """set_password replaces the hash and ends the sessions; replace_hash only replaces the hash it was told of."""
    a = backend.accounts
    await a.add_user("ann", "editor", "old", T0)
    ann = await a.user_by_name("ann")
    await a.open_session("k1", ann.id, "csrf", T0)
    assert await a.set_password("ann", "new") == ann.id
    assert await a.sessions(["k1"]) == []
    assert await a.set_password("nobody", "x") is None
    assert await a.replace_hash(ann.id, "old", "newer") is False
    assert await a.replace_hash(ann.id, "new", "newer") is True
    assert (await a.user_by_name("ann")).password_hash == "newer"


@pytest_twisted.ensureDeferred
async def test_the_last_admin_stays(backend):
    """The last admin can neither lose the role nor be deleted; with two, one may go."""
    a = backend.accounts
    await a.add_user("root", "admin", "h", T0)
    with pytest.raises(LastAdmin):
        await a.set_role("root", "viewer")
    with pytest.raises(LastAdmin):
        await a.delete_user("root")
    with pytest.raises(NoSuchUser):
        await a.set_role("nobody", "viewer")
    with pytest.raises(NoSuchUser):
        await a.delete_user("nobody")
    await a.add_user("ann", "viewer", "h", T0)
    ann_id = (await a.user_by_name("ann")).id
    assert await a.set_role("ann", "admin") == ann_id
    assert await a.set_role("root", "editor") == (await a.user_by_name("root")).id
    assert await a.delete_user("root") is not None
    assert [(u.name, u.role) for u in await a.list_users()] == [("ann", "admin")]


@pytest_twisted.ensureDeferred
async def test_sessions_round_trip_touch_close_and_sweep(backend):
    """A session comes back with its user; touching moves last seen; the sweep drops stale ones only."""
    a = backend.accounts
    await a.add_user("ann", "editor", "h", T0)
    ann = await a.user_by_name("ann")
    await a.open_session("old", ann.id, "c1", T0)
    await a.open_session("new", ann.id, "c2", T0 + 100)
    assert (await a.user_by_name("ann")).last_login_at == T0 + 100
    (record,) = await a.sessions(["new", "missing"])
    assert record == SessionRecord("new", ann.id, "ann", "editor", "c2", T0 + 100, T0 + 100)
    await a.touch_session("new", T0 + 500)
    assert (await a.sessions(["new"]))[0].last_seen_at == T0 + 500
    many = [f"x{i}" for i in range(1200)] + ["old", "new"]
    assert sorted(s.key for s in await a.sessions(many)) == ["new", "old"]
    await a.sweep(seen_before=T0 + 50, created_before=T0 - 1, forms_before=T0)
    assert [s.key for s in await a.sessions(["old", "new"])] == ["new"]
    await a.sweep(seen_before=0, created_before=T0 + 101, forms_before=T0)
    assert await a.sessions(["new"]) == []
    await a.open_session("again", ann.id, "c3", T0)
    await a.close_session("again")
    await a.close_session("again")
    assert await a.sessions(["again"]) == []


@pytest_twisted.ensureDeferred
async def test_deleting_a_user_ends_their_sessions(backend):
    a = backend.accounts
    await a.add_user("root", "admin", "h", T0)
    await a.add_user("ann", "viewer", "h", T0)
    await a.open_session("k", (await a.user_by_name("ann")).id, "c", T0)
    await a.delete_user("ann")
    assert await a.sessions(["k"]) == []


@pytest_twisted.ensureDeferred
async def test_login_forms_single_use_expire_and_capped(backend):
    """A pre-session gives its token once, not when too old; at most `most` are kept, oldest dropped first."""
    a = backend.accounts
    await a.open_login_form("f1", "c1", T0, T0 - 3600, 10)
    assert await a.take_login_form("f1", T0 - 10) == "c1"
    assert await a.take_login_form("f1", T0 - 10) is None
    await a.open_login_form("f2", "c2", T0, T0 - 3600, 10)
    assert await a.take_login_form("f2", T0 + 1) is None  # too old, and gone
    assert await a.count_login_forms() == 0
    for i in range(5):
        await a.open_login_form(f"g{i}", f"c{i}", T0 + i, T0 - 3600, 3)
    assert await a.count_login_forms() == 3
    assert await a.take_login_form("g1", 0) is None
    assert await a.take_login_form("g4", 0) == "c4"
    await a.open_login_form("late", "c", T0 + 7200, T0 + 3600, 3)
    assert await a.count_login_forms() == 1
    await a.sweep(seen_before=0, created_before=0, forms_before=T0 + 7201)
    assert await a.count_login_forms() == 0


@pytest_twisted.ensureDeferred
async def test_tokens_live_list_touch_and_revoke_once(backend):
    """Tokens: live ones are listed for the check; revoking is once; the list shows live first, newest first."""
    a = backend.accounts
    await a.add_token("ci", "hash-1", "root", T0)
    await a.add_token("bot", "hash-2", "root", T0 + 1)
    live = await a.live_tokens()
    assert [(t.name, t.token_hash) for t in live] == [("ci", "hash-1"), ("bot", "hash-2")]
    ci = live[0]
    assert isinstance(ci, TokenRecord) and (ci.created_by, ci.created_at, ci.last_used_at) == ("root", T0, None)
    await a.touch_token(ci.id, T0 + 60)
    assert await a.revoke_token(ci.id, T0 + 120) is True
    assert await a.revoke_token(ci.id, T0 + 130) is False
    assert await a.revoke_token(99999, T0) is False
    assert [t.name for t in await a.live_tokens()] == ["bot"]
    listed = await a.list_tokens()
    assert [t.name for t in listed] == ["bot", "ci"]
    assert (listed[1].last_used_at, listed[1].revoked_at) == (T0 + 60, T0 + 120)
    await a.add_token("new", "hash-3", "ann", T0 + 2)
    assert [t.name for t in await a.list_tokens()] == ["new", "bot", "ci"]
