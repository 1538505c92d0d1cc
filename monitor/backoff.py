"""
The one retry policy: growing delays between attempts, with jitter so that
many clients do not retry in step, unless the other side said how long to
wait (C{Retry-After}).  Collectors, the pipeline's store writes, the Redis
queue, the alert outbox and the analysis nodes' link all wait with it.
"""

from __future__ import annotations

import math
import random
from email.utils import parsedate_to_datetime
from typing import Callable, Optional


class Backoff:
    """
    Retry delays: exponential (C{first}, times C{factor} each time, up to
    C{cap}) or linear (C{first}, plus C{step} each time), each with random
    jitter of up to C{jitter} either way.  C{next} counts the attempts
    itself (C{reset} after a success); C{delay} is the same policy for a
    caller that counts its own, in the shape of Twisted's C{retryPolicy}.
    """

    def __init__(
        self,
        first: float = 1.0,
        cap: float = 300.0,
        factor: float = 2.0,
        step: Optional[float] = None,
        jitter: float = 0.2,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.first, self.cap, self.factor, self.step, self.jitter = first, cap, factor, step, jitter
        self._rng = rng
        self.attempts = 0

    def delay(self, attempt: int) -> float:
        """
        The delay before retry number C{attempt} (0 for the first retry).
        """
        attempt = max(attempt, 0)
        if self.step is not None:
            base = self.first + self.step * attempt
        else:
            # Past the cap the power only grows: stop computing it there.
            base = self.cap if attempt > 64 else self.first * self.factor**attempt
        base = min(base, self.cap)
        if not self.jitter:
            return base
        return base * (1 - self.jitter + 2 * self.jitter * self._rng())

    def next(self) -> float:
        """
        The delay before the next attempt.
        """
        n = self.attempts
        self.attempts += 1
        return self.delay(n)

    def reset(self) -> None:
        self.attempts = 0


def retry_after(value, now: float, cap: Optional[float] = None) -> Optional[float]:
    """
    Seconds to wait from a C{Retry-After} value (delta seconds or an HTTP
    date; bytes or str), at least 0 and at most C{cap}.  C{None} if absent
    or unreadable.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if math.isnan(seconds):
        return None
    seconds = max(seconds, 0.0)
    return seconds if cap is None else min(seconds, cap)


__all__ = ["Backoff", "retry_after"]
