"""
The queue seam: the buffer between collectors and analysis.
"""

from monitor.queue.memory import MemoryQueue


def make_queue(config: dict, reactor):
    """
    Build the queue a configuration's C{[queue]} section asks for.
    """
    if config["kind"] == "memory":
        return MemoryQueue(config["size"], reactor=reactor)
    raise ValueError(f"queue.kind: unknown kind {config['kind']!r}")


__all__ = ["MemoryQueue", "make_queue"]
