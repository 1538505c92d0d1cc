"""
PostgreSQL for the store tests: one throwaway server per test session
(L{tests.servers.PostgresServer}), a fresh database for each test.

Import the fixtures into a test module (C{from tests.store.postgres import
postgres_server, postgres_dsn}); they live here rather than in a
C{conftest.py} so that other store tests keep their own.
"""

from __future__ import annotations

import pytest

from tests.servers import PostgresServer


@pytest.fixture(scope="session")
def postgres_server():
    """The session's PostgreSQL server (skips, or fails in CI, when missing)."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres_dsn(postgres_server):
    """The DSN of a new, empty database, dropped after the test."""
    if postgres_server.proc is None:
        postgres_server.start()  # a test that stopped it left it down
    name = postgres_server.create_database()
    try:
        yield postgres_server.dsn(name)
    finally:
        if postgres_server.proc is None:
            postgres_server.start()
        postgres_server.drop_database(name)
