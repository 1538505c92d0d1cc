"""
The real thing for the network collectors: a C{twistd monitor} hub process
collecting from the fake Jetstream and the fake Mastodon over loopback, a
SIGTERM while the networks go on posting, and a restart that picks up what
was missed, storing nothing twice.
"""

import json

import pytest_twisted

from monitor.config import load_config
from tests.conftest import ROOT
from tests.fakes.jetstream import FakeJetstream
from tests.fakes.mastodon import FakeMastodon
from tests.test_twistd import Hub

CONFIG = """
[store]
path = "monitor.sqlite"
[web]
endpoint = "tcp:PORT:interface=127.0.0.1"
[[sources]]
kind = "bluesky"
name = "bluesky"
url = "ws://127.0.0.1:JETSTREAM/subscribe"
appview_url = "http://127.0.0.1:JETSTREAM"
[[sources]]
kind = "mastodon"
name = "mastodon"
instance = "http://127.0.0.1:MASTODON"
timelines = ["#acme", "public"]
poll_interval = 1
[[topics]]
name = "Acme"
terms = ["acme"]
"""

TAG = '<a href="https://m.test/tags/acme" class="mention hashtag" rel="tag">#<span>acme</span></a>'


def test_offline_config_validates():
    """etc/offline.toml, which points the real collectors at the fakes, is a valid configuration."""
    config = load_config(str(ROOT / "etc" / "offline.toml"))
    assert [s["kind"] for s in config.sources] == ["bluesky", "mastodon"]


@pytest_twisted.ensureDeferred
async def test_hub_collects_from_both_networks_across_a_restart(reactor, tmp_path):
    """Posts from Bluesky and Mastodon reach the store once each, including those made while the hub was down."""
    jetstream = FakeJetstream(reactor, start_us=int(reactor.seconds() * 1_000_000))
    mastodon = FakeMastodon(reactor)
    jport = reactor.listenTCP(0, jetstream.site(), interface="127.0.0.1")
    mport = reactor.listenTCP(0, mastodon.site(), interface="127.0.0.1")
    text = CONFIG.replace("JETSTREAM", str(jport.getHost().port)).replace("MASTODON", str(mport.getHost().port))
    hub = Hub(reactor, tmp_path, text)
    counter = iter(range(10_000))

    def post_everywhere(n):
        for _ in range(n):
            i = next(counter)
            jetstream.post(f"did:plc:user{i % 7:020d}", f"3k{i:06d}", f"Is acme down again? #{i} 😩")
            mastodon.status(f"<p>{TAG} not loading for me either ({i})</p>", tags=["acme"], acct=f"u{i % 5}")
            mastodon.status(f"<p>unrelated chatter {i}</p>")

    async def stored(n):
        async def check():
            code, body = await hub.get("/api/v1/stats?topic=Acme")
            return code == 200 and json.loads(body)["count"] == n

        await hub.wait_until(check, seconds=30)

    async def sources():
        code, body = await hub.get("/api/v1/sources")
        return {s["name"]: s for s in json.loads(body)["sources"]}

    hub.start()
    try:

        async def both_connected():
            s = await sources()
            return s["bluesky"]["state"] == "connected" and s["mastodon"]["state"] == "connected"

        await hub.wait_until(both_connected)
        post_everywhere(10)
        await stored(20)
        assert await hub.stop()

        post_everywhere(5)  # while the hub is down
        hub.start()
        post_everywhere(5)
        await stored(40)

        async def bluesky_posts():
            code, body = await hub.get("/api/v1/posts?topic=Acme&limit=500&source=bluesky")
            return json.loads(body)["posts"]

        async def handles_attached():
            # Posts go out before their authors' profiles; the profiles follow.
            return all(p["author"].endswith(".bsky.social") for p in await bluesky_posts())

        await hub.wait_until(handles_attached, seconds=10)
        posts = await bluesky_posts()
        assert len(posts) == 20 and len({p["id"] for p in posts}) == 20
        assert all(p["url"].startswith("https://bsky.app/profile/did:plc:") for p in posts)
        code, body = await hub.get("/api/v1/posts?topic=Acme&limit=500&source=mastodon")
        posts = json.loads(body)["posts"]
        assert len(posts) == 20 and all(p["text"].startswith("#acme not loading") for p in posts)
        s = await sources()
        assert s["bluesky"]["malformed"] == 0 and s["mastodon"]["malformed"] == 0
        assert "cursor" in jetstream.requests[-1]  # the restart resumed, not read the live tail
        assert await hub.stop()
    finally:
        if hub.proc.poll() is None:
            hub.proc.kill()
        jetstream.disconnect_all()
        mastodon.drop_streams()
        await jport.stopListening()
        await mport.stopListening()
