"""
The X (Twitter) API v2 sources: L{XSearch}, recent search (C{search.py}),
and L{XStream}, the filtered stream (C{stream.py}, its rules in
C{rules.py}); what they share is L{XSource} (C{source.py}: calling it
builds the one C{mode} names), over one API client with its rate-limit
windows (C{api.py}); queries built from topics (C{queries.py}) and post
objects read (C{posts.py}).  The names users and plugins import from
C{monitor.collect.x} stay here.
"""

from monitor.collect.x.api import FIELDS, Failed, problem
from monitor.collect.x.posts import Malformed, includes_index, parse_tweet
from monitor.collect.x.queries import queries_for, topic_query
from monitor.collect.x.search import XSearch
from monitor.collect.x.source import XSource
from monitor.collect.x.stream import XStream

__all__ = [
    "FIELDS",
    "Failed",
    "Malformed",
    "XSearch",
    "XSource",
    "XStream",
    "includes_index",
    "parse_tweet",
    "problem",
    "queries_for",
    "topic_query",
]
