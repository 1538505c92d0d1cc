"""
The demo source: synthetic posts about the configured topics, with bursts,
so that a fresh install shows something without any network.
"""

from __future__ import annotations

import random

from twisted.internet.task import deferLater

from monitor.collect.base import CONNECTED, Collector
from monitor.collect.demo_content import DemoContent
from monitor.collect.kinds import SOURCE_KINDS

#: The keys' defaults, from the kinds table (written there only).
DEFAULTS = SOURCE_KINDS["demo"].defaults()


#: Seconds between two batches of generated posts.
TICK = 0.2


class DemoSource(Collector):
    """
    Generate posts at C{rate} per second (more during bursts), stamped with
    the current time.
    """

    kind = "demo"

    def __init__(
        self,
        name,
        queue,
        store,
        metrics,
        brands,
        rate=DEFAULTS["rate"],
        burst_every=DEFAULTS["burst_every"],
        seed=DEFAULTS["seed"],
        reactor=None,
    ):
        super().__init__(name, queue, store, metrics, reactor=reactor)
        self.network = name
        self._rng = random.Random(seed)
        self.content = DemoContent(
            brands or ["Acme"], random.Random(self._rng.random()), base_rate=rate, burst_every=burst_every
        )
        self._burst = None

    def _poisson(self, mean: float) -> int:
        # Knuth's method: means here are small (a few per tick).
        limit, k, p = pow(2.718281828459045, -mean), 0, 1.0
        while True:
            p *= self._rng.random()
            if p <= limit:
                return k
            k += 1

    async def run(self) -> None:
        self.set_state(CONNECTED)
        last = self.reactor.seconds()
        while True:
            await deferLater(self.reactor, TICK)
            # Timers run late; go by the time that really passed.
            now = self.reactor.seconds()
            elapsed, last = now - last, now
            burst = self.content.current_burst(now)
            if burst != self._burst:
                self._burst = burst
                if burst:
                    what = "an outage" if burst["kind"] == "outage" else "a viral complaint"
                    self.log.info(
                        "source {source}: {what} at {brand} begins (demo, {minutes:.0f} minutes)",
                        source=self.name,
                        what=what,
                        brand=burst["brand"],
                        minutes=(burst["ends_at"] - burst["started_at"]) / 60,
                        burst=burst,
                    )
            for _ in range(self._poisson(self.content.rate(now) * elapsed)):
                await self.emit(self.content.make_post(now, self.name))
