"""
Real hubs on a real Redis: C{twistd -n monitor} with C{[queue] kind =
"redis"}, killed with SIGKILL in the middle of a replay, and another hub
(another name) that takes over what the dead one had read.  Every post is
stored exactly once and the stream ends empty.
"""

import json
import sqlite3

import pytest_twisted

from tests.servers import RedisServer
from tests.test_twistd import CONFIG, Hub


def redis_config(url, name):
    return CONFIG.replace(
        "[web]",
        f'[hub]\nname = "{name}"\n[queue]\nkind = "redis"\nurl = "{url}"\nmax_length = 3000\nclaim_after = "1s"\n[web]',
    )


@pytest_twisted.ensureDeferred
async def test_sigkill_mid_replay_then_another_hub_stores_each_post_once(reactor, tmp_path):
    n = 8000
    with open(tmp_path / "posts.jsonl", "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"id": i, "text": f"acme is great number {i}", "author": f"u{i % 50}",
                                "created_at": 1.7e9 + i}) + "\n")  # fmt: skip
    redis = RedisServer().start()
    try:
        hub = Hub(reactor, tmp_path, redis_config(redis.url, "hub-a"))
        hub.start()

        async def some_stored():
            code, body = await hub.get("/api/v1/stats")
            return code == 200 and json.loads(body)["count"] >= 1000

        await hub.wait_until(some_stored)
        hub.proc.kill()
        hub.proc.wait(10)
        db = sqlite3.connect(tmp_path / "monitor.sqlite")
        stored_before = db.execute("SELECT count(*) FROM posts").fetchone()[0]
        db.close()
        assert stored_before < n, "the hub should have been killed mid-replay"

        survivor = Hub(reactor, tmp_path, redis_config(redis.url, "hub-b"))
        survivor.start()
        try:

            async def all_stored():
                code, body = await survivor.get("/api/v1/stats")
                return code == 200 and json.loads(body)["count"] == n

            await survivor.wait_until(all_stored, seconds=90)

            async def stream_empty():
                return redis.cli("XLEN", "monitor:posts") == "0"

            try:
                await survivor.wait_until(stream_empty, seconds=30)
            except AssertionError:
                raise AssertionError(
                    "stream not empty: XLEN "
                    + redis.cli("XLEN", "monitor:posts")
                    + "\nXPENDING "
                    + redis.cli("XPENDING", "monitor:posts", "monitor")
                    + "\nGROUPS "
                    + redis.cli("XINFO", "GROUPS", "monitor:posts")
                    + "\nCONSUMERS "
                    + redis.cli("XINFO", "CONSUMERS", "monitor:posts", "monitor")
                    + "\n"
                    + survivor.output()
                ) from None
            assert redis.cli("XPENDING", "monitor:posts", "monitor").split()[0] == "0"
        finally:
            took_over = "took over" in survivor.output()
            assert await survivor.stop(), survivor.output()
        db = sqlite3.connect(tmp_path / "monitor.sqlite")
        ids = [int(r[0]) for r in db.execute("SELECT native_id FROM posts")]
        db.close()
        assert sorted(ids) == list(range(n))
        # hub-a died holding a batch or two (a flat-out replay always has
        # some in flight): hub-b took them over after claim_after.
        assert took_over
    finally:
        redis.close()
