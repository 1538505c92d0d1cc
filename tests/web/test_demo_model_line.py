"""
The demo's shipped corrections at work on the dashboard, in a real
headless Chromium against a real C{twistd -n monitor} with the demo source
and C{[learning] seed}: once the model trained from them is active, the
dashboard's sentiment line names it with its figures against VADER and
counts the latest posts each labelled.
"""

import json
import urllib.request

from playwright.sync_api import expect
import pytest

from tests.web.conftest import TOKEN
from tests.web.test_query_pages import shot


@pytest.fixture(scope="module")
def hub_config():
    return """
[store]
path = "monitor.sqlite"
[web]
endpoint = "tcp:0:interface=127.0.0.1"
ws_interval = 0.1
[[sources]]
kind = "demo"
name = "demo"
rate = 20.0
burst_every = 300
[[topics]]
name = "Acme"
terms = ["acme", "@acmesupport", "#acmedown"]
[[topics]]
name = "Globex"
terms = ["globex", "@globexsupport", "#globexdown"]
[learning]
delay = "1s"
seed = "demo"
"""


def models(hub):
    req = urllib.request.Request(hub.base + "/api/v1/models", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())["models"]


def test_dashboard_shows_the_learned_model_beside_vader(hub, admin):
    page = admin
    expect_active = None
    for _ in range(600):
        expect_active = next((m for m in models(hub) if m["name"] == "sentiment" and m["state"] == "active"), None)
        if expect_active:
            break
        page.wait_for_timeout(100)
    assert expect_active, "no active sentiment model within 60 s"
    page.wait_for_timeout(1500)  # some posts labelled by it
    page.goto(hub.base + "/dashboard")
    line = page.locator("#dash-model-line")
    expect(line).to_be_visible()
    e = expect_active["evaluation"]
    expect(line).to_contain_text(f"learned model {expect_active['version']}")
    expect(line).to_contain_text(
        f"macro-F1 {e['macro_f1']:.2f} vs VADER {e['baseline_macro_f1']:.2f} on 240 corrected posts"
    )
    assert int(page.locator("#dash-by-model").inner_text().replace(",", "")) > 0
    int(page.locator("#dash-by-vader").inner_text().replace(",", ""))
    expect(line.locator("a[href='/models']")).to_be_visible()
    page.wait_for_timeout(1000)  # the charts drawn
    shot(page, "dashboard-model-line")
