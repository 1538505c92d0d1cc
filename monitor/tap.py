"""
C{twistd monitor}: the command-line options and the service maker.
"""

from twisted.python import usage

from monitor.command import twistd_command
from monitor.config import ConfigError, ConfigProblem, load_config

__all__ = ["Options", "makeService", "twistd_command"]


class Options(usage.Options):
    """
    Options of C{twistd monitor}.
    """

    optParameters = [
        ["config", "c", "etc/monitor.toml", "The configuration file (TOML)."],
        ["add-user", None, None, "Create a web UI user (or reset its password and role) in the store, then exit."],
        ["role", None, "viewer", "The role for --add-user: viewer, editor or admin."],
        [
            "password-file",
            None,
            None,
            "Read the --add-user password from this file's first line (- for stdin); "
            "without it the password is asked for.",
        ],
    ]

    def postOptions(self):
        # Validate before the reactor starts, so a bad file is one clear
        # message and a non-zero exit, not a traceback in the log.
        try:
            self.loaded = load_config(self["config"])
        except ConfigError as e:
            # The problems alone, not twistd's whole --help before them.
            raise SystemExit(str(e))
        if self["add-user"] is not None:
            # A one-off command: do it and exit before any service starts.
            from monitor.web.users import add_user_command

            raise SystemExit(add_user_command(self.loaded, self["add-user"], self["role"], self["password-file"]))


def makeService(options):
    from monitor.hub import Hub

    try:
        return Hub(options.loaded)
    except ConfigProblem as e:
        # A file the hub cannot read or write: one line naming the key.
        raise SystemExit(f"twistd monitor: {e}")
