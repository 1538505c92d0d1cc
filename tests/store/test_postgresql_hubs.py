"""
Two real hubs (C{twistd -n monitor}) on one Redis queue and one PostgreSQL
database: the incidents of the one evaluating the rules are the cluster's
(either hub's API lists them, from the database), each notification
reaches the receiver once, and when the leader is killed the survivor
leads on the same incidents without sending anything again.
"""

import json

import pytest
import pytest_twisted
from twisted.internet.task import deferLater
from twisted.web.server import Site

from tests.cluster.test_hubs import holders, hubs_of
from tests.fakes.webhook import FakeWebhookReceiver
from tests.queue.conftest import redis_server  # noqa: F401  (the fixture)
from tests.store.test_postgresql_hub import ALERTS_CONFIG, SECRET, pg_config
from tests.test_twistd import Hub, free_port

pytestmark = pytest.mark.timeout(180)


def config(redis_url, name, prefix, replay, hook_port):
    text = pg_config().replace('path = "posts.jsonl"', f'path = "{replay}"\nfollow = true')
    text = text.replace(
        "[web]",
        f'[hub]\nname = "{name}"\nlease = "1.5s"\ncluster = "{prefix}"\n'
        f'[queue]\nkind = "redis"\nurl = "{redis_url}"\nclaim_after = "1s"\n[web]',
    )
    return text + ALERTS_CONFIG.replace("HOOK", str(hook_port)).replace("SECRET", SECRET)


@pytest_twisted.ensureDeferred
async def test_two_hubs_share_incidents_and_deliver_each_notification_once(
    reactor,
    tmp_path,
    redis_server,  # noqa: F811 (the fixture imported above)
    postgres_dsn,
    monkeypatch,
):
    """Either hub lists the leader's incidents; the receiver gets each notification once, before and after a takeover."""
    replay = tmp_path / "posts.jsonl"
    replay.write_text("".join(json.dumps({"id": i, "text": f"acme {i}" + (" battery life" if i % 5 == 0 else ""),
                                          "author": "a", "created_at": 1.7e9 + i}) + "\n"
                              for i in range(40)), encoding="utf-8")  # fmt: skip
    monkeypatch.setenv("MONITOR_DSN", postgres_dsn)
    hook_port = free_port()
    receiver = FakeWebhookReceiver(SECRET, reactor)
    port = reactor.listenTCP(hook_port, Site(receiver), interface="127.0.0.1")
    prefix = f"pg-{tmp_path.name[-12:]}"
    hubs = {}
    for name in ("hub-a", "hub-b"):
        (tmp_path / name).mkdir()
        hubs[name] = Hub(reactor, tmp_path / name, config(redis_server.url, name, prefix, replay, hook_port))
        hubs[name].start()
    try:

        async def incidents(hub):
            code, body = await hub.get("/api/v1/incidents?rule=battery")
            assert code == 200, body
            return json.loads(body)["incidents"]

        async def delivered_and_shared():
            seen = [await incidents(hub) for hub in hubs.values()]
            notes = [n for i in seen[0] for n in i["notifications"]]
            return notes and all(n["state"] == "sent" for n in notes) and seen[0] == seen[1] and seen[0]

        first = await hubs["hub-a"].wait_until(delivered_and_shared, seconds=90)

        async def leader_listed():
            # The heartbeat that names the alerts lease may come a beat later.
            return holders(await hubs_of(hubs["hub-a"])).get("alerts")

        leader = await hubs["hub-a"].wait_until(leader_listed, seconds=30)
        survivor = "hub-b" if leader == "hub-a" else "hub-a"
        hubs[leader].proc.kill()
        hubs[leader].proc.wait(10)

        async def leads():
            return holders(await hubs_of(hubs[survivor])).get("alerts") == survivor

        await hubs[survivor].wait_until(leads, seconds=30)
        # Two of the survivor's evaluation rounds: time to send anything it thought undelivered.
        await deferLater(reactor, 2.5, lambda: None)
        after = await incidents(hubs[survivor])
    finally:
        for hub in hubs.values():
            if hub.proc.poll() is None:
                await hub.stop()
        await port.stopListening()
    ids = sorted(n["id"] for i in first for n in i["notifications"])
    assert sorted(d.id for d in receiver.deliveries) == ids and not receiver.duplicates
    assert [i["id"] for i in after] == [i["id"] for i in first]
    assert all(n["state"] == "sent" and len(n["log"]) == 1 for i in after for n in i["notifications"])
