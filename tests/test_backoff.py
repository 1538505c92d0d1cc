"""
The one retry policy: exponential or linear delays, capped, with jitter;
Retry-After when the other side says.
"""

from monitor.backoff import Backoff, retry_after


def test_backoff_exponential_capped_with_jitter_bounds():
    """Exponential delays double up to the cap; jitter stays within its fraction."""
    b = Backoff(first=5, cap=320, jitter=0.0)
    assert [b.next() for _ in range(9)] == [5, 10, 20, 40, 80, 160, 320, 320, 320]
    b.reset()
    assert b.next() == 5
    low = Backoff(first=10, jitter=0.2, rng=lambda: 0.0)
    high = Backoff(first=10, jitter=0.2, rng=lambda: 0.999999)
    assert low.next() == 8.0 and 11.99 < high.next() < 12.0


def test_backoff_linear():
    """Linear delays grow by a fixed step up to the cap (X's rule for network errors)."""
    b = Backoff(first=0.25, step=0.25, cap=16, jitter=0.0)
    delays = [b.next() for _ in range(70)]
    assert delays[:4] == [0.25, 0.5, 0.75, 1.0] and delays[-1] == 16


def test_backoff_delay_by_attempt_is_the_same_policy():
    """delay(n) gives what the n-th next() gives, for callers that count their own attempts; huge counts stay at the cap."""
    b = Backoff(first=2, cap=600, jitter=0.0)
    assert [Backoff(first=2, cap=600, jitter=0.0).delay(n) for n in range(12)] == [b.next() for _ in range(12)]
    assert b.delay(10_000) == 600 and b.delay(-1) == 2


def test_retry_after():
    """Retry-After as seconds or an HTTP date; junk gives None."""
    assert retry_after(b"120", 0) == 120.0
    assert retry_after("Thu, 01 Jan 2026 12:00:30 GMT", 1767268800.0) == 30.0
    assert retry_after("soon", 0) is None and retry_after(None, 0) is None


def test_retry_after_decimals_negatives_cap():
    """Decimal seconds are read, a negative or past value means now, NaN is unreadable, a cap bounds it."""
    assert retry_after("1.5", 0) == 1.5 and retry_after("-3", 0) == 0.0
    assert retry_after("Thu, 01 Jan 2026 12:00:00 GMT", 1767268900.0) == 0.0
    assert retry_after("nan", 0) is None
    assert retry_after("99999", 0, cap=3600) == 3600.0 and retry_after("99999", 0) == 99999.0
