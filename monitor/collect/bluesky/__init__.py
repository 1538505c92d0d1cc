"""
The Bluesky source (L{BlueskySource}, reading Jetstream), the records it
reads and the author profiles it looks up; the names users and plugins
import from C{monitor.collect.bluesky} stay here.
"""

from monitor.collect.bluesky.jetstream import DEFAULT_APPVIEW, DEFAULT_URL, BlueskySource
from monitor.collect.bluesky.profiles import ProfileCache, ProfileLookupFailed, profile_from_view
from monitor.collect.bluesky.records import POST_COLLECTION, MalformedEvent, post_from_commit, read_facets

__all__ = [
    "DEFAULT_APPVIEW",
    "DEFAULT_URL",
    "POST_COLLECTION",
    "BlueskySource",
    "MalformedEvent",
    "ProfileCache",
    "ProfileLookupFailed",
    "post_from_commit",
    "profile_from_view",
    "read_facets",
]
