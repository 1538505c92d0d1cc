"""
The collectors: one service per configured source.  Importing this package
registers every source kind with the configuration loader.
"""

from monitor.collect.bluesky import BlueskySource
from monitor.collect.demo import DemoSource
from monitor.collect.mastodon import MastodonSource
from monitor.collect.replay import ReplaySource
from monitor.collect.rss import RSSSource
from monitor.collect.x import XSource

SOURCE_CLASSES = {
    "bluesky": BlueskySource,
    "demo": DemoSource,
    "mastodon": MastodonSource,
    "replay": ReplaySource,
    "rss": RSSSource,
    "x": XSource,
}


def make_source(spec: dict, queue, store, metrics, topics, reactor, topic_set=None):
    """
    Build the collector for one C{[[sources]]} entry.
    """
    options = {k: v for k, v in spec.items() if k not in ("kind", "name")}
    if spec["kind"] == "demo" and not options.get("brands"):
        options["brands"] = [t.name for t in topics]
    if spec["kind"] == "x":
        # Live topics where the hub has them, so edits reach X's queries.
        options["topics"] = topic_set if topic_set is not None else topics
    cls = SOURCE_CLASSES[spec["kind"]]
    return cls(spec["name"], queue, store, metrics, reactor=reactor, **options)


__all__ = ["BlueskySource", "DemoSource", "MastodonSource", "ReplaySource", "RSSSource", "SOURCE_CLASSES", "XSource",
           "make_source"]
