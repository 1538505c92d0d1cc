"""
Several hubs through failures, as processes: two real hubs (C{twistd -n
monitor}) on one real PostgreSQL and one real Redis, a followed replay of a
few thousand posts paced by their timestamps, and in the middle of it

* C{kill -9} of the hub that runs the collector and the alerts: every post
  is stored once (counted in PostgreSQL), the survivor takes the collector
  over and continues from the stored position, a headless Chromium logged
  in on the survivor keeps receiving posts in its live feed, and the alert
  that fired before the kill is delivered once (a webhook receiver of the
  test's counts every request);
* PostgreSQL restarted, then Redis killed and restarted (append-only
  persistence on): nothing is lost and nothing is counted twice.

Leases and claims are short (C{[hub] lease = "1.5s"}, C{[queue]
claim_after = "3s"}), so that each test takes seconds.
"""

import base64
import http.server
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import uuid
from datetime import datetime

import pytest

from tests.servers import PostgresServer, RedisServer
from tests.web.conftest import PASSWORDS, TOKEN, HubProcess

#: Posts in the replay, and how many a second their timestamps space them by.
POSTS, RATE = 3000, 250
#: Every OUTAGE_EVERY-th post says "outage": the keyword rule's hits.
OUTAGE_EVERY = 100
SECRET = "whsec_" + base64.b64encode(b"cluster-failover-test-secret").decode()

CONFIG = """
[hub]
name = "{name}"
lease = "1.5s"
cluster = "{prefix}"
[queue]
kind = "redis"
url = "{redis}"
# Longer than a busy machine takes over a batch: a live hub's posts are
# not taken from it, only a dead one's.
claim_after = "3s"
[store]
kind = "postgresql"
dsn = "{dsn}"
path = "monitor.sqlite"
[analysis]
# Small batches: a hub has few posts in hand when the other dies.
batch_size = 100
[web]
endpoint = "tcp:0:interface=127.0.0.1"
ws_interval = 0.1
scrypt_n = 16384
[[sources]]
kind = "replay"
name = "inbox"
path = "{inbox}"
follow = true
speed = 1.0
[[topics]]
name = "Acme"
terms = ["acme"]
[[rules]]
name = "outage"
type = "keyword"
phrases = ["outage"]
topics = ["Acme"]
cooldown = "1h"
[[channels]]
name = "hook"
kind = "webhook"
url = "{hook}"
secret = "{secret}"
"""


def until(check, seconds, step=0.1):
    """C{check()}'s first truthy answer within C{seconds} (asked every C{step}), else its last answer."""
    pause = threading.Event()
    deadline = time.monotonic() + seconds
    while True:
        answer = check()
        if answer or time.monotonic() >= deadline:
            return answer
        pause.wait(step)


class Receiver:
    """A webhook receiver on a port of its own: every request kept, answered 204."""

    def __init__(self):
        self.requests = []
        received = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.headers["webhook-id"], json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Cluster:
    """A PostgreSQL, a Redis, a webhook receiver, a replay file, and hubs on them."""

    def __init__(self):
        self.postgres = PostgresServer().start()
        # Its append-only file on tmpfs when there is one: what is tested is
        # a crash of the server process, not of the machine, and an fsync
        # per post on a disk shared with other test runs would be what the
        # test waits for (270 puts a second here on an idle machine).
        self.redis_dir = tempfile.mkdtemp(
            prefix="monitor-redis-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
        )
        self.redis = RedisServer(self.redis_dir).start()
        self.database = self.postgres.create_database()
        self.receiver = Receiver()
        self.dir = tempfile.mkdtemp(prefix="monitor-failover-")
        self.inbox = os.path.join(self.dir, "inbox.jsonl")
        open(self.inbox, "w").close()
        self.prefix = f"failover-{uuid.uuid4().hex[:8]}"
        self.hubs = {}

    def hub(self, name):
        directory = os.path.join(self.dir, name)
        os.makedirs(directory)
        config = CONFIG.format(name=name, prefix=self.prefix, redis=self.redis.url,
                               dsn=self.postgres.dsn(self.database), inbox=self.inbox, hook=self.receiver.url,
                               secret=SECRET)  # fmt: skip
        self.hubs[name] = HubProcess(directory, config)
        return self.hubs[name]

    def write_posts(self, rate=RATE):
        """The whole replay at once; the hubs read it at C{rate} posts a second."""
        start = time.time()
        with open(self.inbox + ".new", "w", encoding="utf-8") as f:
            for i in range(POSTS):
                words = "outage again" if i % OUTAGE_EVERY == 10 else "works fine"
                post = {"id": f"p{i}", "text": f"acme {words}, post {i} of the replay", "author": f"user{i % 97}",
                        "created_at": start + i / rate}  # fmt: skip
                f.write(json.dumps(post) + "\n")
        os.replace(self.inbox + ".new", self.inbox)
        return start

    def sql(self, query):
        return self.postgres.psql(query, self.database)

    def stored(self):
        return int(self.sql("SELECT count(*) FROM posts"))

    def close(self):
        for hub in self.hubs.values():
            if hub.proc is not None and hub.proc.poll() is None:
                hub.proc.kill()
                hub.proc.wait(10)
        self.receiver.close()
        self.redis.close()
        shutil.rmtree(self.redis_dir, ignore_errors=True)
        self.postgres.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def cluster():
    c = Cluster()
    yield c
    c.close()


