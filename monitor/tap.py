"""
C{twistd monitor}: the command-line options and the service maker.
"""

import os
import shlex
import sys

from twisted.python import usage

from monitor.config import ConfigError, ConfigProblem, load_config


def twistd_command(config_path: str, *args: str) -> str:
    """
    The command line that runs C{twistd monitor} on C{config_path} the way
    this process was started (the same twistd, the same C{PYTHONPATH}), so
    that a hint in the log or on a page works when pasted as printed.
    """
    twistd = sys.argv[0] if os.path.basename(sys.argv[0]).startswith("twistd") else ""
    if not twistd:
        beside = os.path.join(os.path.dirname(sys.executable), "twistd")
        near = os.path.relpath(beside)
        twistd = (beside if near.startswith("..") else near) if os.path.exists(beside) else "twistd"
    if os.path.exists(twistd) and not os.path.isabs(twistd) and os.sep not in twistd:
        twistd = "./" + twistd
    words = [twistd, "monitor", "--config", config_path, *args]
    path = os.environ.get("PYTHONPATH")
    prefix = f"PYTHONPATH={shlex.quote(path)} " if path else ""
    return prefix + shlex.join(words)


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
