"""
Re-scoring stored posts with the active models: a background job that an
admin starts (never silent), with its progress for the API and the Models
page.

Posts are read in batches by row id, analysed again (the built-in answer,
then the active models, as new posts are) in a thread, and their
sentiment, sentiment_by and labels written back; VADER's scores do not
change.  One job at a time; it stops with the hub and can be started again.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.application.service import Service
from twisted.internet import defer, threads
from twisted.logger import Logger

from monitor.learn.apply import apply_models
from monitor.model import Analysis

__all__ = ["Rescorer", "BATCH"]

#: Posts re-scored per batch.
BATCH = 500


def rescore_rows(rows: list[tuple], classifier, models: dict) -> list[tuple]:
    """
    In a thread: the new (sentiment, sentiment_by, labels, id) of each
    stored row (id, text, lang).
    """
    from monitor.analysis import analyze_texts

    analyses = analyze_texts([r[1] for r in rows], classifier)
    out = []
    for (row_id, text, lang), a in zip(rows, analyses):
        b: Analysis = apply_models(a, text, lang, models)
        labels = " ".join(b.labels)
        out.append((b.sentiment, b.by, f" {labels} " if labels else "", row_id))
    return out


class Rescorer(Service):
    """
    @param learning: the L{monitor.store.interfaces.ILearningStore} that
        reads the stored posts and writes their new labels.
    @ivar status: the job's progress as the API shows it.
    """

    name = "rescorer"
    log = Logger()

    def __init__(self, learning, learner, reactor) -> None:
        self.learning = learning
        self.learner = learner
        self.reactor = reactor
        self.status: dict[str, Any] = {"state": "idle", "done": 0, "total": 0, "changed": 0, "models": {},
                                       "started_at": None, "finished_at": None, "by": None, "error": None}  # fmt: skip
        self._job = None
        self._stopping = False

    @property
    def busy(self) -> bool:
        return self.status["state"] == "running"

    def start(self, by: str) -> Optional[dict]:
        """
        Start a job; C{None} if one is running already.
        """
        if self.busy:
            return None
        self._stopping = False
        self.status = {"state": "running", "done": 0, "total": 0, "changed": 0, "models": self.learner.versions(),
                       "started_at": self.reactor.seconds(), "finished_at": None, "by": by, "error": None}  # fmt: skip
        self.log.info(
            "{by} started re-scoring the stored posts with {models}",
            by=by,
            models=self.status["models"] or "VADER only",
        )
        from twisted.internet.defer import ensureDeferred

        self._job = ensureDeferred(self._run(dict(self.learner.active)))
        self._job.addErrback(self._failed)
        return dict(self.status)

    def stop(self) -> None:
        self._stopping = True

    def stopService(self):
        """
        Stop after the batch in progress (a job can be started again).
        """
        super().stopService()
        self.stop()
        if self._job is None or self._job.called:
            return defer.succeed(None)
        d = defer.Deferred()
        self._job.addBoth(lambda result: (d.callback(None), result)[1])
        return d

    def _failed(self, failure) -> None:
        self.status.update(state="failed", error=failure.getErrorMessage(), finished_at=self.reactor.seconds())
        self.log.failure("re-scoring the stored posts failed", failure)

    async def _run(self, models: dict) -> None:
        self.status["total"] = await self.learning.count_posts()
        last = 0
        while not self._stopping:
            rows = await self.learning.scored_posts(last, BATCH)
            if not rows:
                break
            updates = await threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), rescore_rows,
                                                      [(r[0], r[1], r[2]) for r in rows], self.learner.classifier, models)  # fmt: skip
            before = {r[0]: (r[3], r[4], r[5]) for r in rows}
            changed = [u for u in updates if before[u[3]] != (u[0], u[1], u[2])]
            if changed:
                await self.learning.rescore(changed)
            last = rows[-1][0]
            self.status["done"] += len(rows)
            self.status["changed"] += len(changed)
        self.status.update(state="stopped" if self._stopping else "done", finished_at=self.reactor.seconds())
        self.log.info(
            "re-scored {done} stored posts, {changed} changed", done=self.status["done"], changed=self.status["changed"]
        )