def api(hub, path):
    status, _, body = hub.request(path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, (path, status, body)
    return json.loads(body)


def collected(hub):
    """The hub's count of posts its collector read (C{/metrics})."""
    _, _, body = hub.request("/metrics")
    m = re.search(rb'^monitor_posts_collected_total\{source="inbox"\} (\S+)$', body, re.M)
    return int(float(m.group(1))) if m else 0


def assert_stored_once(cluster):
    """Every post of the replay in PostgreSQL exactly once, and counted once in the stats."""
    rows, uids, ids = cluster.sql("SELECT count(*), count(DISTINCT uid), count(DISTINCT native_id) FROM posts").split(
        "|"
    )
    assert (int(rows), int(uids), int(ids)) == (POSTS, POSTS, POSTS)
    native = set(cluster.sql("SELECT native_id FROM posts").split())
    assert native == {f"p{i}" for i in range(POSTS)}
    # The rollups, written in the posts' transactions, count each post once.
    for hub in cluster.hubs.values():
        if hub.proc.poll() is None:
            assert api(hub, "/api/v1/stats")["count"] == POSTS


def test_kill_9_of_the_collecting_hub(cluster, playwright):
    """The collecting, alerting hub dies mid-replay: nothing lost or doubled, the survivor carries on live."""
    from playwright.sync_api import expect

    from tests.web.conftest import launch, login
    from tests.web.test_browser import wait_live

    a, b = cluster.hub("hub-a"), cluster.hub("hub-b")
    # The admin is made through hub-a and logs in on hub-b: accounts are in
    # the shared store.
    a.add_user("admin", "admin", PASSWORDS["admin"])
    # hub-a first, so that it holds the collector and the alerts.
    a.start()
    a.wait_for(r"took the lease collector:inbox")
    a.wait_for(r"took the lease alerts")
    b.start()
    b.wait_for(r"monitor is running")

    context = launch(playwright)
    try:
        page = context.new_page()
        login(page, b, "admin")
        page.goto(b.base + "/live")
        wait_live(page)

        start = cluster.write_posts()
        # The alert fires on hub-a (post 10 says "outage") and is delivered.
        assert until(lambda: len(cluster.receiver.requests) >= 1, 30), a.output()
        assert until(lambda: cluster.stored() >= POSTS // 2, 60), (cluster.stored(), a.output())
        assert cluster.stored() < POSTS * 5 // 6, "the replay went too fast to be killed in the middle"
        page.wait_for_function("() => Number(document.getElementById('feed-rate').textContent.replace(/,/g, '')) > 0")

        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)
        killed_at, stored_at_kill = time.monotonic(), cluster.stored()

        b.wait_for(r"took the lease collector:inbox", seconds=30)
        b.wait_for(r"took the lease alerts", seconds=30)
        # Within the lease (1.5 s) and a renewal interval, give or take a busy machine.
        assert time.monotonic() - killed_at < 8

        assert until(lambda: cluster.stored() == POSTS, 60), (cluster.stored(), b.output())
        assert_stored_once(cluster)

        # The survivor read on from the stored position, not from the start
        # (which is all POSTS): what was not stored at the kill, give or take
        # what was on its way (batches read before the kill and stored after
        # it, or stored with an older position after a newer one was: the
        # position may go back a little, never past what is stored).
        read = collected(b)
        assert 0 < read < POSTS - stored_at_kill // 2, (read, stored_at_kill)
        code, _, body = b.request("/api/v1/sources", headers={"Authorization": f"Bearer {TOKEN}"})
        (source,) = json.loads(body)["sources"]
        assert source["name"] == "inbox" and source["state"] != "failing", source

        # The browser on the survivor saw the last post live, on the same connection.
        last = page.locator("#feed .post", has_text=f"post {POSTS - 1} of the replay")
        expect(last).to_have_count(1, timeout=15000)
        expect(page.locator("#live-dot")).to_have_attribute("data-state", "open")
        shown = int(page.locator("#feed-rate").inner_text().replace(",", "") or 0)
        assert shown >= POSTS - stored_at_kill, shown

        # The alert: the survivor leads, has counted the last "outage" post
        # and has nothing left to send; one request reached the receiver.
        last_outage = max(i for i in range(POSTS) if i % OUTAGE_EVERY == 10)
        last_at = start + last_outage / RATE

        def settled():
            incidents = api(b, "/api/v1/incidents?rule=outage")["incidents"]
            done = all(n["state"] != "pending" for i in incidents for n in i["notifications"])
            hit = any(abs(datetime.fromisoformat(i["last_hit_at"]).timestamp() - last_at) < 0.01 for i in incidents)
            return done and hit and incidents

        incidents = until(settled, 30)
        assert incidents, api(b, "/api/v1/incidents?rule=outage")
        events = [(payload["type"], payload["data"]["incident"]["id"]) for _, payload in cluster.receiver.requests]
        assert len(cluster.receiver.requests) == 1, (events, b.output())
        assert events[0][0] == "incident.opened"
        (incident,) = incidents
        assert incident["id"] == events[0][1] and incident["state"] == "open"

    finally:
        context.close()
    b.stop()


def test_postgresql_and_redis_restarted_mid_replay(cluster):
    """PostgreSQL restarted, then Redis killed and restarted, during the replay: every post stored once."""
    hubs = [cluster.hub("hub-a"), cluster.hub("hub-b")]
    for hub in hubs:
        hub.start()
    for hub in hubs:
        hub.wait_for(r"monitor is running")
    # Slower than the other test's: two restarts, each with its wait, fit
    # well inside the replay even on a busy machine.
    cluster.write_posts(rate=RATE * 0.8)

    def noticed(pattern):
        """Whether a hub has logged C{pattern} (each hub's log of this start)."""
        return any(re.search(pattern, line) for hub in hubs for line in list(hub.lines))

    assert until(lambda: cluster.stored() >= POSTS // 4, 60), cluster.stored()
    cluster.postgres.stop()
    # Down until a hub has found it gone (collecting into Redis meanwhile).
    assert until(lambda: noticed(r"lost the connection to postgresql"), 30), [h.output() for h in hubs]
    cluster.postgres.start()
    at_restart = cluster.stored()
    assert at_restart < POSTS // 2, "the replay went too fast to restart both servers in the middle"

    assert until(lambda: cluster.stored() >= at_restart + POSTS // 8, 60), cluster.stored()
    # A crash: what Redis acknowledged is in its append-only file.
    cluster.redis.kill()
    assert until(lambda: noticed(r"could not reach Redis|Lost connection"), 30), [h.output() for h in hubs]
    cluster.redis.start()
    assert cluster.stored() < POSTS, "the replay went too fast to restart Redis in the middle"

    assert until(lambda: cluster.stored() == POSTS, 90), (cluster.stored(), *(h.output() for h in hubs))
    assert_stored_once(cluster)
    for hub in hubs:
        assert hub.proc.poll() is None, hub.output()
        hub.stop()
