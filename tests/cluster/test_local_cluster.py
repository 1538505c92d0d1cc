"""
C{make cluster} (L{tests.local_cluster}) for real: its own PostgreSQL and
Redis and two hubs on etc/cluster.toml, in a directory of the test's; both
hubs answer C{/api/v1/hubs} listing each other, and SIGINT (a terminal's
Ctrl-C) stops the hubs and the servers cleanly.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request

import pytest

from tests.conftest import ROOT
from tests.servers import REDIS, _missing, _postgres_bin
from tests.test_twistd import free_port

TOKEN = "local-cluster-token-0123456789"


class Script:
    """The script as a process, its output kept and watched for lines."""

    def __init__(self, directory, ports):
        env = dict(os.environ, PYTHONPATH=str(ROOT), MONITOR_API_TOKEN=TOKEN)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.local_cluster", "--ports", ",".join(map(str, ports))],
            cwd=directory, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.lines = []
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            with self.changed:
                self.lines.append(line.decode("utf-8", "replace"))
                self.changed.notify_all()
        with self.changed:
            self.lines.append(None)
            self.changed.notify_all()

    def wait_for(self, pattern, seconds):
        """The first line matching C{pattern}, waiting for it (bounded)."""
        regex = re.compile(pattern)

        def found():
            return any(line is None or regex.search(line) for line in self.lines)

        with self.changed:
            self.changed.wait_for(found, seconds)
            for line in self.lines:
                if line is not None and regex.search(line):
                    return line
        raise AssertionError(f"no line matching {pattern!r}:\n" + self.output())

    def output(self):
        return "".join(line for line in self.lines if line)[-6000:]


def hubs(port):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/hubs", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.load(r)["hubs"]


def until(check, seconds, step=0.2):
    """Whether C{check()} came true within C{seconds} (asked every C{step})."""
    pause = threading.Event()
    for _ in range(int(seconds / step)):
        if check():
            return True
        pause.wait(step)
    return check()


def test_make_cluster_runs_two_hubs_that_list_each_other_and_ctrl_c_stops_all():
    """The script's two hubs share leases on its servers; SIGINT stops hubs then servers, exit 0."""
    # As every test that needs the servers: told what to install, and in CI
    # (where make test installs them) a failure.
    if not os.path.exists(REDIS):
        _missing("redis-server", "redis-server")
    if _postgres_bin() is None:
        _missing("postgres", "postgresql")
    make = subprocess.run(["make", "-n", "cluster"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert "python -m tests.local_cluster" in make.stdout, make.stdout + make.stderr
    directory = tempfile.mkdtemp(prefix="monitor-make-cluster-")
    # As root, PostgreSQL runs as another user, who must reach var/cluster.
    os.chmod(directory, 0o755)
    ports = [free_port(), free_port()]
    script = Script(directory, ports)
    try:
        script.wait_for(r"cluster \| ready: hub-a http://127\.0\.0\.1:\d+/, hub-b", 90)
        listed = {port: hubs(port) for port in ports}
        for port, (name, other) in zip(ports, [("hub-a", "hub-b"), ("hub-b", "hub-a")]):
            assert [h["name"] for h in listed[port]] == ["hub-a", "hub-b"]
            assert {h["name"]: h["this"] for h in listed[port]} == {name: True, other: False}

        def leases():
            return sorted(lease for h in hubs(ports[1]) for lease in h["leases"])

        # etc/cluster.toml's two collectors and the alerts, each on one hub,
        # in the heartbeats (every third of the 15 s lease).
        assert until(lambda: leases() == ["alerts", "collector:demo", "collector:inbox"], 20), leases()
        pids = [h["pid"] for h in listed[ports[0]]]
        postmaster = os.path.join(directory, "var", "cluster", "postgres", "data", "postmaster.pid")
        assert os.path.exists(postmaster)

        script.proc.send_signal(signal.SIGINT)
        assert script.proc.wait(60) == 0, script.output()
        out = script.output()
        for line in ("hub-a stopped", "hub-b stopped", "postgres stopped", "redis-server stopped"):
            assert f"cluster | {line}" in out, out
        assert out.count("Server Shut Down.") == 2, out
        # Every process is gone: the hubs, and PostgreSQL after a clean shutdown.
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        assert not os.path.exists(postmaster)
        # The data is kept for the next run.
        assert os.path.exists(os.path.join(directory, "var", "cluster", "redis", "appendonlydir"))
    finally:
        if script.proc.poll() is None:
            # It stops its hubs and servers (in sessions of their own) itself.
            script.proc.terminate()
            try:
                script.proc.wait(60)
            except subprocess.TimeoutExpired:
                script.proc.kill()
        shutil.rmtree(directory, ignore_errors=True)
