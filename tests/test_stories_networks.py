"""
The same story across networks, end to end: a C{twistd monitor} hub
collecting from the fake Jetstream and the fake Mastodon over loopback puts
the same link, posted on Bluesky and on Mastodon in different words, in one
story; the API lists that story with both networks among its sources and
finds both posts by it; and after a restart the story, under the same id,
takes the next post about it.
"""

import json

import pytest_twisted

from monitor.model import iso8601

from tests.fakes.jetstream import FakeJetstream
from tests.fakes.mastodon import FakeMastodon
from tests.collect.test_bluesky_mastodon_hub import CONFIG
from tests.test_twistd import Hub

LINK = "https://status.acme.example/incidents/2026-42"
# As Bluesky clients write a long link: shortened, the facet holding it whole.
SHORT = "status.acme.example/incid..."
# As Mastodon writes one: the scheme and the tail in invisible spans.
ANCHOR = (f'<a href="{LINK}" rel="nofollow noopener" target="_blank"><span class="invisible">https://</span>'
          '<span class="ellipsis">status.acme.example/incid</span><span class="invisible">ents/2026-42</span></a>')  # fmt: skip


def bluesky_text(words):
    text = f"{words} {SHORT}"
    start = len(words.encode("utf-8")) + 1
    facet = {"index": {"byteStart": start, "byteEnd": start + len(SHORT.encode("utf-8"))},
             "features": [{"$type": "app.bsky.richtext.facet#link", "uri": LINK}]}  # fmt: skip
    return text, [facet]


@pytest_twisted.ensureDeferred
async def test_one_link_on_two_networks_is_one_story(reactor, tmp_path):
    """A Bluesky post and a Mastodon post sharing a link, in other words, land in one story, kept across a restart."""
    jetstream = FakeJetstream(reactor, start_us=int(reactor.seconds() * 1_000_000))
    mastodon = FakeMastodon(reactor)
    jport = reactor.listenTCP(0, jetstream.site(), interface="127.0.0.1")
    mport = reactor.listenTCP(0, mastodon.site(), interface="127.0.0.1")
    text = CONFIG.replace("JETSTREAM", str(jport.getHost().port)).replace("MASTODON", str(mport.getHost().port))
    hub = Hub(reactor, tmp_path, "[stories]\nenabled = true\n" + text)

    async def get(path):
        code, body = await hub.get(path)
        assert code == 200, body
        return json.loads(body)

    async def stored(n):
        async def check():
            return (await get("/api/v1/stats?topic=Acme"))["count"] == n

        await hub.wait_until(check, seconds=30)

    async def connected():
        s = {s["name"]: s["state"] for s in (await get("/api/v1/sources"))["sources"]}
        return s["bluesky"] == "connected" and s["mastodon"] == "connected"

    hub.start()
    try:
        await hub.wait_until(connected)
        words, facets = bluesky_text("Acme checkout is down for everyone, their status page says")
        jetstream.post("did:plc:" + "a" * 24, "3kaaa0001", words, facets=facets, created_at=iso8601(reactor.seconds()))
        mastodon.status(f"<p>Payments failing at #acme since noon &lt;3 {ANCHOR}</p>", tags=["acme"], acct="carol")
        mastodon.status("<p>acme tomatoes are the best in my garden this summer</p>", acct="dave")
        await stored(3)
        posts = (await get("/api/v1/posts?topic=Acme"))["posts"]
        story = {p["source"]: p["story"] for p in posts if "status.acme.example" in p["text"]}
        assert set(story) == {"bluesky", "mastodon"} and story["bluesky"] == story["mastodon"], posts
        sid = story["bluesky"]
        [other] = [p for p in posts if "tomatoes" in p["text"]]
        assert other["story"] not in (None, sid)

        found = (await get(f"/api/v1/posts?story={sid}"))["posts"]
        assert sorted(p["source"] for p in found) == ["bluesky", "mastodon"]
        listed = await get("/api/v1/stories")
        assert listed["enabled"] is True
        [entry] = [s for s in listed["stories"] if s["id"] == sid]
        assert entry["sources"] == {"bluesky": 1, "mastodon": 1}
        assert entry["size"] == 2
        assert await hub.stop()

        hub.start()
        await hub.wait_until(connected)
        [entry] = [s for s in (await get("/api/v1/stories"))["stories"] if s["id"] == sid]
        assert entry["size"] == 2
        mastodon.status(f"<p>still broken, see {ANCHOR} #acme</p>", tags=["acme"], acct="erin")
        await stored(4)
        found = (await get(f"/api/v1/posts?story={sid}"))["posts"]
        assert sorted(p["source"] for p in found) == ["bluesky", "mastodon", "mastodon"]
        [entry] = [s for s in (await get("/api/v1/stories?order=size"))["stories"] if s["id"] == sid]
        assert entry["sources"] == {"bluesky": 1, "mastodon": 2}
        assert await hub.stop()
    finally:
        if hub.proc.poll() is None:
            hub.proc.kill()
        jetstream.disconnect_all()
        mastodon.drop_streams()
        await jport.stopListening()
        await mport.stopListening()


@pytest_twisted.ensureDeferred
async def test_stories_off_leave_every_post_without_one(reactor, tmp_path):
    """With [stories] enabled = false the hub stores and serves posts with story null, and says stories are off."""
    from tests.test_twistd import CONFIG as REPLAY

    lines = [json.dumps({"id": i, "text": f"acme outage {LINK} number {i}", "author": "a", "created_at": 1.7e9 + i})
             for i in range(3)]  # fmt: skip
    (tmp_path / "posts.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    hub = Hub(reactor, tmp_path, "[stories]\nenabled = false\n" + REPLAY)
    hub.start()
    try:

        async def finished():
            code, body = await hub.get("/healthz", token=None)
            return (
                code == 200 and json.loads(body)["sources"]["archive"] == "finished" and json.loads(body)["queue"] == 0
            )

        await hub.wait_until(finished)
        code, body = await hub.get("/api/v1/posts")
        posts = json.loads(body)["posts"]
        assert code == 200 and len(posts) == 3 and [p["story"] for p in posts] == [None] * 3
        code, body = await hub.get("/api/v1/stories")
        assert json.loads(body) == {"stories": [], "enabled": False}
        assert await hub.stop()
    finally:
        if hub.proc.poll() is None:
            hub.proc.kill()
