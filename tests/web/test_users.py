"""
Users, sessions and API tokens in a real SQLite store; the topic form; the
small helpers the pages rely on for safety.
"""

import sqlite3
import time

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from monitor.model import Topic
from monitor.store.sqlite import SQLiteStore
from monitor.store.sqlite_accounts import SQLiteAccounts
from monitor.web.forms import topic_form, topic_values
from tests.store.postgres import postgres_dsn, postgres_server  # noqa: F401 (fixtures)
from monitor.web.users import (
    LoginGuard,
    Throttle,
    UserError,
    Users,
    add_user_command,
    add_user_sync,
    check_password,
    hash_password,
)


def test_password_hash_is_salted_scrypt():
    """Hashes are scrypt with a random salt; only the right password matches."""
    a, b = hash_password("correct horse"), hash_password("correct horse")
    assert a.startswith("scrypt$") and a != b
    assert check_password("correct horse", a)
    assert not check_password("Correct horse", a)
    assert not check_password("correct horse", "md5$nonsense")


@pytest_twisted.async_yield_fixture
async def users(reactor, tmp_path):
    store = SQLiteStore(tmp_path / "m.sqlite", reactor=reactor)
    await store.startService()
    users = Users(SQLiteAccounts(store), reactor, idle=3600)
    await users.startService()
    yield users
    users.stopService()
    await store.stopService()


@pytest_twisted.ensureDeferred
async def test_login_session_and_logout(users):
    """The right password opens a session found by its cookie; logout ends it; only hashes are stored."""
    await users.add_user("ann", "editor", "a good password")
    assert await users.authenticate("ann", "wrong password") is None
    assert await users.authenticate("nobody", "a good password") is None
    user_id, name, role = await users.authenticate("ann", "a good password")
    token, csrf = await users.open_session(user_id)
    session = await users.session(token)
    assert (session.user, session.role, session.csrf) == ("ann", "editor", csrf)
    assert session.may("viewer") and session.may("editor") and not session.may("admin")
    assert await users.session(token + "x") is None
    rows = await users.accounts.store.run_read(lambda t: t.execute("SELECT id_hash FROM sessions").fetchall())
    assert rows and token not in rows[0][0]
    await users.close_session(session.key)
    assert await users.session(token) is None


@pytest_twisted.ensureDeferred
async def test_idle_sessions_expire(reactor, tmp_path):
    """A session unused for longer than the idle time is gone."""
    store = SQLiteStore(tmp_path / "m.sqlite", reactor=reactor)
    await store.startService()
    clock = Clock()
    clock.advance(time.time())
    clock.getThreadPool = reactor.getThreadPool
    clock.callFromThread = reactor.callFromThread
    try:
        users = Users(SQLiteAccounts(store), clock, idle=60)
        await users.add_user("ann", "viewer", "a good password")
        user_id, _, _ = await users.authenticate("ann", "a good password")
        token, _ = await users.open_session(user_id)
        clock.advance(59)
        assert await users.session(token) is not None
        clock.advance(61)
        assert await users.session(token) is None
    finally:
        await store.stopService()


@pytest_twisted.ensureDeferred
async def test_password_change_ends_sessions(users):
    """Setting a new password logs the user out everywhere."""
    await users.add_user("ann", "viewer", "a good password")
    user_id, _, _ = await users.authenticate("ann", "a good password")
    token, _ = await users.open_session(user_id)
    await users.set_password("ann", "another password")
    assert await users.session(token) is None
    assert await users.authenticate("ann", "another password") is not None


@pytest_twisted.ensureDeferred
async def test_user_rules(users):
    """Names are unique, passwords long enough, and the last admin cannot be demoted or deleted."""
    await users.add_user("root", "admin", "a good password")
    with pytest.raises(UserError) as e:
        await users.add_user("root", "viewer", "a good password")
    assert e.value.field == "name"
    with pytest.raises(UserError) as e:
        await users.add_user("bob", "viewer", "short")
    assert e.value.field == "password"
    with pytest.raises(UserError):
        await users.add_user("bob", "superuser", "a good password")
    with pytest.raises(UserError):
        await users.add_user("bad name!", "viewer", "a good password")
    with pytest.raises(UserError):
        await users.set_role("root", "viewer")
    with pytest.raises(UserError):
        await users.delete_user("root")
    await users.add_user("second", "admin", "a good password")
    await users.set_role("root", "viewer")
    await users.delete_user("root")
    assert [u["name"] for u in await users.list_users()] == ["second"]


