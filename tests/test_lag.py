"""
The reactor heartbeat (monitor.lag) sees a stall the hub's own work causes,
and not a late beat the machine caused while the hub was idle.
"""

import time

import pytest_twisted
from twisted.internet.task import Clock, deferLater

from monitor.lag import ReactorLag
from monitor.metrics import Metrics


@pytest_twisted.ensureDeferred
async def test_a_busy_reactor_is_a_stall(reactor):
    """150 ms of CPU on the reactor thread shows as a stall of at least 100 ms, in the histogram too."""
    metrics = Metrics()
    lag = ReactorLag(reactor, metrics.reactor_stall)
    lag.startService()
    try:

        def busy():
            end = time.thread_time() + 0.15
            while time.thread_time() < end:
                pass

        await deferLater(reactor, 0.05, busy)
        await deferLater(reactor, 0.1, lambda: None)
    finally:
        lag.stopService()
    assert lag.worst >= 0.1
    text = metrics.render().decode()
    assert "monitor_reactor_stall_seconds_count" in text


def test_a_late_beat_without_work_is_not_a_stall():
    """A beat 500 ms late with no CPU spent by the reactor thread (the machine was busy) counts as 0."""
    clock = Clock()
    wall, cpu = [0.0], [0.0]
    lag = ReactorLag(clock, interval=0.02, wall=lambda: wall[0], cpu=lambda: cpu[0])
    lag.startService()
    wall[0] += 0.52
    clock.advance(0.02)
    assert lag.worst == 0.0
    wall[0] += 0.32
    cpu[0] += 0.3
    clock.advance(0.02)
    assert abs(lag.worst - 0.3) < 1e-9
    lag.stopService()
