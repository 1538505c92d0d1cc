"""
The public contracts of analysis nodes outside the wire: the [nodes] and
[analysis] workers configuration, where the secret comes from, the
monitor-node command line, and reconnect backoff.
"""

from __future__ import annotations

import os

import pytest
from twisted.internet.task import Clock
from twisted.python import usage

from monitor.config import ConfigError, parse_config
from monitor.nodes.node import AnalysisNode
from monitor.nodes.node_tap import Options, cores
from monitor.nodes.secret import SECRET_ENV, SecretError, read_secret
from tests.nodes.helpers import SECRET, self_signed


def secret_file(tmp_path, text=SECRET.decode() + "\n", mode=0o600):
    path = tmp_path / "node-secret"
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


def problems(data, environ=None):
    with pytest.raises(ConfigError) as e:
        parse_config(data, environ=environ or {})
    return e.value.problems


def test_defaults_have_no_listener_and_no_workers():
    """Without [nodes] the hub listens for no node, and analyses in threads."""
    c = parse_config({}, environ={})
    assert c.nodes == {"endpoint": None, "secret_file": None, "timeout": 10.0}
    assert c.analysis["workers"] == 0


def test_workers_must_not_be_negative():
    """[analysis] workers is a whole number >= 0."""
    assert any("analysis.workers" in p and "at least 0" in p for p in problems({"analysis": {"workers": -1}}))
    assert parse_config({"analysis": {"workers": 3}}, environ={}).analysis["workers"] == 3


def test_listener_needs_a_secret():
    """An endpoint without secret_file or MONITOR_NODE_SECRET is a problem naming nodes.secret_file."""
    (p,) = problems({"nodes": {"endpoint": "tcp:7700"}})
    assert p.startswith("nodes.secret_file") and SECRET_ENV in p


def test_secret_from_file_or_environment(tmp_path):
    """The secret comes from the file, or from the environment, which wins on the hub."""
    c = parse_config({"nodes": {"endpoint": "tcp:7700", "secret_file": secret_file(tmp_path)}}, environ={})
    assert c.nodes["endpoint"] == "tcp:7700" and read_secret(c.nodes["secret_file"], {}) == SECRET
    env = {SECRET_ENV: "y" * 20}
    parse_config({"nodes": {"endpoint": "tcp:7700"}}, environ=env)
    assert read_secret(c.nodes["secret_file"], env) == b"y" * 20
    assert read_secret(c.nodes["secret_file"], env, prefer_file=True) == SECRET


def test_bad_secrets_are_problems(tmp_path):
    """A missing or short secret file is reported with the key."""
    (p,) = problems({"nodes": {"endpoint": "tcp:7700", "secret_file": str(tmp_path / "nope")}})
    assert p.startswith("nodes.secret_file") and "cannot read" in p
    (p,) = problems({"nodes": {"endpoint": "tcp:7700", "secret_file": secret_file(tmp_path, "short")}})
    assert "shorter than 16" in p


def test_bad_endpoint_and_unknown_keys():
    """[nodes] checks its endpoint and refuses unknown keys, such as a secret in the file."""
    ps = problems({"nodes": {"endpoint": "nonsense:1", "secret": "in the toml"}}, environ={SECRET_ENV: "z" * 20})
    assert any(p.startswith("nodes.endpoint") for p in ps)
    assert any(p.startswith("nodes.secret") and "unknown key" in p for p in ps)


def test_ssl_endpoint_accepted(tmp_path):
    """A TLS listener is an ssl: endpoint string; its files are checked at load."""
    pem, _ = self_signed(tmp_path)
    c = parse_config({"nodes": {"endpoint": f"ssl:7700:privateKey={pem}"}}, environ={SECRET_ENV: "z" * 20})
    assert c.nodes["endpoint"].startswith("ssl:")
    (p,) = problems({"nodes": {"endpoint": "ssl:7700:privateKey=missing.pem"}}, environ={SECRET_ENV: "z" * 20})
    assert p.startswith("nodes.endpoint") and "missing.pem" in p


def test_node_options(tmp_path, monkeypatch):
    """monitor-node needs --hub and a secret; --workers defaults to the number of cores."""
    monkeypatch.delenv(SECRET_ENV, raising=False)
    o = Options()
    o.parseOptions(["--hub", "tcp:127.0.0.1:7700", "--secret-file", secret_file(tmp_path)])
    assert o["workers"] == cores() >= 1 and o.secret == SECRET and o["name"] is None
    o = Options()
    o.parseOptions(
        ["--hub", "tls:hub.example:7700", "--secret-file", secret_file(tmp_path), "-w", "3", "--name", "gpu-box"]
    )
    assert o["workers"] == 3 and o["name"] == "gpu-box"


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "--hub is required"),
        (["--hub", "bogus:x"], "not a Twisted client endpoint"),
        (["--hub", "tcp:h:1"], "no node secret"),
        (["--hub", "tcp:h:1", "--workers", "0"], "at least 1"),
        (["--hub", "tcp:h:1", "--name", ""], "--name"),
    ],
)
def test_node_options_errors(args, message, monkeypatch):
    """Bad monitor-node options are usage errors that say what is wrong."""
    monkeypatch.delenv(SECRET_ENV, raising=False)
    with pytest.raises(usage.UsageError, match=message):
        Options().parseOptions(args)


def test_node_secret_from_environment(monkeypatch):
    """Without --secret-file the node reads MONITOR_NODE_SECRET."""
    monkeypatch.setenv(SECRET_ENV, "e" * 16)
    o = Options()
    o.parseOptions(["--hub", "tcp:h:1"])
    assert o.secret == b"e" * 16


def test_world_readable_secret_file_is_warned_about(tmp_path):
    """A secret file others can read is used, with a warning."""
    from tests.nodes.helpers import LogCapture

    with LogCapture() as log:
        assert read_secret(secret_file(tmp_path, mode=0o644), {}) == SECRET
    assert any("chmod 600" in t for t in log.texts())
    with pytest.raises(SecretError):
        read_secret(None, {})


def test_refused_handshakes_back_off():
    """Each refused handshake lengthens the wait before the node dials again."""
    node = AnalysisNode(object(), SECRET, 1, reactor=Clock(), retry_policy=lambda n: float(n))
    assert node._retry_delay(1) == 1.0
    node.failures = 5
    assert node._retry_delay(1) == 5.0
    assert node.capacity == 2
