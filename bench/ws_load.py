"""
Load on the live channel: many browsers on /ws of a real hub, one of which
never reads, while posts stream in.  Shows that the hub's memory stays flat,
that readers keep up, and that the stalled client only loses its own
messages and is then disconnected.

Starts `twistd -n monitor` (a followed replay file, a user made with
--add-user), logs in over HTTP for a session cookie, opens CLIENTS
WebSocket clients (Autobahn, counting envelopes without decoding them) plus
one raw client that completes the handshake and then stops reading, appends
RATE posts per second for DURATION seconds, and samples the hub's RSS every
second.  Before that it stores WARMUP old posts, so that the hub's other
bounded memories (the alert engine remembers the last 100,000 posts) are
full and what remains is the live channel's own cost.  Only loopback
traffic; everything stops by itself.

    python bench/ws_load.py [--clients 100] [--rate 200] [--duration 60]
                            [--stall-timeout 20] [--warmup 110000] [--no-stalled]
                            [--json bench/out/ws_load.json]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar

import psutil

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PASSWORD = "bench password 1"
WORDS = (
    "acme globex outage refund great love slow support cloud launch price down fast broken thanks "
    "waiting app update login server customer service billing"
).split()


def twistd(*args):
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "--nodaemon", "--pidfile=", *args]


class Hub:
    """
    A real C{twistd -n monitor} in DIRECTORY, with a viewer C{bench} made by
    --add-user; C{config} replaces the default configuration (a followed
    replay file and two topics).
    """

    def __init__(self, directory: str, stall_timeout: float = 20.0, config: str = "") -> None:
        self.dir = directory
        self.config = os.path.join(directory, "monitor.toml")
        self.inbox = os.path.join(directory, "inbox.jsonl")
        with open(self.config, "w", encoding="utf-8") as f:
            f.write(
                config
                or f"""
