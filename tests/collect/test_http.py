"""
What HTTP collectors share: bounded body reading and the one reading of
rate-limit headers.
"""

from twisted.internet.defer import TimeoutError
from twisted.internet.task import Clock
from twisted.web.http_headers import Headers

from monitor.collect.http import BodyTooLarge, RateLimits, read_body
from tests.fakes.body import FakeResponse


def test_read_body_bounded_and_timed():
    """read_body returns the whole body, refuses one over the limit, and gives up on a trickle."""
    clock = Clock()
    r = FakeResponse()
    d = read_body(r, 10, clock, timeout=5)
    r.protocol.dataReceived(b"hello ")
    r.protocol.dataReceived(b"you")
    r.finish()
    assert d.result == b"hello you"

    r = FakeResponse()
    d = read_body(r, 10, clock)
    r.protocol.dataReceived(b"0123456789")
    r.protocol.dataReceived(b"!")
    f = []
    d.addErrback(f.append)
    assert f[0].check(BodyTooLarge) and f[0].value.head == b"0123456789" and r.transport.aborted
    r.finish()  # the late connectionLost is ignored

    r = FakeResponse()
    d = read_body(r, 10, clock, timeout=5)
    r.protocol.dataReceived(b"a")
    clock.advance(5)
    f = []
    d.addErrback(f.append)
    assert f[0].check(TimeoutError) and r.transport.aborted


def test_rate_limits_read_every_spelling():
    """X's x-rate-limit-*, Mastodon's X-RateLimit-* (ISO reset) and Bluesky's RateLimit-* are one window each."""
    clock = Clock()
    clock.advance(1767268800)
    limits = RateLimits(clock)
    x = limits.note(Headers({"x-rate-limit-remaining": ["0"], "x-rate-limit-reset": ["1767268860"]}), "search")
    assert (x.remaining, x.reset) == (0, 1767268860.0)
    m = limits.note(
        Headers({"X-RateLimit-Remaining": ["299.0"], "X-RateLimit-Reset": ["2026-01-01T12:05:00.000000Z"]}), "mastodon"
    )
    assert (m.remaining, m.reset) == (299, 1767268800.0 + 300)
    b = limits.note(Headers({"RateLimit-Remaining": ["7"], "RateLimit-Reset": ["1767268900"]}), "bluesky")
    assert (b.remaining, b.reset) == (7, 1767268900.0)
    junk = limits.note(Headers({"x-ratelimit-remaining": ["lots"], "x-ratelimit-reset": ["later"]}), "junk")
    assert (junk.remaining, junk.reset) == (None, None)


def test_rate_limits_wait_out_a_used_up_window_only():
    """A used-up window is waited until its reset (plus margin, capped); an open one or a past reset is not."""
    clock = Clock()
    clock.advance(1000)
    limits = RateLimits(clock, margin=1, cap=960)
    limits.note(Headers({"x-rate-limit-remaining": ["3"], "x-rate-limit-reset": ["1100"]}), "search")
    assert limits.wait_before("search") is None
    limits.note(Headers({"x-rate-limit-remaining": ["0"]}), "search")
    assert limits.wait_before("search") == 101  # the reset kept from before
    limits.note(Headers({"x-rate-limit-reset": ["9000"]}), "search")
    assert limits.wait_before("search") == 960
    limits.forget("search")
    assert limits.wait_before("search") is None
    limits.note(Headers({"x-rate-limit-remaining": ["0"], "x-rate-limit-reset": ["900"]}), "search")
    assert limits.wait_before("search") is None and limits.wait_before("other") is None


def test_rate_limits_retry_delay_after_a_refusal():
    """After a 429: Retry-After first, else until the reset, else nothing said."""
    clock = Clock()
    clock.advance(1000)
    limits = RateLimits(clock)
    assert limits.retry_delay(Headers({"Retry-After": ["30"], "X-RateLimit-Reset": ["1100"]})) == 30
    assert limits.retry_delay(Headers({"X-RateLimit-Reset": ["1100"]})) == 100
    assert RateLimits(clock).retry_delay(Headers({})) is None


class Client:
    """A treq-shaped client: every request answers with what the test set."""

    def __init__(self, answer):
        self.answer = answer
        self.calls = []

    def request(self, method, url, **kwargs):
        self.calls.append((method, url, kwargs))
        return self.answer()


def collector(clock, answer):
    from monitor.collect.http import HTTPCollector
    from monitor.metrics import Metrics

    c = HTTPCollector("h", queue=None, store=None, metrics=Metrics(), reactor=clock)
    c.http = Client(answer)
    return c


def test_request_unbuffered_and_no_response_names_why():
    """A request asks for an unread body; no headers within the timeout, or a refusal, is NoResponse saying which."""
    from twisted.internet.defer import Deferred, ensureDeferred, fail, succeed

    from monitor.collect.http import NoResponse

    clock = Clock()
    c = collector(clock, lambda: succeed("response"))
    assert ensureDeferred(c.request("GET", "http://h.example/", 5, headers={})).result == "response"
    assert c.http.calls == [("GET", "http://h.example/", {"unbuffered": True, "headers": {}})]

    c = collector(clock, Deferred)
    d = ensureDeferred(c.request("GET", "http://h.example/", 5))
    clock.advance(5)
    f = []
    d.addErrback(f.append)
    assert f[0].check(NoResponse) and "TimeoutError" in str(f[0].value)

    c = collector(clock, lambda: fail(ConnectionRefusedError("127.0.0.1:9")))
    f = []
    ensureDeferred(c.request("GET", "http://h.example/", 5)).addErrback(f.append)
    assert f[0].check(NoResponse) and str(f[0].value).startswith("ConnectionRefusedError")
