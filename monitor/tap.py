"""
C{twistd monitor}: the command-line options and the service maker.
"""

from twisted.python import usage

from monitor.config import ConfigError, load_config


class Options(usage.Options):
    """
    Options of C{twistd monitor}.
    """

    optParameters = [
        ["config", "c", "etc/monitor.toml", "The configuration file (TOML)."],
    ]

    def postOptions(self):
        # Validate before the reactor starts, so a bad file is one clear
        # message and a non-zero exit, not a traceback in the log.
        try:
            self.loaded = load_config(self["config"])
        except ConfigError as e:
            raise usage.UsageError(str(e))


def makeService(options):
    from monitor.hub import Hub

    return Hub(options.loaded)
