"""
The topics: the list with a day's volume, the editor and its "try it" on recent posts.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from klein import Klein
from twisted.internet.threads import deferToThreadPool

from monitor.web.forms import topic_form, topic_values
from monitor.web.pages.base import Area, Shell, page
from monitor.web.tryit import try_draft

#: Posts a draft topic is tried on.
TRY_POSTS = 2000


class TopicPages(Area):
    """
    C{/topics}, C{/topics/new}, C{/topics/edit}, C{/topics/save} and C{/topics/delete}.
    """

    app = Klein()

    def __init__(self, shell: Shell, store, topics, sources) -> None:
        super().__init__(shell)
        self.store = store
        self.topics = topics
        self.sources = sources

    @app.route("/topics", methods=["GET"])
    @page()
    async def topics(self, request, session):
        form = self._form(request)
        origins = await self.store.topic_origins()
        day = self.reactor.seconds() - 86400
        volume = {v["topic"]: v["count"] for v in await self.store.topic_volume(day, None)}
        rows = [
            {"topic": t, "origin": origins.get(t.name, {}).get("origin", "?"), "day": volume.get(t.name, 0)}
            for t in self.topics.topics
        ]
        return self._render(
            request,
            session,
            "topics.html",
            active="topics",
            rows=rows,
            saved=self._one(form, "saved"),
            deleted=self._one(form, "deleted"),
        )

    @app.route("/topics/new", methods=["GET"])
    @page("editor")
    async def topic_new(self, request, session):
        return self._topic_page(request, session, topic_values(None), {}, original="")

    @app.route("/topics/edit", methods=["GET"])
    @page("editor")
    async def topic_edit(self, request, session):
        name = self._one(self._form(request), "name")
        topic = self.topics.get(name)
        if topic is None:
            return self._error(request, session, 404, "There is no such topic.")
        return self._topic_page(request, session, topic_values(topic), {}, original=name)

    def _topic_page(self, request, session, values, errors, original, status=200, tried=None):
        return self._render(
            request,
            session,
            "topic_form.html",
            status=status,
            active="topics",
            values=values,
            errors=errors,
            original=original,
            sources=self._sources(),
            tried=tried,
        )

    @app.route("/topics/save", methods=["POST"])
    @page("editor")
    async def topic_save(self, request, session):
        form = self._form(request)
        original = self._one(form, "original")
        action = self._one(form, "action", "save")
        taken = {name for name in self._topic_names() if name != original}
        topic, errors, values = topic_form(form, self._sources(), taken)
        if errors:
            return self._topic_page(request, session, values, errors, original, status=400)
        if action == "try":
            tried = await self._try_topic(topic, original)
            return self._topic_page(request, session, values, {}, original, tried=tried)
        store = self.store
        await store.save_topic(topic)
        if original and original != topic.name:
            await store.delete_topic(original)
        await self.topics.reload()
        self.log.info("{user} saved topic {topic}", user=session.user, topic=topic.name)
        return self._redirect(request, "/topics?" + urlencode({"saved": topic.name}))

    async def _try_topic(self, topic, original: str) -> dict[str, Any]:
        posts = await self.store.recent_posts(TRY_POSTS)
        current = self.topics.get(original) if original else None
        return await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), try_draft, topic, current, posts)

    @app.route("/topics/delete", methods=["POST"])
    @page("editor")
    async def topic_delete(self, request, session):
        name = self._one(self._form(request), "name")
        if not await self.store.delete_topic(name):
            return self._error(request, session, 404, "There is no such topic.")
        await self.topics.reload()
        self.log.info("{user} deleted topic {topic}", user=session.user, topic=name)
        return self._redirect(request, "/topics?" + urlencode({"deleted": name}))
