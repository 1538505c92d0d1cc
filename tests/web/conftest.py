"""
A real hub for the browser tests: C{twistd -n monitor} in a subprocess, on
a port of its own choosing, with a followed replay file to inject posts,
three users made with C{--add-user}, and a headless Chromium (Debian's)
driven by Playwright.
"""

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from http.cookies import SimpleCookie
from itertools import count
from urllib.parse import urlencode, urlsplit

import pytest

from tests.conftest import ROOT

TOKEN = "web-test-token-0123456789"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
PASSWORDS = {"admin": "admin password 1", "ed": "editor password 1", "vi": "viewer password 1"}

CONFIG = """
[store]
path = "monitor.sqlite"
[web]
endpoint = "tcp:0:interface=127.0.0.1"
ws_interval = 0.1
# A cheaper password hash than the default 2**17, to keep the suite quick;
# tests/web/test_security.py checks the real cost.
scrypt_n = 16384
[[sources]]
kind = "replay"
name = "inbox"
path = "inbox.jsonl"
follow = true
[[topics]]
name = "Acme"
terms = ["acme"]
group = "vendors"
[[topics]]
name = "Globex"
terms = ["globex"]
group = "vendors"
"""

_ids = count()


def twistd(*args):
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "--nodaemon", "--pidfile=", *args]


