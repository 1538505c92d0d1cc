"""
The collectors: one service per configured source.  Importing this package
registers every source kind with the configuration loader.
"""

from monitor.collect.demo import DemoSource
from monitor.collect.replay import ReplaySource

SOURCE_CLASSES = {
    "demo": DemoSource,
    "replay": ReplaySource,
}


def make_source(spec: dict, queue, store, metrics, topics, reactor):
    """
    Build the collector for one C{[[sources]]} entry.
    """
    options = {k: v for k, v in spec.items() if k not in ("kind", "name")}
    if spec["kind"] == "demo" and not options.get("brands"):
        options["brands"] = [t.name for t in topics]
    cls = SOURCE_CLASSES[spec["kind"]]
    return cls(spec["name"], queue, store, metrics, reactor=reactor, **options)


__all__ = ["DemoSource", "ReplaySource", "SOURCE_CLASSES", "make_source"]
