"""
Corrections (C{/ui/feedback}) and the learned models (C{/models}); see L{monitor.web.learn}.
"""

from __future__ import annotations

from urllib.parse import urlencode

from klein import Klein

from monitor.web.pages.base import Area, Shell, page


class ModelPages(Area):
    """
    C{/models}, C{/models/...} and C{/ui/feedback}.
    """

    app = Klein()

    def __init__(self, shell: Shell, feedback, learner, rescorer) -> None:
        super().__init__(shell)
        self.feedback = feedback
        self.learner = learner
        self.rescorer = rescorer

    @app.route("/ui/feedback", methods=["POST"])
    @page("editor", json_api=True)
    async def ui_feedback(self, request, session):
        from monitor.web.learn import correct

        return self._json(request, 200, await correct(self.feedback, request, session.user))

    @app.route("/ui/feedback.json", methods=["GET"])
    @page("editor", json_api=True)
    async def ui_feedback_of(self, request, session):
        ids = [v.decode("utf-8", "replace") for v in request.args.get(b"post_id", [])][:500]
        return self._json(request, 200, {"feedback": await self.feedback.many(ids)})

    @app.route("/models", methods=["GET"])
    @page()
    async def models_page(self, request, session):
        from monitor.web.learn import models_view

        form = self._form(request)
        return self._render(request, session, "models.html", active="models",
                            models=models_view(await self.learner.models()), rescore=self.rescorer.status,
                            done=self._one(form, "done"), problem=self._one(form, "problem"))  # fmt: skip

    @app.route("/models/rescore", methods=["POST"])
    @page("admin")
    async def models_rescore(self, request, session):
        started = self.rescorer.start(session.user)
        message = (
            {"done": "Re-scoring the stored posts."} if started else {"problem": "A re-scoring job is running already."}
        )
        return self._redirect(request, "/models?" + urlencode(message))

    @app.route("/models/<name>/<verb>", methods=["POST"])
    @page("admin")
    async def model_switch(self, request, session, name, verb):
        if verb not in ("activate", "deactivate"):
            return self._error(request, session, 404, "There is no such page.")
        language = self._one(self._form(request), "language") or "en"
        found = await self.learner.set_active(name, language, verb == "activate", session.user)
        if found is None:
            return self._redirect(
                request, "/models?" + urlencode({"problem": f"No trained model {name} ({language})."})
            )
        return self._redirect(
            request, "/models?" + urlencode({"done": f"Model {name} ({language}): {found['state']}."})
        )
