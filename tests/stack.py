"""
A hub's services wired by hand in a test: started in order, stopped in
reverse whatever fails (a thread pool left running would keep the test
process alive).
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from twisted.internet.defer import maybeDeferred


@asynccontextmanager
async def running(steps):
    """
    Run C{steps} in order: C{(service, wait)} starts the service (waiting
    for its start if C{wait}), a bare callable is awaited (seeding topics).
    """
    started = []
    try:
        for step in steps:
            if callable(step):
                await step()
                continue
            service, waits = step
            d = service.startService()
            started.append(service)
            if waits and d is not None:
                await d
        yield
    finally:
        for service in reversed(started):
            try:
                await maybeDeferred(service.stopService)
            except Exception:
                pass