@pytest_twisted.ensureDeferred
async def test_api_tokens_are_hashed_and_revocable(users):
    """A created token works at once, is stored only as a hash, and stops working when revoked."""
    token = await users.create_token("grafana", "ann")
    assert users.check_token(token.encode())
    assert not users.check_token(b"mon_guess")
    stored = await users.accounts.store.run_read(lambda t: t.execute("SELECT token_hash FROM api_tokens").fetchall())
    assert token not in stored[0][0]
    [listed] = await users.list_tokens()
    assert listed["name"] == "grafana" and listed["revoked_at"] is None
    assert await users.revoke_token(listed["id"], "ann")
    assert not users.check_token(token.encode())
    assert not await users.revoke_token(listed["id"], "ann")
    with pytest.raises(UserError):
        await users.create_token("  ", "ann")


def test_throttle_counts_each_attempt_before_the_check():
    """Every attempt counts when it begins; refused ones too; a key is blocked until the oldest ages out; success clears it."""
    clock = Clock()
    throttle = Throttle(clock, limit=3, window=60, concurrent=10)
    for _ in range(3):
        assert throttle.begin("1.2.3.4")
    # Three checks still running: the fourth is refused before any result.
    assert not throttle.begin("1.2.3.4")
    for _ in range(3):
        throttle.end("1.2.3.4", ok=False)
    assert throttle.blocked("1.2.3.4") and not throttle.blocked("5.6.7.8")
    clock.advance(30)
    for _ in range(3):
        assert not throttle.begin("1.2.3.4")  # counted: keeps the key blocked
    clock.advance(31)
    assert throttle.blocked("1.2.3.4")
    clock.advance(30)
    assert not throttle.blocked("1.2.3.4")
    assert throttle.begin("x")
    throttle.end("x", ok=True)
    assert not throttle.blocked("x") and throttle.begin("x")


def test_throttle_caps_concurrent_checks():
    """At most `concurrent` attempts of one key are checked at once; the rest are refused at once."""
    throttle = Throttle(Clock(), limit=100, window=60, concurrent=2)
    assert throttle.begin("k") and throttle.begin("k")
    assert not throttle.begin("k")
    throttle.end("k", ok=False)
    assert throttle.begin("k")


def test_login_guard_counts_a_burst_on_both_keys():
    """Thirty attempts at once: two reach the password check, the rest are refused and still counted for the account."""
    guard = LoginGuard(Clock(), per_address=10, per_account=20, concurrent_address=4, concurrent_account=2)
    admitted = [a for a in (guard.admit("ann", "10.0.0.1") for _ in range(30)) if a is not None]
    assert len(admitted) == 2
    for a in admitted:
        a.finish(False)
    assert guard.by_account.blocked("ann") and guard.by_address.blocked("10.0.0.1")
    # The right password after the burst is refused without a check, from anywhere.
    assert guard.admit("ann", "10.0.0.2") is None
    assert guard.admit("bob", "10.0.0.2") is not None


def test_add_user_command(tmp_path):
    """The command-line helper reads the password file, creates the user, and resets it when run again."""
    from monitor.config import parse_config

    config = parse_config({"store": {"path": str(tmp_path / "db" / "m.sqlite")}})
    password = tmp_path / "pw"
    password.write_text("first password\n")
    assert add_user_command(config, "admin", "admin", str(password)) == 0
    password.write_text("second password\n")
    assert add_user_command(config, "admin", "editor", str(password)) == 0
    db = sqlite3.connect(tmp_path / "db" / "m.sqlite")
    [(role, hashed)] = db.execute("SELECT role, password_hash FROM users").fetchall()
    assert role == "editor" and check_password("second password", hashed)
    password.write_text("short\n")
    assert add_user_command(config, "x", "admin", str(password)) == 1
    assert add_user_command(config, "x", "king", str(password)) == 1
    with pytest.raises(UserError):
        add_user_sync(str(tmp_path / "m2.sqlite"), "ok", "admin", "tiny", 0)


