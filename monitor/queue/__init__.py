"""
The queue seam: the buffer between collectors and analysis.
"""

from monitor.queue.memory import MemoryQueue


def make_queue(config, reactor, hub_name: str = ""):
    """
    Build the queue a configuration's C{[queue]} section
    (L{monitor.config.QueueSection}) asks for.  A
    queue that is also a service (Redis: its connections) is started and
    stopped by the hub.
    """
    if config.kind == "memory":
        return MemoryQueue(config.size, reactor=reactor)
    if config.kind == "redis":
        from monitor.fields import parse_duration
        from monitor.queue.redis import RedisQueue

        return RedisQueue(
            config.url,
            stream=config.stream,
            group=config.group,
            consumer=hub_name or None,
            max_length=config.max_length,
            claim_after=parse_duration(config.claim_after),
            reactor=reactor,
        )
    raise ValueError(f"queue.kind: unknown kind {config['kind']!r}")


__all__ = ["MemoryQueue", "make_queue"]
