"""
Bluesky author profiles: batched, cached, bounded look-ups that back off
when the AppView struggles, and what is kept of a profile view.
"""

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from monitor.collect.bluesky import ProfileCache, ProfileLookupFailed, profile_from_view


def test_profile_cache_batches_of_25_and_ttl():
    """Lookups go out 25 actors at a time, at most two calls at once, and are cached for the TTL."""
    clock = Clock()
    calls = []

    def fetch(dids):
        calls.append((dids, Deferred()))
        return calls[-1][1]

    cache = ProfileCache(clock, fetch, ttl=60)
    dids = [f"did:plc:{i:04d}" for i in range(80)]
    results = [cache.want(d) for d in dids]
    assert [len(c[0]) for c in calls] == [25, 25]
    calls[0][1].callback({d: {"handle": d} for d in calls[0][0]})
    assert [len(c[0]) for c in calls] == [25, 25, 25]
    for _, d in calls[1:]:
        d.callback({})
    clock.advance(0.05)
    assert [len(c[0]) for c in calls] == [25, 25, 25, 5]
    calls[3][1].callback({})
    assert all(r.called for r in results) and results[0].result == {"handle": dids[0]} and results[30].result is None
    assert cache.get(dids[0]) == (True, {"handle": dids[0]})
    clock.advance(61)
    assert cache.get(dids[0]) == (False, None)


def test_profile_cache_backs_off_after_errors():
    """After a 429 the cache stops asking for as long as told; everyone waiting gets no profile at once."""
    clock = Clock()
    troubles = []
    calls = []
    cache = ProfileCache(
        clock,
        lambda dids: calls.append(dids) or fail(ProfileLookupFailed("HTTP 429", 30.0)),
        on_trouble=troubles.append,
    )
    d = cache.want("did:plc:a")
    clock.advance(0.05)
    assert d.result is None and len(calls) == 1 and "30s" in troubles[0]
    assert cache.want("did:plc:b").result is None and len(calls) == 1
    clock.advance(31)
    cache.fetch = lambda dids: calls.append(dids) or succeed({})
    cache.want("did:plc:b")
    clock.advance(0.05)
    assert len(calls) == 2 and troubles[-1] is None


def test_profile_cache_queue_is_bounded_and_stop_answers_everyone():
    """With the queue full a new look-up gets no profile at once; stop gives every waiter None and cancels calls."""
    clock = Clock()
    calls = []
    cache = ProfileCache(
        clock, lambda dids: calls.append(Deferred()) or calls[-1], batch=2, max_inflight=1, max_queue=2
    )
    first = [cache.want(f"did:plc:{i}") for i in range(2)]
    assert len(calls) == 1  # a full batch goes at once
    queued = [cache.want(f"did:plc:q{i}") for i in range(2)]
    assert cache.want("did:plc:over").result is None and cache.pending("did:plc:q0")
    cache.stop()
    assert all(d.result is None for d in first + queued) and calls[0].called


def test_profile_from_view_keeps_what_a_post_needs():
    """Handle (not handle.invalid), a sane follower count and blue-check verification; no DID means no profile."""
    did, profile = profile_from_view(
        {
            "did": "did:plc:a",
            "handle": "a.example",
            "followersCount": 12,
            "verification": {"verifiedStatus": "valid"},
            "description": "ignored",
        }
    )
    assert did == "did:plc:a" and profile == {"handle": "a.example", "followers": 12, "verified": True}
    _, odd = profile_from_view({"did": "did:plc:b", "handle": "handle.invalid", "followersCount": -1})
    assert odd == {"handle": None, "followers": None, "verified": False}
    assert profile_from_view({"handle": "x"}) is None and profile_from_view("did:plc:a") is None
