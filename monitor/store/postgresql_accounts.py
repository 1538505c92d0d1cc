"""
L{IAccounts} on PostgreSQL: the statements on C{users}, C{sessions},
C{login_forms} and C{api_tokens} (PostgreSQL migration 2), run over the
pool of a L{monitor.store.postgresql.PostgreSQLStore}.

Every hub on the database shares them, so a session opened on one hub is
valid (and refreshed) on any other.  Writes that must see the other hubs'
writes to decide (the first admin, the last admin) lock C{users} against
other writers for their transaction: of two hubs making the first admin at
once, the second waits, then finds the first's.

After a lost connection the store runs a write again (a server restart
does not log anyone out); sessions and tokens, keyed by random values, are
written so that a second attempt whose first did commit changes nothing.
A user made by such a second attempt is reported as L{Duplicate}.
"""

from __future__ import annotations

import psycopg2.errors
from zope.interface import implementer

from monitor.store.interfaces import (
    Duplicate,
    IAccounts,
    LastAdmin,
    NoSuchUser,
    SessionRecord,
    TokenRecord,
    UserRecord,
)

__all__ = ["PostgreSQLAccounts", "add_user_dsn"]

_USER = "SELECT id, name, role, password_hash, created_at, last_login_at FROM users"
_TOKEN = "SELECT id, name, token_hash, created_by, created_at, last_used_at, revoked_at FROM api_tokens"
_INSERT_USER = "INSERT INTO users (name, role, password_hash, created_at) VALUES (%s, %s, %s, %s)"
# SHARE ROW EXCLUSIVE conflicts with itself and with every INSERT, UPDATE and
# DELETE, not with reads: the transaction that holds it is the only writer
# of users until it ends.
_LOCK_USERS = "LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE"


async def _do(cursor, sql: str, params: tuple = ()) -> None:
    await cursor.execute(sql, params)


async def _rowcount(cursor, sql: str, params: tuple = ()) -> int:
    await cursor.execute(sql, params)
    return cursor.rowcount


async def _rows(cursor, sql: str, params: tuple = ()) -> list:
    await cursor.execute(sql, params)
    return cursor.fetchall()


async def _one(cursor, sql: str, params: tuple = ()):
    await cursor.execute(sql, params)
    return cursor.fetchone()[0]


async def _insert_user(cursor, name, role, hashed, now) -> None:
    try:
        await cursor.execute(_INSERT_USER, (name, role, hashed, now))
    except psycopg2.errors.UniqueViolation:
        raise Duplicate(f"there is already a user {name!r}") from None


