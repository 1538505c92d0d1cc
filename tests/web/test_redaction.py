"""
Secrets in endpoint URLs are never shown or logged (issue 9, item 6): a real
hub with unreachable webhook and Slack channels and an RSS feed whose URLs
carry an API key, a password and a Slack token; an incident is notified and
fails; the secrets appear in no log line, no page (viewer's or admin's) and
no API answer, while the endpoints are still recognisable.
"""

import json
import time

import pytest

from monitor.redact import MASK, channel_secrets, redact, redact_url
from tests.web.conftest import CONFIG, TOKEN

KEY, PASSWORD, SLACK_TOKEN, FEED_KEY = "k3y-0f-the-hook", "pa55-w0rd-x", "XyZsecretSlackT0ken", "feed-4pi-key"

SECRET_CONFIG = (
    CONFIG
    + f"""
[[sources]]
kind = "rss"
name = "news"
url = "http://reader:{PASSWORD}@127.0.0.1:9/feed.xml?apikey={FEED_KEY}"
[[rules]]
name = "outage"
type = "keyword"
phrases = ["outage"]
severity = "critical"
[[channels]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:9/hook?apikey={KEY}&team=ops"
[[channels]]
name = "hook-login"
kind = "webhook"
url = "http://ops:{PASSWORD}@127.0.0.1:9/hook"
[[channels]]
name = "chat"
kind = "slack"
url = "http://127.0.0.1:9/services/T000/B000/{SLACK_TOKEN}"
"""
)
SECRETS = (KEY, PASSWORD, SLACK_TOKEN, FEED_KEY)


@pytest.fixture(scope="module")
def hub_config():
    return SECRET_CONFIG


def api(hub, path):
    status, _, body = hub.request(path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, (path, body)
    return body.decode()


def test_no_secret_in_logs_pages_or_api(hub):
    hub.append({"text": "acme outage everywhere"})
    deadline = time.monotonic() + 30
    incidents = {}
    while time.monotonic() < deadline:
        incidents = json.loads(api(hub, "/api/v1/incidents"))
        notes = [n for i in incidents["incidents"] for n in i["notifications"]]
        if len(notes) >= 3 and all(n["attempts"] >= 1 for n in notes):
            break
        time.sleep(0.2)
    notes = [n for i in incidents["incidents"] for n in i["notifications"] if n["channel"] != "live"]
    assert len(notes) >= 3 and all(n["last_error"] for n in notes), incidents
    # The endpoint is named, without its credentials.
    hook = next(n for n in notes if n["channel"] == "hook")
    assert f"apikey={MASK}&team={MASK}" in hook["last_error"], hook

    shown = {"incidents": json.dumps(incidents)}
    for path in ("/api/v1/channels", "/api/v1/sources", "/api/v1/dead-letters", "/api/v1/rules"):
        shown[path] = api(hub, path)
    incident_id = incidents["incidents"][0]["id"]
    shown["incident"] = api(hub, f"/api/v1/incidents/{incident_id}")
    for user in ("vi", "admin"):
        opener, _ = hub.login(user)
        for path in ("/alerts", "/sources", f"/alerts/incidents/{incident_id}", "/ui/sources.json"):
            status, _, body = hub.request(path, opener=opener)
            if status == 200:
                shown[f"{user} {path}"] = body.decode()
    assert any("/api/v1/sources" in k for k in shown) and len(shown) > 7
    with open(hub.log_path, encoding="utf-8", errors="replace") as f:
        shown["log"] = f.read()
    assert "127.0.0.1:9" in shown["log"]
    for where, text in shown.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret} shown in {where}"


def test_redact_helpers():
    """Userinfo and query values are masked; names, hosts and paths stay; quoted secrets go too."""
    assert (
        redact_url("https://u:p@host:8443/hook?apikey=abc&x=1#frag")
        == f"https://{MASK}@host:8443/hook?apikey={MASK}&x={MASK}"
    )
    assert redact_url("https://host/path") == "https://host/path"
    assert redact_url("http://[::1:bad") == MASK
    url = "https://hooks.example/h?token=s3cr%2Bet"
    text = f"cannot reach {url}: DNS lookup failed for 'token=s3cr+et' ({url})"
    out = redact(text, [url])
    assert "s3cr" not in out and "hooks.example/h" in out
    assert redact("see http://a:b0b0@x/ now") == f"see http://{MASK}@x/ now"
    slack = {"kind": "slack", "url": "https://hooks.slack.com/services/T1/B2/ZZZZtoken"}
    assert "ZZZZtoken" not in redact(
        "POST https://hooks.slack.com/services/T1/B2/ZZZZtoken failed", channel_secrets(slack)
    )
