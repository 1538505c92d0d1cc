"""
C{make cluster}: several hubs on one machine, to try them.  Starts a
PostgreSQL and a Redis of its own (Debian's programs, as the tests do: the
data under C{var/cluster/}, kept across runs; as root PostgreSQL runs as the
C{postgres} user), then two hubs (C{twistd -n monitor}) on
C{etc/cluster.toml}, each with its own C{[hub] name} and web port, and
prints their output, each line led by the hub's name.  Ctrl-C (or SIGTERM)
stops the hubs, then the servers, each cleanly.

    python -m tests.local_cluster [--ports 8080,8081] [--config etc/cluster.toml] [--var var/cluster]

Paths are relative to the directory it runs in (the hubs run there too, so
the configuration's C{var/...} paths are under it).  Start over with C{rm
-rf var/cluster var/hub-*}.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.servers import REDIS, PostgresServer, RedisServer, _postgres_bin  # noqa: E402

#: The hubs' names, in the order of --ports.
NAMES = ("hub-a", "hub-b")
DATABASE = "monitor"
#: Seconds to wait for the servers and hubs to start, and for a hub to stop.
START_WAIT, STOP_WAIT = 90.0, 30.0


def say(line: str) -> None:
    print(f"cluster | {line}", flush=True)


class HubProcess:
    """One C{twistd -n monitor}, its console output passed on line by line under its name."""

    def __init__(self, name: str, port: int, config: str, env: dict) -> None:
        self.name, self.port = name, port
        self.base = f"http://127.0.0.1:{port}"
        argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "--nodaemon", "--pidfile=",
                "--logger", "monitor.logs.console", "monitor", "--config", config]  # fmt: skip
        hub_env = dict(env, MONITOR_HUB=name, MONITOR_PORT=str(port))
        # A session of its own: the terminal's Ctrl-C reaches this script
        # only, which stops the hubs before the servers they use.
        self.proc = subprocess.Popen(
            argv, env=hub_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        threading.Thread(target=self._relay, daemon=True).start()

    def _relay(self) -> None:
        for line in self.proc.stdout:
            sys.stdout.write(f"{self.name} | {line.decode('utf-8', 'replace')}")
            sys.stdout.flush()

    def hubs(self, token: str) -> list[str]:
        """The names in this hub's C{/api/v1/hubs}."""
        request = urllib.request.Request(self.base + "/api/v1/hubs", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=5) as r:
            return [h["name"] for h in json.load(r)["hubs"]]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_WAIT)
            except subprocess.TimeoutExpired:
                say(f"{self.name} did not stop within {STOP_WAIT:.0f}s; killing it")
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def api_token(path: str) -> str:
    """One API token for both hubs, made once (owner-only) and kept in C{path}."""
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    return token


def wait_listed(hubs: list[HubProcess], token: str, stopping: threading.Event) -> bool:
    """Until every hub lists every hub in /api/v1/hubs (bounded); False if one died or we were stopped."""
    want = sorted(h.name for h in hubs)
    deadline = time.monotonic() + START_WAIT
    while time.monotonic() < deadline:
        if any(h.proc.poll() is not None for h in hubs):
            return False
        try:
            if all(h.hubs(token) == want for h in hubs):
                return True
        except (OSError, ValueError, KeyError):
            pass
        if stopping.wait(0.25):
            return False
    return False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Two hubs on a PostgreSQL and a Redis of their own, on this machine.")
    parser.add_argument("--ports", default="8080,8081", help="the hubs' web ports (default 8080,8081)")
    parser.add_argument("--config", default=os.path.join(ROOT, "etc", "cluster.toml"))
    parser.add_argument("--var", default=os.path.join("var", "cluster"), help="the servers' data (kept)")
    args = parser.parse_args(argv)
    ports = [int(p) for p in args.ports.split(",")]
    if len(ports) != len(NAMES):
        parser.error(f"--ports: {len(NAMES)} ports, one per hub")
    if not os.path.exists(REDIS) or _postgres_bin() is None:
        say("redis-server or PostgreSQL is missing: run `make system-deps`")
        return 2

    stopping = threading.Event()

    def on_signal(signum, frame):
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    os.makedirs(args.var, exist_ok=True)
    os.makedirs("var", exist_ok=True)
    # PostgreSQL runs as an unprivileged user when we are root: it must be
    # able to reach its directory.
    os.chmod(args.var, 0o755)
    redis = RedisServer(os.path.join(args.var, "redis")).start(detached=True)
    say(f"redis-server {redis.url} (pid {redis.proc.pid}, append-only file in {redis.dir})")
    postgres = None
    hubs: list[HubProcess] = []
    status = 0
    try:
        postgres = PostgresServer(os.path.join(args.var, "postgres")).start(detached=True)
        if postgres.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'") != "1":
            postgres.psql(f'CREATE DATABASE "{DATABASE}"')
        dsn = postgres.dsn(DATABASE)
        say(f"postgres {dsn} (pid {postgres.proc.pid}, data in {postgres.data})")
        token_path = os.path.join(args.var, "api-token")
        token = os.environ.get("MONITOR_API_TOKEN") or api_token(token_path)
        env = dict(os.environ, PYTHONPATH=ROOT, MONITOR_DSN=dsn, MONITOR_REDIS_URL=redis.url, MONITOR_API_TOKEN=token)
        hubs = [HubProcess(name, port, args.config, env) for name, port in zip(NAMES, ports)]
        if wait_listed(hubs, token, stopping):
            urls = ", ".join(f"{h.name} {h.base}/" for h in hubs)
            say(f"ready: {urls} (the API token is in {token_path}); Ctrl-C stops everything")
            while not stopping.is_set():
                if any(h.proc.poll() is not None for h in hubs):
                    say("a hub stopped by itself; stopping the rest")
                    status = 1
                    break
                stopping.wait(1.0)
        elif not stopping.is_set():
            say("the hubs did not come up (their output is above); stopping")
            status = 1
    finally:
        for hub in hubs:
            code = hub.stop()
            # twistd re-raises the SIGTERM after a clean stop.
            if code not in (0, -signal.SIGTERM) and status == 0:
                status = 1
            say(f"{hub.name} stopped ({code})")
        if postgres is not None:
            postgres.close()
            say("postgres stopped")
        redis.close()
        say("redis-server stopped")
    return status


if __name__ == "__main__":
    sys.exit(main())
