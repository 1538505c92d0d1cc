"""
How long one unauthenticated flood of big form bodies stalls the hub.

Starts a real ``twistd -n monitor`` (no users, no sources), asks ``/healthz``
every 10 ms from one thread, and meanwhile sends 20 MB
``application/x-www-form-urlencoded`` bodies with two million fields each
(the attack of issue 9) to ``/login``, ``/healthz`` and a page that does not
exist.  Prints the slowest ``/healthz`` answer before and during the attack,
the attack requests' statuses and the hub's peak RSS.

    python bench/request_limits.py [--root DIR] [--rounds 3]

``--root`` runs the hub from another checkout (to measure the code before a
change).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import psutil

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = """
[store]
path = "monitor.sqlite"
[web]
endpoint = "tcp:0:interface=127.0.0.1"
"""
BODY = b"a=&" * (20 * 1000 * 1000 // 3)  # 20 MB, 2.2 million fields


def start(root: str, directory: str):
    with open(os.path.join(directory, "monitor.toml"), "w") as f:
        f.write(CONFIG)
    env = dict(os.environ, PYTHONPATH=root, MONITOR_API_TOKEN="bench-token-0123456789")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "--nodaemon", "--pidfile=",
         "--logfile", "-", "monitor", "--config", "monitor.toml"],
        cwd=directory, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    for line in proc.stdout:
        m = re.search(rb"Site starting on (\d+)", line)
        if m:
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc, int(m.group(1))
    raise SystemExit("the hub did not start")


def attack(port: int, path: str, out: list) -> None:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(BODY)}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        try:
            s.sendall(head + BODY)
            status = s.recv(64).split(b" ")[1].decode()
        except (BrokenPipeError, ConnectionResetError):
            try:
                status = s.recv(64).split(b" ")[1].decode()
            except (OSError, IndexError):
                status = "reset"
    out.append((path, status, time.monotonic() - started))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=HERE)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="monitor-bench-limits-")
    proc, port = start(os.path.abspath(args.root), directory)
    hub = psutil.Process(proc.pid)
    latencies: dict[str, list[float]] = {"idle": [], "attack": []}
    phase = ["idle"]
    peak = [hub.memory_info().rss]
    stop = threading.Event()

    def probe():
        while not stop.is_set():
            started = time.monotonic()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=60) as r:
                r.read()
            latencies[phase[0]].append(time.monotonic() - started)
            peak[0] = max(peak[0], hub.memory_info().rss)
            time.sleep(0.01)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    time.sleep(1.0)
    phase[0] = "attack"
    results: list = []
    try:
        for _ in range(args.rounds):
            threads = [
                threading.Thread(target=attack, args=(port, p, results))
                for p in ("/login", "/healthz", "/no/such/page")
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        time.sleep(0.5)
    finally:
        stop.set()
        prober.join(60)
        proc.terminate()
        proc.wait(20)
    report = {
        "root": args.root,
        "healthz_idle_max_ms": round(max(latencies["idle"]) * 1000, 1),
        "healthz_attack_max_ms": round(max(latencies["attack"]) * 1000, 1),
        "healthz_answers_during_attack": len(latencies["attack"]),
        "attack_statuses": sorted({status for _, status, _ in results}),
        "attack_slowest_s": round(max(t for _, _, t in results), 2),
        "peak_rss_mib": round(peak[0] / 2**20),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
