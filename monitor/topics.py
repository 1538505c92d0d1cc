"""
The tracked topics: kept in the store, compiled into one matcher.
"""

from __future__ import annotations

from twisted.logger import Logger

from monitor.match import Matcher


class TopicSet:
    """
    The topics the hub tracks now, and the matcher compiled from them.
    Seeded from the configuration file at start; C{reload} after any
    change in the store makes the change apply to the next batch.
    """

    log = Logger()

    def __init__(self, store) -> None:
        self.store = store
        self.topics: list = []
        self.matcher = Matcher([])
        #: Called with no arguments after every reload (sources whose
        #: requests depend on the topics, such as X's stream rules).
        self.listeners: list = []

    async def seed(self, file_topics) -> None:
        await self.store.sync_file_topics(list(file_topics))
        await self.reload()

    async def reload(self) -> None:
        topics = await self.store.list_topics()
        self.matcher = Matcher(topics)
        self.topics = topics
        for name, problem in self.matcher.problems.items():
            self.log.warn("topic {topic} matches nothing: its query {problem}", topic=name, problem=problem)
        for listener in list(self.listeners):
            try:
                listener()
            except Exception:
                self.log.failure("a topic listener failed")
        self.log.info("tracking {count} topics: {names}", count=len(topics), names=", ".join(t.name for t in topics))

    def get(self, name: str):
        for t in self.topics:
            if t.name == name:
                return t
        return None
