"""
The web UI in a real headless Chromium against a real C{twistd -n monitor}:
login, topics, the live feed, charts, the map, search and export, and the
security promises (escaping, CSRF, the WebSocket's admission, API tokens).
"""

import csv
import io
import json
import re
import socket
import time

from playwright.sync_api import expect

from monitor.collect.replay import _POLL as REPLAY_POLL
from tests.web.conftest import TOKEN, login

#: From a line appended to the replay file to the page: the replay looks at
#: its file once every REPLAY_POLL seconds; the rest (analysis, store, push,
#: render) must fit in one second.
SHOWN_WITHIN_MS = int((REPLAY_POLL + 1.0) * 1000)


def ws_handshake(hub, origin, cookie):
    """Status code of a WebSocket handshake at /ws with these headers."""
    host = hub.base.split("//")[1]
    lines = [
        "GET /ws HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    if origin:
        lines.append(f"Origin: {origin}")
    if cookie:
        lines.append(f"Cookie: {cookie}")
    with socket.create_connection(("127.0.0.1", int(host.split(":")[1])), timeout=10) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n" not in head:
            chunk = s.recv(1024)
            if not chunk:
                break
            head += chunk
    return int(head.split(b" ", 2)[1])


def session_cookie(context):
    [cookie] = [c for c in context.cookies() if c["name"] == "monitor_session"]
    return cookie


def wait_live(page):
    expect(page.locator("#live-dot")).to_have_attribute("data-state", "open", timeout=10000)


def test_wrong_password_is_refused(hub, fresh_browser):
    """A wrong password keeps you on the login page with a message and no session."""
    browser = fresh_browser
    page = browser.new_page()
    page.goto(hub.base + "/dashboard")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.fill("input[name=name]", "admin")
    page.fill("input[name=password]", "not the password")
    page.click("button[type=submit]")
    expect(page.locator("#login-error")).to_have_text("Wrong user name or password.")
    assert "/login" in page.url
    assert not [c for c in browser.cookies() if c["name"] == "monitor_session" and c["value"]]


def test_session_cookie_is_httponly_and_samesite(hub, admin, browser):
    """The session cookie cannot be read by scripts and is not sent on cross-site requests."""
    cookie = session_cookie(browser)
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax"
    assert admin.evaluate("document.cookie").find("monitor_session") == -1


def test_security_headers(hub):
    """Pages forbid inline script, framing and sniffing."""
    status, headers, _ = hub.request("/login")
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"


def test_topic_form_reports_bad_fields_then_saves(hub, admin):
    """A bad field is shown next to the field; try-it previews matches; saving applies at once, without restart."""
    page = admin
    # A stored post (it is about Acme) that also names Initech, for try-it.
    page.goto(hub.base + "/live")
    wait_live(page)
    hub.append({"text": "Initech printers jam again, says an acme user"})
    expect(page.locator("#feed .post", has_text="Initech printers jam")).to_be_visible(timeout=SHOWN_WITHIN_MS)
    page.goto(hub.base + "/topics/new")
    page.fill("#field-name", "Initech")
    page.fill("#field-terms", "!!!")
    page.fill("#field-languages", "english!")
    page.click("#save-topic")
    expect(page.locator("#error-terms")).to_contain_text("has no word in it")
    expect(page.locator("#error-languages")).to_contain_text("not a language tag")
    expect(page.locator("#field-name")).to_have_value("Initech")
    page.fill("#field-terms", "initech")
    page.fill("#field-languages", "")
    page.click("#try-it")
    expect(page.locator("#try-results h2")).to_contain_text("match")
    expect(page.locator("#try-results .post", has_text="Initech printers jam")).to_be_visible()
    expect(page.locator("#try-results .post", has_text="best service ever")).to_have_count(0)
    page.click("#save-topic")
    expect(page).to_have_url(re.compile(r"/topics\?saved=Initech"))
    expect(page.locator("#topics-table")).to_contain_text("Initech")
    # The running hub now tracks it: a new post about Initech is stored under it.
    page.goto(hub.base + "/live?topic=Initech")
    wait_live(page)
    hub.append({"text": "initech support fixed it quickly, great"})
    expect(page.locator("#feed .post", has_text="initech support fixed it")).to_be_visible(timeout=SHOWN_WITHIN_MS)
    expect(page.locator("#feed .post", has_text="initech support fixed it").locator(".chip")).to_contain_text(
        ["Initech"]
    )


def test_topic_edit_and_delete(hub, admin):
    """An edited topic keeps its new terms; a deleted one disappears from the list."""
    page = admin
    page.goto(hub.base + "/topics/new")
    page.fill("#field-name", "Temporary")
    page.fill("#field-terms", "tempword")
    page.click("#save-topic")
    expect(page).to_have_url(re.compile(r"saved=Temporary"))
    page.goto(hub.base + "/topics/edit?name=Temporary")
    page.fill("#field-terms", "tempword\nother")
    page.click("#save-topic")
    expect(page.locator("#topics-table tr", has_text="Temporary")).to_contain_text("other")
    page.goto(hub.base + "/topics/edit?name=Temporary")
    page.once("dialog", lambda d: d.accept())
    page.click("#delete-topic")
    expect(page).to_have_url(re.compile(r"deleted=Temporary"))
    expect(page.locator("#topics-table")).not_to_contain_text("tempword")


def test_live_feed_shows_new_posts_and_filters(hub, admin):
    """Posts appear live, coloured by sentiment; filters apply without reloading; pause holds them back."""
    page = admin
    page.goto(hub.base + "/live")
    wait_live(page)
    marker = f"m{time.time_ns()}"
    started = time.monotonic()
    hub.append(
        {"text": f"I love acme, best service ever {marker}", "url": "https://example.com/p/1"},
        {"text": f"acme is down again, worst outage {marker}"},
    )
    happy = page.locator("#feed .post", has_text=f"best service ever {marker}")
    expect(happy).to_be_visible(timeout=SHOWN_WITHIN_MS)
    shown_after = time.monotonic() - started
    expect(happy).to_have_class(re.compile(r"\bpositive\b"))
    expect(page.locator("#feed .post", has_text=f"worst outage {marker}")).to_have_class(re.compile(r"\bnegative\b"))
    expect(happy.locator("a")).to_have_attribute("href", "https://example.com/p/1")
    assert shown_after < SHOWN_WITHIN_MS / 1000

    # Filter on negative: no reload, and a new positive post does not show.
    page.evaluate("window.__sameDocument = true")
    page.select_option("#f-sentiment", "negative")
    expect(page.locator("#feed .post.positive")).to_have_count(0)
    hub.append({"text": f"acme is great {marker}-later"}, {"text": f"acme broke my build, awful {marker}-later"})
    expect(page.locator("#feed .post", has_text=f"awful {marker}-later")).to_be_visible(timeout=SHOWN_WITHIN_MS)
    expect(page.locator("#feed .post", has_text=f"acme is great {marker}-later")).to_have_count(0)
    assert page.evaluate("window.__sameDocument") is True

    # Pause: new posts wait until resumed.
    page.select_option("#f-sentiment", "")
    page.click("#pause")
    hub.append({"text": f"acme paused post {marker}"})
    expect(page.locator("#feed-buffered")).to_contain_text("1 new waiting", timeout=SHOWN_WITHIN_MS)
    expect(page.locator("#feed .post", has_text=f"paused post {marker}")).to_have_count(0)
    page.click("#pause")
    expect(page.locator("#feed .post", has_text=f"paused post {marker}")).to_be_visible()


def test_hostile_post_text_is_shown_as_text(hub, admin, watch):
    """Post text with HTML and script is displayed literally everywhere and runs nothing."""
    page = admin
    page.goto(hub.base + "/live")
    wait_live(page)
    evil = ["<img src=x onerror=alert(1)> acme", "<script>alert(2)</script> acme", 'acme "><svg onload=alert(3)>']
    hub.append(*({"text": t} for t in evil))
    for text in evil:
        expect(page.locator("#feed .post-text", has_text=text).first).to_be_visible(timeout=SHOWN_WITHIN_MS)
    assert page.locator("#feed img, #feed script, #feed svg").count() == 0
    page.goto(hub.base + "/posts?" + "q=onerror")
    expect(page.locator("#posts-table td.post-text", has_text="<img src=x onerror=alert(1)>").first).to_be_visible()
    assert page.locator("#posts-table img").count() == 0
    assert watch.dialogs == [] and page.evaluate("typeof window.__pwned") == "undefined"


def test_alert_toast_shows_text_only(hub, admin, watch):
    """An alert from the alert engine appears as a toast with why it fired, its text never parsed as HTML."""
    page = admin
    page.goto(hub.base + "/sources")
    page.evaluate("""() => Monitor.toast({event: "opened", topic: "Acme",
        incident: {summary: "<img src=x onerror=alert(5)> spike"},
        why: ["Why: story '<img src=y onerror=alert(6)>, flood' (s1) rose from 2 to 140 posts/10m"]})""")
    toast = page.locator(".toast").first
    expect(toast).to_contain_text("opened · Acme")
    expect(toast).to_contain_text("<img src=x onerror=alert(5)> spike")
    expect(toast.locator(".toast-why")).to_have_text(
        "Why: story '<img src=y onerror=alert(6)>, flood' (s1) rose from 2 to 140 posts/10m"
    )
    assert page.locator(".toast img").count() == 0
    toast.locator("button").click()
    expect(page.locator(".toast")).to_have_count(0)
    assert watch.dialogs == []


def test_dashboard_charts_update_live(hub, admin, watch):
    """The dashboard draws its charts from the store and counts new posts as they arrive."""
    page = admin
    page.goto(hub.base + "/dashboard?range=1h")
    wait_live(page)
    page.wait_for_function("() => window.monitorDashboard && window.monitorDashboard.data() !== null")
    assert page.evaluate("Object.keys(window.monitorDashboard.charts).sort()") == [
        "chart-sentiment",
        "chart-sov",
        "chart-volume",
    ]
    before = page.evaluate("window.monitorDashboard.data().count")
    negative_before = page.evaluate("window.monitorDashboard.data().sentiment.negative")
    complaints_before = page.evaluate("window.monitorDashboard.data().labels.complaint")
    hub.append(
        {"text": "acme charged me twice, I want a refund, terrible"},
        {"text": "globex is wonderful"},
        {"text": "acme ok"},
    )
    page.wait_for_function("n => window.monitorDashboard.data().count >= n", arg=before + 3, timeout=SHOWN_WITHIN_MS)
    expect(page.locator("#kpi-count")).to_have_text(f"{before + 3:,}", timeout=1000)
    assert page.evaluate("window.monitorDashboard.data().sentiment.negative") == negative_before + 1
    assert page.evaluate("window.monitorDashboard.data().labels.complaint") == complaints_before + 1
    volume = page.evaluate(
        "window.monitorDashboard.charts['chart-volume'].data.datasets.map(d => d.data.reduce((a, b) => a + b, 0))"
    )
    assert sum(volume) == before + 3
    # A topic in a group shows its share of voice.
    page.select_option("#dash-topic", "Acme")
    expect(page.locator("#sov-title")).to_have_text("Share of voice: vendors")
    assert "dashboard?topic=Acme" in page.url
    assert watch.problems == []


def test_map_shows_outline_and_live_markers(hub, admin, watch):
    """With no tile server the map still draws the bundled world outline, and posts with coordinates appear live."""
    page = admin
    marker = f"paris{time.time_ns()}"
    hub.append({"text": f"acme in paris {marker}", "lat": 48.85, "lon": 2.35})
    # Stored before the map loads, so it is counted once, by the load, and
    # not pushed after the count below is read.
    page.goto(hub.base + "/live")
    page.wait_for_function(
        """async marker => {
            const r = await fetch("/ui/recent.json?limit=50");
            return (await r.json()).posts.some(p => p.text.includes(marker));
        }""",
        arg=marker, polling=200, timeout=SHOWN_WITHIN_MS + 10000,
    )  # fmt: skip
    page.goto(hub.base + "/map")
    wait_live(page)
    expect(page.locator(".leaflet-overlay-pane path, .leaflet-overlay-pane canvas").first).to_be_attached()
    page.wait_for_function("() => window.monitorMap && window.monitorMap.count() >= 1", timeout=SHOWN_WITHIN_MS)
    before = page.evaluate("window.monitorMap.count()")
    hub.append({"text": "acme in tokyo", "lat": 35.68, "lon": 139.69}, {"text": "acme nowhere"})
    page.wait_for_function("n => window.monitorMap.count() === n", arg=before + 1, timeout=SHOWN_WITHIN_MS)
    assert page.locator(".leaflet-tile").count() == 0
    assert watch.problems == []


def test_posts_search_paging_and_export(hub, admin, browser):
    """Full-text search with filters; CSV and JSON export the whole result, spreadsheet-safe."""
    marker = f"exp{time.time_ns()}"
    page = admin
    page.goto(hub.base + "/live")
    wait_live(page)
    hub.append(
        *({"text": f"acme {marker} number {i}"} for i in range(60)),
        {"text": f'=HYPERLINK("http://x") acme {marker} last', "author": "@evil"},
    )
    # Shown live means stored: the channel pushes posts after the store.
    expect(page.locator("#feed .post", has_text=f"{marker} last")).to_be_visible(timeout=SHOWN_WITHIN_MS)
    page.goto(hub.base + f"/posts?q={marker}")
    expect(page.locator("#posts-table tbody tr")).to_have_count(50)
    page.click("#next-page")
    expect(page.locator("#posts-table tbody tr")).to_have_count(11)
    response = page.request.get(hub.base + f"/posts/export.csv?q={marker}")
    assert response.status == 200 and response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text())))
    assert len(rows) == 61
    formula = [r for r in rows if "HYPERLINK" in r["text"]][0]
    assert formula["text"].startswith("'=") and formula["author"] == "'@evil"
    response = page.request.get(hub.base + f"/posts/export.json?q={marker}&sentiment=neutral")
    posts = json.loads(response.text())["posts"]
    assert posts and all(p["sentiment"]["label"] == "neutral" for p in posts)