[store]
path = "monitor.sqlite"
[web]
endpoint = "tcp:0:interface=127.0.0.1"
ws_stall_timeout = {stall_timeout}
# Every client here is the one bench user.
ws_per_user = 2000
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
            )
        self.env = dict(os.environ, PYTHONPATH=str(ROOT), MONITOR_API_TOKEN="bench-token")
        self.log = open(os.path.join(directory, "twistd.log"), "wb")

    def start(self) -> None:
        pw = os.path.join(self.dir, "pw")
        with open(pw, "w") as f:
            f.write(PASSWORD + "\n")
        subprocess.run(
            twistd("monitor", "-c", self.config, "--add-user", "bench", "--role", "viewer", "--password-file", pw),
            cwd=self.dir,
            env=self.env,
            check=True,
            capture_output=True,
        )
        self.proc = subprocess.Popen(
            twistd("--logfile", "-", "monitor", "-c", self.config),
            cwd=self.dir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        ready = threading.Event()
        found = {}

        def drain():
            for line in self.proc.stdout:
                self.log.write(line)
                m = re.search(rb"Site starting on (\d+)", line)
                if m:
                    found["port"] = int(m.group(1))
                    ready.set()
            ready.set()

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(60) or "port" not in found:
            raise SystemExit("the hub did not start; see " + self.log.name)
        self.port = found["port"]
        self.base = f"http://127.0.0.1:{self.port}"
        self.ps = psutil.Process(self.proc.pid)

    def login(self) -> str:
        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        body = opener.open(self.base + "/login", timeout=30).read()
        csrf = re.search(rb'name="csrf" value="([^"]+)"', body).group(1).decode()
        data = urllib.parse.urlencode({"csrf": csrf, "name": "bench", "password": PASSWORD, "next": "/live"})
        opener.open(self.base + "/login", data.encode(), timeout=30).read()
        return next(c.value for c in jar if c.name == "monitor_session")

    def metrics(self) -> dict[str, float]:
        text = urllib.request.urlopen(self.base + "/metrics", timeout=30).read().decode()
        out = {}
        for line in text.splitlines():
            if line.startswith("monitor_ws_") or line.startswith("monitor_posts_stored_total"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def run_reactor(main) -> None:
    """
    Run the coroutine function C{main} on the reactor until it stops the
    reactor; a failure is printed and stops it too.
    """
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred

    def failed(f):
        f.printTraceback()
        reactor.stop()

    reactor.callWhenRunning(lambda: ensureDeferred(main()).addErrback(failed))
    reactor.run()


def run(args) -> dict:
    from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
    from twisted.internet import reactor
    from twisted.internet.protocol import Protocol
    from twisted.internet.task import LoopingCall
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    directory = tempfile.mkdtemp(prefix="monitor-wsload-")
    hub = Hub(directory, args.stall_timeout)
    hub.start()
    cookie = hub.login()
    origin = hub.base
    host = f"127.0.0.1:{hub.port}"

    class Reader(WebSocketClientProtocol):
        """A browser that keeps up: counts envelopes without decoding them."""

        def onOpen(self):
            self.messages = self.posts = self.frames = self.lost = 0
            self.factory.readers.append(self)
            self.sendMessage(json.dumps({"type": "subscribe", "kinds": ["post", "stats", "source"]}).encode())

        def onMessage(self, payload, isBinary):
            self.frames += 1
            self.messages += payload.count(b'{"type":')
            self.posts += payload.count(b'{"type":"post"')
            if b'"type":"lost"' in payload:
                for frame in json.loads(payload):
                    if frame["type"] == "lost":
                        self.lost += frame["data"]["count"]

    class Stalled(Protocol):
        """Completes the handshake, then never reads again."""

        def connectionMade(self):
            self.transport.write(
                (
                    f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                    f"Origin: {origin}\r\nCookie: monitor_session={cookie}\r\n\r\n"
                ).encode()
            )
            self.buffer = b""

        def dataReceived(self, data):
            self.buffer += data
            if b"\r\n\r\n" in self.buffer:
                # subscribe (a masked text frame), then stop reading for good
                payload = json.dumps({"type": "subscribe", "kinds": ["post", "stats", "source"]}).encode()
                mask = os.urandom(4)
                frame = (
                    bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                )
                self.transport.write(frame)
                self.transport.pauseProducing()

    factory = WebSocketClientFactory(
        f"ws://{host}/ws", origin=origin, headers={"Cookie": f"monitor_session={cookie}"}, reactor=reactor
    )
    factory.protocol = Reader
    factory.readers = []
    factory.setProtocolOptions(autoPingInterval=0, utf8validateIncoming=False)
    rng = random.Random(1)
    state = {"written": 0, "samples": [], "t0": None}
    stalled = Stalled()

    def write_posts():
        n = int(args.rate / 10)
        now = time.time()
        with open(hub.inbox, "a", encoding="utf-8") as f:
            for _ in range(n):
                i = state["written"]
                text = " ".join(rng.choice(WORDS) for _ in range(70)) + (" acme" if i % 2 else " globex")
                f.write(
                    json.dumps(
                        {
                            "id": i,
                            "text": text,
                            "author": f"u{i % 500}",
                            "created_at": now,
                            "likes": i % 7,
                            "lat": (i % 120) - 60.0,
                            "lon": (i % 300) - 150.0,
                        }
                    )
                    + "\n"
                )
                state["written"] += 1

    def sample():
        elapsed = time.monotonic() - state["t0"]
        rss = hub.ps.memory_info().rss
        state["samples"].append((round(elapsed, 1), rss))

    async def warm_up():
        """
        Fill the hub's bounded per-post memories (the alert engine remembers
        the last 100,000 posts it saw) before measuring, so that what is
        left to see is the live channel's own cost.
        """
        if not args.warmup:
            return
        old = time.time() - 3 * 86400
        with open(hub.inbox, "a", encoding="utf-8") as f:
            for i in range(args.warmup):
                f.write(
                    json.dumps(
                        {
                            "id": f"w{i}",
                            "text": f"acme warm up {i}",
                            "author": f"w{i % 500}",
                            "created_at": old + i * 0.01,
                        }
                    )
                    + "\n"
                )
        from twisted.internet.task import deferLater

        started = time.monotonic()
        while hub.metrics().get('monitor_posts_stored_total{source="inbox"}', 0) < args.warmup:
            if time.monotonic() - started > 600:
                raise SystemExit("warm-up posts not stored within 10 minutes")
            await deferLater(reactor, 1.0, lambda: None)
        state["warmup_seconds"] = round(time.monotonic() - started, 1)

    async def main():
        await warm_up()
        if args.stalled:
            await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", hub.port), stalled)
        for _ in range(args.clients):
            await TCP4ClientEndpoint(reactor, "127.0.0.1", hub.port).connect(factory)
        state["t0"] = time.monotonic()
        writer = LoopingCall(write_posts)
        sampler = LoopingCall(sample)
        writer.start(0.1)
        sampler.start(1.0)
        from twisted.internet.task import deferLater

        await deferLater(reactor, args.duration, lambda: None)
        writer.stop()
        # Let the hub finish what was written, then read its counters.
        await deferLater(reactor, 3, lambda: None)
        sampler.stop()
        state["metrics"] = hub.metrics()
        if args.stalled:
            stalled.transport.resumeProducing()
        reactor.stop()

    run_reactor(main)
    hub.stop()

    readers = factory.readers
    posts = [r.posts for r in readers] or [0]
    rss = [s[1] for s in state["samples"]]
    warm = [s[1] for s in state["samples"] if s[0] >= 10] or rss
    m = state.get("metrics", {})
    result = {
        "warmup_posts": args.warmup,
        "warmup_seconds": state.get("warmup_seconds"),
        "clients": args.clients,
        "stalled_clients": 1 if args.stalled else 0,
        "rate_per_second": args.rate,
        "duration_seconds": args.duration,
        "posts_written": state["written"],
        "posts_stored": sum(v for k, v in m.items() if k.startswith("monitor_posts_stored_total")) - args.warmup,
        "reader_posts_received": {"min": min(posts), "median": statistics.median(posts), "max": max(posts)},
        "reader_lost_total": sum(r.lost for r in readers),
        "reader_frames_per_second": round(statistics.mean([r.frames for r in readers] or [0]) / args.duration, 2),
        "hub_rss_mib": {
            "start": round(rss[0] / 2**20, 1),
            "after_10s": round(warm[0] / 2**20, 1),
            "peak": round(max(rss) / 2**20, 1),
            "end": round(rss[-1] / 2**20, 1),
            "growth_after_10s": round((max(warm) - warm[0]) / 2**20, 1),
        },
        "ws_messages_dropped": m.get("monitor_ws_messages_dropped_total", 0.0),
        "ws_disconnects": {k.split('"')[1]: v for k, v in m.items() if k.startswith("monitor_ws_disconnects_total{")},
        "ws_clients_at_end": m.get("monitor_ws_clients", 0.0),
        "rss_samples": state["samples"],
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rate", type=float, default=200.0, help="posts appended per second")
    parser.add_argument("--warmup", type=int, default=110_000, help="posts stored before measuring (0: none)")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--stall-timeout", type=float, default=20.0)
    parser.add_argument(
        "--no-stalled", dest="stalled", action="store_false", help="leave out the client that never reads"
    )
    parser.add_argument("--json", default=str(ROOT / "bench" / "out" / "ws_load.json"))
    args = parser.parse_args()
    result = run(args)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    shown = {k: v for k, v in result.items() if k != "rss_samples"}
    print(json.dumps(shown, indent=2))
    print(f"(written to {args.json})")


if __name__ == "__main__":
    main()
