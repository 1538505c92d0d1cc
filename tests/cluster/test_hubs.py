"""
Two real hubs (C{twistd -n monitor}) on one real redis-server: C{GET
/api/v1/hubs} on either lists both from their heartbeats, the collector and
the alerts run on exactly one of them, and when that one is killed the
other takes both over within the lease; with the memory queue the API lists
the one hub, holding everything.
"""

import json

import pytest_twisted

from monitor.config import load_config
from tests.conftest import ROOT
from tests.test_twistd import CONFIG, Hub


def cluster_config(redis_url, name, prefix, replay):
    return CONFIG.replace('path = "posts.jsonl"', f'path = "{replay}"\nfollow = true').replace(
        "[web]",
        f'[hub]\nname = "{name}"\nlease = "1.5s"\ncluster = "{prefix}"\n'
        f'[queue]\nkind = "redis"\nurl = "{redis_url}"\nclaim_after = "1s"\n[web]',
    )


async def hubs_of(hub):
    code, body = await hub.get("/api/v1/hubs")
    assert code == 200, body
    return json.loads(body)["hubs"]


def holders(hubs):
    return {lease: h["name"] for h in hubs for lease in h["leases"]}


@pytest_twisted.ensureDeferred
async def test_two_hubs_list_each_other_and_the_survivor_takes_over(reactor, tmp_path, redis_server, prefix):
    """Both hubs are listed by each; one runs the collector and one the alerts; killed, the other takes both."""
    replay = tmp_path / "posts.jsonl"
    replay.write_text("".join(json.dumps({"id": i, "text": f"acme {i}", "author": "a", "created_at": 1.7e9 + i}) + "\n"
                              for i in range(50)), encoding="utf-8")  # fmt: skip
    hubs = {}
    for name in ("hub-a", "hub-b"):
        (tmp_path / name).mkdir()
        hubs[name] = Hub(reactor, tmp_path / name, cluster_config(redis_server.url, name, prefix, replay))
        hubs[name].start()
    try:

        async def both_listed():
            a, b = await hubs_of(hubs["hub-a"]), await hubs_of(hubs["hub-b"])
            names = [[h["name"] for h in x] for x in (a, b)]
            return names == [["hub-a", "hub-b"]] * 2 and set(holders(b)) == {"alerts", "collector:archive"} and b

        listed = await hubs["hub-b"].wait_until(both_listed, seconds=60)
        assert [h["this"] for h in listed] == [False, True]
        assert all(h["pid"] == hubs[h["name"]].proc.pid for h in listed)
        code, _ = await hubs["hub-a"].get("/api/v1/hubs", token=None)
        assert code == 401  # like every API route
        runner = holders(listed)["collector:archive"]
        survivor = "hub-b" if runner == "hub-a" else "hub-a"

        async def all_stored():
            counts = []
            for hub in hubs.values():
                code, body = await hub.get("/api/v1/stats")
                counts.append(json.loads(body)["count"])
            return sum(counts) == 50

        await hubs[survivor].wait_until(all_stored, seconds=60)

        # The runner dies without a word: its leases and heartbeat expire.
        hubs[runner].proc.kill()
        hubs[runner].proc.wait(10)
        killed_at = reactor.seconds()

        async def taken_over():
            now = await hubs_of(hubs[survivor])
            return [h["name"] for h in now] == [survivor] and holders(now) == {
                "alerts": survivor, "collector:archive": survivor} and now  # fmt: skip

        now = await hubs[survivor].wait_until(taken_over, seconds=30)
        # Within the lease (1.5 s) plus a renewal and a heartbeat interval.
        assert reactor.seconds() - killed_at < 6, reactor.seconds() - killed_at
        assert now[0]["this"] is True
        code, body = await hubs[survivor].get("/api/v1/sources")
        (source,) = json.loads(body)["sources"]
        assert source["name"] == "archive" and source["state"] != "stopped"
    finally:
        for hub in hubs.values():
            if hub.proc.poll() is None:
                assert await hub.stop(), hub.output()


@pytest_twisted.ensureDeferred
async def test_alone_the_hub_lists_itself_holding_everything(reactor, tmp_path):
    """With the memory queue, /api/v1/hubs is this hub, running the collector and the alerts."""
    (tmp_path / "posts.jsonl").write_text("", encoding="utf-8")
    hub = Hub(reactor, tmp_path, CONFIG.replace("[web]", '[hub]\nname = "solo"\n[web]'))
    hub.start()
    try:

        async def listed():
            return await hubs_of(hub)

        (me,) = await hub.wait_until(listed)
        assert me["name"] == "solo" and me["this"] is True and me["pid"] == hub.proc.pid
        assert me["leases"] == ["alerts", "collector:archive"]
    finally:
        assert await hub.stop(), hub.output()


def test_the_cluster_example_configuration_loads():
    """etc/cluster.toml is valid: a Redis queue, a lease, a hub name per hub, one PostgreSQL."""
    environ = {"MONITOR_HUB": "hub-a", "MONITOR_PORT": "8080", "MONITOR_DSN": "postgresql://m@db/monitor",
               "MONITOR_REDIS_URL": "redis://cache:6379/0"}  # fmt: skip
    c = load_config(str(ROOT / "etc" / "cluster.toml"), environ=environ)
    assert c.queue["kind"] == "redis" and c.queue["url"] == "redis://cache:6379/0"
    assert c.hub["name"] == "hub-a" and c.hub["lease"] == "15s"
    assert c.store["kind"] == "postgresql" and c.store["dsn"] == "postgresql://m@db/monitor"
    assert c.store["path"] == "var/hub-a.sqlite"
    assert {s["name"] for s in c.sources} == {"inbox", "demo"}
