"""
The store's contract suites run over every provider in L{PROVIDERS}: each
entry makes a L{Backend} (a started store and the providers of the narrow
interfaces over it) and says how to stop it.  A new store kind (the
PostgreSQL one) adds one factory here; the suites do not change.

A suite whose area a kind has no provider of yet makes its own
C{backend} fixture over the kinds that have one (L{backend_fixture}).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pytest_twisted
from twisted.internet.defer import maybeDeferred

from monitor.store.postgresql import PostgreSQLStore
from monitor.store.postgresql_accounts import PostgreSQLAccounts
from monitor.store.postgresql_alerts import PostgreSQLAlerts
from monitor.store.postgresql_learning import PostgreSQLLearning
from monitor.store.sqlite import SQLiteStore
from monitor.store.sqlite_accounts import SQLiteAccounts
from monitor.store.sqlite_alerts import SQLiteAlerts
from monitor.store.sqlite_learning import SQLiteLearning

# The throwaway PostgreSQL server and a fresh database per test, for every
# store test that asks for them.
from tests.store.postgres import postgres_dsn, postgres_server  # noqa: F401 (fixtures)


@dataclass
class Backend:
    """
    One store kind, started: C{store} provides L{monitor.interfaces.IStore},
    the others the interfaces of L{monitor.store.interfaces}.  C{stop}
    returns a Deferred (or C{None}) once everything is released.
    """

    name: str
    store: Any
    accounts: Any
    alerts: Any
    learning: Any
    stop: Callable[[], Any]


async def make_sqlite_backend(reactor, tmp_path) -> Backend:
    store = SQLiteStore(tmp_path / "contract.sqlite", reactor=reactor)
    await store.startService()
    return Backend(
        "sqlite", store, SQLiteAccounts(store), SQLiteAlerts(store), SQLiteLearning(store), store.stopService
    )


async def make_postgresql_backend(reactor, tmp_path, dsn) -> Backend:
    store = PostgreSQLStore(dsn, pool_size=3, reactor=reactor)
    await store.startService()
    return Backend(
        "postgresql", store, PostgreSQLAccounts(store), PostgreSQLAlerts(store, "contract"), PostgreSQLLearning(store),
        store.stopService,
    )  # fmt: skip


#: Store kind -> C{async factory(reactor, tmp_path, dsn) -> Backend}; the
#: DSN is that of a fresh PostgreSQL database, for the kinds that use one.
PROVIDERS = {"sqlite": make_sqlite_backend, "postgresql": make_postgresql_backend}

#: The kinds that need the throwaway PostgreSQL server.
NEEDS_POSTGRESQL = {"postgresql"}

#: The kinds whose backend provides accounts, and learning: every kind now.
ACCOUNTS_KINDS = LEARNING_KINDS = tuple(PROVIDERS)


def backend_fixture(kinds):
    """A C{backend} fixture over the store kinds C{kinds}, for a suite that needs fewer than all."""

    @pytest_twisted.async_yield_fixture(params=sorted(kinds))
    async def backend(request, reactor, tmp_path):
        factory = PROVIDERS[request.param]
        if request.param in NEEDS_POSTGRESQL:
            made = await factory(reactor, tmp_path, request.getfixturevalue("postgres_dsn"))
        else:
            made = await factory(reactor, tmp_path)
        try:
            yield made
        finally:
            await maybeDeferred(made.stop)

    return backend


backend = backend_fixture(PROVIDERS)
