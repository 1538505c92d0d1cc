"""
L{IAccounts} on SQLite: the statements on C{users}, C{sessions},
C{login_forms} and C{api_tokens} (tables of migration 2), run through the
store's writer and reader threads.
"""

from __future__ import annotations

import sqlite3

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

__all__ = ["SQLiteAccounts", "add_user_file"]

_USER = "SELECT id, name, role, password_hash, created_at, last_login_at FROM users"
_TOKEN = "SELECT id, name, token_hash, created_by, created_at, last_used_at, revoked_at FROM api_tokens"
_INSERT_USER = "INSERT INTO users (name, role, password_hash, created_at) VALUES (?, ?, ?, ?)"
#: Most keys in one C{IN (...)}: well under SQLite's bound-parameter limit.
_KEYS_AT_ONCE = 500


def _do(trans, sql: str, params: tuple) -> None:
    trans.execute(sql, params)


def _all(trans, sql: str, params: tuple = ()) -> list:
    trans.execute(sql, params)
    return trans.fetchall()


def _duplicate(name: str) -> Duplicate:
    return Duplicate(f"there is already a user {name!r}")


@implementer(IAccounts)
class SQLiteAccounts:
    """
    @param store: the L{monitor.store.sqlite.SQLiteStore} (any object with
        its C{run_read} and C{run_write}).
    """

    def __init__(self, store) -> None:
        self.store = store

    # -- users -------------------------------------------------------------

    def add_user(self, name, role, password_hash, now):
        return self.store.run_write(self._add_user, name, role, password_hash, now)

    @staticmethod
    def _add_user(trans, name, role, hashed, now) -> None:
        try:
            trans.execute(_INSERT_USER, (name, role, hashed, now))
        except sqlite3.IntegrityError:
            raise _duplicate(name) from None

    def add_first_admin(self, name, password_hash, now):
        return self.store.run_write(self._add_first_admin, name, password_hash, now)

    @classmethod
    def _add_first_admin(cls, trans, name, hashed, now) -> bool:
        trans.execute("BEGIN IMMEDIATE")
        if trans.execute("SELECT 1 FROM users WHERE role = 'admin' LIMIT 1").fetchone() is not None:
            return False
        cls._add_user(trans, name, "admin", hashed, now)
        return True

    def user_by_name(self, name):
        return self.store.run_read(self._user_by_name, name)

    @staticmethod
    def _user_by_name(trans, name):
        row = trans.execute(_USER + " WHERE name = ?", (name,)).fetchone()
        return UserRecord(*row) if row else None

    def list_users(self):
        d = self.store.run_read(_all, _USER + " ORDER BY name")
        return d.addCallback(lambda rows: [UserRecord(*r) for r in rows])

    def count_users(self):
        return self.store.run_read(lambda trans: trans.execute("SELECT count(*) FROM users").fetchone()[0])

    def has_admin(self):
        return self.store.run_read(
            lambda trans: trans.execute("SELECT 1 FROM users WHERE role = 'admin' LIMIT 1").fetchone() is not None
        )

    def set_password(self, name, password_hash):
        return self.store.run_write(self._set_password, name, password_hash)

    @staticmethod
    def _set_password(trans, name, hashed):
        row = trans.execute("SELECT id FROM users WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        trans.execute("UPDATE users SET password_hash = ? WHERE id = ?", (hashed, row[0]))
        # A new password ends every session made with the old one.
        trans.execute("DELETE FROM sessions WHERE user_id = ?", (row[0],))
        return row[0]

    def replace_hash(self, user_id, old, new):
        return self.store.run_write(self._replace_hash, user_id, old, new)

    @staticmethod
    def _replace_hash(trans, user_id, old, new):
        trans.execute("UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?", (new, user_id, old))
        return trans.rowcount > 0

    @staticmethod
    def _admin_change(trans, name, losing_admin) -> int:
        """
        The id of C{name}, checked in the write transaction: an admin who
        would stop being one must not be the last.
        """
        trans.execute("BEGIN IMMEDIATE")
        row = trans.execute("SELECT role, id FROM users WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NoSuchUser(f"no user {name!r}")
        if row[0] == "admin" and losing_admin:
            if trans.execute("SELECT count(*) FROM users WHERE role = 'admin'").fetchone()[0] <= 1:
                raise LastAdmin("the last admin must stay an admin")
        return row[1]

    def set_role(self, name, role):
        return self.store.run_write(self._set_role, name, role)

    @classmethod
    def _set_role(cls, trans, name, role):
        user_id = cls._admin_change(trans, name, role != "admin")
        trans.execute("UPDATE users SET role = ? WHERE id = ?", (role, user_id))
        return user_id

    def delete_user(self, name):
        return self.store.run_write(self._delete_user, name)

    @classmethod
    def _delete_user(cls, trans, name):
        user_id = cls._admin_change(trans, name, True)
        trans.execute("DELETE FROM users WHERE id = ?", (user_id,))
        return user_id

    # -- sessions ----------------------------------------------------------

    def open_session(self, key, user_id, csrf, now):
        return self.store.run_write(self._open_session, key, user_id, csrf, now)

    @staticmethod
    def _open_session(trans, key, user_id, csrf, now):
        trans.execute(
            "INSERT INTO sessions (id_hash, user_id, csrf, created_at, last_seen_at) VALUES (?, ?, ?, ?, ?)",
            (key, user_id, csrf, now, now),
        )
        trans.execute("UPDATE users SET last_login_at = ? WHERE id = ?", (now, user_id))

    def sessions(self, keys):
        return self.store.run_read(self._sessions, list(keys))

    @staticmethod
    def _sessions(trans, keys):
        out = []
        for start in range(0, len(keys), _KEYS_AT_ONCE):
            part = keys[start : start + _KEYS_AT_ONCE]
            trans.execute(
                "SELECT s.id_hash, u.id, u.name, u.role, s.csrf, s.created_at, s.last_seen_at "
                "FROM sessions AS s JOIN users AS u ON u.id = s.user_id "
                f"WHERE s.id_hash IN ({', '.join('?' * len(part))})",
                part,
            )
            out.extend(SessionRecord(*row) for row in trans.fetchall())
        return out

    def touch_session(self, key, now):
        return self.store.run_write(_do, "UPDATE sessions SET last_seen_at = ? WHERE id_hash = ?", (now, key))

    def close_session(self, key):
        return self.store.run_write(_do, "DELETE FROM sessions WHERE id_hash = ?", (key,))

    def sweep(self, seen_before, created_before, forms_before):
        return self.store.run_write(self._sweep, seen_before, created_before, forms_before)

    @staticmethod
    def _sweep(trans, seen_before, created_before, forms_before):
        trans.execute("DELETE FROM sessions WHERE last_seen_at < ? OR created_at < ?", (seen_before, created_before))
        trans.execute("DELETE FROM login_forms WHERE created_at < ?", (forms_before,))

    # -- login forms -------------------------------------------------------

    def open_login_form(self, key, csrf, now, forms_before, most):
        return self.store.run_write(self._open_login_form, key, csrf, now, forms_before, most)

    @staticmethod
    def _open_login_form(trans, key, csrf, now, forms_before, most):
        trans.execute("DELETE FROM login_forms WHERE created_at < ?", (forms_before,))
        excess = trans.execute("SELECT count(*) FROM login_forms").fetchone()[0] - most + 1
        if excess > 0:
            trans.execute(
                "DELETE FROM login_forms WHERE id_hash IN "
                "(SELECT id_hash FROM login_forms ORDER BY created_at LIMIT ?)",
                (excess,),
            )
        trans.execute("INSERT INTO login_forms (id_hash, csrf, created_at) VALUES (?, ?, ?)", (key, csrf, now))

    def take_login_form(self, key, made_after):
        return self.store.run_write(self._take_login_form, key, made_after)

    @staticmethod
    def _take_login_form(trans, key, made_after):
        row = trans.execute("SELECT csrf, created_at FROM login_forms WHERE id_hash = ?", (key,)).fetchone()
        if row is None:
            return None
        trans.execute("DELETE FROM login_forms WHERE id_hash = ?", (key,))
        return row[0] if row[1] >= made_after else None

    def count_login_forms(self):
        return self.store.run_read(lambda trans: trans.execute("SELECT count(*) FROM login_forms").fetchone()[0])

    # -- API tokens --------------------------------------------------------

    def add_token(self, name, token_hash, created_by, now):
        return self.store.run_write(
            _do,
            "INSERT INTO api_tokens (name, token_hash, created_by, created_at) VALUES (?, ?, ?, ?)",
            (name, token_hash, created_by, now),
        )

    def live_tokens(self):
        d = self.store.run_read(_all, _TOKEN + " WHERE revoked_at IS NULL ORDER BY id")
        return d.addCallback(lambda rows: [TokenRecord(*r) for r in rows])

    def list_tokens(self):
        d = self.store.run_read(_all, _TOKEN + " ORDER BY revoked_at IS NOT NULL, id DESC")
        return d.addCallback(lambda rows: [TokenRecord(*r) for r in rows])

    def touch_token(self, token_id, now):
        return self.store.run_write(_do, "UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (now, token_id))

    def revoke_token(self, token_id, now):
        return self.store.run_write(self._revoke_token, token_id, now)

    @staticmethod
    def _revoke_token(trans, token_id, now):
        trans.execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, token_id))
        return trans.rowcount > 0


def add_user_file(path: str, name: str, role: str, password_hash: str, now: float) -> bool:
    """
    Create a user, or reset the password hash and role of an existing one
    (ending their sessions), directly in the SQLite file at C{path},
    bringing its schema up to date first.  For the command line, before
    any reactor runs.  Returns whether the user is new.
    """
    from monitor.store.migrations import migrate
    from monitor.store.sqlite import owner_only_database

    owner_only_database(path)
    connection = sqlite3.connect(path, timeout=10, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA foreign_keys = ON")
        migrate(connection, path)
        connection.execute("BEGIN IMMEDIATE")
        try:
            row = connection.execute("SELECT id FROM users WHERE name = ?", (name,)).fetchone()
            if row is None:
                connection.execute(_INSERT_USER, (name, role, password_hash, now))
            else:
                connection.execute(
                    "UPDATE users SET role = ?, password_hash = ? WHERE id = ?", (role, password_hash, row[0])
                )
                connection.execute("DELETE FROM sessions WHERE user_id = ?", (row[0],))
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    finally:
        connection.close()
    return row is None
