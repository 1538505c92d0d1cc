"""
The store seam: queries shared by every L{monitor.interfaces.IStore}
provider, and the provider registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

#: Most posts one API page may hold.
MAX_LIMIT = 500


@dataclass(slots=True, frozen=True)
class PostQuery:
    """
    Filters for C{IStore.query_posts}; every field is optional.

    @ivar q: full-text search, in the store's own query syntax (FTS5 for
        SQLite): words are ANDed, C{"quoted phrases"} match as phrases.
    @ivar since: inclusive lower bound of C{created_at}, unix seconds.
    @ivar until: exclusive upper bound of C{created_at}, unix seconds.
    @ivar cursor: the opaque C{next} value of a previous page.
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
