"""
The cluster's parts on a throwaway redis-server (the queue tests' one).
"""

import uuid

import pytest

from tests.queue.conftest import redis_server  # noqa: F401  (the fixture)
from tests.web.conftest import playwright  # noqa: F401  (the fixture: Debian's Chromium)


@pytest.fixture
def prefix():
    """A cluster name of its own per test, so tests share no keys."""
    return f"test-{uuid.uuid4().hex[:12]}"