@implementer(IAccounts)
class PostgreSQLAccounts:
    """
    @param store: the L{monitor.store.postgresql.PostgreSQLStore} (any
        object with its C{run_read} and C{run_write} of coroutines).
    """

    def __init__(self, store) -> None:
        self.store = store

    # -- users -------------------------------------------------------------

    def add_user(self, name, role, password_hash, now):
        return self.store.run_write(_insert_user, name, role, password_hash, now)

    def add_first_admin(self, name, password_hash, now):
        return self.store.run_write(self._add_first_admin, name, password_hash, now)

    @staticmethod
    async def _add_first_admin(cursor, name, hashed, now) -> bool:
        await cursor.execute(_LOCK_USERS)
        # Read after the lock: in READ COMMITTED each statement sees what
        # committed before it began, so a hub that made one first is seen.
        await cursor.execute("SELECT 1 FROM users WHERE role = 'admin' LIMIT 1")
        if cursor.fetchone() is not None:
            return False
        await _insert_user(cursor, name, "admin", hashed, now)
        return True

    def user_by_name(self, name):
        d = self.store.run_read(_rows, _USER + " WHERE name = %s", (name,))
        return d.addCallback(lambda rows: UserRecord(*rows[0]) if rows else None)

    def list_users(self):
        d = self.store.run_read(_rows, _USER + " ORDER BY name")
        return d.addCallback(lambda rows: [UserRecord(*r) for r in rows])

    def count_users(self):
        return self.store.run_read(_one, "SELECT count(*) FROM users")

    def has_admin(self):
        return self.store.run_read(_one, "SELECT EXISTS (SELECT 1 FROM users WHERE role = 'admin')")

    def set_password(self, name, password_hash):
        return self.store.run_write(self._set_password, name, password_hash)

    @staticmethod
    async def _set_password(cursor, name, hashed):
        await cursor.execute("UPDATE users SET password_hash = %s WHERE name = %s RETURNING id", (hashed, name))
        row = cursor.fetchone()
        if row is None:
            return None
        # A new password ends every session made with the old one.
        await cursor.execute("DELETE FROM sessions WHERE user_id = %s", (row[0],))
        return row[0]

    def replace_hash(self, user_id, old, new):
        d = self.store.run_write(
            _rowcount,
            "UPDATE users SET password_hash = %s WHERE id = %s AND password_hash = %s",
            (new, user_id, old),
        )
        return d.addCallback(lambda n: n > 0)

    @staticmethod
    async def _admin_change(cursor, name, losing_admin) -> int:
        """
        The id of C{name}, with users locked against other writers: an
        admin who would stop being one must not be the last, whatever the
        other hubs are doing.
        """
        await cursor.execute(_LOCK_USERS)
        await cursor.execute("SELECT role, id FROM users WHERE name = %s", (name,))
        row = cursor.fetchone()
        if row is None:
            raise NoSuchUser(f"no user {name!r}")
        if row[0] == "admin" and losing_admin:
            await cursor.execute("SELECT count(*) FROM users WHERE role = 'admin'")
            if cursor.fetchone()[0] <= 1:
                raise LastAdmin("the last admin must stay an admin")
        return row[1]

    def set_role(self, name, role):
        return self.store.run_write(self._set_role, name, role)

    @classmethod
    async def _set_role(cls, cursor, name, role):
        user_id = await cls._admin_change(cursor, name, role != "admin")
        await cursor.execute("UPDATE users SET role = %s WHERE id = %s", (role, user_id))
        return user_id

    def delete_user(self, name):
        return self.store.run_write(self._delete_user, name)

    @classmethod
    async def _delete_user(cls, cursor, name):
        user_id = await cls._admin_change(cursor, name, True)
        # Their sessions go with them (ON DELETE CASCADE).
        await cursor.execute("DELETE FROM users WHERE id = %s", (user_id,))
        return user_id

    # -- sessions ----------------------------------------------------------

    def open_session(self, key, user_id, csrf, now):
        return self.store.run_write(self._open_session, key, user_id, csrf, now)

    @staticmethod
    async def _open_session(cursor, key, user_id, csrf, now):
        # The key is random: one already there is this session, written by
        # an attempt whose commit the lost connection did not report.
        await cursor.execute(
            "INSERT INTO sessions (id_hash, user_id, csrf, created_at, last_seen_at) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (id_hash) DO NOTHING",
            (key, user_id, csrf, now, now),
        )
        await cursor.execute("UPDATE users SET last_login_at = %s WHERE id = %s", (now, user_id))

    def sessions(self, keys):
        d = self.store.run_read(
            _rows,
            "SELECT s.id_hash, u.id, u.name, u.role, s.csrf, s.created_at, s.last_seen_at "
            "FROM sessions AS s JOIN users AS u ON u.id = s.user_id WHERE s.id_hash = ANY(%s)",
            (list(keys),),
        )
        return d.addCallback(lambda rows: [SessionRecord(*row) for row in rows])

    def touch_session(self, key, now):
        # Never backwards: two hubs refreshing one session may commit out of order.
        return self.store.run_write(
            _do,
            "UPDATE sessions SET last_seen_at = %s WHERE id_hash = %s AND last_seen_at < %s",
            (now, key, now),
        )

    def close_session(self, key):
        return self.store.run_write(_do, "DELETE FROM sessions WHERE id_hash = %s", (key,))

    def sweep(self, seen_before, created_before, forms_before):
        return self.store.run_write(self._sweep, seen_before, created_before, forms_before)

    @staticmethod
    async def _sweep(cursor, seen_before, created_before, forms_before):
        await cursor.execute(
            "DELETE FROM sessions WHERE last_seen_at < %s OR created_at < %s", (seen_before, created_before)
        )
        await cursor.execute("DELETE FROM login_forms WHERE created_at < %s", (forms_before,))

    # -- login forms -------------------------------------------------------

    def open_login_form(self, key, csrf, now, forms_before, most):
        return self.store.run_write(self._open_login_form, key, csrf, now, forms_before, most)

    @staticmethod
    async def _open_login_form(cursor, key, csrf, now, forms_before, most):
        await cursor.execute("DELETE FROM login_forms WHERE created_at < %s", (forms_before,))
        await cursor.execute("SELECT count(*) FROM login_forms")
        excess = cursor.fetchone()[0] - most + 1
        if excess > 0:
            await cursor.execute(
                "DELETE FROM login_forms WHERE id_hash IN "
                "(SELECT id_hash FROM login_forms ORDER BY created_at LIMIT %s)",
                (excess,),
            )
        await cursor.execute(
            "INSERT INTO login_forms (id_hash, csrf, created_at) VALUES (%s, %s, %s)", (key, csrf, now)
        )

    def take_login_form(self, key, made_after):
        d = self.store.run_write(_rows, "DELETE FROM login_forms WHERE id_hash = %s RETURNING csrf, created_at", (key,))
        # One DELETE: of two hubs given the same form, one gets its token.
        return d.addCallback(lambda rows: rows[0][0] if rows and rows[0][1] >= made_after else None)

    def count_login_forms(self):
        return self.store.run_read(_one, "SELECT count(*) FROM login_forms")

    # -- API tokens --------------------------------------------------------

    def add_token(self, name, token_hash, created_by, now):
        return self.store.run_write(
            _do,
            # As a session's key: a hash already there is this token, stored by an earlier attempt.
            "INSERT INTO api_tokens (name, token_hash, created_by, created_at) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (token_hash) DO NOTHING",
            (name, token_hash, created_by, now),
        )

    def live_tokens(self):
        d = self.store.run_read(_rows, _TOKEN + " WHERE revoked_at IS NULL ORDER BY id")
        return d.addCallback(lambda rows: [TokenRecord(*r) for r in rows])

    def list_tokens(self):
        d = self.store.run_read(_rows, _TOKEN + " ORDER BY revoked_at IS NOT NULL, id DESC")
        return d.addCallback(lambda rows: [TokenRecord(*r) for r in rows])

    def touch_token(self, token_id, now):
        return self.store.run_write(
            _do,
            "UPDATE api_tokens SET last_used_at = %s WHERE id = %s AND (last_used_at IS NULL OR last_used_at < %s)",
            (now, token_id, now),
        )

    def revoke_token(self, token_id, now):
        d = self.store.run_write(
            _rowcount, "UPDATE api_tokens SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL", (now, token_id)
        )
        return d.addCallback(lambda n: n > 0)


async def _put_user(cursor, name, role, hashed, now) -> bool:
    # xmax is 0 on a row this statement inserted, not on one it updated.
    await cursor.execute(
        "INSERT INTO users (name, role, password_hash, created_at) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (name) DO UPDATE SET role = excluded.role, password_hash = excluded.password_hash "
        "RETURNING id, (xmax = 0)",
        (name, role, hashed, now),
    )
    user_id, new = cursor.fetchone()
    if not new:
        await cursor.execute("DELETE FROM sessions WHERE user_id = %s", (user_id,))
    return new


def add_user_dsn(dsn: str, name: str, role: str, password_hash: str, now: float) -> bool:
    """
    Create a user, or reset the password hash and role of an existing one
    (ending their sessions), in the PostgreSQL database at C{dsn}, bringing
    its schema up to date first.  For the command line, before any reactor
    runs; as L{monitor.store.sqlite_accounts.add_user_file}.  Returns
    whether the user is new.
    """
    from monitor.store.postgresql import run_blocking

    return run_blocking(dsn, _put_user, name, role, password_hash, now)
