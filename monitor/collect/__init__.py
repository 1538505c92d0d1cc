"""
The collectors: one service per configured source.  The source kinds, with
their keys and classes, are listed in L{monitor.collect.kinds}; importing
this package imports no collector (L{make_source} imports the one it
builds).
"""

from monitor.collect.kinds import SOURCE_KINDS, load_class

#: The collector classes, by the names this package has always exported.
_CLASSES = {
    "BlueskySource": "monitor.collect.bluesky.jetstream:BlueskySource",
    "DemoSource": "monitor.collect.demo:DemoSource",
    "MastodonSource": "monitor.collect.mastodon:MastodonSource",
    "ReplaySource": "monitor.collect.replay:ReplaySource",
    "RSSSource": "monitor.collect.rss:RSSSource",
    # Either mode: XSource(..., mode="stream") builds an XStream.
    "XSource": "monitor.collect.x.source:XSource",
}


def __getattr__(name):
    if name in _CLASSES:
        return load_class(_CLASSES[name])
    if name == "SOURCE_CLASSES":
        return {kind: k.load() for kind, k in SOURCE_KINDS.items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    cls = SOURCE_KINDS[spec["kind"]].load(spec)
    return cls(spec["name"], queue, store, metrics, reactor=reactor, **options)


__all__ = [
    "BlueskySource",
    "DemoSource",
    "MastodonSource",
    "ReplaySource",
    "RSSSource",
    "SOURCE_CLASSES",
    "XSource",
    "make_source",
]