def test_add_user_command_on_postgresql(tmp_path, postgres_dsn):  # noqa: F811 (the fixture)
    """With kind = "postgresql" the user is made in the database (migrated first), reset when run again."""
    import psycopg2

    from monitor.config import parse_config

    store = {"kind": "postgresql", "path": str(tmp_path / "m.sqlite"), "dsn": postgres_dsn}
    config = parse_config({"store": store})
    password = tmp_path / "pw"
    password.write_text("first password\n")
    assert add_user_command(config, "admin", "admin", str(password)) == 0
    db = psycopg2.connect(postgres_dsn)
    try:
        with db, db.cursor() as cursor:
            cursor.execute("SELECT id FROM users")
            [(user_id,)] = cursor.fetchall()
            cursor.execute("INSERT INTO sessions VALUES ('k', %s, 'c', 0, 0)", (user_id,))
        password.write_text("second password\n")
        assert add_user_command(config, "admin", "editor", str(password)) == 0
        with db, db.cursor() as cursor:
            cursor.execute("SELECT role, password_hash FROM users")
            [(role, hashed)] = cursor.fetchall()
            cursor.execute("SELECT count(*) FROM sessions")
            assert role == "editor" and check_password("second password", hashed)
            assert cursor.fetchone()[0] == 0  # the reset ended the session
    finally:
        db.close()
    assert not (tmp_path / "m.sqlite").exists()


def test_add_user_command_names_an_unusable_dsn(tmp_path):
    """A database that does not answer is one line naming store.dsn, without the password."""
    from monitor.config import parse_config

    dsn = f"postgresql://monitor:s3cret@/nowhere?host={tmp_path}"
    config = parse_config({"store": {"kind": "postgresql", "path": str(tmp_path / "m.sqlite"), "dsn": dsn}})
    password = tmp_path / "pw"
    password.write_text("first password\n")
    stderr = tmp_path / "err"
    with open(stderr, "w") as err:
        assert add_user_command(config, "admin", "admin", str(password), stderr=err) == 1
    said = stderr.read_text()
    assert said.startswith("monitor: cannot add user: store.dsn: cannot use PostgreSQL:") and "s3cret" not in said


def test_topic_form_accepts_a_good_topic():
    """A complete form becomes a Topic with lists split per line and languages per comma."""
    form = {
        "name": [" Acme "],
        "terms": ['acme\n"acme cloud"\n#acmedown\n'],
        "variants": ["acmee"],
        "exclude": ["acme anvil"],
        "languages": ["en, pt-BR"],
        "sources": ["inbox"],
        "group": ["vendors"],
        "fuzzy": ["on"],
    }
    topic, errors, values = topic_form(form, ["inbox"], set())
    assert errors == {}
    assert topic == Topic(
        "Acme",
        ("acme", '"acme cloud"', "#acmedown"),
        ("acmee",),
        True,
        ("acme anvil",),
        ("en", "pt-BR"),
        ("inbox",),
        "vendors",
    )
    assert topic_values(topic)["terms"] == 'acme\n"acme cloud"\n#acmedown'


@pytest.mark.parametrize(
    "field,value,problem",
    [
        ("name", "", "name"),
        ("name", "Taken", "name"),
        ("terms", "", "terms"),
        ("terms", "!!!", "terms"),
        ("terms", "x" * 201, "terms"),
        ("languages", "english!", "languages"),
        ("sources", "nowhere", "sources"),
        ("exclude", "...", "exclude"),
    ],
)
def test_topic_form_names_the_bad_field(field, value, problem):
    """Each kind of bad input is reported on its own field and nothing is built."""
    form = {"name": ["Fine"], "terms": ["acme"]}
    form[field] = [value]
    topic, errors, values = topic_form(form, ["inbox"], {"Taken"})
    assert topic is None and problem in errors
    assert values[field if field != "sources" else "sources"] is not None