def test_form_post_without_csrf_token_is_forbidden(hub, admin):
    """A logged-in browser's POST without the CSRF token, or with a wrong one, or from another site, gets 403."""
    request = admin.request
    form = {"name": "Evil", "terms": "evil", "action": "save"}
    assert request.post(hub.base + "/topics/save", form=form).status == 403
    assert request.post(hub.base + "/topics/save", form={**form, "csrf": "wrong"}).status == 403
    csrf = admin.evaluate("document.body.dataset.csrf")
    assert (
        request.post(
            hub.base + "/topics/save", form={**form, "csrf": csrf}, headers={"Origin": "http://evil.example"}
        ).status
        == 403
    )
    assert request.post(hub.base + "/logout", form={}).status == 403
    admin.goto(hub.base + "/topics")
    expect(admin.locator("#topics-table")).not_to_contain_text("Evil")


def test_websocket_needs_session_and_same_origin(hub, browser, admin):
    """/ws refuses a handshake without a session cookie, with a bad one, or from another origin."""
    cookie = session_cookie(browser)
    same = hub.base
    assert ws_handshake(hub, same, None) == 401
    assert ws_handshake(hub, same, "monitor_session=forged") == 401
    assert ws_handshake(hub, "http://evil.example", f"monitor_session={cookie['value']}") == 403
    assert ws_handshake(hub, None, f"monitor_session={cookie['value']}") == 403
    assert ws_handshake(hub, same, f"monitor_session={cookie['value']}") == 101


