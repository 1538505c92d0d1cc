"""
The store seam: queries shared by every L{monitor.interfaces.IStore}
provider, and the provider registry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

#: Most posts one API page may hold.
MAX_LIMIT = 500

#: Most posts one page of a search with a topic query reads: a query is
#: evaluated in Python, so a page that finds few matches stops here and
#: hands back a cursor to go on from.
QUERY_SCAN = 20_000


#: What a story id looks like (L{monitor.stories} makes them): letters,
#: digits, C{-} and C{_}, at most 64 characters.
STORY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_story(story) -> str:
    """
    C{story} if it can be a story id; else C{ValueError("story: ...")}, so
    that a bad value is the C{story} parameter's fault.
    """
    if not isinstance(story, str) or not STORY_ID.fullmatch(story):
        raise ValueError(f"story: not a story id (letters, digits, - and _, at most 64): {story!r}")
    return story


@dataclass(slots=True, frozen=True)
class PostQuery:
    """
    Filters for C{IStore.query_posts}; every field is optional.

    @ivar q: full-text search, in the store's own query syntax (FTS5 for
        SQLite): words are ANDed, C{"quoted phrases"} match as phrases.
    @ivar since: inclusive lower bound of C{created_at}, unix seconds.
    @ivar until: exclusive upper bound of C{created_at}, unix seconds.
    @ivar cursor: the opaque C{next} value of a previous page.
    @ivar story: only the posts of this story (L{monitor.stories}).
    @ivar query: a topic query (L{monitor.query}) the posts must satisfy,
        evaluated on the newest L{QUERY_SCAN} posts the other filters
        select, page by page.
    """

    topic: Optional[str] = None
    source: Optional[str] = None
    sentiment: Optional[str] = None
    label: Optional[str] = None
    q: Optional[str] = None
    since: Optional[float] = None
    until: Optional[float] = None
    limit: int = 50
    cursor: Optional[str] = None
    query: Optional[str] = None
    story: Optional[str] = None


@dataclass(slots=True, frozen=True)
class StatsQuery:
    """
    The range and grouping for C{IStore.stats}.

    @ivar topic: one topic, or C{None} for every stored post.
    @ivar bucket: width of a volume bucket in seconds.
    @ivar top: how many entries the top lists hold.
    """

    topic: Optional[str] = None
    since: Optional[float] = None
    until: Optional[float] = None
    bucket: int = 3600
    top: int = 10
