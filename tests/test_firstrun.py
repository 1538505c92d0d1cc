"""
The first minutes with a real C{twistd monitor}: the one-time setup link
of a hub without users (CSRF, field errors, the link dying once an admin
exists), the last line of the start naming the address, a quiet console,
and the one-line messages for a port in use or a file that cannot work.
"""

import os
import re
import socket
import stat
import subprocess

import pytest

from tests.web.conftest import CONFIG, TOKEN, HubProcess, twistd

STARTED = r"monitor is running: the web UI and the API are at (\S+)"
SETUP = r"no user yet: create the first admin at (http://\S+/setup/(\S+)) \(the link is also in (\S+)\)"


def csrf_of(body: bytes) -> str:
    return re.search(rb'name="csrf" value="([^"]+)"', body).group(1).decode()


def test_first_start_offers_a_one_time_setup_link(tmp_path):
    """No user: the log gives the setup link, then the address; the page makes the first admin once."""
    hub = HubProcess(str(tmp_path))
    hub.start()
    try:
        setup = hub.wait_for(SETUP)
        started = hub.wait_for(STARTED)
        assert started.group(1) == hub.base + "/"
        lines = [line for line in hub.lines if "monitor is running" in line or "no user yet" in line]
        assert "no user yet" in lines[0] and "monitor is running" in lines[1]
        link, token, token_file = setup.groups()
        assert link == f"{hub.base}/setup/{token}"
        path = tmp_path / token_file
        assert path.read_text().strip() == token
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

        # The login page says so, with a command for this hub's own file.
        status, _, body = hub.request("/login")
        assert status == 200 and b"No users yet" in body
        assert f"--config {hub.config} --add-user NAME --role admin".encode() in body

        assert hub.request("/setup/not-the-token")[0] == 404
        opener = hub.opener()
        status, _, body = hub.request(f"/setup/{token}", opener=opener)
        assert status == 200 and b"Create the first admin" in body
        csrf = csrf_of(body)

        # Without the form's token: refused.
        status, _, _ = hub.request(f"/setup/{token}", {"name": "alice", "password": "x" * 10, "again": "x" * 10},
                                   opener=opener)  # fmt: skip
        assert status == 403
        # Bad fields come back on the form, each next to its field, the name kept.
        status, _, body = hub.request(f"/setup/{token}", {"csrf": csrf, "name": "alice", "password": "short",
                                                          "again": "short"}, opener=opener)  # fmt: skip
        assert status == 400 and b'id="error-password"' in body and b'value="alice"' in body
        csrf = csrf_of(body)
        status, _, body = hub.request(f"/setup/{token}", {"csrf": csrf, "name": "bad name!", "password": "long enough 1",
                                                          "again": "long enough 2"}, opener=opener)  # fmt: skip
        # Every problem at once.
        assert status == 400 and b'id="error-name"' in body and b'id="error-again"' in body
        csrf = csrf_of(body)
        status, _, body = hub.request(f"/setup/{token}", {"csrf": csrf, "name": "alice", "password": "long enough 1",
                                                          "again": "long enough 2"}, opener=opener)  # fmt: skip
        assert status == 400 and b'id="error-again"' in body
        csrf = csrf_of(body)

        status, headers, _ = hub.request(f"/setup/{token}", {"csrf": csrf, "name": "alice",
                                                             "password": "long enough 1", "again": "long enough 1"},
                                         opener=opener)  # fmt: skip
        assert status == 303 and headers["Location"] == "/dashboard"
        # Logged in as the new admin.
        status, _, body = hub.request("/admin", opener=opener)
        assert status == 200 and b"alice" in body
        hub.wait_for(r"first admin alice created on the setup page")

        # The link is spent: the page, the form and the file are gone.
        assert hub.request(f"/setup/{token}")[0] == 404
        assert hub.request(f"/setup/{token}", {"csrf": csrf, "name": "mallory", "password": "long enough 1",
                                               "again": "long enough 1"}, opener=opener)[0] == 404  # fmt: skip
        assert not path.exists()
        assert b"No users yet" not in hub.request("/login")[2]
        # No line per HTTP request by default.
        assert "GET /login" not in hub.output()
    finally:
        hub.stop()

    # A second start: no setup link, and the start still ends with the address.
    hub.start()
    try:
        hub.wait_for(STARTED)
        assert not any("no user yet" in line for line in hub.lines)
    finally:
        hub.stop()


