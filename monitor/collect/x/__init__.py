"""
The X (Twitter) API v2 source, L{XSource}: recent search (C{search.py}) or
the filtered stream (C{stream.py}, its rules in C{rules.py}), over one API
client with its rate-limit windows (C{api.py}); queries built from topics
(C{queries.py}) and post objects read (C{posts.py}).  The names users and
plugins import from C{monitor.collect.x} stay here.
"""

from monitor.collect.x.api import FIELDS, Failed, problem
from monitor.collect.x.posts import Malformed, includes_index, parse_tweet
from monitor.collect.x.queries import queries_for, topic_query
from monitor.collect.x.source import XSource

__all__ = [
    "FIELDS",
    "Failed",
    "Malformed",
    "XSource",
    "includes_index",
    "parse_tweet",
    "problem",
    "queries_for",
    "topic_query",
]