class HubProcess:
    """A twistd hub; its log goes to a file, and the port it listens on is read from it."""

    def __init__(self, directory, config=CONFIG):
        self.dir = directory
        self.config = os.path.join(directory, "monitor.toml")
        with open(self.config, "w", encoding="utf-8") as f:
            f.write(config)
        self.inbox = os.path.join(directory, "inbox.jsonl")
        self.log_path = os.path.join(directory, "twistd.log")
        self.env = dict(os.environ, PYTHONPATH=str(ROOT), MONITOR_API_TOKEN=TOKEN)
        self.proc = None
        self.base = None
        self.lines = []
        self._seen = threading.Condition()

    def add_user(self, name, role, password):
        path = os.path.join(self.dir, f"{name}.pw")
        with open(path, "w", encoding="utf-8") as f:
            f.write(password + "\n")
        result = subprocess.run(
            twistd("monitor", "--config", self.config, "--add-user", name, "--role", role, "--password-file", path),
            cwd=self.dir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def start(self):
        # The replay looks for a missing file only every few seconds.
        open(self.inbox, "a").close()
        self.proc = subprocess.Popen(
            twistd("--logfile", "-", "monitor", "--config", self.config),
            cwd=self.dir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        listening = threading.Event()
        found = {}

        def drain():
            # Keep reading so the hub never blocks on a full pipe.
            with open(self.log_path, "ab") as log:
                for line in self.proc.stdout:
                    log.write(line)
                    log.flush()
                    with self._seen:
                        self.lines.append(line.decode("utf-8", "replace"))
                        self._seen.notify_all()
                    m = re.search(rb"Site starting on (\d+)", line)
                    if m and not listening.is_set():
                        found["port"] = int(m.group(1))
                        listening.set()
            listening.set()

        self.lines = []
        threading.Thread(target=drain, daemon=True).start()
        assert listening.wait(60) and "port" in found, "the hub did not start:\n" + self.output()
        self.base = f"http://127.0.0.1:{found['port']}"

    def wait_for(self, pattern, seconds=30.0):
        """
        The match of C{pattern} in the first line of this start's log that
        has it, waiting (bounded) for the hub to write it.
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + seconds
        seen = 0
        with self._seen:
            while True:
                for line in self.lines[seen:]:
                    m = regex.search(line)
                    if m:
                        return m
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None and seen == len(self.lines):
                    raise AssertionError(f"no line matching {pattern!r}:\n" + self.output())
                self._seen.wait(min(left, 1.0))

    def output(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()[-6000:]
        except FileNotFoundError:
            return ""

    def append(self, *posts):
        """Append posts to the followed replay file; returns their ids."""
        ids = []
        with open(self.inbox, "a", encoding="utf-8") as f:
            for p in posts:
                p = dict(p)
                p.setdefault("id", f"t{next(_ids)}-{time.time_ns()}")
                p.setdefault("author", "tester")
                p.setdefault("created_at", time.time())
                ids.append(p["id"])
                f.write(json.dumps(p) + "\n")
        return ids

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("the hub did not stop within 20 s of SIGTERM:\n" + self.output())

    # -- plain HTTP, for what a browser would not do --------------------------

    def opener(self):
        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirect())
        opener.jar = jar
        return opener

    def request(self, path, data=None, headers=None, opener=None):
        """(status, headers, body) of one request; errors are answers, not exceptions."""
        body = None if data is None else urllib.parse.urlencode(data, doseq=True).encode()
        req = urllib.request.Request(self.base + path, data=body, headers=headers or {})
        try:
            with (opener or urllib.request.build_opener(_NoRedirect())).open(req, timeout=30) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def login(self, name):
        """An opener holding a logged-in session of C{name}, and the session's CSRF token."""
        opener = self.opener()
        status, _, body = self.request("/login", opener=opener)
        csrf = re.search(rb'name="csrf" value="([^"]+)"', body).group(1).decode()
        status, headers, _ = self.request(
            "/login", {"csrf": csrf, "name": name, "password": PASSWORDS[name], "next": "/topics"}, opener=opener
        )
        assert status == 303, status
        status, _, body = self.request("/topics", opener=opener)
        assert status == 200
        return opener, re.search(rb'data-csrf="([^"]+)"', body).group(1).decode()


class Browser:
    """
    One client of the hub from a loopback address of its own (Linux routes
    all of 127/8 to lo), so the per-address throttle of one test does not
    touch the others.
    """

    def __init__(self, hub, address="127.0.0.1"):
        parts = urlsplit(hub.base)
        self.host, self.port, self.address = parts.hostname, parts.port, address
        self.cookies = {}

    def request(self, method, path, form=None, headers=None, body=None):
        """
        C{(status, headers, body)}: C{form} is sent urlencoded, else
        C{body} as it is; a C{Host} in C{headers} replaces the real one.
        """
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60, source_address=(self.address, 0))
        try:
            head = dict(headers or {})
            if self.cookies:
                head["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            if form is not None:
                body = urlencode(form).encode()
                head["Content-Type"] = "application/x-www-form-urlencoded"
            connection.request(method, path, body=body, headers=head)
            response = connection.getresponse()
            data = response.read()
            for value in response.headers.get_all("Set-Cookie") or ():
                for name, morsel in SimpleCookie(value).items():
                    if morsel["max-age"] == "0":
                        self.cookies.pop(name, None)
                    else:
                        self.cookies[name] = morsel.value
            return response.status, response.headers, data
        finally:
            connection.close()

    def login_form(self):
        """A fresh login form's CSRF token (and its cookie, kept)."""
        status, _, body = self.request("GET", "/login")
        assert status == 200
        return re.search(rb'name="csrf" value="([^"]+)"', body).group(1).decode()

    def login(self, name, password, csrf=None):
        csrf = csrf or self.login_form()
        return self.request("POST", "/login", {"csrf": csrf, "name": name, "password": password, "next": "/live"})[0]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture(scope="module")
def hub_config():
    """The hub's configuration file; a test module may override it."""
    return CONFIG


@pytest.fixture(scope="module")
def hub(hub_config):
    directory = tempfile.mkdtemp(prefix="monitor-web-")
    hub = HubProcess(directory, hub_config)
    hub.add_user("admin", "admin", PASSWORDS["admin"])
    hub.add_user("ed", "editor", PASSWORDS["ed"])
    hub.add_user("vi", "viewer", PASSWORDS["vi"])
    hub.start()
    yield hub
    hub.stop()


@pytest.fixture(scope="module")
def playwright():
    if not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} is missing: run `make system-deps` (apt-get install chromium)"
        # make test installs it, so in CI a missing browser is a failure;
        # a developer running pytest by hand is told what to install.
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


def launch(playwright, **options):
    """Debian's Chromium, headless, with a new profile (never a downloaded browser)."""
    options.setdefault("viewport", {"width": 1400, "height": 900})
    return playwright.chromium.launch_persistent_context(
        tempfile.mkdtemp(prefix="monitor-chromium-"),
        executable_path=CHROMIUM,
        args=CHROMIUM_ARGS,
        headless=True,
        **options,
    )


@pytest.fixture(scope="module")
def browser(playwright):
    """The browser the admin stays logged in with, for the whole module."""
    context = launch(playwright)
    yield context
    context.close()


@pytest.fixture
def fresh_browser(playwright):
    """A browser with no cookies, for one test."""
    context = launch(playwright)
    yield context
    context.close()


class Watch:
    """What a page did that it should not: script errors, CSP violations, dialogs."""

    def __init__(self, page):
        self.page = page
        self.problems = []
        self.dialogs = []
        self._handlers = [("pageerror", self._error), ("console", self._console), ("dialog", self._dialog)]
        for event, handler in self._handlers:
            page.on(event, handler)

    def stop(self):
        for event, handler in self._handlers:
            self.page.remove_listener(event, handler)

    def _error(self, error):
        self.problems.append(f"page error: {error}")

    def _console(self, message):
        if message.type == "error" and "favicon" not in message.text:
            self.problems.append(f"console: {message.text}")

    def _dialog(self, dialog):
        self.dialogs.append(dialog.message)
        dialog.dismiss()


def login(page, hub, name):
    page.goto(hub.base + "/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORDS[name])
    page.click("button[type=submit]")
    page.wait_for_url("**/dashboard**")


@pytest.fixture(scope="module")
def admin(hub, browser):
    """A page logged in as the admin, kept for the whole module."""
    page = browser.new_page()
    login(page, hub, "admin")
    yield page
    page.close()


@pytest.fixture
def watch(admin):
    """Watch the admin page for the length of one test."""
    w = Watch(admin)
    yield w
    w.stop()
