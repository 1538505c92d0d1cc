"""
The queue providers, for the contract suite: the memory queue and a Redis
stream on a throwaway redis-server.
"""

import uuid

import pytest
import pytest_twisted

from monitor.queue.memory import MemoryQueue
from monitor.queue.redis import RedisQueue
from tests.servers import RedisServer


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer().start()
    yield server
    server.close()


def redis_queue(server, reactor, stream=None, **kwargs):
    kwargs.setdefault("block", 0.2)
    return RedisQueue(server.url, stream=stream or f"test:{uuid.uuid4().hex}", reactor=reactor, **kwargs)


@pytest.fixture(params=["memory", "redis"])
def make_queue(request, reactor):
    """A factory of started queues of one provider, stopped after the test."""
    made = []

    def make(capacity=100):
        if request.param == "memory":
            q = MemoryQueue(capacity, reactor=reactor)
        else:
            q = redis_queue(request.getfixturevalue("redis_server"), reactor, max_length=capacity)
            q.startService()
        made.append(q)
        return q

    make.kind = request.param
    yield make
    for q in made:
        if hasattr(q, "stopService") and q.running:
            pytest_twisted.blockon(q.stopService())
