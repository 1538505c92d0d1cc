"""
C{GET /api/v1/hubs} in memory (treq's StubTreq over the API's Klein app):
a bearer token like every route, strict parameters, this hub alone with
the memory queue, and 503 (not a hang, not a 500) when Redis is away.
"""

import json

from treq.testing import StubTreq
from twisted.internet.task import Clock

from monitor.cluster import RedisCluster, SoloCluster
from monitor.web.api import Api, TokenAuth

TOKEN = "t0ken"


def call(cluster, path="/api/v1/hubs", token=TOKEN):
    stub = StubTreq(Api(TokenAuth([TOKEN]), cluster=cluster).resource())
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    d = stub.get("http://monitor.test" + path, headers=headers)
    stub.flush()
    out = []
    d.addBoth(out.append)
    response = out[0]
    body = []
    response.content().addBoth(body.append)
    stub.flush()
    return response.code, json.loads(body[0])


def test_alone_the_hub_lists_itself():
    """With the memory queue the answer is this hub, marked as the one that answered."""
    solo = SoloCluster("hub-x", Clock())
    solo.leased("alerts", object())
    code, body = call(solo)
    assert code == 200
    (me,) = body["hubs"]
    assert me["name"] == "hub-x" and me["this"] is True and me["leases"] == ["alerts"]


def test_token_and_parameters_are_checked():
    """No token: 401; an unknown parameter: 400 naming it."""
    solo = SoloCluster("hub-x", Clock())
    assert call(solo, token=None)[0] == 401
    code, body = call(solo, "/api/v1/hubs?limit=3")
    assert code == 400 and body["parameter"] == "limit"


def test_redis_away_is_a_503():
    """When Redis cannot be reached the API says so with 503."""
    away = RedisCluster({"path": "/nonexistent.sock", "db": 0, "password": None}, "hub-x", Clock(), ttl=3)
    code, body = call(away)
    assert code == 503 and "Redis" in body["error"]
