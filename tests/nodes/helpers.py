"""
Doubles for the analysis-node tests: scorers a node can use without worker
processes, nodes the pool can use without AMP, and a worker function that
dies on demand.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import deferLater
from twisted.logger import globalLogPublisher
from zope.interface import implementer

from monitor.analysis import Classifier, analyze_texts, versions
from monitor.analysis.process import score_texts, to_row
from monitor.interfaces import IAnalysisNode, IAnalyzer
from monitor.model import Post
from tests.conftest import ROOT

SECRET = b"correct horse battery staple 0123"


def posts(texts, source="s"):
    return [
        Post(source=source, network=source, native_id=str(i), text=t, author="a", created_at=1.0e9 + i)
        for i, t in enumerate(texts)
    ]


class SyncScorer(Service):
    """Scores in the calling thread with the real analyze_texts: same results as the workers."""

    name = "analysis-processes"

    def __init__(self, classifier, workers, reactor=None):
        self.classifier = classifier
        self.workers = workers
        self.calls = []

    def score(self, texts):
        self.calls.append(list(texts))
        return succeed([to_row(a) for a in analyze_texts(texts, self.classifier)])


class HeldScorer(SyncScorer):
    """Scores only when the test says so (release), to hold batches in flight."""

    def __init__(self, classifier, workers, reactor=None):
        super().__init__(classifier, workers, reactor)
        self.held = []

    def score(self, texts):
        self.calls.append(list(texts))
        d = Deferred()
        self.held.append((list(texts), d))
        return d

    def release(self, i=0):
        texts, d = self.held.pop(i)
        d.callback([to_row(a) for a in analyze_texts(texts, self.classifier)])


class FailingScorer(SyncScorer):
    """A node whose workers keep failing."""

    def score(self, texts):
        self.calls.append(list(texts))
        return fail(RuntimeError("workers on fire"))


@implementer(IAnalyzer)
class RecordingLocal:
    """The hub's own analyzer, recording what it was given."""

    name = "local"

    def __init__(self, classifier=None, error=None):
        self.classifier = classifier or Classifier()
        self.calls = []
        self.error = error

    def analyze(self, posts):
        self.calls.append([p.text for p in posts])
        if self.error is not None:
            return fail(self.error)
        return succeed(analyze_texts([p.text for p in posts], self.classifier))


@implementer(IAnalysisNode)
class FakeNode:
    """A node reached without AMP: the test answers its calls."""

    def __init__(self, name, capacity=2, workers=1):
        self.name = name
        self.address = "fake"
        self.workers = workers
        self.capacity = capacity
        self.versions = versions()
        self.calls = []
        self.pings = []
        self.disconnected = False

    def analyze(self, texts):
        d = Deferred()
        self.calls.append((list(texts), d))
        return d

    def answer(self, i=0, classifier=None):
        texts, d = self.calls.pop(i)
        d.callback([list(to_row(a)) for a in analyze_texts(texts, classifier or Classifier())])

    def ping(self):
        d = Deferred()
        self.pings.append(d)
        return d

    def disconnect(self):
        self.disconnected = True


class LogCapture:
    """Collects twisted.logger events while in a with block."""

    def __init__(self):
        self.events = []

    def __enter__(self):
        globalLogPublisher.addObserver(self.events.append)
        return self

    def __exit__(self, *exc):
        globalLogPublisher.removeObserver(self.events.append)

    def texts(self):
        from twisted.logger import formatEvent

        return [formatEvent(e) for e in self.events]


def die_when_marked(texts):
    """Worker function: kill this worker if the marker file (the first text) exists, once."""
    marker = texts[0]
    if marker.startswith("/") and os.path.exists(marker):
        os.unlink(marker)
        os.kill(os.getpid(), signal.SIGKILL)
    return score_texts(texts)


def die_always(texts):
    """Worker function: always kill this worker."""
    os.kill(os.getpid(), signal.SIGKILL)


def self_signed(tmp_path):
    """A key and self-signed certificate for localhost in one PEM file, and a trust-root directory for it."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / "hub.pem"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        + cert.public_bytes(serialization.Encoding.PEM)
    )
    # tls: client endpoints take trustRoots= as a directory of .pem files.
    ca = tmp_path / "ca"
    ca.mkdir(exist_ok=True)
    (ca / "hub.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, ca


class Twistd:
    """One twistd process (the hub or a node) with its log, stopped or killed by the test."""

    def __init__(self, tmp_path, name, args, env=None):
        self.tmp_path = tmp_path
        self.name = name
        self.args = list(args)
        self.log = tmp_path / f"{name}.log"
        self.env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from twisted.scripts.twistd import run; run()",
                "--nodaemon",
                "--pidfile=",
                "--logfile",
                str(self.log),
                *self.args,
            ],
            cwd=str(self.tmp_path),
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        return self

    def output(self, tail=6000):
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} ---\n" + text[-tail:]

    async def stop(self, reactor, seconds=15.0):
        """SIGTERM, then wait (bounded); True if it exited cleanly."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        for _ in range(int(seconds / 0.1)):
            if self.proc.poll() is not None:
                return self.proc.returncode in (0, -signal.SIGTERM)
            await deferLater(reactor, 0.1, lambda: None)
        self.proc.kill()
        self.proc.wait(10)
        return False


async def wait_until(reactor, check, seconds=60.0, step=0.1, procs=()):
    """Poll the async C{check} on the real reactor until it returns something true, bounded."""
    for _ in range(int(seconds / step)):
        try:
            result = await check()
        except Exception:
            result = None
        if result:
            return result
        for p in procs:
            if p.proc.poll() is not None:
                raise AssertionError(f"{p.name} exited early\n{p.output()}")
        await deferLater(reactor, step, lambda: None)
    raise AssertionError(f"timed out after {seconds}s\n" + "\n".join(p.output() for p in procs))
