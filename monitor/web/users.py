"""
People and machines that may use the hub: users with roles, their login
sessions, and API tokens.

Only hashes of secrets are stored.  Passwords use scrypt with a random salt
(the parameters are kept in the hash, so they can be raised later without
breaking old hashes); session ids and API tokens are 256 random bits, so a
plain SHA-256 of them is enough and lets a lookup be one indexed read.

The rows are kept by an L{monitor.store.interfaces.IAccounts} provider
(L{monitor.store.sqlite_accounts} holds the SQL).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
from collections import deque
from dataclasses import dataclass
from typing import Optional

import psycopg2
from twisted.application.service import Service
from twisted.internet.defer import DeferredSemaphore, ensureDeferred, fail
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from monitor.config import defaults
from monitor.store.interfaces import Duplicate, LastAdmin, NoSuchUser
from monitor.web.sessions import SessionRegistry

__all__ = [
    "ROLES",
    "LoginAttempt",
    "LoginGuard",
    "Session",
    "Hashing",
    "HashingBusy",
    "Throttle",
    "UserError",
    "Users",
    "add_user_sync",
    "check_password",
    "hash_password",
    "needs_rehash",
]

#: Roles, weakest first; each may do what the ones before it may.
ROLES = ("viewer", "editor", "admin")

#: scrypt cost, OWASP's minimum (2023): 2**17 * 8 * 128 bytes = 128 MiB and
#: about 0.4 s per hash.  C{[web] scrypt_n} (whose default is N) may change
#: N; every hash keeps
#: its own parameters, so changing them never breaks a stored hash, and a
#: hash made with other parameters is redone at its next successful login.
SCRYPT_N, SCRYPT_R, SCRYPT_P = defaults("web")["scrypt_n"], 8, 1
#: The largest N a stored hash may ask for (1 GiB at r = 8).
_SCRYPT_MOST_N = 2**20
#: Password hashes computed at once in one hub, across all logins, and
#: how many more may wait for a turn; past that a login is refused (busy)
#: rather than queued, so a burst from many addresses cannot pile up.
HASHES_AT_ONCE = 2
HASHES_WAITING = 32


def _maxmem(n: int, r: int, p: int) -> int:
    """
    What OpenSSL's scrypt needs (its V and B arrays) plus a margin;
    C{hashlib.scrypt} refuses anything over C{maxmem}.
    """
    return 128 * r * (n + 2) + 128 * r * p + 1024 * 1024


MIN_PASSWORD = 8
MAX_PASSWORD = 1024
_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")

#: A session lasts at most this long, however active.
SESSION_MAX_AGE = 30 * 86400
#: How long a served login form may be sent back, and how many such
#: pre-sessions are kept at once (the oldest go first): anonymous GETs of
#: the login page cannot grow the table past this.
LOGIN_FORM_TTL = 3600
LOGIN_FORMS_MAX = 10_000
#: How stale C{last_seen_at} may get before a request refreshes it.
_TOUCH_EVERY = 60.0
#: How often the API tokens kept in memory are read again from the store:
#: a token made or revoked on another hub of a shared store counts here
#: within this many seconds.
TOKENS_EVERY = 10.0


class UserError(ValueError):
    """
    A user, password or role is not acceptable; the message says why and
    C{field} names the form field it is about.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, salt: Optional[bytes] = None, n: int = SCRYPT_N) -> str:
    """
    An scrypt hash of C{password}: C{scrypt$N$r$p$salt$hash}.  Slow on
    purpose; call it in a thread.
    """
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=SCRYPT_R,
        p=SCRYPT_P,
        maxmem=_maxmem(n, SCRYPT_R, SCRYPT_P),
        dklen=32,
    )
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def hash_parameters(stored: str) -> Optional[tuple[int, int, int]]:
    """
    C{(N, r, p)} of a stored hash, or C{None} if it is not one of ours.
    """
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return None
    try:
        n, r, p = (int(x) for x in parts[1:4])
    except ValueError:
        return None
    if not (1 < n <= _SCRYPT_MOST_N and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
        return None
    return n, r, p


def needs_rehash(stored: str, n: int = SCRYPT_N) -> bool:
    """
    Whether a hash was made with other parameters than the hub's now.
    """
    return hash_parameters(stored) != (n, SCRYPT_R, SCRYPT_P)


def check_password(password: str, stored: str) -> bool:
    """
    Whether C{password} matches a hash from L{hash_password} (made with
    whatever parameters it names), compared in constant time.  A malformed
    hash matches nothing.
    """
    params = hash_parameters(stored)
    if params is None:
        return False
    n, r, p = params
    try:
        _, _, _, _, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=n,
            r=r,
            p=p,
            maxmem=_maxmem(n, r, p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def dummy_hash(n: int = SCRYPT_N) -> str:
    """
    A hash no password matches, at cost C{n}: checked when the user does
    not exist, so that the answer takes as long as for a real user and
    does not tell which names exist.
    """
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${_b64(bytes(16))}${_b64(bytes(32))}"


class HashingBusy(Exception):
    """
    Too many password hashes are running or waiting; try again later.
    """


class Hashing:
    """
    The one place a hub computes password hashes: in the reactor's thread
    pool, at most C{at_once} at a time (each takes 128 MiB), with at most
    C{waiting} more queued; beyond that L{run} fails with L{HashingBusy}
    at once.
    """

    def __init__(self, reactor, at_once: int = HASHES_AT_ONCE, waiting: int = HASHES_WAITING) -> None:
        self.reactor = reactor
        self.waiting = waiting
        self._semaphore = DeferredSemaphore(at_once)
        #: The most hashes seen running at once (for tests and metrics).
        self.peak = 0
        self._running = 0

    def run(self, f, *args):
        if len(self._semaphore.waiting) >= self.waiting:
            return fail(HashingBusy("too many password checks at once"))
        return self._semaphore.run(self._in_thread, f, *args)

    def _in_thread(self, f, *args):
        self._running += 1
        self.peak = max(self.peak, self._running)

        def done(result):
            self._running -= 1
            return result

        pool = self.reactor.getThreadPool()
        return deferToThreadPool(self.reactor, pool, f, *args).addBoth(done)


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UserError("name", "use 1 to 64 letters, digits or . _ @ -")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError("role", "must be one of " + ", ".join(ROLES))
    return role


def check_new_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise UserError("password", f"must be at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UserError("password", f"must be at most {MAX_PASSWORD} characters")
    return password


@dataclass(frozen=True, slots=True)
class Session:
    """
    A logged-in user, as found from a session cookie.

    @ivar key: the SHA-256 of the session id (what the store keeps).
    @ivar csrf: the token every form of this session must send back.
    @ivar expires_at: when it ends unless used again (as last seen).
    """

    key: str
    user_id: int
    user: str
    role: str
    csrf: str
    expires_at: float = math.inf

    def may(self, role: str) -> bool:
        """
        Whether this session's role includes C{role}.
        """
        return ROLES.index(self.role) >= ROLES.index(role)


class Throttle:
    """
    Login attempts per key (a client address, an account name).  Every
    attempt counts as a failure when it begins, before the slow password
    check, so a burst sent at once cannot slip past the count while the
    hashes run; a success wipes the key's count.  A key is refused once it
    has C{limit} attempts within C{window} seconds (refused attempts count
    too, so hammering keeps it blocked), or while C{concurrent} of its
    attempts are still being checked.  Memory is bounded: at most
    C{max_keys} keys are tracked, the oldest forgotten, and a key keeps at
    most C{limit} times.
    """

    def __init__(
        self, clock, limit: int = 10, window: float = 600.0, concurrent: int = 2, max_keys: int = 10000
    ) -> None:
        self.clock = clock
        self.limit = limit
        self.window = window
        self.concurrent = concurrent
        self.max_keys = max_keys
        self._attempts: dict[str, deque] = {}
        self._checking: dict[str, int] = {}

    def _recent(self, key: str) -> deque:
        times = self._attempts.get(key)
        if times is None:
            return deque(maxlen=self.limit)
        horizon = self.clock.seconds() - self.window
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._attempts[key]
        return times

    def blocked(self, key: str) -> bool:
        return len(self._recent(key)) >= self.limit

    def note(self, key: str) -> None:
        """
        Count an attempt for C{key}.
        """
        times = self._recent(key)
        if key not in self._attempts:
            if len(self._attempts) >= self.max_keys:
                self._attempts.pop(next(iter(self._attempts)))
            self._attempts[key] = times
        times.append(self.clock.seconds())

    def begin(self, key: str) -> bool:
        """
        Count an attempt for C{key}; whether it may go on to the password
        check.  If it may, call L{end} once the check is done.
        """
        refused = self.blocked(key) or self._checking.get(key, 0) >= self.concurrent
        self.note(key)
        if refused:
            return False
        self._checking[key] = self._checking.get(key, 0) + 1
        return True

    def end(self, key: str, ok: bool) -> None:
        """
        An attempt admitted by L{begin} is over; a right password clears
        the key's count.
        """
        left = self._checking.get(key, 0) - 1
        if left > 0:
            self._checking[key] = left
        else:
            self._checking.pop(key, None)
        if ok:
            self._attempts.pop(key, None)


class LoginGuard:
    """
    The two throttles a login passes: one per client address, one per
    account name.  L{admit} counts the attempt in both before any hashing.
    """

    def __init__(
        self,
        clock,
        per_address: int = 10,
        per_account: int = 20,
        window: float = 600.0,
        concurrent_address: int = 4,
        concurrent_account: int = 2,
    ) -> None:
        self.by_address = Throttle(clock, per_address, window, concurrent_address)
        self.by_account = Throttle(clock, per_account, window, concurrent_account)

    def admit(self, name: str, address: str) -> Optional["LoginAttempt"]:
        """
        A L{LoginAttempt} to C{finish} after the password check, or
        C{None} if this attempt must be refused (429) without a check.
        """
        name = name[:MAX_PASSWORD]
        if not self.by_address.begin(address):
            self.by_account.note(name)
            return None
        if not self.by_account.begin(name):
            self.by_address.end(address, False)
            return None
        return LoginAttempt(self, name, address)


class LoginAttempt:
    """
    One admitted login attempt; L{finish} it exactly once.
    """

    def __init__(self, guard: LoginGuard, name: str, address: str) -> None:
        self._guard = guard
        self._name = name
        self._address = address
        self._done = False

    def finish(self, ok: bool) -> None:
        if self._done:
            return
        self._done = True
        self._guard.by_address.end(self._address, ok)
        self._guard.by_account.end(self._name, ok)


class Users(Service):
    """
    Users, sessions and API tokens, kept by C{accounts} (an
    L{monitor.store.interfaces.IAccounts}).

    API tokens are also kept in memory (hash to id) so that checking one is
    a dictionary lookup on the reactor thread, like the configured token.

    @ivar idle: seconds of inactivity after which a session ends.
    @ivar sockets: the live sockets of each session, ended with it.
    """

    name = "users"
    log = Logger()

    def __init__(
        self,
        accounts,
        reactor,
        idle: float = 12 * 3600,
        scrypt_n: int = SCRYPT_N,
        login_forms_max: int = LOGIN_FORMS_MAX,
    ) -> None:
        self.accounts = accounts
        self.login_forms_max = login_forms_max
        self.reactor = reactor
        self.idle = idle
        self.scrypt_n = scrypt_n
        self._tokens: dict[str, int] = {}
        self._token_used: dict[int, float] = {}
        self.hashing = Hashing(reactor)
        self._sweeper: Optional[LoopingCall] = None
        self._token_reader: Optional[LoopingCall] = None
        self.sockets = SessionRegistry(reactor, self.live_sessions)

    # -- service -----------------------------------------------------------

    def startService(self):
        super().startService()
        self._sweeper = LoopingCall(self._sweep)
        self._sweeper.clock = self.reactor
        self._sweeper.start(3600, now=False).addErrback(lambda f: self.log.failure("session sweeper failed", f))
        self._token_reader = LoopingCall(self._read_tokens)
        self._token_reader.clock = self.reactor
        self._token_reader.start(TOKENS_EVERY, now=False)
        self.sockets.startService()
        return ensureDeferred(self.reload_tokens())

    def stopService(self):
        super().stopService()
        for loop in (self._sweeper, self._token_reader):
            if loop is not None and loop.running:
                loop.stop()
        return self.sockets.stopService()

    def _read_tokens(self):
        d = ensureDeferred(self.reload_tokens())
        d.addErrback(lambda f: self.log.failure("could not read the API tokens again", f))
        return d

    def _sweep(self):
        now = self.reactor.seconds()
        d = self.accounts.sweep(now - self.idle, now - SESSION_MAX_AGE, now - LOGIN_FORM_TTL)
        d.addErrback(lambda f: self.log.failure("could not remove old sessions", f))
        return d

    def _hash(self, password: str):
        return self.hashing.run(hash_password, password, None, self.scrypt_n)

    # -- users -------------------------------------------------------------

    async def add_user(self, name: str, role: str, password: str) -> None:
        """
        Create a user.  Raises L{UserError} if the name is taken or a value
        is not acceptable.
        """
        check_name(name)
        check_role(role)
        check_new_password(password)
        hashed = await self._hash(password)
        try:
            await self.accounts.add_user(name, role, hashed, self.reactor.seconds())
        except Duplicate as e:
            raise UserError("name", str(e)) from None
        self.log.info("added user {user} as {role}", user=name, role=role)

    async def add_first_admin(self, name: str, password: str) -> bool:
        """
        Create the first admin, unless an admin exists by the time the row
        is written: the check and the insert are one write transaction, so
        two setup forms sent at once cannot both make one.  Returns whether
        this call made it.
        """
        check_name(name)
        check_new_password(password)
        hashed = await self._hash(password)
        try:
            made = await self.accounts.add_first_admin(name, hashed, self.reactor.seconds())
        except Duplicate as e:
            raise UserError("name", str(e)) from None
        if made:
            self.log.info("added user {user} as {role}", user=name, role="admin")
        return made

    async def set_password(self, name: str, password: str) -> None:
        check_new_password(password)
        hashed = await self._hash(password)
        user_id = await self.accounts.set_password(name, hashed)
        if user_id is None:
            raise UserError("name", f"no user {name!r}")
        self.sockets.end_user(user_id, "password changed", "the password was changed; log in again")
        self.log.info("password of {user} changed; their sessions ended", user=name)

    async def set_role(self, name: str, role: str) -> None:
        check_role(role)
        try:
            user_id = await self.accounts.set_role(name, role)
        except NoSuchUser as e:
            raise UserError("name", str(e)) from None
        except LastAdmin as e:
            raise UserError("role", str(e)) from None
        self.log.info("user {user} is now {role}", user=name, role=role)
        # Open sockets carry the old role: look their sessions up again.
        await self.sockets.recheck_user(user_id)

    async def delete_user(self, name: str) -> None:
        try:
            user_id = await self.accounts.delete_user(name)
        except NoSuchUser as e:
            raise UserError("name", str(e)) from None
        except LastAdmin:
            raise UserError("name", "the last admin cannot be deleted") from None
        self.sockets.end_user(user_id, "user deleted", "your user was deleted")
        self.log.info("deleted user {user}", user=name)

    async def list_users(self) -> list[dict]:
        return [
            {"name": u.name, "role": u.role, "created_at": u.created_at, "last_login_at": u.last_login_at}
            for u in await self.accounts.list_users()
        ]

    async def authenticate(self, name: str, password: str) -> Optional[tuple[int, str, str]]:
        """
        C{(id, name, role)} if the password is right, else C{None}.  Takes
        as long for an unknown name as for a wrong password.
        """
        user = await self.accounts.user_by_name(name)
        stored = user.password_hash if user else dummy_hash(self.scrypt_n)
        ok = await self.hashing.run(check_password, password or "", stored)
        if not ok or user is None:
            return None
        if needs_rehash(stored, self.scrypt_n):
            await self._rehash(user.id, user.name, password, stored)
        return user.id, user.name, user.role

    async def _rehash(self, user_id: int, name: str, password: str, old: str) -> None:
        """
        Redo a hash made with other parameters, now that the password is
        known; only if no one changed it meanwhile.  Sessions stay.
        """
        try:
            hashed = await self._hash(password)
        except HashingBusy:
            return  # next time
        changed = await self.accounts.replace_hash(user_id, old, hashed)
        if changed:
            self.log.info("password hash of {user} redone at N={n}", user=name, n=self.scrypt_n)

    def count_users(self):
        return self.accounts.count_users()

    def has_admin(self):
        """Whether an admin exists (the first-run setup ends then)."""
        return self.accounts.has_admin()

    # -- sessions ----------------------------------------------------------

    async def open_session(self, user_id: int) -> tuple[str, str]:
        """
        Start a session; returns C{(session id, csrf token)}.  The id goes
        in the cookie and only its hash is stored.
        """
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        await self.accounts.open_session(_sha256(token), user_id, csrf, self.reactor.seconds())
        return token, csrf

    async def session(self, token: Optional[str]) -> Optional[Session]:
        """
        The live session of a cookie value, or C{None}.  Refreshes its
        last-seen time (at most once a minute, to spare the writer).
        """
        if not token or len(token) > 200:
            return None
        key = _sha256(token)
        records = await self.accounts.sessions([key])
        if not records:
            return None
        session, seen = self._live(records[0])
        now = self.reactor.seconds()
        if session is None:
            await self.close_session(key, "session expired")
            return None
        if now - seen > _TOUCH_EVERY:
            d = self.accounts.touch_session(key, now)
            d.addErrback(lambda f: self.log.failure("could not refresh a session", f))
        return session

    async def live_sessions(self, keys: list[str]) -> dict[str, Session]:
        """
        Those of the sessions C{keys} (hashes) that are still live, by
        key, without refreshing them; for the socket registry.
        """
        found = {}
        for record in await self.accounts.sessions(keys):
            session, _ = self._live(record)
            if session is not None:
                found[session.key] = session
        return found

    def _live(self, r) -> tuple[Optional[Session], float]:
        expires = min(r.last_seen_at + self.idle, r.created_at + SESSION_MAX_AGE)
        if self.reactor.seconds() >= expires:
            return None, r.last_seen_at
        return Session(r.key, r.user_id, r.user, r.role, r.csrf, expires), r.last_seen_at

    async def close_session(self, key: str, why: str = "logged out") -> None:
        """
        End a session, and every socket it opened.
        """
        await self.accounts.close_session(key)
        self.sockets.end_session(key, why)

    # -- login forms -------------------------------------------------------

    async def open_login_form(self) -> tuple[str, str]:
        """
        A pre-session for a login form being served: C{(cookie value,
        csrf token)}.  Only the cookie's hash is stored, beside the token;
        the POST must bring both back (L{take_login_form}).  Keeps at most
        C{login_forms_max} rows, none older than L{LOGIN_FORM_TTL}.
        """
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = self.reactor.seconds()
        await self.accounts.open_login_form(_sha256(token), csrf, now, now - LOGIN_FORM_TTL, self.login_forms_max)
        return token, csrf

    async def take_login_form(self, token: Optional[str]) -> Optional[str]:
        """
        The CSRF token of the live pre-session of C{token} (the login
        cookie), which ends now (each form is sent once); C{None} if there
        is none.
        """
        if not token or len(token) > 200:
            return None
        return await self.accounts.take_login_form(_sha256(token), self.reactor.seconds() - LOGIN_FORM_TTL)

    def count_login_forms(self):
        return self.accounts.count_login_forms()

    # -- API tokens --------------------------------------------------------

    async def reload_tokens(self) -> None:
        tokens = await self.accounts.live_tokens()
        self._tokens = {t.token_hash: t.id for t in tokens}
        self._token_names = {t.token_hash: t.name for t in tokens}

    def token_name(self, given: bytes) -> Optional[str]:
        """
        The name a live stored token was given (who made a change through
        the API), or C{None}.
        """
        return getattr(self, "_token_names", {}).get(hashlib.sha256(given).hexdigest())

    def check_token(self, given: bytes) -> bool:
        """
        Whether C{given} is a live stored API token.  Hashing first makes
        the lookup's timing independent of the secret.
        """
        token_id = self._tokens.get(hashlib.sha256(given).hexdigest())
        if token_id is None:
            return False
        now = self.reactor.seconds()
        if now - self._token_used.get(token_id, 0.0) > _TOUCH_EVERY:
            self._token_used[token_id] = now
            d = self.accounts.touch_token(token_id, now)
            d.addErrback(lambda f: self.log.failure("could not note an API token's use", f))
        return True

    async def create_token(self, name: str, created_by: str) -> str:
        """
        Make a new API token; returns the token, which is shown once and
        never stored.
        """
        name = (name or "").strip()
        if not name or len(name) > 100 or any(ord(c) < 32 for c in name):
            raise UserError("token_name", "give the token a name of 1 to 100 characters")
        token = "mon_" + secrets.token_urlsafe(32)
        await self.accounts.add_token(
            name, hashlib.sha256(token.encode("ascii")).hexdigest(), created_by, self.reactor.seconds()
        )
        await self.reload_tokens()
        self.log.info("API token {name} created by {user}", name=name, user=created_by)
        return token

    async def revoke_token(self, token_id: int, by: str) -> bool:
        revoked = await self.accounts.revoke_token(token_id, self.reactor.seconds())
        await self.reload_tokens()
        if revoked:
            self.log.info("API token {id} revoked by {user}", id=token_id, user=by)
        return revoked

    async def list_tokens(self) -> list[dict]:
        keys = ("id", "name", "created_by", "created_at", "last_used_at", "revoked_at")
        return [{k: getattr(t, k) for k in keys} for t in await self.accounts.list_tokens()]


def add_user_sync(
    path: str, name: str, role: str, password: str, now: float, scrypt_n: int = SCRYPT_N, dsn: Optional[str] = None
) -> bool:
    """
    Create a user, or reset the password and role of an existing one,
    directly in the SQLite file at C{path}, or with C{dsn} in that
    PostgreSQL database (bringing its schema up to date first).  For the
    command line, before any reactor runs.  Returns whether the user is
    new.
    """
    check_name(name)
    check_role(role)
    check_new_password(password)
    hashed = hash_password(password, n=scrypt_n)
    if dsn is not None:
        from monitor.store.postgresql_accounts import add_user_dsn

        return add_user_dsn(dsn, name, role, hashed, now)
    from monitor.store.sqlite_accounts import add_user_file

    return add_user_file(path, name, role, hashed, now)


def add_user_command(config, name: str, role: str, password_file: Optional[str], stdin=None, stderr=None) -> int:
    """
    C{twistd monitor --add-user NAME [--role R] [--password-file F]}: read
    the password (from the file's first line, C{-} for standard input, else
    a prompt asked twice), create or update the user, and return the exit
    status.
    """
    import getpass
    import sys
    import time

    stdin = sys.stdin if stdin is None else stdin
    stderr = sys.stderr if stderr is None else stderr
    try:
        check_name(name)
        check_role(role)
        if password_file == "-":
            password = stdin.readline().rstrip("\r\n")
        elif password_file:
            with open(password_file, encoding="utf-8") as f:
                password = f.readline().rstrip("\r\n")
        else:
            password = getpass.getpass(f"Password for {name}: ")
            if getpass.getpass("Again: ") != password:
                raise UserError("password", "the two passwords differ")
        check_new_password(password)
        # The users are where the hub keeps them: in PostgreSQL with kind = "postgresql".
        dsn = config.store["dsn"] if config.store["kind"] == "postgresql" else None
        scrypt_n = config.web["scrypt_n"]
        path = config.resolve(config.store["path"])
        created = add_user_sync(path, name, role, password, time.time(), scrypt_n, dsn=dsn)
    except UserError as e:
        print(f"monitor: cannot add user: {e.field}: {e.message}", file=stderr)
        return 1
    except OSError as e:
        print(f"monitor: cannot add user: {e}", file=stderr)
        return 1
    except psycopg2.Error as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        print(f"monitor: cannot add user: store.dsn: cannot use PostgreSQL: {reason}", file=stderr)
        return 1
    verb = "created" if created else "updated (password and role reset; their sessions ended)"
    print(f"monitor: user {name} ({role}) {verb}", file=stderr)
    return 0