def test_api_tokens(hub, admin):
    """/api/ needs a token: the configured one, or one made on the admin page until it is revoked."""
    assert hub.request("/api/v1/posts")[0] == 401
    assert hub.request("/api/v1/posts", headers={"Authorization": "Bearer nope"})[0] == 401
    assert hub.request("/api/v1/posts", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
    page = admin
    page.goto(hub.base + "/admin")
    page.fill("#create-token input[name=token_name]", "grafana")
    page.click("#create-token button")
    token = page.locator("#new-token-value").inner_text()
    assert token.startswith("mon_")
    assert hub.request("/api/v1/stats", headers={"Authorization": f"Bearer {token}"})[0] == 200
    page.goto(hub.base + "/admin")
    assert token not in page.content()
    page.once("dialog", lambda d: d.accept())
    page.locator("#tokens-table tr", has_text="grafana").locator("button").click()
    expect(page.locator(".alert.success")).to_contain_text("revoked")
    assert hub.request("/api/v1/stats", headers={"Authorization": f"Bearer {token}"})[0] == 401


def test_roles(hub, browser):
    """A viewer sees the pages but cannot change topics or reach the admin page; an editor can edit topics."""
    viewer, csrf = hub.login("vi")
    assert hub.request("/dashboard", opener=viewer)[0] == 200
    assert hub.request("/topics/new", opener=viewer)[0] == 403
    assert hub.request("/admin", opener=viewer)[0] == 403
    status, _, _ = hub.request("/topics/save", {"csrf": csrf, "name": "X", "terms": "x"}, opener=viewer)
    assert status == 403
    editor, csrf = hub.login("ed")
    assert hub.request("/topics/new", opener=editor)[0] == 200
    assert hub.request("/admin", opener=editor)[0] == 403


def test_sources_page(hub, admin):
    """The sources page lists each collector's state and hub, and copes without analysis nodes."""
    page = admin
    page.goto(hub.base + "/sources")
    expect(page.locator("#sources-table tr[data-source=inbox]")).to_contain_text("replay")
    # Alone, this hub runs every collector: its name (host:pid by default).
    expect(page.locator("#sources-table tr[data-source=inbox] [data-field=hub]")).to_contain_text(":")
    expect(page.locator("#nodes")).to_contain_text("No analysis node")
    wait_live(page)
    expect(page.locator("#sources-table tr[data-source=inbox] [data-field=posts]")).not_to_have_text("0", timeout=10000)


def test_pages_degrade_without_the_vendor_libraries(hub, fresh_browser):
    """If the chart and map libraries cannot be loaded, the pages show tables and lists instead of failing."""
    page = fresh_browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.route("**/static/vendor/**", lambda route: route.abort())
    login(page, hub, "vi")
    wait_live(page)
    expect(page.locator("#fallback-sentiment .bar-row")).to_have_count(3)
    hub.append({"text": "acme without charts"})
    expect(page.locator("#fallback-volume .bar-row").first).to_be_visible(timeout=SHOWN_WITHIN_MS)
    expect(page.locator("#kpi-count")).not_to_have_text("0")
    hub.append({"text": "acme offline map", "lat": 10.0, "lon": 20.0})
    page.goto(hub.base + "/map")
    expect(page.locator("#map-list .post").first).to_be_visible(timeout=SHOWN_WITHIN_MS)
    assert errors == []


def test_every_page_is_clean(hub, admin, watch):
    """Each page loads without script errors, CSP violations or failed requests."""
    page = admin
    failed = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    for path in ("/dashboard", "/live", "/map", "/posts", "/topics", "/topics/new", "/sources", "/admin", "/account"):
        page.goto(hub.base + path)
        page.wait_for_load_state("networkidle")
    assert watch.problems == [] and failed == []


def test_logout_ends_the_session(hub, fresh_browser):
    """After logging out, the old cookie opens nothing."""
    browser = fresh_browser
    page = browser.new_page()
    login(page, hub, "ed")
    old = session_cookie(browser)["value"]
    page.click("text=Log out")
    expect(page).to_have_url(re.compile(r"/login$"))
    assert ws_handshake(hub, hub.base, f"monitor_session={old}") == 401
    status, headers, _ = hub.request("/dashboard", headers={"Cookie": f"monitor_session={old}"})
    assert status == 303 and headers["Location"].startswith("/login")


def test_live_feed_shows_a_sample_of_a_flood_and_counts_every_post(hub, admin):
    """
    A flood is drawn as a sample (said so in the status line, the page
    staying bounded) while the per-minute counter counts every post.
    """
    page = admin
    page.goto(hub.base + "/live")
    wait_live(page)

    def per_minute():
        return int(page.locator("#feed-rate").inner_text().replace(",", "").strip() or 0)

    before = per_minute()
    marker = f"flood{time.time_ns()}"
    flood = 1500
    hub.append(*({"text": f"acme {marker} {i}"} for i in range(flood)))
    # The newest post of the flood is drawn; the counter is exact.
    expect(page.locator("#feed .post", has_text=f"{marker} {flood - 1}")).to_have_count(
        1, timeout=SHOWN_WITHIN_MS + 5000
    )
    page.wait_for_function(
        f"() => Number(document.getElementById('feed-rate').textContent.replace(/,/g, '')) >= {before + flood}",
        timeout=10000,
    )
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")
    assert per_minute() == before + flood
    assert page.locator("#feed .post").count() <= 300
    sampled = page.locator("#feed-sampled")
    expect(sampled).to_be_visible()
    assert "not drawn" in sampled.inner_text()
    assert not page.locator("#feed-lost").is_visible()


def test_live_feed_misses_no_post_stored_before_its_subscription(hub, admin, browser):
    """
    A post stored and pushed after the page's first load but before the hub
    has the page's subscription is shown: the page loads again when the hub
    confirms the subscription.
    """
    admin.goto(hub.base + "/live")
    wait_live(admin)
    page = browser.new_page()
    held = []
    state = {"hold": True}

    def proxy(ws):
        server = ws.connect_to_server()

        def to_server(message):
            if state["hold"]:
                held.append(message)
            else:
                server.send(message)

        ws.on_message(to_server)
        state["server"] = server

    page.route_web_socket("**/ws", proxy)
    # The page says when it has sent its subscription (which the proxy
    # holds), so the post below is stored after that, on a loaded machine too.
    page.add_init_script(
        """(() => {
          const send = WebSocket.prototype.send;
          WebSocket.prototype.send = function (data) {
            if (String(data).includes('"subscribe"')) window.__subscribeSent = true;
            return send.call(this, data);
          };
        })()"""
    )
    try:
        with page.expect_response("**/ui/recent.json*"):
            page.goto(hub.base + "/live")
        page.wait_for_function("() => window.__subscribeSent === true", timeout=SHOWN_WITHIN_MS + 5000)
        marker = f"gap{time.time_ns()}"
        hub.append({"text": f"acme in the gap {marker}"})
        # Another browser shows it live: stored and pushed, while this
        # page's subscription is still held back.
        expect(admin.locator("#feed .post", has_text=marker)).to_have_count(1, timeout=SHOWN_WITHIN_MS + 5000)
        assert page.locator("#feed .post", has_text=marker).count() == 0
        assert held, "the page never subscribed"
        state["hold"] = False
        for message in held:
            state["server"].send(message)
        expect(page.locator("#feed .post", has_text=marker)).to_have_count(1, timeout=SHOWN_WITHIN_MS)
    finally:
        page.close()
