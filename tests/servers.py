"""
Throwaway servers for the tests: real programs from Debian's packages
(`make system-deps` installs them), each in a temporary directory of its
own, listening on a Unix socket only, gone when the test is over.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading

import pytest

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


def _missing(program: str, package: str):
    message = f"{program} is missing: run `make system-deps` (apt-get install {package})"
    # make test installs it, so in CI a missing server is a failure.
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


class RedisServer:
    """
    C{redis-server} with append-only persistence (fsync on every write), so
    that a kill and a restart lose nothing that was acknowledged.
    """

    def __init__(self) -> None:
        if not os.path.exists(REDIS):
            _missing("redis-server", "redis-server")
        self.dir = tempfile.mkdtemp(prefix="monitor-redis-")
        self.socket = os.path.join(self.dir, "redis.sock")
        self.url = f"unix://{self.socket}"
        self.proc = None

    def start(self, timeout: float = 20.0) -> "RedisServer":
        self.proc = subprocess.Popen(
            [REDIS, "--port", "0", "--unixsocket", self.socket, "--unixsocketperm", "700",
             "--dir", self.dir, "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--loglevel", "notice"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        ready = threading.Event()
        lines: list[bytes] = []

        def read(stdout=self.proc.stdout):
            for line in stdout:
                lines.append(line)
                if b"ready to accept connections" in line.lower():
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError("redis-server did not start:\n" + b"".join(lines).decode(errors="replace"))
        return self

    def kill(self) -> None:
        """SIGKILL: what a crash does."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None

    def cli(self, *args: str) -> str:
        """One command through redis-cli, for what a test checks from outside."""
        out = subprocess.run(["redis-cli", "-s", self.socket, *args], capture_output=True, check=True, timeout=10)
        return out.stdout.decode().strip()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
