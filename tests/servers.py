"""
Throwaway servers for the tests: real programs from Debian's packages
(`make system-deps` installs them), each in a temporary directory of its
own, listening on a Unix socket only, gone when the test is over.

Given a C{directory}, a server keeps its data there across runs instead
(C{make cluster}, L{tests.local_cluster}): C{close} stops it and leaves the
data.
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

#: Where Debian's postgresql-15 (or a build in /usr/local) keeps the server.
POSTGRES_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/local/bin")

#: initdb and postgres refuse to run as root; as root, the tests run them as
#: this user (Debian's postgresql package creates it), else as nobody.
POSTGRES_USERS = ("postgres", "nobody")


def _missing(program: str, package: str):
    message = f"{program} is missing: run `make system-deps` (apt-get install {package})"
    # make test installs it, so in CI a missing server is a failure.
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


class _Server:
    """
    A server process of ours in C{self.dir}: killed as a crash would, stopped
    with C{STOP_SIGNAL} (and killed after C{STOP_WAIT} seconds), removed.
    """

    proc = None
    dir = ""
    kept = False
    STOP_SIGNAL, STOP_WAIT = signal.SIGTERM, 10

    def _directory(self, directory, prefix: str) -> str:
        """C{directory} (made if missing, kept), or a new temporary one (removed at close)."""
        if directory is None:
            return tempfile.mkdtemp(prefix=prefix)
        self.kept = True
        os.makedirs(directory, exist_ok=True)
        os.chmod(directory, 0o700)
        return os.path.abspath(directory)

    def kill(self) -> None:
        """SIGKILL: what a crash does (a postmaster's backends exit too)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(self.STOP_SIGNAL)
            try:
                self.proc.wait(self.STOP_WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        self.stop()
        if not self.kept:
            shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer(_Server):
    """
    C{redis-server} with append-only persistence (fsync on every write), so
    that a kill and a restart lose nothing that was acknowledged.
    """

    def __init__(self, directory=None, appendfsync: str = "always") -> None:
        if not os.path.exists(REDIS):
            _missing("redis-server", "redis-server")
        self.dir = self._directory(directory, "monitor-redis-")
        # "everysec" (Redis's default for the append-only file) for the
        # benchmarks: a crash may lose the last second.
        self.appendfsync = appendfsync
        self.socket = os.path.join(self.dir, "redis.sock")
        self.url = f"unix://{self.socket}"
        self.proc = None

    def start(self, timeout: float = 20.0, detached: bool = False) -> "RedisServer":
        """
        Start it and wait until it takes connections.  C{detached}: in a
        session of its own, so a terminal's Ctrl-C does not reach it.
        """
        self.proc = subprocess.Popen(
            [REDIS, "--port", "0", "--unixsocket", self.socket, "--unixsocketperm", "700",
             "--dir", self.dir, "--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", "",
             "--loglevel", "notice"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=detached,
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

    def cli(self, *args: str) -> str:
        """One command through redis-cli, for what a test checks from outside."""
        out = subprocess.run(["redis-cli", "-s", self.socket, *args], capture_output=True, check=True, timeout=10)
        return out.stdout.decode().strip()


def _postgres_bin() -> str | None:
    import glob

    for where in (*POSTGRES_DIRS, *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)):
        if os.access(os.path.join(where, "postgres"), os.X_OK) and os.access(os.path.join(where, "initdb"), os.X_OK):
            return where
    return None


def _unprivileged() -> tuple[int, int, str] | None:
    """The uid, gid and name to run the server as, or C{None} to run as we are."""
    if os.geteuid() != 0:
        return None
    import pwd

    for name in POSTGRES_USERS:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid, name
    raise RuntimeError(f"running as root and none of the users {POSTGRES_USERS} exists to run PostgreSQL as")


class PostgresServer(_Server):
    """
    A throwaway PostgreSQL cluster: C{initdb} into a temporary directory,
    C{postgres} listening on a Unix socket there only (no TCP), trust
    authentication for the one role C{monitor}, fsync off (a test's data
    need not survive the machine).  As root it runs as an unprivileged user
    (L{POSTGRES_USERS}), which owns the directory.

    A test gets a database of its own with L{create_database}, a copy of
    C{template_monitor}: cheap (a file copy) compared with a new cluster.
    """

    role = "monitor"
    # A fast shutdown: connected clients are disconnected.
    STOP_SIGNAL, STOP_WAIT = signal.SIGINT, 20

    def __init__(self, directory=None) -> None:
        self.bin = _postgres_bin()
        if self.bin is None:
            _missing("postgres", "postgresql")
        self.user = _unprivileged()
        self.dir = self._directory(directory, "monitor-postgres-")
        self.data = os.path.join(self.dir, "data")
        self.proc = None
        self._databases = 0
        if self.user is not None:
            os.chown(self.dir, self.user[0], self.user[1])
        if os.path.exists(os.path.join(self.data, "PG_VERSION")):
            return  # a kept cluster, made by an earlier run
        self._run(
            [os.path.join(self.bin, "initdb"), "-D", self.data, "-U", self.role, "--auth=trust",
             "-E", "UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions"],
            timeout=120,
        )  # fmt: skip

    def _demote(self):
        if self.user is None:
            return None
        uid, gid, _ = self.user

        def demote():
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)

        return demote

    def _run(self, argv, timeout: float = 30.0) -> str:
        done = subprocess.run(argv, capture_output=True, preexec_fn=self._demote(), timeout=timeout, cwd=self.dir)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed:\n" + (done.stdout + done.stderr).decode(errors="replace"))
        return done.stdout.decode()

    @property
    def socket_dir(self) -> str:
        return self.dir

    def dsn(self, database: str = "postgres") -> str:
        """A libpq URI for C{database} over the Unix socket."""
        from urllib.parse import quote

        return f"postgresql://{self.role}@/{database}?host={quote(self.dir, safe='')}"

    def start(self, timeout: float = 30.0, detached: bool = False) -> "PostgresServer":
        """Start it and wait until it takes connections; C{detached} as for Redis."""
        self.proc = subprocess.Popen(
            [os.path.join(self.bin, "postgres"), "-D", self.data, "-k", self.dir,
             "-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=60", "-c", "shared_buffers=32MB"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=self._demote(), cwd=self.dir,
            start_new_session=detached,
        )  # fmt: skip
        ready = threading.Event()
        lines: list[bytes] = []

        def read(stdout=self.proc.stdout):
            for line in stdout:
                if len(lines) < 200:
                    lines.append(line)
                if b"ready to accept connections" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError("postgres did not start:\n" + b"".join(lines).decode(errors="replace"))
        return self

    def psql(self, sql: str, database: str = "postgres") -> str:
        """One statement through psql, for what a test checks from outside."""
        return self._run(
            [os.path.join(self.bin, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", self.dir, "-U", self.role, "-d", database, "-c", sql]
        ).strip()  # fmt: skip

    def create_database(self, template: str = "template1") -> str:
        """A new, empty database (a copy of C{template}); returns its name."""
        self._databases += 1
        name = f"test_{os.getpid()}_{self._databases}"
        self.psql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return name

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
