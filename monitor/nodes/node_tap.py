"""
C{twistd monitor-node}: the command-line options and the service maker of
an analysis node.
"""

from __future__ import annotations

import os

from twisted.python import usage

from monitor.nodes.secret import SecretError, read_secret


def cores() -> int:
    """
    The cores this process may run on (a container's limit, not the host's).
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _workers(value: str) -> int:
    n = int(value)
    if n < 1:
        raise ValueError("must be at least 1")
    return n


class Options(usage.Options):
    """
    Options of C{twistd monitor-node}.
    """

    optParameters = [
        ["hub", None, None, "The hub's node endpoint: tcp:HOST:PORT, or tls:HOST:PORT for TLS."],
        ["secret-file", None, None, "The file holding the shared secret (default: $MONITOR_NODE_SECRET)."],
        ["workers", "w", None, "Worker processes (default: the number of cores).", _workers],
        ["name", None, None, "The node's name at the hub (default: HOSTNAME-PID)."],
    ]

    def postOptions(self):
        # Check everything before the reactor starts: a typo is one clear
        # message and a non-zero exit, not a node that retries forever.
        from twisted.internet.endpoints import clientFromString
        from twisted.internet.testing import MemoryReactor

        if not self["hub"]:
            raise usage.UsageError("--hub is required (the hub's [nodes] endpoint, e.g. tcp:hub.example:7700)")
        try:
            clientFromString(MemoryReactor(), self["hub"])
        except Exception as e:  # endpoint parsers raise many kinds of error
            raise usage.UsageError(f"--hub {self['hub']!r} is not a Twisted client endpoint ({e})")
        if self["workers"] is None:
            self["workers"] = cores()
        name = self["name"]
        if name is not None and not (0 < len(name) <= 100 and name.isprintable()):
            raise usage.UsageError("--name must be 1 to 100 printable characters")
        try:
            self.secret = read_secret(self["secret-file"], os.environ, prefer_file=True)
        except SecretError as e:
            raise usage.UsageError(str(e))


def makeService(options):
    from twisted.internet import reactor
    from twisted.internet.endpoints import clientFromString

    from monitor.nodes.node import AnalysisNode

    node = AnalysisNode(
        clientFromString(reactor, options["hub"]),
        options.secret,
        options["workers"],
        name=options["name"],
        reactor=reactor,
        hub_description=options["hub"],
    )
    node.setName("monitor-node")
    return node
