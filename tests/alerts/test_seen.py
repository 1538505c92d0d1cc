"""
The detector's memory of posts: the newest sightings kept, the oldest
forgotten, in bounded and small memory.
"""

import tracemalloc

from monitor.alerts.seen import SeenPosts


def uid(i):
    return f"bluesky:at://did:plc:abcdefghijkl{i:08d}/app.bsky.feed.post/3l{i:012x}"


def test_remembers_engagement_time_and_rules():
    seen = SeenPosts(10)
    assert seen.get(uid(1)) is None and uid(1) not in seen
    seen.put(uid(1), 12, 1700.5, frozenset({"influencer"}))
    assert seen.get(uid(1)) == (12, 1700.5, frozenset({"influencer"}))
    assert uid(1) in seen and len(seen) == 1


def test_oldest_sighting_is_forgotten_and_a_post_seen_again_is_newest():
    seen = SeenPosts(3)
    for i in range(3):
        seen.put(uid(i), i, float(i), frozenset())
    seen.put(uid(0), 5, 10.0, frozenset())  # seen again: now the newest
    seen.put(uid(3), 3, 3.0, frozenset())  # the ring is full: forgets post 1
    assert seen.get(uid(1)) is None
    assert seen.get(uid(0)) == (5, 10.0, frozenset())
    seen.put(uid(4), 4, 4.0, frozenset())  # overwrites post 0's old slot: post 0 stays
    assert seen.get(uid(0)) == (5, 10.0, frozenset())
    assert seen.get(uid(2)) is None
    assert len(seen) == 3


def test_rule_sets_are_shared():
    seen = SeenPosts(4)
    seen.put(uid(1), 0, 0.0, frozenset({"a", "b"}))
    seen.put(uid(2), 0, 0.0, frozenset({"b", "a"}))
    assert seen.get(uid(1))[2] is seen.get(uid(2))[2]


def test_engagement_beyond_64_bits_is_capped_not_an_error():
    seen = SeenPosts(2)
    seen.put(uid(1), 10**30, 0.0, frozenset())
    assert seen.get(uid(1))[0] == 2**63 - 1


def test_a_hundred_thousand_posts_in_little_memory():
    """100,000 long Bluesky uids cost well under the 44 MiB an ordered dict of them took."""
    tracemalloc.start()
    try:
        seen = SeenPosts(100_000)
        for i in range(110_000):
            seen.put(uid(i), i % 50, 1.7e9 + i, frozenset())
        size, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(seen) == 100_000
    assert size < 16 * 2**20, size / 2**20
