"""
The command line that runs this hub, for the hints that print it (the
first-run page's C{--add-user} line, the log).  Its own module, so that
the pages that print it need not import C{monitor.tap}, which builds the
whole hub.
"""

import os
import shlex
import sys


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


__all__ = ["twistd_command"]
