"""
The alert detector's memory of posts it has counted, in about a third of
what an ordered dict of uids took (the detector after 100,000 posts:
12 MiB against 44 MiB; `python bench/alerts_memory.py`).
"""

from __future__ import annotations

from array import array
from hashlib import blake2b
from typing import Optional

__all__ = ["SeenPosts"]


def _key(uid: str) -> int:
    # 64 bits of a keyed-free hash: two different uids share a key with a
    # chance of about 1 in 10^10 among 100,000 posts; the cost of one such
    # collision is one post counted as seen before.
    return int.from_bytes(blake2b(uid.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little", signed=True)


class SeenPosts:
    """
    The last C{size} sightings of posts: for each, its engagement and when
    it was seen, and the names of the post rules it has hit.

    A ring of C{size} slots in typed arrays, with a dict from a 64-bit hash
    of the uid to its newest slot.  A post seen again takes a new slot (as
    the newest), so the oldest sightings are the ones forgotten, as with
    an ordered dict moved to its end.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._slot: dict[int, int] = {}
        self._keys = array("q", bytes(8 * size))
        self._engagement = array("q", bytes(8 * size))
        self._at = array("d", bytes(8 * size))
        self._rules: list[frozenset] = [frozenset()] * size
        # Rule sets are few and shared: one object each.
        self._interned: dict[frozenset, frozenset] = {}
        self._next = 0
        # The last uid hashed: the detector gets a post, then puts it.
        self._last: tuple[Optional[str], int] = (None, 0)

    def __len__(self) -> int:
        return len(self._slot)

    def _key(self, uid: str) -> int:
        last, key = self._last
        if uid != last:
            key = _key(uid)
            self._last = (uid, key)
        return key

    def __contains__(self, uid: str) -> bool:
        return self._key(uid) in self._slot

    def get(self, uid: str) -> Optional[tuple[int, float, frozenset]]:
        slot = self._slot.get(self._key(uid))
        if slot is None:
            return None
        return self._engagement[slot], self._at[slot], self._rules[slot]

    def put(self, uid: str, engagement: int, at: float, rules: frozenset) -> None:
        """
        Remember a sighting as the newest, forgetting the oldest when full.
        """
        key = self._key(uid)
        slot = self._next
        self._next = (slot + 1) % self.size
        old = self._keys[slot]
        if self._slot.get(old) == slot:
            del self._slot[old]
        self._keys[slot] = key
        self._engagement[slot] = max(-(2**63), min(int(engagement), 2**63 - 1))
        self._at[slot] = at
        self._rules[slot] = self._interned.setdefault(rules, rules)
        # A newer sighting of the same post: its older slot is left to be
        # overwritten in turn.
        self._slot[key] = slot
