"""
Alerts in the real thing: C{twistd monitor} replays the LA airport shooting
archive flat out while its webhook receiver is down; the spike incidents
and their undelivered notifications survive SIGTERM, and after a restart
(receiver up) every notification arrives, signed, under the same id, with
every attempt visible in the API.
"""

import json

import pytest_twisted
from twisted.internet.task import deferLater
from twisted.web.server import Site

from tests.alerts.test_crisislex import KEYWORDS, timeline
from tests.fakes.webhook import FakeWebhookReceiver
from tests.test_twistd import Hub, free_port

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

CONFIG = """
[store]
path = "monitor.sqlite"
[web]
endpoint = "tcp:PORT:interface=127.0.0.1"
[alerts]
evaluate_every = "1s"
retry_max = "2s"
live = false
# A 2013 archive: history, sent anyway, since delivery is what is tested.
notify_backfill = true
[[sources]]
kind = "replay"
name = "crisislex"
path = "lax.jsonl"
[[topics]]
name = "LAX"
terms = TERMS
[[rules]]
name = "lax-spike"
type = "volume_spike"
topics = ["LAX"]
[[channels]]
name = "ops-hook"
kind = "webhook"
url = "http://127.0.0.1:HOOK/hook"
secret = "SECRET"
"""


@pytest_twisted.ensureDeferred
async def test_undelivered_notifications_survive_a_restart(reactor, tmp_path, shared_data):
    """Receiver down during the run and the restart; after it, every notification arrives once, signed."""
    with open(tmp_path / "lax.jsonl", "w", encoding="utf-8") as f:
        for t, tweet_id, text in timeline(shared_data):
            f.write(json.dumps({"id": tweet_id, "text": text, "author": "someone", "created_at": t}) + "\n")
    hook_port = free_port()
    config = (CONFIG.replace("HOOK", str(hook_port)).replace("SECRET", SECRET)
              .replace("TERMS", json.dumps(KEYWORDS)))  # fmt: skip
    hub = Hub(reactor, tmp_path, config)

    async def incidents():
        code, body = await hub.get("/api/v1/incidents?rule=lax-spike")
        return json.loads(body)["incidents"] if code == 200 else None

    hub.start()
    try:

        async def refused_and_resolved():
            found = await incidents()
            # Every incident of the archive has resolved (in the posts' own
            # time); nothing is delivered and the first notification of the
            # channel (which delivers in order) was tried a few times.
            notes = [n for i in found or () for n in i["notifications"]]
            return (
                found
                and all(i["state"] == "resolved" for i in found)
                and len(notes) == 2 * len(found)
                and all(n["state"] == "pending" for n in notes)
                and max(len(n["log"]) for n in notes) >= 2
                and found
            )

        first = await hub.wait_until(refused_and_resolved, seconds=60)
        code, body = await hub.get("/api/v1/channels")
        (channel,) = json.loads(body)["channels"]
        assert channel["name"] == "ops-hook" and channel["state"] == "retrying" and channel["pending"] >= 2
        assert "refused" in channel["last_error"].lower()
    finally:
        clean = await hub.stop()
    assert clean, hub.output()

    opened = sorted(i["opened_at"] for i in first)
    assert opened[0] == "2013-11-01T16:51:00.000Z"
    ids = {n["id"] for i in first for n in i["notifications"]}

    receiver = FakeWebhookReceiver(SECRET, reactor)
    port = reactor.listenTCP(hook_port, Site(receiver), interface="127.0.0.1")
    hub.start()
    try:

        async def all_delivered():
            found = await incidents()
            return found and all(n["state"] == "sent" for i in found for n in i["notifications"]) and found

        after = await hub.wait_until(all_delivered, seconds=60)
        await deferLater(reactor, 0.5, lambda: None)
    finally:
        clean = await hub.stop()
        await port.stopListening()
    assert clean, hub.output()

    assert {d.id for d in receiver.deliveries} == ids
    assert all(d.verified for d in receiver.deliveries) and not receiver.duplicates
    events = sorted((d.payload["data"]["incident"]["opened_at"], d.payload["type"]) for d in receiver.deliveries)
    assert events[0] == ("2013-11-01T16:51:00.000Z", "incident.opened")
    # The same incidents as before the restart, each attempt on record.
    assert sorted(i["id"] for i in after) == sorted(i["id"] for i in first)
    for incident in after:
        for note in incident["notifications"]:
            outcomes = [a["outcome"] for a in note["log"]]
            assert outcomes[-1] == "sent" and set(outcomes[:-1]) <= {"retry"}
    retried = [a for i in after for n in i["notifications"] for a in n["log"] if a["outcome"] == "retry"]
    assert len(retried) >= 2 and all("refused" in a["detail"].lower() for a in retried)
