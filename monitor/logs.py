"""
The console: what someone watching C{make run} needs to see (the start, the
sources, incidents, errors), one short line each, without Twisted's own
chatter or debug lines.  A C{twistd --logger} factory:

    twistd --nodaemon --logger monitor.logs.console monitor ...

Without it twistd writes every event, debug included, in its own format
(what C{--logfile} files get).
"""

from __future__ import annotations

import re
import sys
import time

from twisted.logger import ILogObserver, LogLevel, formatEvent
from zope.interface import implementer

__all__ = ["ConsoleObserver", "console"]

#: Twisted's lines that say nothing to someone running the monitor: the
#: listening port opening and closing, the reactor's class, the main loop.
_CHATTER = re.compile(
    r"^(\S+ starting on \S+|\(\w+ Port \S+ Closed\)|reactor class: .*|Main loop terminated\.|"
    r"Starting factory .*|Stopping factory .*)$"
)


@implementer(ILogObserver)
class ConsoleObserver:
    """
    Events at C{info} and above as C{HH:MM:SS message}, warnings and errors
    prefixed with their level and followed by their traceback, if any.
    """

    def __init__(self, out=None, min_level: LogLevel = LogLevel.info) -> None:
        self.out = out if out is not None else sys.stdout
        self.min_level = min_level

    def __call__(self, event: dict) -> None:
        level = event.get("log_level", LogLevel.info)
        if level < self.min_level:
            return
        text = formatEvent(event).rstrip()
        if not text or _CHATTER.match(text):
            return
        if level >= LogLevel.warn:
            text = f"{level.name}: {text}"
        failure = event.get("log_failure")
        if failure is not None:
            text += "\n" + failure.getTraceback().rstrip()
        stamp = time.strftime("%H:%M:%S", time.localtime(event.get("log_time", time.time())))
        self.out.write(f"{stamp} {text}\n")
        self.out.flush()


def console() -> ConsoleObserver:
    """For C{twistd --logger monitor.logs.console}."""
    return ConsoleObserver()
