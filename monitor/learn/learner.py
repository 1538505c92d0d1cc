"""
The Learner: trains a model for sentiment and one per label from people's
corrections, in a worker process, and keeps the ones worth using active.

A correction schedules a look after C{[learning] delay} seconds (so a burst
of clicks is one training run).  A model whose examples have grown by
C{retrain_after} (or that has none yet, once C{min_examples} are in) is
cross-validated and fitted in the worker; a new version becomes active
only when its macro-F1 beats the built-in answer on the same posts, unless
an admin has switched that model off.  Every version is kept (table
C{learned_models}), so the learning curve can be drawn.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Optional

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from monitor.fields import parse_duration
from monitor.learn.linear import LABEL_CLASSES, SENTIMENT, LinearModel
from monitor.model import SENTIMENTS

__all__ = ["Learner", "examples_for", "train_jobs", "ENGLISH"]

#: The language of posts with no language tag.
ENGLISH = "en"

#: The states a model can be in, as the API shows them.
STATES = ("collecting", "training", "active", "inactive")


def language_of(lang: Optional[str]) -> str:
    """
    The language a post's tag stands for: C{"pt-BR"} is C{"pt"}; no tag is
    English (VADER's language, and most sources' default).
    """
    if not lang:
        return ENGLISH
    return lang.split("-")[0].split("_")[0].lower() or ENGLISH


def examples_for(rows: list[dict], analyses: list, name: str, language: str) -> tuple[list, tuple[str, ...]]:
    """
    The training examples of one model from corrected posts (with the
    built-in analysis of each): for C{sentiment}, posts with a corrected
    sentiment; for a label, posts whose correction says yes or no to it.
    """
    from monitor.learn.datasets import vader_scores
    from monitor.learn.train import Example

    out = []
    for row, a in zip(rows, analyses):
        if language_of(row.get("lang")) != language:
            continue
        if name == SENTIMENT:
            if not row["sentiment"]:
                continue
            label, baseline = row["sentiment"], a.sentiment
        else:
            if name not in row["labels"]:
                continue
            label = "yes" if row["labels"][name] else "no"
            baseline = "yes" if name in a.labels else "no"
        out.append(Example(key=row["uid"], text=row["plain"], vader=vader_scores(a), label=label, baseline=baseline))
    return out, (SENTIMENTS if name == SENTIMENT else LABEL_CLASSES)


def train_jobs(classifier: dict, rows: list[dict], jobs: list[dict], folds: int) -> list[dict]:
    """
    Run in the worker: score the corrected posts with the built-in
    analysis, then cross-validate and fit each job's model.  Plain data in,
    stored models (dicts) out.
    """
    from monitor.analysis import Classifier, analyze_texts, plain_text
    from monitor.learn.train import train_model

    analyses = analyze_texts([r["text"] for r in rows], Classifier.from_dict(classifier))
    for r in rows:
        r["plain"] = plain_text(r["text"])
    out = []
    for job in jobs:
        examples, classes = examples_for(rows, analyses, job["name"], job["language"])
        out.append(train_model(job["name"], job["version"], examples, classes, job["language"], folds))
    return out


def _init_worker() -> None:
    # Ctrl-C reaches the whole process group; the hub decides when the worker stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _count(rows: list[dict], name: str, language: str) -> tuple[int, dict[str, int], float]:
    """
    How many examples a model has, per class, and the latest change.
    """
    per: dict[str, int] = {}
    latest = 0.0
    for r in rows:
        if language_of(r.get("lang")) != language:
            continue
        if name == SENTIMENT:
            value = r["sentiment"]
        else:
            value = None if name not in r["labels"] else ("yes" if r["labels"][name] else "no")
        if value:
            per[value] = per.get(value, 0) + 1
            latest = max(latest, r["updated_at"])
    return sum(per.values()), per, latest


class Learner(Service):
    """
    @ivar active: C{(name, language)} to the active L{LinearModel}; what
        the analysis applies (L{monitor.learn.apply}).
    @ivar listeners: called with no argument when the active models change.
    @param learning: the L{monitor.store.interfaces.ILearningStore} that
        keeps the model versions.
    """

    name = "learner"
    log = Logger()

    def __init__(
        self, learning, feedback, classifier, settings: dict, reactor=None, executor_factory=None, reload_every=None
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default

            reactor = default
        self.learning = learning
        self.feedback = feedback
        self.classifier = classifier
        self.settings = settings
        self.reactor = reactor
        self.active: dict[tuple[str, str], LinearModel] = {}
        self.listeners: list[Callable[[], None]] = []
        self.training: set[tuple[str, str]] = set()
        self.runs = 0
        self._executor_factory = executor_factory or self._new_executor
        self._executor: Optional[ProcessPoolExecutor] = None
        self._pending = None
        self._running: Optional[defer.Deferred] = None
        self._again = False
        #: Seconds between two reads of the active models, or C{None}: with
        #: a store shared by several hubs, what another hub trained or an
        #: admin switched there applies here within this time.
        self.reload_every = reload_every
        self._reloader: Optional[LoopingCall] = None
        self._loaded: Optional[list] = None

    # -- life ----------------------------------------------------------------

    def startService(self):
        super().startService()
        self.feedback.listeners.append(self.changed)
        if self.reload_every is not None:
            self._reloader = LoopingCall(self._reload)
            self._reloader.clock = self.reactor
            self._reloader.start(self.reload_every, now=False)
        d = defer.ensureDeferred(self._load())
        d.addCallback(lambda _: self.changed())
        return d

    def _reload(self):
        d = defer.ensureDeferred(self._load())
        d.addErrback(lambda f: self.log.failure("could not read the active learned models again", f))
        return d

    def stopService(self):
        super().stopService()
        if self.changed in self.feedback.listeners:
            self.feedback.listeners.remove(self.changed)
        if self._reloader is not None and self._reloader.running:
            self._reloader.stop()
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        self._pending = None
        executor, self._executor = self._executor, None
        running = self._running
        if executor is not None:
            # Training is repeatable: a run cut short is done again at the next start.
            for p in list((getattr(executor, "_processes", None) or {}).values()):
                p.kill()
            executor.shutdown(wait=False, cancel_futures=True)
        if running is not None:
            d = defer.Deferred()
            running.addBoth(lambda _: d.callback(None))
            return d
        return defer.succeed(None)

    @staticmethod
    def _new_executor() -> ProcessPoolExecutor:
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        return ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_init_worker)

    # -- when to train -------------------------------------------------------

    def changed(self) -> None:
        """
        Corrections changed: look again after C{delay} seconds.
        """
        if not self.running or not self.settings["enabled"]:
            return
        if self._running is not None:
            self._again = True
            return
        if self._pending is None or not self._pending.active():
            self._pending = self.reactor.callLater(parse_duration(self.settings["delay"]), self._look)

    def _look(self) -> None:
        self._pending = None
        self._running = defer.ensureDeferred(self.train_due())
        self._running.addErrback(lambda f: self.log.failure("training the learned models failed", f))
        self._running.addBoth(self._looked)

    def _looked(self, _) -> None:
        self._running = None
        if self._again:
            self._again = False
            self.changed()

    async def due(self, rows: list[dict]) -> list[tuple[str, str]]:
        """
        The models to train now: enough examples of two classes or more,
        and either none trained yet or C{retrain_after} new corrections.
        """
        least = self.settings["min_examples"]
        per_class = self.settings["min_per_class"]
        retrain = self.settings["retrain_after"]
        latest = await self.learning.latest_versions()
        out = []
        for key in self._names(rows):
            total, per, _ = _count(rows, *key)
            if total < least or sum(1 for n in per.values() if n >= per_class) < 2:
                continue
            last = latest.get(key)
            if last is None:
                out.append(key)
                continue
            examples, through = last
            new = sum(1 for r in rows if r["updated_at"] > through and self._about(r, *key))
            if new >= retrain:
                out.append(key)
        return out

    @staticmethod
    def _about(row: dict, name: str, language: str) -> bool:
        if language_of(row.get("lang")) != language:
            return False
        return bool(row["sentiment"]) if name == SENTIMENT else name in row["labels"]

    @staticmethod
    def _names(rows: list[dict]) -> list[tuple[str, str]]:
        keys: dict[tuple[str, str], None] = {}
        for r in rows:
            language = language_of(r.get("lang"))
            if r["sentiment"]:
                keys[(SENTIMENT, language)] = None
            for label in r["labels"]:
                keys[(label, language)] = None
        return sorted(keys)

    async def train_due(self) -> list[dict]:
        """
        Train every model that is due, in the worker process; store each
        new version and activate those that beat the built-in answer.
        Returns the summaries of the new versions.
        """
        rows = await self.feedback.labelled()
        keys = await self.due(rows)
        if not keys:
            return []
        numbers = await self.learning.version_counts()
        jobs = []
        for name, language in keys:
            n = numbers.get((name, language), 0) + 1
            version = f"{name}-{n}" if language == ENGLISH else f"{name}-{language}-{n}"
            jobs.append({"name": name, "language": language, "version": version})
        self.training.update(keys)
        self.log.info(
            "training {count} learned models: {versions}", count=len(jobs), versions=[j["version"] for j in jobs]
        )
        try:
            plain = [{k: r[k] for k in ("uid", "sentiment", "labels", "text", "lang")} for r in rows]
            models = await self._in_worker(train_jobs, self.classifier.to_dict(), plain, jobs, self.settings["folds"])
        finally:
            self.training.difference_update(keys)
        self.runs += 1
        out = []
        for job, stored in zip(jobs, models):
            model = LinearModel.from_dict(stored)
            _, _, through = _count(rows, job["name"], job["language"])
            out.append(await self._keep(model, through))
        await self._load()
        return out

    def _in_worker(self, function, *args) -> defer.Deferred:
        if self._executor is None:
            self._executor = self._executor_factory()
        future = self._executor.submit(function, *args)
        d: defer.Deferred = defer.Deferred(lambda _: future.cancel())

        def fire(future) -> None:
            if d.called:
                return
            try:
                d.callback(future.result())
            except BaseException as e:
                d.errback(Failure(e))

        future.add_done_callback(lambda f: self.reactor.callFromThread(fire, f))
        return d

    async def _keep(self, model: LinearModel, through: float) -> dict:
        from monitor.learn.train import better

        key = (model.name, model.language)
        held = await self.learning.is_held(*key)
        activate = self.settings["auto_activate"] and better(model.evaluation) and not held
        await self.learning.add_model(model, through, activate, self.reactor.seconds())
        e = model.evaluation
        self.log.info(
            "learned model {version}: macro-F1 {f1:.3f} against the built-in {base:.3f} on {n} posts; {what}",
            version=model.version, f1=e.get("macro_f1", 0.0), base=e.get("baseline_macro_f1", 0.0), n=model.examples,
            what="active" if activate else ("kept off by an admin" if held else "not better, inactive"),
        )  # fmt: skip
        return {"version": model.version, "active": activate}

    # -- admin ---------------------------------------------------------------

    async def set_active(
        self, name: str, language: str, on: bool, by: str, version: Optional[str] = None
    ) -> Optional[dict]:
        """
        An admin's word: activate a model's latest version (or C{version})
        whatever its figures, or switch the model off until activated again.
        C{None} if there is no such trained model.
        """
        found = await self.learning.set_active(name, language, on, by, version, self.reactor.seconds())
        if not found:
            return None
        self.log.info("{by} {what} learned model {name} ({language})", by=by, what="activated" if on else "deactivated",
                      name=name, language=language)  # fmt: skip
        await self._load()
        return await self.model(name, language)

    # -- reading -------------------------------------------------------------

    async def _load(self) -> None:
        rows = await self.learning.active_models()
        if rows == self._loaded:
            return  # the same texts: the same models (spares parsing them on each reload)
        active = {}
        for text in rows:
            model = LinearModel.from_json(text)
            active[(model.name, model.language)] = model
        self._loaded = rows
        old = {k: m.version for k, m in self.active.items()}
        self.active = active
        if old != {k: m.version for k, m in active.items()}:
            for listener in list(self.listeners):
                listener()

    def versions(self) -> dict[str, str]:
        """
        The active models' versions by key (C{sentiment}, C{complaint},
        C{sentiment:de}): what an analysis node must hold too.
        """
        from monitor.learn.apply import ModelSet

        return ModelSet(self.active).versions

    async def models(self) -> list[dict]:
        """
        Every model the corrections call for, as the API shows it.
        """
        rows = await self.feedback.labelled()
        stored = await self.learning.model_versions()
        keys = dict.fromkeys(self._names(rows))
        keys.update(dict.fromkeys(stored))
        if (SENTIMENT, ENGLISH) not in keys:
            keys[(SENTIMENT, ENGLISH)] = None
        return [
            self._describe(key, rows, stored.get(key, [])) for key in sorted(keys, key=lambda k: (k[0] != SENTIMENT, k))
        ]

    async def model(self, name: str, language: str = ENGLISH) -> Optional[dict]:
        for m in await self.models():
            if m["name"] == name and m["language"] == language:
                return m
        return None

    def _describe(self, key: tuple[str, str], rows: list[dict], versions: list[dict]) -> dict[str, Any]:
        total, per, _ = _count(rows, *key)
        active = next((v for v in versions if v["state"] == "active"), None)
        shown = active or (versions[-1] if versions else None)
        if key in self.training:
            state = "training"
        elif active is not None:
            state = "active"
        elif versions:
            state = "inactive"
        else:
            state = "collecting"
        evaluation = None
        if shown is not None:
            e = shown["evaluation"]
            evaluation = {k: e.get(k) for k in ("macro_f1", "accuracy", "baseline_macro_f1", "baseline_accuracy",
                                                "classes", "confusion", "baseline_confusion", "per_class", "folds",
                                                "examples")}  # fmt: skip
        return {
            "name": key[0],
            "language": key[1],
            "state": state,
            "version": shown["version"] if shown else None,
            "examples": total,
            "examples_per_class": per,
            "min_examples": self.settings["min_examples"],
            "held": bool(versions and versions[-1].get("held")),
            "evaluation": evaluation,
            "trained_at": shown["created_at"] if shown else None,
            "activated_by": shown.get("activated_by") if shown else None,
            "curve": [
                {
                    "version": v["version"],
                    "examples": v["examples"],
                    "macro_f1": v["evaluation"].get("macro_f1"),
                    "baseline_macro_f1": v["evaluation"].get("baseline_macro_f1"),
                }
                for v in versions
            ],  # fmt: skip
        }
