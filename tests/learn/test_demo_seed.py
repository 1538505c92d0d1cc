"""
The demo ships corrections (C{seed = "demo"}, monitor/learn/demo-corrections.jsonl): a fresh demo hub
(the shipped etc/demo.toml in a real twistd) loads them, trains, and has
an active sentiment model within a minute; new demo posts then carry its
answer, and the dashboard says so.  The shipped file is what
L{demo_corrections} makes, so it can be remade.
"""

import json
import time

import pytest
import pytest_twisted

from monitor.learn.seed import DEMO, demo_corrections, read_seed
from tests.conftest import ROOT
from tests.test_twistd import Hub

pytestmark = pytest.mark.timeout(180)

SHIPPED = DEMO


def demo_config():
    text = (ROOT / "etc/demo.toml").read_text(encoding="utf-8")
    text = text.replace('path = "var/monitor.sqlite"', 'path = "monitor.sqlite"')
    text = text.replace('endpoint = "tcp:8080:interface=127.0.0.1"', 'endpoint = "tcp:PORT:interface=127.0.0.1"')
    assert "PORT" in text and 'seed = "demo"' in text and "monitor.sqlite" in text
    return text


def test_the_shipped_file_is_the_demos_corrections():
    assert read_seed(SHIPPED) == demo_corrections()
    rows = [json.loads(line) for line in SHIPPED.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 240 and len({r["text"] for r in rows}) == 240
    assert {r["sentiment"] for r in rows} == {"positive", "neutral", "negative"}
    flagship = [r for r in rows if "charged me twice" in r["text"]]
    assert flagship and all(r["sentiment"] == "negative" and r["labels"] == {"complaint": True} for r in flagship)


def test_a_bad_seed_line_is_named(tmp_path):
    bad = tmp_path / "seed.jsonl"
    bad.write_text(
        '{"id": "a", "text": "fine", "sentiment": "positive"}\n{"id": "b", "text": "x", "sentiment": "meh"}\n'
    )
    with pytest.raises(ValueError, match=r"seed.jsonl:2: .*sentiment"):
        read_seed(bad)


@pytest_twisted.ensureDeferred
async def test_a_fresh_demo_hub_has_an_active_model_from_the_shipped_corrections(reactor, tmp_path):
    hub = Hub(reactor, tmp_path, demo_config())
    started = time.monotonic()
    hub.start()
    try:

        async def active():
            code, body = await hub.get("/api/v1/models")
            return next((m for m in json.loads(body)["models"] if m["name"] == "sentiment" and m["state"] == "active"),
                        None)  # fmt: skip

        model = await hub.wait_until(active, seconds=60)
        took = time.monotonic() - started
        assert took < 60, took
        assert model["examples"] == 240 and model["version"] == "sentiment-1"
        e = model["evaluation"]
        assert e["macro_f1"] > e["baseline_macro_f1"]

        async def labelled():
            code, body = await hub.get("/api/v1/posts?limit=200")
            return [p for p in json.loads(body)["posts"] if p["sentiment"]["by"] == "model:sentiment-1"]

        fresh = await hub.wait_until(labelled, seconds=30)
        assert all(p["network"] == "demo" for p in fresh)
        code, body = await hub.get("/api/v1/posts?limit=500")
        networks = [p["network"] for p in json.loads(body)["posts"]]
        # The seed is 45 days old: after every demo post, out of every dashboard range.
        assert "seed" in networks and "demo" not in networks[networks.index("seed") :]
        print(
            f"model active {took:.1f}s after start; macro-F1 {e['macro_f1']:.3f} vs VADER {e['baseline_macro_f1']:.3f}"
        )
    finally:
        assert await hub.stop()