def test_setup_link_stops_working_once_add_user_makes_an_admin(tmp_path):
    """An admin made with --add-user while the hub runs ends the setup link too."""
    hub = HubProcess(str(tmp_path))
    hub.start()
    try:
        token = hub.wait_for(SETUP).group(2)
        assert hub.request(f"/setup/{token}")[0] == 200
        hub.add_user("root", "admin", "root password 1")
        assert hub.request(f"/setup/{token}")[0] == 404
    finally:
        hub.stop()


def test_setup_forms_sent_at_once_make_one_admin(tmp_path):
    """Several setup forms sent at the same moment: one admin, the others get the used-link page."""
    import sqlite3
    import threading

    hub = HubProcess(str(tmp_path))
    hub.start()
    try:
        token = hub.wait_for(SETUP).group(2)
        hub.wait_for(STARTED)
        forms = []
        for i in range(4):
            opener = hub.opener()
            status, _, body = hub.request(f"/setup/{token}", opener=opener)
            assert status == 200
            forms.append((opener, {"csrf": csrf_of(body), "name": f"admin{i}", "password": "long enough 1",
                                   "again": "long enough 1"}))  # fmt: skip
        start = threading.Barrier(len(forms))
        answers = [None] * len(forms)

        def send(i, opener, data):
            start.wait(10)
            answers[i] = hub.request(f"/setup/{token}", data, opener=opener)

        threads = [threading.Thread(target=send, args=(i, *form)) for i, form in enumerate(forms)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        statuses = sorted(a[0] for a in answers)
        assert statuses == [303, 404, 404, 404], statuses
        gone = next(a[2] for a in answers if a[0] == 404)
        assert b"already used" in gone and b'href="/login"' in gone
        assert f"--config {hub.config} --add-user NAME --role viewer".encode() in gone
    finally:
        hub.stop()
    db = sqlite3.connect(tmp_path / "monitor.sqlite")
    admins = db.execute("SELECT name FROM users WHERE role = 'admin'").fetchall()
    db.close()
    assert len(admins) == 1, admins


def test_access_log_is_a_setting(tmp_path):
    """[web] access_log = "-" puts a line per request in the hub's log."""
    hub = HubProcess(str(tmp_path), CONFIG.replace("[web]\n", '[web]\naccess_log = "-"\n'))
    hub.start()
    try:
        hub.wait_for(STARTED)
        hub.request("/login?hello=1")
        hub.wait_for(r'"GET /login\?hello=1 HTTP/1.1" 200')
    finally:
        hub.stop()


def run_twistd(tmp_path, config, env=None):
    path = tmp_path / "monitor.toml"
    path.write_text(config, encoding="utf-8")
    environ = dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH", ""), **(env or {}))
    from tests.conftest import ROOT

    environ["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        twistd("--logfile", "-", "monitor", "--config", str(path)),
        cwd=str(tmp_path),
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_busy_port_is_one_line_naming_the_key(tmp_path):
    """A port in use: one line that names [web] endpoint and a free port to use, no traceback, non-zero exit."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_twistd(tmp_path, CONFIG.replace("tcp:0:", f"tcp:{port}:"), {"MONITOR_API_TOKEN": TOKEN})
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    (line,) = [line for line in out.splitlines() if "cannot listen" in line]
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in line
    assert f'change [web] endpoint in {tmp_path / "monitor.toml"}, e.g. endpoint = "tcp:' in line
    assert "Traceback" not in out


@pytest.mark.parametrize("key, says", [
    ("[store] path", "cannot open the store plain/monitor.sqlite"),
    ("[web] token_file", "cannot use the API token file plain/api-token"),
])  # fmt: skip
def test_unusable_file_is_one_line_naming_the_key(tmp_path, key, says):
    """A store or token file under a plain file (so it cannot be made): one line naming the key, no traceback."""
    (tmp_path / "plain").write_text("not a directory")
    if key == "[store] path":
        config, env = (
            CONFIG.replace('path = "monitor.sqlite"', 'path = "plain/monitor.sqlite"'),
            {"MONITOR_API_TOKEN": TOKEN},
        )
    else:
        config, env = CONFIG.replace("[web]\n", '[web]\ntoken_file = "plain/api-token"\n'), {"MONITOR_API_TOKEN": ""}
    result = run_twistd(tmp_path, config, env)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert says in out and f"change {key} in" in out, out
    assert "Traceback" not in out


def test_bad_config_prints_its_problems_not_twistds_help(tmp_path):
    """A bad file: the problems, each naming its key; not the 60 lines of twistd --help."""
    result = run_twistd(tmp_path, '[web]\nendpoint = "tcp:0"\naccess_logg = "-"\n')
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "web.access_logg (line 3): unknown key" in out
    assert "Usage:" not in out and "--nodaemon" not in out


def test_make_run_console_and_ctrl_c(tmp_path):
    """make run: short console lines ending the start with the address; Ctrl-C stops it without make's noise."""
    import signal
    import threading

    from tests.conftest import ROOT

    config = CONFIG.replace('path = "monitor.sqlite"', f'path = "{tmp_path}/monitor.sqlite"')
    config = config.replace('path = "inbox.jsonl"', f'path = "{tmp_path}/inbox.jsonl"')
    config = config.replace("[web]\n", f'[web]\ntoken_file = "{tmp_path}/api-token"\n')
    (tmp_path / "monitor.toml").write_text(config, encoding="utf-8")
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"CONFIG={tmp_path / 'monitor.toml'}"],
        cwd=str(ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    lines, started = [], threading.Event()

    def read():
        for raw in proc.stdout:
            lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
            if "monitor is running" in lines[-1]:
                started.set()
        started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(90), "\n".join(lines)
        # Ctrl-C in a terminal: SIGINT to the whole foreground process group.
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    reader.join(10)
    out = "\n".join(lines)
    hub_lines = [line for line in lines if re.match(r"\d\d:\d\d:\d\d ", line)]
    started_at = next(i for i, line in enumerate(hub_lines) if "monitor is running" in line)
    assert "no user yet: create the first admin at http://127.0.0.1:" in hub_lines[started_at - 1], out
    assert any("Server Shut Down." in line for line in hub_lines[started_at:]), out
    assert "*** " not in out and "Interrupt" not in out, out
    assert "[twisted" not in out and "#debug" not in out and "Traceback" not in out, out
    assert not any("starting on" in line or "Starting factory" in line for line in lines), out


def test_make_run_and_make_demo_share_their_users(tmp_path):
    """A user added for make run (etc/monitor.toml) logs into make demo (etc/demo.toml), and back."""
    from tests.conftest import ROOT

    def shipped(name):
        text = (ROOT / "etc" / name).read_text(encoding="utf-8")
        return text.replace('endpoint = "tcp:8080:interface=127.0.0.1"', 'endpoint = "tcp:0:interface=127.0.0.1"')

    def logs_in(hub, name, password):
        opener = hub.opener()
        _, _, body = hub.request("/login", opener=opener)
        status, headers, _ = hub.request("/login", {"csrf": csrf_of(body), "name": name, "password": password,
                                                    "next": "/dashboard"}, opener=opener)  # fmt: skip
        return status == 303 and headers["Location"].endswith("/dashboard")

    run = HubProcess(str(tmp_path), shipped("monitor.toml"))
    demo = HubProcess(str(tmp_path), shipped("monitor.toml"))
    # Each its own file, as in etc/; the store path is the files' own.
    demo.config = str(tmp_path / "demo.toml")
    (tmp_path / "demo.toml").write_text(shipped("demo.toml"), encoding="utf-8")
    run.add_user("alice", "admin", "alice password 1")
    demo.add_user("bob", "viewer", "bob password 1")
    for hub in (demo, run):
        hub.start()
        try:
            hub.wait_for(STARTED)
            assert logs_in(hub, "alice", "alice password 1") and logs_in(hub, "bob", "bob password 1")
            assert not logs_in(hub, "bob", "wrong password 1")
        finally:
            hub.stop()
