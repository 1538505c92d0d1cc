"""
The first minute of a new user, timed: from starting the hub in a fresh
copy of the checkout (no var/, as after a clone) to the setup link and the
web address in its log, the setup page answering, and the first posts
stored; then a second start of the same copy, and how long Ctrl-C takes.

It runs what ``make run`` runs (twistd with the console logger on
etc/monitor.toml), with this interpreter's packages already installed (the
one-time ``pip install`` of ``make install`` is not timed), on a free port
instead of 8080 so it does not meet a hub that is already running.

    python bench/first_start.py [--runs 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent

SETUP = re.compile(r"create the first admin at (http://\S+/setup/\S+)")
RUNNING = re.compile(r"monitor is running: the web UI and the API are at (\S+)")


def fresh_copy(into: pathlib.Path) -> pathlib.Path:
    """The committed tree (as a clone has it), plus the vendored front-end files if built."""
    tree = into / "monitor-clone"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    vendor = ROOT / "monitor" / "web" / "static" / "vendor"
    if vendor.is_dir():
        subprocess.run(["cp", "-r", str(vendor), str(tree / "monitor" / "web" / "static")], check=True)
    config = tree / "etc" / "monitor.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("tcp:8080:", "tcp:0:"), encoding="utf-8")
    return tree


def one_start(tree: pathlib.Path, timeout: float = 60.0) -> dict:
    """Start the hub in C{tree}, time what a user waits for, stop it with SIGINT."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    twistd = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
    started = time.monotonic()
    proc = subprocess.Popen(
        [*twistd, "--nodaemon", "--pidfile=", "--logger", "monitor.logs.console", "monitor", "--config", "etc/monitor.toml"],
        cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    seen: dict = {}
    lines: list[str] = []
    done = threading.Event()

    def read():
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace")
            lines.append(line)
            now = time.monotonic() - started
            for key, pattern in (("setup_link", SETUP), ("address", RUNNING)):
                m = pattern.search(line)
                if m and key not in seen:
                    seen[key] = (now, m.group(1))
            if "address" in seen:
                done.set()
        done.set()

    threading.Thread(target=read, daemon=True).start()
    result: dict = {}
    try:
        if not done.wait(timeout) or "address" not in seen:
            raise SystemExit("the hub did not log its address:\n" + "".join(lines[-30:]))
        result["address_s"] = seen["address"][0]
        if "setup_link" in seen:
            result["setup_link_s"] = seen["setup_link"][0]
            with urllib.request.urlopen(seen["setup_link"][1], timeout=10) as r:
                assert r.status == 200
            result["setup_page_s"] = time.monotonic() - started
        db = tree / "var" / "monitor.sqlite"
        before = _count(db)
        deadline = started + timeout
        while time.monotonic() < deadline:
            if _count(db) > before:
                result["first_posts_stored_s"] = time.monotonic() - started
                break
            time.sleep(0.02)
        else:
            raise SystemExit("no post was stored within %.0f s" % timeout)
    finally:
        stopping = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        result["stop_s"] = time.monotonic() - stopping
        # twistd ends by re-raising the SIGINT it handled: -2 after a clean stop.
        result["exit_code"] = proc.returncode
        time.sleep(0.2)  # the reader thread takes the last lines
        result["clean_stop"] = any("Server Shut Down." in line for line in lines)
    return result


def _count(db: pathlib.Path) -> int:
    try:
        connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
    except sqlite3.Error:
        return 0
    try:
        return connection.execute("SELECT count(*) FROM posts").fetchone()[0]
    except sqlite3.Error:
        return 0
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    figures: dict[str, list[dict]] = {"first": [], "second": []}
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="monitor-first-") as tmp:
            tree = fresh_copy(pathlib.Path(tmp))
            figures["first"].append(one_start(tree))
            figures["second"].append(one_start(tree))
    keys = ("setup_link_s", "address_s", "setup_page_s", "first_posts_stored_s", "stop_s")
    print(f"{args.runs} runs, median (min-max) seconds from starting twistd")
    print(f"{'start':<8}" + "".join(f"{k[:-2]:>24}" for k in keys))
    for name, runs in figures.items():
        cells = []
        for key in keys:
            values = [r[key] for r in runs if key in r]
            cells.append(f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})" if values else "-")
        print(f"{name:<8}" + "".join(f"{c:>24}" for c in cells))
    stops = [r["clean_stop"] for runs in figures.values() for r in runs]
    print(f'clean stops after Ctrl-C ("Server Shut Down." logged): {sum(stops)} of {len(stops)}')
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
