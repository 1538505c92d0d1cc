"""
Stories: the live stream of matched posts grouped online into clusters of
posts about the same thing, by their words, their shared links, copies of
the same text and, for posts with coordinates, their place.

Each post becomes a TF-IDF vector of its words (stop words of its language
and the topics' own words left out; document frequencies learned from the
stream itself, so words every post has weigh little).  It joins the story
whose shared link it carries (the same link posted on Bluesky and Mastodon
is one story), else the story of an earlier post it copies (a repost, a
quote, the same text with an C{RT @x:} before it or a link or hashtag
after it: MinHash of its word pairs, see L{_NearDuplicates}), else the
story whose centroid is most similar (cosine, blended with nearness in
place when both are placed) if that similarity reaches C{threshold};
otherwise it starts a story of its own.  Centroids decay with a half-life,
so a story that stops growing fades and is forgotten; the number of
stories, the words per centroid, the candidates looked at per post and the
posts remembered for copies are all bounded, so memory and cost per post
stay flat however long the hub runs.

This is leader clustering with decay (the family of DenStream/DBSTREAM's
micro-clusters), chosen because it decides the number of stories by itself
and costs one pass over a post's words.  What depends on the post alone
(its folded words, links, near-duplicate signature and LSH keys:
L{features}) is worked out where the post is analysed (the analysis
thread, worker processes, or the thread pool for posts a remote node
analysed) and rides on its analysis; the rest runs on the event loop, so
every step of L{StoryClusterer.add} is kept to a few C-level calls (its
cost beside VADER's, split so, and how well it separates stories on
labelled posts, are in C{bench/README.md} and C{tests/test_stories.py}).

L{StoryClusterer.snapshot} and L{StoryClusterer.restore} carry the whole
state through a restart as plain JSON data; L{StoryClusterer.list} (by size
or rising), L{StoryClusterer.get} and L{StoryClusterer.terms_of} read it.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
import zlib
from array import array
from collections import Counter, OrderedDict, _count_elements, defaultdict
from dataclasses import dataclass, field, fields
from datetime import datetime
from heapq import nlargest
from itertools import repeat
from operator import add as _plus, eq, itemgetter, mul
from typing import Any, Iterable, Optional

from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from monitor.analysis.trending import stop_words
from monitor.config import default
from monitor.interfaces import IAnnotator
from monitor.model import iso8601
from monitor.words import _APOSTROPHES, _DROPPED_CATEGORIES, _ZERO_WIDTH_SPACE

__all__ = ["STORY_ORDERS", "Story", "StoryClusterer", "StoryService", "features"]

_LINK = re.compile(r"https?://([^\s/?#]+)([^\s?#]*)", re.IGNORECASE)
#: A link, with its query: links count whole (see L{_links}), not by words.
_LINK_TEXT = re.compile(r"https?://\S*")
#: A word of three characters or more, with the C{#} or C{@} before it as
#: L{monitor.words.TOKEN} sees them.
_TOKEN = re.compile(r"(?:(?<!\w)[#@])?\w{3,}")


class _Folding(dict):
    """
    The characters L{monitor.words.normalize} drops (combining marks,
    format characters) and the apostrophes it unifies, as a C{str.translate}
    table learnt one character at a time: one C-level pass over the text
    instead of a Python generator over its characters.
    """

    def __missing__(self, cp: int):
        c = chr(cp)
        if c != _ZERO_WIDTH_SPACE and unicodedata.category(c) in _DROPPED_CATEGORIES:
            out = None
        else:
            out = ord(c.translate(_APOSTROPHES))
        if len(self) < 100_000:
            self[cp] = out
        return out


_FOLDING = _Folding()


def _fold(text: str) -> str:
    """
    L{monitor.words.normalize}, the same result, faster for non-ASCII text.
    """
    if text.isascii():
        return text.lower()
    folded = unicodedata.normalize("NFKD", text).casefold()
    return unicodedata.normalize("NFKD", folded).translate(_FOLDING)


#: Words kept per story centroid, most weighty first.
CENTROID_TERMS = 60
#: Words of a post that look for candidate stories.
POST_TERMS = 30
#: Words of a post used to find candidate stories, and the most stories a
#: word may be in to be used for that.
LOOKUP_TERMS = 12
CROWDED = 150
#: Stories looked at per post at most (those sharing the most words).
CANDIDATES = 15
#: Links remembered per story.
LINKS = 20
#: Representative posts kept per story.
SAMPLES = 3
#: Minutes of per-minute counts kept per story (for growth).
MINUTES = 120
#: How L{StoryClusterer.list} (and C{GET /api/v1/stories}) may order the
#: stories: largest first, or fastest growing first.
STORY_ORDERS = ("size", "rising")

#: A rising story has at least this many posts in the last 10 minutes...
RISING_POSTS = 3
#: ...and at least this many times its own baseline (see L{Story.rising}).
RISING_RATIO = 2.0
#: Words whose document frequency a snapshot keeps (the most frequent).
SNAPSHOT_DF = 50_000
#: Bumped when the snapshot's layout changes; L{StoryClusterer.restore}
#: still reads every older one.
SNAPSHOT_VERSION = 1


def _most_common(counts: dict, n: int) -> list:
    """
    C{Counter.most_common} for a plain dict: ties in insertion order.
    """
    return nlargest(n, counts.items(), key=itemgetter(1))


def _links(text: str) -> list[str]:
    """
    Links in a post, reduced to host and path (scheme, query and a final
    slash dropped), so that the same article shared twice is one key.
    """
    out = []
    for host, path in _LINK.findall(text):
        host = host.lower()
        if host.startswith("www."):
            host = host[4:]
        out.append(host + path.rstrip("/.,)!?"))
    return out


_STOP: dict[Optional[str], frozenset[str]] = {}


def _stop(lang: Optional[str]) -> frozenset[str]:
    """
    A language's stop words, bare or as hashtags and handles.
    """
    skip = _STOP.get(lang)
    if skip is None:
        bare = stop_words(lang)
        skip = _STOP[lang] = frozenset(bare | {"#" + w for w in bare} | {"@" + w for w in bare})
    return skip


def features(text: str, lang: Optional[str]) -> tuple:
    """
    What the clusterer needs of a post that depends on the post alone, so
    that it can be worked out where the post is analysed (a thread, a
    worker process) rather than on the reactor: C{(words, links,
    signature, keys)}, the words it is compared by (folded, three letters
    or more, links and numbers and its language's stop words left out, in
    order), its links (L{_links}), and its near-duplicate signature and
    LSH keys (L{_NearDuplicates}; C{None} for a post too short to call a
    copy).  Plain lists of strings and ints, cheap to pickle.
    """
    folded = _fold(text)
    if "://" in folded:
        folded = _LINK_TEXT.sub(" ", folded)
    tokens = _TOKEN.findall(folded)
    skip = _stop(lang)
    words = [w for w in tokens if w not in skip and not w.isdigit()]
    sig = _NearDuplicates.signature(tokens)
    return (words, _links(text) if "://" in text else [], sig, _NearDuplicates.keys(sig) if sig is not None else None)


#: Word -> its CRC-32, the hash of a word in a signature (bounded: cleared
#: when full).
_HASHES: dict[str, int] = {}


class _NearDuplicates:
    """
    Reposts, quotes and lightly edited copies: MinHash over a post's pairs of
    consecutive words of three letters or more, handles left out (so
    C{"RT @x: text"} is C{"text"}; a hashtag is its word), in
    one-permutation form (one hash per pair, its bin the hash modulo C{K},
    the least per bin kept; Li, Owen and Zhang 2012) so that it costs one
    pass; an LSH index of C{BANDS} bands of C{ROWS} bins finds earlier
    posts that probably resemble a post, and their bins say how much.  The
    last C{POSTS} posts' signatures are kept, oldest forgotten first.
    """

    K, BANDS, ROWS = 24, 8, 3  # keys() slices for 3 rows
    _bands_numbers = range(BANDS)
    #: The keys of the bands with every bin empty, which tell nothing.
    _blank = frozenset(hash((band, -1, -1, -1)) for band in range(BANDS))
    POSTS = 5000
    #: Posts with fewer pairs than this are too short to call copies.
    LEAST_PAIRS = 3
    EMPTY = -1

    def __init__(self, least: float) -> None:
        self.least = least
        #: entry number -> (story id, signature), oldest first.
        self.entries: dict[int, tuple[str, array]] = {}
        self._bands: dict[int, int] = {}
        self._serial = 0

    @classmethod
    def signature(cls, tokens: list[str]) -> Optional[list[int]]:
        """
        The post's signature: per bin the least hash of a word pair falling
        in it, C{EMPTY} for none.  Depends on C{tokens} alone, so it may be
        computed anywhere (see L{features}).
        """
        words = [w for w in tokens if w[0] != "@"]
        if len(words) <= cls.LEAST_PAIRS:
            return None
        cache = _HASHES
        hs = list(map(cache.get, words))
        if None in hs:
            if len(cache) > 200_000:
                cache.clear()
            for i, w in enumerate(words):
                if hs[i] is None:
                    hs[i] = cache[w] = zlib.crc32(w.lstrip("#").encode())
        # hash() of a tuple of ints is the same in every process (only str
        # and bytes hashes are salted), so signatures survive a restart.
        # (A plain loop: maps of int methods and a sort cost twice as much.)
        k, empty = cls.K, cls.EMPTY
        bins = [empty] * k
        for x in map(hash, zip(hs, hs[1:])):
            b, v = x % k, (x // k) & 0xFFFF
            if bins[b] == empty or v < bins[b]:
                bins[b] = v
        return bins

    @classmethod
    def keys(cls, sig) -> list[int]:
        """
        The LSH keys of a signature: one per band of C{ROWS} bins that are
        not all empty.
        """
        blank = cls._blank
        keys = map(hash, zip(cls._bands_numbers, sig[0::3], sig[1::3], sig[2::3]))
        return [key for key in keys if key not in blank]

    def resemblance(self, a, b) -> float:
        """
        The estimated Jaccard resemblance: equal bins among those not empty
        in both.
        """
        both_empty = list(map(max, a, b)).count(self.EMPTY)
        either = len(a) - both_empty
        return (sum(map(eq, a, b)) - both_empty) / either if either else 0.0

    def find(self, sig, keys: list[int]) -> Optional[str]:
        """
        The story of the most resembling earlier post, if it resembles
        enough (ties: the latest post).
        """
        found = set(map(self._bands.get, keys))
        found.discard(None)
        if not found:
            return None
        best, best_r = None, self.least
        entries = self.entries
        for n in sorted(found, reverse=True):
            entry = entries.get(n)
            if entry is not None:
                r = self.resemblance(sig, entry[1])
                if r > best_r or (r == best_r and best is None):
                    best, best_r = entry[0], r
        return best

    def add(self, sig, keys: list[int], sid: str) -> None:
        self._serial += 1
        self.entries[self._serial] = (sid, array("i", sig))
        self._bands.update(zip(keys, repeat(self._serial)))
        if len(self.entries) > self.POSTS:
            # Keys left pointing at forgotten posts find nothing; every
            # post with such a key is older still, so forgotten too.  The
            # oldest by its number: next(iter()) would walk past every
            # entry deleted before it (microseconds per post).
            if self.entries.pop(self._serial - self.POSTS, None) is None:
                del self.entries[next(iter(self.entries))]
            if len(self._bands) > 2 * self.BANDS * self.POSTS:
                self._reindex()

    def _reindex(self) -> None:
        self._bands = {}
        for n, (_, sig) in self.entries.items():
            self._bands.update(zip(self.keys(sig), repeat(n)))

    def state(self) -> dict[str, Any]:
        return {"serial": self._serial, "posts": [[n, sid, list(sig)] for n, (sid, sig) in self.entries.items()]}

    def restore(self, state: dict[str, Any]) -> None:
        self.entries = {int(n): (sid, array("i", sig)) for n, sid, sig in state.get("posts", ())}
        self._reindex()
        self._serial = max(int(state.get("serial", 0)), max(self.entries, default=0))


@dataclass(slots=True)
class Story:
    """
    One cluster of posts.  C{weight} is the decayed number of posts, the
    centroid's scale; C{size} counts every post it took.
    """

    id: str
    first_seen: float
    last_seen: float
    #: Word weights, multiplied by C{boost} (see L{StoryClusterer._join}).
    centroid: dict[str, float] = field(default_factory=dict)
    #: The sum of the squared weights in C{centroid}.
    sumsq: float = 0.0
    boost: float = 1.0
    weight: float = 0.0
    size: int = 0
    # Counts as plain dicts: a new story costs less than with Counters.
    terms: dict = field(default_factory=dict)
    sentiment: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)
    topics: dict = field(default_factory=dict)
    links: list = field(default_factory=list)
    placed: int = 0
    lat_sum: float = 0.0
    lon_sum: float = 0.0
    minutes: dict = field(default_factory=dict)
    #: The most reaching posts, most first, as C{(reach, id, author, text,
    #: source, created_at, url)} (made into objects only when read).
    samples: list = field(default_factory=list)
    #: Order of creation: breaks ties between candidate stories the same
    #: way before and after a restart.
    serial: int = 0

    def growth(self, now: float) -> dict[str, float]:
        """
        Posts per minute over the last 10 minutes, against the hour before.
        """
        m = int(now // 60)
        recent = sum(self.minutes.get(k, 0) for k in range(m - 9, m + 1)) / 10
        before = sum(self.minutes.get(k, 0) for k in range(m - 69, m - 9)) / 60
        return {"per_minute": round(recent, 2), "baseline_per_minute": round(before, 2),
                "ratio": round(recent / before, 2) if before else None}  # fmt: skip

    def sparkline(self, now: float) -> list[int]:
        """
        Posts per minute over the 60 minutes ending at C{now}, oldest first.
        """
        m, get = int(now // 60), self.minutes.get
        return [get(k, 0) for k in range(m - 59, m + 1)]

    def rising(self, now: float) -> Optional[float]:
        """
        How fast the story is growing, if it is rising (else C{None}): its
        posts in the 10 minutes ending at C{now} against its own baseline,
        the posts per 10 minutes of the hour before those, counted as at
        least one (so a new story's score is its recent posts).  Rising
        means at least C{RISING_POSTS} recent posts and a score of at
        least C{RISING_RATIO}.
        """
        m, get = int(now // 60), self.minutes.get
        recent = sum(get(k, 0) for k in range(m - 9, m + 1))
        if recent < RISING_POSTS:
            return None
        before = sum(get(k, 0) for k in range(m - 69, m - 9)) / 6
        score = recent / max(before, 1.0)
        return score if score >= RISING_RATIO else None

    def to_dict(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "terms": [t for t, _ in _most_common(self.terms, 8)],
            "size": self.size,
            "sentiment": {s: self.sentiment.get(s, 0) for s in ("positive", "neutral", "negative")},
            "labels": dict(self.labels),
            "topics": dict(self.topics),
            "first_seen": iso8601(self.first_seen),
            "last_seen": iso8601(self.last_seen),
            "growth": self.growth(now),
            "sparkline": self.sparkline(now),
            "sources": dict(self.sources),
            "centroid": {"lat": round(self.lat_sum / self.placed, 4), "lon": round(self.lon_sum / self.placed, 4)}
            if self.placed
            else None,  # fmt: skip
            "links": list(self.links[:5]),
            "posts": [_sample_dict(s) for s in self.samples],
        }


class StoryClusterer:
    """
    Assigns posts to stories as they are stored (see the module docstring).

    @param threshold: the least cosine similarity for a post to join a story.
    @param half_life: seconds after which a story's weight is halved.
    @param geo_weight: the share of place in the similarity of two placed
        posts (0: text only).
    @param max_stories: stories kept at most; the lightest go first.
    @param exclude: words never used (the topics' own words).
    @param near_duplicate: the least estimated resemblance (Jaccard of word
        pairs) for a post to join the story of an earlier post as a copy of
        it, however different their words' weights (0: off).
    @param new_id: makes a story's id from its serial number (1, 2, ...).
    """

    def __init__(self, threshold: float = default("stories", "threshold"),
                 half_life: float = default("stories", "half_life"),
                 geo_weight: float = default("stories", "geo_weight"),
                 max_stories: int = default("stories", "max_stories"), exclude: Iterable[str] = (), near_duplicate: float = 0.6,
                 new_id=None) -> None:  # fmt: skip
        self.threshold = threshold
        self.half_life = half_life
        self.geo_weight = geo_weight
        self.max_stories = max_stories
        self.exclude = frozenset(exclude)
        #: The topics' words, bare or as hashtags and handles: left out of
        #: every post (on top of its language's stop words, see L{features}).
        self._excluded = frozenset(self.exclude | {"#" + w for w in self.exclude} | {"@" + w for w in self.exclude})
        self.stories: dict[str, Story] = {}
        self.df: Counter = Counter()
        self.documents = 0
        # word -> serials of the stories whose centroid has it.
        self._index: dict[str, set[int]] = defaultdict(set)
        self._by_serial: dict[int, Story] = {}
        self._link_index: dict[str, str] = {}
        self._serial = 0
        self.near_duplicates = _NearDuplicates(near_duplicate) if near_duplicate else None
        self._new_id = new_id or (lambda serial: f"s{serial}")
        self.now = 0.0

    # -- vectors ---------------------------------------------------------

    def _vector(self, words: list[str]) -> tuple[list[str], list[float]]:
        """
        The post's TF-IDF vector, of unit length, its C{POST_TERMS}
        weightiest words at most, as its words and their weights; counts
        the words' document frequencies.  (Counting in C: C{_count_elements}
        is what C{Counter.update} runs.)
        """
        tf: dict[str, int] = {}
        _count_elements(tf, words)
        df = self.df
        _count_elements(df, tf)
        log = math.log
        idf = log(self.documents + 2) + 1
        keys = list(tf)
        values = [idf - log(d + 1) for d in map(df.__getitem__, keys)]
        if len(keys) < len(words):
            for i, c in enumerate(tf.values()):
                if c > 1:
                    values[i] *= 1 + log(c)
        if len(keys) > POST_TERMS:
            # The weightiest first, ties in the words' order (sorts are
            # stable, in reverse too).
            top = sorted(range(len(keys)), key=values.__getitem__, reverse=True)[:POST_TERMS]
            keys, values = [keys[i] for i in top], [values[i] for i in top]
        scale = 1 / (math.sqrt(sum(map(mul, values, values))) or 1.0)
        return keys, [v * scale for v in values]

    # -- assignment --------------------------------------------------------

    def add(self, post) -> Optional[str]:
        """
        Put C{post} in a story; returns the story's id (C{None} for a post
        with no words to go by).  The post's L{features} are taken from its
        analysis when the analysis stage worked them out, else worked out
        here.
        """
        t = float(post.created_at)
        if t > self.now:
            self.now = t
        a = post.analysis
        f = getattr(a, "features", None) if a is not None else None
        words, links, sig, lsh = f if f is not None else features(post.text, post.lang)
        excluded = self._excluded
        if excluded:
            words = [w for w in words if w not in excluded]
        if not words and not links:
            return None
        self.documents += 1
        keys, values = self._vector(words)
        if len(self.df) > 200_000:
            self._prune_df()
        copies = self.near_duplicates
        if copies is None:
            sig = None
        story = self._by_link(links) if links else None
        if story is None and sig is not None:
            sid = copies.find(sig, lsh)
            if sid is not None:
                story = self._copied(sid, post)
        if story is None:
            story = self._nearest(keys, values, post)
        if story is None:
            sid = self._start(post, keys, values, links, t)
        else:
            self._join(story, post, keys, values, links, t)
            sid = story.id
        if sig is not None:
            copies.add(sig, lsh, sid)
        return sid

    def _by_link(self, links) -> Optional[Story]:
        for link in links:
            sid = self._link_index.get(link)
            if sid is not None and sid in self.stories:
                return self.stories[sid]
        return None

    def _copied(self, sid: Optional[str], post) -> Optional[Story]:
        """
        The story of the post C{post} copies, unless both are placed and far
        apart (the same words in another place are another story).
        """
        story = self.stories.get(sid) if sid is not None else None
        if story is None or not (self.geo_weight and story.placed and post.lat is not None and post.lon is not None):
            return story
        km = _km(post.lat, post.lon, story.lat_sum / story.placed, story.lon_sum / story.placed)
        return story if km <= 500.0 else None

    def _decay(self, story: Story) -> float:
        return 0.5 ** (max(0.0, self.now - story.last_seen) / self.half_life)

    def _nearest(self, keys: list[str], values: list[float], post) -> Optional[Story]:
        # The post's weightiest words find the candidates; a word in the
        # centroids of very many stories tells them apart from none.
        if len(keys) <= LOOKUP_TERMS:
            lookup = keys
        else:
            lookup = [keys[i] for i in sorted(range(len(keys)), key=values.__getitem__, reverse=True)[:LOOKUP_TERMS]]
        found = [sids for sids in map(self._index.get, lookup) if sids and len(sids) <= CROWDED]
        if not found:
            return None
        # A story sharing one common word is rarely the one; with few words
        # one is all there is.  (Set operations: no counting in Python.)
        if len(keys) > 3:
            seen, twice = set(found[0]), set()
            for sids in found[1:]:
                twice |= seen & sids
                seen |= sids
        else:
            twice = set().union(*found)
        if not twice:
            return None
        candidates = twice
        if len(candidates) > CANDIDATES:
            candidates = sorted(twice)
            # Those sharing the most words; ties to the oldest story, not to
            # the order the index's sets happen to iterate in (so that a
            # restored clusterer chooses the same): sorts are stable.
            shared: dict[int, int] = {}
            for sids in found:
                _count_elements(shared, twice & sids)
            candidates.sort(key=shared.__getitem__, reverse=True)
            del candidates[CANDIDATES:]
        best, best_sim, by_serial = None, self.threshold, self._by_serial
        zeros = repeat(0.0)
        placed = self.geo_weight and post.lat is not None and post.lon is not None
        sqrt = math.sqrt
        for serial in candidates:
            story = by_serial[serial]
            # The dot product in C: the centroid's weight of each word (0 if
            # it has none) times the post's.
            sim = sum(map(mul, values, map(story.centroid.get, keys, zeros))) / (sqrt(story.sumsq) or 1.0)
            if placed and story.placed:
                km = _km(post.lat, post.lon, story.lat_sum / story.placed, story.lon_sum / story.placed)
                sim = (1 - self.geo_weight) * sim + self.geo_weight * math.exp(-km / 500.0)
            if sim > best_sim or (sim == best_sim and (best is None or serial < best.serial)):
                best, best_sim = story, sim
        return best

    def _start(self, post, keys: list[str], values: list[float], links, t: float) -> str:
        """
        A new story of C{post} alone: what L{_join} makes of an empty story,
        built at once.
        """
        if len(self.stories) >= self.max_stories:
            self._forget_lightest()
        self._serial = serial = self._serial + 1
        a = post.analysis
        sentiment: dict = {}
        labels: dict = {}
        if a is not None:
            sentiment[a.sentiment] = 1
            _count_elements(labels, a.labels)
        topics: dict = {}
        _count_elements(topics, post.topics)
        placed = post.lat is not None and post.lon is not None
        reach = (post.likes or 0) + 2 * (post.reposts or 0) + (post.author_followers or 0) / 100
        story = Story(
            id=self._new_id(serial),
            first_seen=t,
            last_seen=t,
            centroid=dict(zip(keys, values)),
            sumsq=sum(map(mul, values, values)),
            weight=1.0,
            size=1,
            terms=dict.fromkeys(keys, 1),
            sentiment=sentiment,
            labels=labels,
            sources={post.source: 1},
            topics=topics,
            placed=int(placed),
            lat_sum=post.lat if placed else 0.0,
            lon_sum=post.lon if placed else 0.0,
            minutes={int(t // 60): 1},
            samples=[(reach, post.uid, post.author, post.text[:280], post.source, t, post.url)],
            serial=serial,
        )
        self.stories[story.id] = story
        self._by_serial[serial] = story
        index = self._index
        for w in keys:
            index[w].add(serial)
        if links:
            self._add_links(story, links)
        return story.id

    def _join(self, story: Story, post, keys: list[str], values: list[float], links, t: float) -> None:
        # The centroid is kept multiplied by story.boost, which grows as the
        # story decays, so that a post adds its vector instead of every
        # weight being multiplied by the decay (cosine ignores the scale).
        if t > story.last_seen:
            decay = 0.5 ** ((t - story.last_seen) / self.half_life)
            if decay < 1e-100:
                # So long silent that its old words weigh nothing (and the
                # decay may have underflowed to 0): its centroid starts again.
                for w in story.centroid:
                    self._unindex(w, story.serial)
                story.centroid, story.sumsq, story.boost = {}, 0.0, 1.0
            else:
                story.boost /= decay
            story.weight = story.weight * decay + 1
            story.last_seen = t
        else:
            story.weight += 1
            if t < story.first_seen:
                story.first_seen = t
        if story.boost > 1e100:
            self._rescale(story)
        # The new weights and the new sum of squares in C: |c + b*v|^2 =
        # |c|^2 + 2b(c.v) + b^2|v|^2, the dot product one pass of map().
        c, boost = story.centroid, story.boost
        olds = list(map(c.get, keys, repeat(0.0)))
        scaled = [v * boost for v in values]
        story.sumsq += 2 * sum(map(mul, olds, scaled)) + sum(map(mul, scaled, scaled))
        fresh = [w for w in keys if w not in c]
        c.update(zip(keys, map(_plus, olds, scaled)))
        if fresh:
            index, serial = self._index, story.serial
            for w in fresh:
                index[w].add(serial)
            if len(c) >= 2 * CENTROID_TERMS:
                self._trim(story)
        story.size += 1
        terms = story.terms
        _count_elements(terms, keys)
        if len(terms) > 300:
            story.terms = dict(_most_common(terms, 150))
        a = post.analysis
        if a is not None:
            counts = story.sentiment
            counts[a.sentiment] = counts.get(a.sentiment, 0) + 1
            if a.labels:
                _count_elements(story.labels, a.labels)
        counts = story.sources
        counts[post.source] = counts.get(post.source, 0) + 1
        _count_elements(story.topics, post.topics)
        if links:
            self._add_links(story, links)
        if post.lat is not None and post.lon is not None:
            story.placed += 1
            story.lat_sum += post.lat
            story.lon_sum += post.lon
        m = int(t // 60)
        minutes = story.minutes
        minutes[m] = minutes.get(m, 0) + 1
        if len(minutes) > MINUTES:
            for k in sorted(minutes)[:-MINUTES]:
                del minutes[k]
        samples = story.samples
        reach = (post.likes or 0) + 2 * (post.reposts or 0) + (post.author_followers or 0) / 100
        # Kept by reach; the earlier of two equally reaching posts stays.
        if len(samples) < SAMPLES or reach > samples[-1][0]:
            samples.append((reach, post.uid, post.author, post.text[:280], post.source, t, post.url))
            samples.sort(key=lambda s: -s[0])
            del samples[SAMPLES:]

    def _trim(self, story: Story) -> None:
        """
        Keep the centroid's C{CENTROID_TERMS} weightiest words (done when it
        has twice as many, not on every post).
        """
        c = story.centroid
        kept = dict(sorted(c.items(), key=lambda kv: -kv[1])[:CENTROID_TERMS])
        for w in c.keys() - kept.keys():
            self._unindex(w, story.serial)
        story.centroid = kept
        story.sumsq = sum(v * v for v in kept.values())

    def _rescale(self, story: Story) -> None:
        b = story.boost
        story.centroid = {w: v / b for w, v in story.centroid.items()}
        story.sumsq = sum(v * v for v in story.centroid.values())
        story.boost = 1.0

    def _add_links(self, story: Story, links) -> None:
        for link in links:
            if link not in story.links:
                story.links.append(link)
                self._link_index[link] = story.id
        for link in story.links[:-LINKS]:
            if self._link_index.get(link) == story.id:
                del self._link_index[link]
        del story.links[:-LINKS]

    # -- bounds --------------------------------------------------------------

    def _unindex(self, word: str, serial: int) -> None:
        sids = self._index.get(word)
        if sids is not None:
            sids.discard(serial)
            if not sids:
                del self._index[word]

    def _forget(self, story: Story) -> None:
        self.stories.pop(story.id, None)
        self._by_serial.pop(story.serial, None)
        for w in story.centroid:
            self._unindex(w, story.serial)
        for link in story.links:
            if self._link_index.get(link) == story.id:
                del self._link_index[link]

    def _forget_lightest(self) -> None:
        lightest = sorted(self.stories.values(), key=lambda s: s.weight * self._decay(s))[
            : max(1, self.max_stories // 10)
        ]
        for story in lightest:
            self._forget(story)

    def _prune_df(self) -> None:
        self.df = Counter({w: c for w, c in self.df.items() if c > 1})

    def fade(self, older_than: float) -> int:
        """
        Forget stories not seen for C{older_than} seconds whose weight has
        decayed below one post; returns how many.
        """
        gone = [s for s in self.stories.values()
                if self.now - s.last_seen > older_than and s.weight * self._decay(s) < 1.0]  # fmt: skip
        for story in gone:
            self._forget(story)
        return len(gone)

    # -- state ---------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """
        The clusterer's state as plain JSON-serialisable data, so that the
        stories survive a restart: L{restore} on a new clusterer continues
        exactly where this one is (same story for the same next post, ids
        counting on).  The document frequencies kept are the C{SNAPSHOT_DF}
        most frequent words, which bounds the snapshot's size.
        """
        df = self.df if len(self.df) <= SNAPSHOT_DF else dict(self.df.most_common(SNAPSHOT_DF))
        return {
            "version": SNAPSHOT_VERSION,
            "now": self.now,
            "documents": self.documents,
            "serial": self._serial,
            "df": dict(df),
            "link_index": dict(self._link_index),
            "near_duplicates": self.near_duplicates.state() if self.near_duplicates is not None else None,
            "stories": [_story_state(story) for story in self.stories.values()],
        }

    def restore(self, state: dict[str, Any]) -> None:
        """
        Replace this clusterer's state by a L{snapshot}'s (after a JSON round
        trip or not) and rebuild the indexes.  A key missing from an older
        snapshot takes its empty value; unknown keys are ignored.
        """
        self.stories = {}
        self._by_serial = {}
        self._index = defaultdict(set)
        for data in state.get("stories", ()):
            story = _story_from_state(data)
            if not story.serial:
                # Before serials: after every story restored so far.
                story.serial = max(self._by_serial, default=0) + 1
            if not story.sumsq:
                story.sumsq = sum(v * v for v in story.centroid.values())
            self.stories[story.id] = story
            self._by_serial[story.serial] = story
            for w in story.centroid:
                self._index[w].add(story.serial)
        self.now = float(state.get("now", max((s.last_seen for s in self.stories.values()), default=0.0)))
        self.documents = int(state.get("documents", 0))
        # Never an id again: past every id restored, whatever was saved.
        self._serial = max(int(state.get("serial", 0)), max(self._by_serial, default=0))
        self.df = Counter({str(w): int(c) for w, c in state.get("df", {}).items()})
        links = state.get("link_index")
        if links is None:
            links = {link: s.id for s in self.stories.values() for link in s.links}
        self._link_index = {link: sid for link, sid in links.items() if sid in self.stories}
        if self.near_duplicates is not None:
            self.near_duplicates.restore(state.get("near_duplicates") or {})

    # -- reading -------------------------------------------------------------

    def list(self, topic: Optional[str] = None, since: Optional[float] = None, until: Optional[float] = None,
             limit: int = 20, min_size: int = 2, order: str = "size") -> list[dict[str, Any]]:  # fmt: skip
        """
        Stories with at least C{min_size} posts, as L{Story.to_dict}.

        @param order: C{"size"}, largest first; or C{"rising"}, only the
            rising stories (see L{Story.rising}: at least C{RISING_POSTS}
            posts in the last 10 minutes and at least C{RISING_RATIO} times
            their own baseline), fastest growing first, then most recent
            posts, then largest.
        @raise ValueError: for another C{order}.
        """
        if order not in STORY_ORDERS:
            raise ValueError(f"order must be 'size' or 'rising', not {order!r}")
        chosen = [
            s for s in self.stories.values()
            if s.size >= min_size
            and (topic is None or topic in s.topics)
            and (since is None or s.last_seen >= since)
            and (until is None or s.first_seen < until)
        ]  # fmt: skip
        if order == "size":
            chosen.sort(key=lambda s: (-s.size, s.id))
        else:
            now, m = self.now, int(self.now // 60)
            scored = []
            for s in chosen:
                score = s.rising(now)
                if score is not None:
                    recent = sum(s.minutes.get(k, 0) for k in range(m - 9, m + 1))
                    scored.append((-score, -recent, -s.size, s.serial, s))
            scored.sort(key=lambda row: row[:4])
            chosen = [row[-1] for row in scored]
        return [s.to_dict(self.now) for s in chosen[:limit]]

    def rising(self, limit: int = 20, min_size: int = 2, topic: Optional[str] = None) -> list[dict[str, Any]]:
        """
        The rising stories, fastest growing first: C{list(order="rising")}.
        """
        return self.list(topic=topic, limit=limit, min_size=min_size, order="rising")

    def get(self, story_id: str) -> Optional[dict[str, Any]]:
        """
        One story, as in L{list}; C{None} for an unknown (or faded) id.
        """
        story = self.stories.get(story_id)
        return story.to_dict(self.now) if story is not None else None

    def terms_of(self, story_id: str, limit: int = 20) -> list[str]:
        """
        A story's most frequent words, most first (C{[]} for an unknown id):
        what explains an alert about it.
        """
        story = self.stories.get(story_id)
        return [t for t, _ in _most_common(story.terms, limit)] if story is not None else []


_COUNTERS = ("terms", "sentiment", "labels", "sources", "topics")


def _story_state(story: Story) -> dict[str, Any]:
    """
    A story as plain data (counters as objects in their order, which decides
    ties between equal counts, minutes as C{[minute, posts]} pairs).
    """
    out = {f.name: getattr(story, f.name) for f in fields(Story)}
    for name in _COUNTERS:
        out[name] = dict(out[name])
    out["centroid"] = dict(story.centroid)
    out["links"] = list(story.links)
    out["minutes"] = [[m, c] for m, c in story.minutes.items()]
    out["samples"] = [[s[0], {"id": s[1], "author": s[2], "text": s[3], "source": s[4], "created_at": s[5], "url": s[6]}]
                      for s in story.samples]  # fmt: skip
    return out


def _sample_dict(s: tuple) -> dict[str, Any]:
    return {"id": s[1], "author": s[2], "text": s[3], "source": s[4], "created_at": iso8601(s[5]), "url": s[6]}


def _sample_from_state(reach: float, d: dict[str, Any]) -> tuple:
    t = d.get("created_at") or 0.0
    if isinstance(t, str):
        t = datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()
    return (reach, d.get("id"), d.get("author"), d.get("text", ""), d.get("source"), float(t), d.get("url"))


def _story_from_state(data: dict[str, Any]) -> Story:
    known = {f.name for f in fields(Story)}
    kw = {k: v for k, v in data.items() if k in known}
    for name in _COUNTERS:
        kw[name] = dict(kw.get(name) or {})
    kw["centroid"] = {str(w): float(v) for w, v in (kw.get("centroid") or {}).items()}
    kw["links"] = list(kw.get("links") or ())
    minutes = kw.get("minutes") or []
    if isinstance(minutes, dict):
        minutes = list(minutes.items())
    kw["minutes"] = {int(m): int(c) for m, c in minutes}
    kw["samples"] = [_sample_from_state(reach, sample) for reach, sample in kw.get("samples") or ()]
    kw.setdefault("first_seen", 0.0)
    kw.setdefault("last_seen", kw["first_seen"])
    return Story(**kw)


def _km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 6371.0 * 2 * math.asin(min(1.0, math.sqrt(h)))


#: Uids of posts annotated lately, remembered so a replayed post is not
#: counted twice (L{StoryService}).
RECENT = 20_000
#: Seconds a batch waits at most for a thread copying the clusterer.
COPY_WAIT = 5.0


#: About the most items (counted two levels deep) one C{json.dumps} call
#: of L{encode_state} takes.
_SLICE = 1024
_CONTAINERS = (dict, list, tuple)


def _weight(values) -> int:
    return sum(1 + (len(v) if isinstance(v, _CONTAINERS) else 0) for v in values)


def encode_state(value: Any, depth: int = 5) -> str:
    """
    C{value} as compact JSON, in many small C{json.dumps} calls: one call
    over a full clusterer's snapshot holds the GIL for as long as it takes
    (most of a second), while between small ones the reactor thread runs.
    A container bigger than about L{_SLICE} items is encoded item by item
    (down to C{depth} levels) if it holds containers, else in slices.
    """
    if isinstance(value, dict) and _weight(value.values()) > _SLICE:
        if depth > 0 and any(isinstance(v, _CONTAINERS) for v in value.values()):
            return "{" + ",".join(_dumps(str(k)) + ":" + encode_state(v, depth - 1) for k, v in value.items()) + "}"
        items = list(value.items())
        return "{" + ",".join(_dumps(dict(items[i : i + _SLICE]))[1:-1] for i in range(0, len(items), _SLICE)) + "}"
    if isinstance(value, (list, tuple)) and _weight(value) > _SLICE:
        if depth > 0 and any(isinstance(v, _CONTAINERS) for v in value):
            return "[" + ",".join(encode_state(v, depth - 1) for v in value) + "]"
        return "[" + ",".join(_dumps(list(value[i : i + _SLICE]))[1:-1] for i in range(0, len(value), _SLICE)) + "]"
    return _dumps(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@implementer(IAnnotator)
class StoryService(Service):
    """
    The clusterer as the pipeline's annotator: every matched post is put in
    a story just before it is stored (L{monitor.model.Post.story}); stories
    not seen for C{fade_after} seconds are forgotten once a minute.

    With a C{store}, the clusterer's state is loaded from it at start and
    saved to it every C{save_every} seconds and at stop, so stories and
    their ids survive a restart (a crash loses at most the posts since the
    last save from the stories, not from the store).  A full clusterer's
    snapshot takes a good part of a second to copy and to encode, so both
    happen in a thread: the clusterer is left alone meanwhile (a batch to
    annotate waits for the copy, the reactor does not), then the copy is
    encoded while posts go on joining stories.

    A post whose uid was annotated lately (a collector's replay, or two
    sources seeing one post) gets its first story again and is not counted
    twice: the last L{RECENT} uids are remembered, and saved with the state.
    A replay of an older post is counted again (the store keeps its first
    row, and so its first story).

    @param in_thread: C{(f, *args) -> Deferred} running C{f} off the
        reactor thread; by default in C{reactor}'s thread pool.
    """

    name = "stories"
    log = Logger()

    def __init__(self, clusterer: StoryClusterer, reactor, fade_after: float = 6 * 3600.0, store=None,
                 save_every: float = 60.0, recent: int = RECENT, in_thread=None) -> None:  # fmt: skip
        self.clusterer = clusterer
        self.reactor = reactor
        self.fade_after = fade_after
        self.store = store
        self.save_every = save_every
        self.recent_most = recent
        self._in_thread = in_thread or (lambda f, *a: deferToThreadPool(reactor, reactor.getThreadPool(), f, *a))
        self._recent: OrderedDict[str, Optional[str]] = OrderedDict()
        self._loop: Optional[LoopingCall] = None
        self._saving: Optional[Deferred] = None
        #: Fires when a thread has finished copying the clusterer.
        self._copying: Optional[Deferred] = None
        self._changed = False

    def startService(self):
        super().startService()
        d = ensureDeferred(self._load()) if self.store is not None else succeed(None)
        d.addCallback(lambda _: self._start_loop())
        return d

    def _start_loop(self) -> None:
        if not self.running:
            return
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self.reactor
        d = self._loop.start(self.save_every, now=False)
        d.addErrback(lambda f: self.log.failure("the stories' minute stopped on an error", f))

    async def _load(self) -> None:
        """
        Restore the saved state, in a thread: nothing uses the clusterer
        before the pipeline starts, after this.
        """
        try:
            state = await self.store.story_state()
            if state is None:
                return
            await self._in_thread(self.clusterer.restore, state["clusterer"])
            self._recent = OrderedDict((uid, sid) for uid, sid in state.get("recent", ())[-self.recent_most :])
        except Exception:
            self.log.failure("could not load the saved stories; starting with none")
            return
        self.log.info("loaded {count} stories", count=len(self.clusterer.stories))

    def _tick(self):
        if self._copying is None and self.clusterer.fade(self.fade_after):
            self._changed = True
        return self.save()

    def stopService(self):
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self.store is None:
            return succeed(None)
        d = Deferred()
        (self._saving or succeed(None)).addBoth(lambda _: self.save().chainDeferred(d))
        return d

    def save(self) -> Deferred:
        """
        Save the state if it changed since the last save (one save at a
        time); never fails: a failure is logged and the next save tries
        again.
        """
        if self.store is None or self._saving is not None or not self._changed:
            return succeed(None)
        self._changed = False
        d = self._saving = ensureDeferred(self._save())
        d.addErrback(self._save_failed)
        d.addBoth(self._saved)
        return d

    async def _save(self) -> None:
        recent = [[uid, sid] for uid, sid in self._recent.items()]
        copying = self._copying = Deferred()
        try:
            snapshot = await self._in_thread(self.clusterer.snapshot)
        finally:
            if self._copying is copying:
                self._copying = None
            copying.callback(None)
        text = await self._in_thread(encode_state, {"version": 1, "clusterer": snapshot, "recent": recent})
        await self.store.save_story_state(text)

    def _save_failed(self, failure) -> None:
        self._changed = True
        self.log.failure("could not save the stories; trying again in {every}s", failure, every=self.save_every)

    def _saved(self, _) -> None:
        self._saving = None

    def _after_copy(self, posts) -> Deferred:
        """
        Annotate C{posts} once the copy is done, or after L{COPY_WAIT}
        seconds whatever the copy does (it may then fail, and is tried
        again in a minute): a batch is never held longer.
        """
        d = Deferred()
        copying = self._copying
        started = []

        def go(result=None):
            if not started:
                started.append(True)
                if timer.active():
                    timer.cancel()
                if self._copying is copying:
                    self._copying = None
                maybeDeferred(self.annotate, posts).chainDeferred(d)
            return result

        timer = self.reactor.callLater(COPY_WAIT, go)
        copying.addCallback(go)
        return d

    def annotate(self, posts):
        """
        Put each post in a story (C{post.story}); a post that cannot be
        clustered is logged and keeps C{None}.  While a thread copies the
        clusterer, the batch waits for it (a Deferred).
        """
        if self._copying is not None:
            return self._after_copy(posts)
        add = self.clusterer.add
        recent = self._recent
        failed = 0
        for post in posts:
            uid = post.uid
            if uid in recent:
                post.story = recent[uid]
                continue
            try:
                post.story = add(post)
            except Exception:
                post.story = None
                if not failed:
                    self.log.failure("could not put post {uid} in a story; it is stored without one", uid=uid)
                failed += 1
            recent[uid] = post.story
        self._changed = True
        while len(recent) > self.recent_most:
            recent.popitem(last=False)
        if failed > 1:
            self.log.error("{count} posts of a batch were stored without a story", count=failed)
        return None
