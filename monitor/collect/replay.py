"""
The replay source: posts from a JSON Lines file, as fast as possible or at
the pace their timestamps give.  Its cursor is the byte offset after the
last line read, so a restart continues where the store left off.
"""

from __future__ import annotations

import os

from twisted.internet.task import deferLater

from monitor.collect.base import CONNECTED, FAILING, FINISHED, IDLE, Collector
from monitor.collect.jsonl import MAX_LINE, MalformedPayload, parse_post
from monitor.collect.kinds import SOURCE_KINDS

#: The keys' defaults, from the kinds table (written there only).
DEFAULTS = SOURCE_KINDS["replay"].defaults()


#: Lines read between two visits to the reactor, so a flat-out replay
#: never holds the reactor for long.
_LINES_PER_TURN = 200
#: The file's read buffer.  Large, because every refill is a read(2) that
#: lets go of the GIL, and taking it back from a busy writer thread can
#: wait a switch interval: with the default 8 KiB that was about a second
#: of the reactor thread's time per 20,000 posts (bench/README.md).
_BUFFER = 1 << 20
#: How often a followed or missing file is looked at again, in seconds.
_POLL = 0.25
#: A followed file with nothing new for this long is reported idle.
_IDLE_AFTER = 30.0


def _parse_cursor(cursor):
    if not cursor:
        return 0, 0
    offset, _, lineno = cursor.partition(":")
    return int(offset), int(lineno or 0)


class ReplaySource(Collector):
    """
    Read posts from a file of one JSON object per line (see the README for
    the fields).  A bad line is counted, logged with its line number and
    kept as a dead letter; the replay goes on.
    """

    kind = "replay"

    def __init__(
        self,
        name,
        queue,
        store,
        metrics,
        path,
        speed=DEFAULTS["speed"],
        network=DEFAULTS["network"],
        follow=DEFAULTS["follow"],
        reactor=None,
    ):
        super().__init__(name, queue, store, metrics, reactor=reactor)
        self.path = path
        self.speed = speed
        self.network = network or name
        self.follow = follow

    async def run(self) -> None:
        offset, lineno = _parse_cursor(await self.store.get_cursor(self.name))
        last_data = self.reactor.seconds()
        while True:
            try:
                f = open(self.path, "rb", buffering=_BUFFER)
            except FileNotFoundError:
                # A followed file may come later; a plain replay lacks its input.
                if self.follow:
                    self.set_state(IDLE, note=f"waiting for {self.path} to appear")
                else:
                    self.set_state(FAILING, f"{self.path} does not exist")
                await deferLater(self.reactor, 5 * _POLL)
                continue
            except OSError as e:
                self.set_state(FAILING, f"cannot open {self.path}: {e.strerror}")
                await deferLater(self.reactor, 5 * _POLL)
                continue
            with f:
                size = os.fstat(f.fileno()).st_size
                if offset > size:
                    self.log.warn(
                        "source {source}: {path} is shorter than the saved position; reading it from the start",
                        source=self.name,
                        path=self.path,
                    )
                    offset, lineno = 0, 0
                f.seek(offset)
                # Report a change of state, not every look at the file.
                if size > offset or not self.follow:
                    last_data = self.reactor.seconds()
                    self.set_state(CONNECTED)
                elif self.state != CONNECTED or self.reactor.seconds() - last_data >= _IDLE_AFTER:
                    self.set_state(IDLE)
                offset, lineno = await self._read(f, offset, lineno)
            if not self.follow:
                self.set_state(FINISHED)
                return
            await deferLater(self.reactor, _POLL)

    async def _read(self, f, offset: int, lineno: int) -> tuple[int, int]:
        """
        Read lines from C{f} to its end; return the new position.
        """
        first_created = start = None
        n = 0
        while True:
            # MAX_LINE counts the post, not its line ending.
            line = f.readline(MAX_LINE + 2)
            if not line:
                return offset, lineno
            if len(line.rstrip(b"\r\n")) > MAX_LINE:
                # Too long to be a post: skip to the end of the line.
                head = line[:1024]
                while line and not line.endswith(b"\n"):
                    line = f.readline(MAX_LINE + 2)
                lineno += 1
                offset = f.tell()
                await self.malformed(
                    head, f"line too long (more than {MAX_LINE} bytes)", f"{self.path}:{lineno}", f"{offset}:{lineno}"
                )
                continue
            if not line.endswith(b"\n") and self.follow:
                # A writer is still writing this line; read it whole later.
                f.seek(offset)
                return offset, lineno
            lineno += 1
            offset += len(line)
            if not line.strip():
                continue
            try:
                post = parse_post(line, self.name, self.network, self.reactor.seconds())
            except MalformedPayload as e:
                # Judged once: dead-lettered with the position after it.
                await self.malformed(line, e.reason, f"{self.path}:{lineno}", f"{offset}:{lineno}")
                continue
            if self.speed > 0:
                if first_created is None:
                    first_created, start = post.created_at, self.reactor.seconds()
                due = start + (post.created_at - first_created) / self.speed
                delay = due - self.reactor.seconds()
                if delay > 0:
                    await deferLater(self.reactor, delay)
            post.cursor = f"{offset}:{lineno}"
            await self.emit(post)
            n += 1
            if n % _LINES_PER_TURN == 0:
                await deferLater(self.reactor, 0)
