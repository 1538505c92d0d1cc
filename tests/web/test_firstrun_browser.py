"""
The quickstart in a real Chromium: a fresh hub on the shipped
etc/monitor.toml (offline: the demo source), the setup link from its log,
the first admin made on the setup page (a field error first), and a
dashboard that has posts and keeps getting more.  Screenshots go to
var/screenshots/.
"""

import os
import re
import tempfile

import pytest
from playwright.sync_api import expect

from tests.conftest import ROOT
from tests.web.conftest import HubProcess, Watch

SCREENSHOTS = os.path.join(str(ROOT), "var", "screenshots")


def shot(page, name):
    os.makedirs(SCREENSHOTS, exist_ok=True)
    page.screenshot(path=os.path.join(SCREENSHOTS, f"firstrun-{name}.png"), full_page=True)


@pytest.fixture
def fresh_hub():
    """A hub as `make run` starts it on a fresh clone: the shipped config, no users, an empty var/."""
    directory = tempfile.mkdtemp(prefix="monitor-firstrun-")
    with open(ROOT / "etc" / "monitor.toml", encoding="utf-8") as f:
        config = f.read()
    assert 'endpoint = "tcp:8080:interface=127.0.0.1"' in config
    hub = HubProcess(directory, config.replace("tcp:8080:", "tcp:0:"))
    hub.start()
    yield hub
    hub.stop()


def kpi_count(page) -> int:
    text = page.locator("#kpi-count").inner_text()
    digits = re.sub(r"[^\d]", "", text)
    return int(digits) if digits else 0


def test_quickstart_from_fresh_start_to_a_moving_dashboard(fresh_hub, fresh_browser):
    """make run's first minute: setup link, first admin in the browser, a populated dashboard that moves."""
    hub = fresh_hub
    link = hub.wait_for(r"create the first admin at (http://\S+)").group(1)
    hub.wait_for(r"monitor is running")
    page = fresh_browser.new_page()

    # Someone who opens the address first is told where to go.
    page.goto(hub.base + "/")
    expect(page.locator("#first-run")).to_contain_text("No users yet")
    expect(page.locator("#add-user-command")).to_contain_text("--add-user NAME --role admin")
    shot(page, "login-before-setup")

    page.goto(link)
    expect(page.locator("h1")).to_have_text("Welcome to monitor")
    shot(page, "setup")
    page.fill("input[name=name]", "alice")
    page.fill("input[name=password]", "correct horse 1")
    page.fill("input[name=again]", "correct horse 2")
    page.click("button[type=submit]")
    expect(page.locator("#error-again")).to_have_text("The two passwords differ.")
    expect(page.locator("input[name=name]")).to_have_value("alice")
    shot(page, "setup-error")
    page.fill("input[name=password]", "correct horse 1")
    page.fill("input[name=again]", "correct horse 1")
    # From here on, nothing on the page may fail (the form's 400 above was meant).
    watch = Watch(page)
    page.click("button[type=submit]")
    page.wait_for_url("**/dashboard**")
    expect(page.locator(".whoami .user")).to_contain_text("alice")

    # Populated within seconds, and moving: the demo source keeps posting.
    expect(page.locator("#kpi-count")).not_to_have_text(re.compile(r"^(–|0)$"), timeout=30_000)
    first = kpi_count(page)
    assert first > 0
    page.wait_for_function(
        f"() => parseInt(document.querySelector('#kpi-count').textContent.replace(/[^0-9]/g, '')) > {first}",
        timeout=30_000,
    )
    shot(page, "dashboard")
    assert watch.problems == []

    # The link was used: it no longer opens the setup page.
    other = fresh_browser.new_page()
    response = other.goto(link)
    assert response.status == 404
    expect(other.locator("#setup-gone")).to_contain_text("already used")
    command = other.locator("#setup-gone-command").inner_text()
    assert "--add-user NAME --role viewer" in command and "--config" in command
    card, code = other.locator("#setup-gone").bounding_box(), other.locator("#setup-gone-command").bounding_box()
    assert code["x"] + code["width"] <= card["x"] + card["width"], (code, card)
    shot(other, "setup-used")
    assert other.locator("#setup-gone-login").get_attribute("href") == "/login"
