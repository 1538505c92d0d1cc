"""
Analysis in worker processes of this machine.

VADER is pure Python: threads share one core because of the GIL, so real
parallelism needs processes.  L{ProcessAnalyzer} runs L{analyze_texts} in a
C{ProcessPoolExecutor} whose workers are started by the C{forkserver} (or
C{spawn}) method, never by a plain C{fork} of the reactor's process, which
holds threads and sockets a child must not inherit.

Only plain data crosses the process boundary: texts go in, and rows (see
L{to_row}) come out; the classifier travels once per worker, as the dict of
L{Classifier.to_dict}, when the worker starts.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import CancelledError as FutureCancelled
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Optional, Sequence

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from monitor.analysis import analyze_texts
from monitor.analysis.classify import Classifier
from monitor.analysis.local import AnalyzerNotRunning
from monitor.interfaces import IAnalyzer
from monitor.service import InFlight
from monitor.model import LABELS, SENTIMENTS, Analysis

__all__ = [
    "ProcessAnalyzer",
    "WorkersFailed",
    "from_row",
    "score_texts",
    "score_with_features",
    "to_learned_row",
    "to_row",
]

#: A batch is split over several workers only in parts of at least this
#: many texts: below that, the cost of a round trip to a worker dominates.
MIN_PART = 64

#: Seconds L{ProcessAnalyzer.stopService} waits for batches in progress, and
#: then for the workers to exit, before it kills them.
STOP_TIMEOUT = 5.0

#: How often a worker checks that the process that started it is alive.
OWNER_CHECK = 1.0

_LABELS = frozenset(LABELS)
_SENTIMENTS = frozenset(SENTIMENTS)


class WorkersFailed(RuntimeError):
    """
    A batch could not be analysed because worker processes died, twice in a
    row.  The caller should analyse it some other way.
    """


def to_row(a: Analysis) -> tuple:
    """
    An analysis as plain data, cheap to pickle or encode as JSON.
    """
    return (a.compound, a.pos, a.neu, a.neg, a.sentiment, a.labels)


def to_learned_row(a: Analysis) -> tuple:
    """
    L{to_row} with whose answer the sentiment is (C{by}): what a node that
    applied the learned models answers.
    """
    return (a.compound, a.pos, a.neu, a.neg, a.sentiment, a.labels, a.by)


def from_row(row: Sequence[Any], learned: frozenset = frozenset()) -> Analysis:
    """
    The analysis a row stands for (of L{to_row} or L{to_learned_row}; the
    latter may carry the C{learned} labels too).  Checks the shape, because
    rows may come from another machine.

    @raise ValueError: the row is not one L{to_row} makes.
    """
    # The hub runs this for every post a node scores: the checks are
    # ordered so that a well-formed row costs as little as possible.
    try:
        if len(row) == 7:
            compound, pos, neu, neg, sentiment, labels, by = row
            if not (by == "vader" or (by == "unscored" and sentiment is None)
                    or (isinstance(by, str) and by.startswith("model:") and len(by) <= 200)):  # fmt: skip
                raise ValueError
            if labels and not _LABELS.union(learned).issuperset(labels):
                raise ValueError
        else:
            compound, pos, neu, neg, sentiment, labels = row
            by = "vader"
            if labels and not _LABELS.issuperset(labels):
                raise ValueError
        if sentiment not in _SENTIMENTS and by != "unscored":
            raise ValueError
        if not (type(compound) is type(pos) is type(neu) is type(neg) is float):
            compound, pos, neu, neg = float(compound), float(pos), float(neu), float(neg)
        return Analysis(compound, pos, neu, neg, sentiment, tuple(labels), by)
    except (TypeError, ValueError):
        raise ValueError(f"not an analysis row: {row!r}"[:200]) from None


# --- in the worker processes ----------------------------------------------

_worker_classifier: Optional[Classifier] = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return True


def _watch_owner(owner: int) -> None:
    # A worker outlives an owner killed with SIGKILL: it holds both ends of
    # its own call queue, so it never reads EOF, and its parent is the
    # forkserver, which the worker itself keeps alive.  So it looks.
    while _alive(owner):
        time.sleep(OWNER_CHECK)
    os._exit(0)


def _init_worker(classifier: dict, owner: int) -> None:
    # Ctrl-C in a terminal reaches the whole process group; the parent
    # decides when workers stop, so they ignore it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_owner, args=(owner,), name="owner-watch", daemon=True).start()
    global _worker_classifier
    _worker_classifier = Classifier.from_dict(classifier)
    from monitor.analysis import scorer

    scorer()


def score_texts(texts: list[str]) -> list[tuple]:
    """
    Run in a worker: the rows of C{texts}, scored with the classifier the
    worker was started with.
    """
    assert _worker_classifier is not None, "worker not initialised"
    return [to_row(a) for a in analyze_texts(texts, _worker_classifier)]


def score_with_features(score: Callable, texts: list[str], langs: list[Optional[str]], features: Callable) -> list:
    """
    Run in a worker: C{score(texts)} (L{score_texts}), each row paired with
    the C{features} of its text (both module-level functions, so that they
    pickle by name).
    """
    return list(zip(score(texts), map(features, texts, langs)))


def _warm() -> int:
    return os.getpid()


# --- in the reactor's process ---------------------------------------------


def _with_features(a: Analysis, features: tuple) -> Analysis:
    a.features = features
    return a


def _start_method() -> str:
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


@implementer(IAnalyzer)
class ProcessAnalyzer(Service):
    """
    Score batches in C{workers} OS processes.

    A large batch is split over the workers (parts of at least L{MIN_PART}
    texts), so one batch can use every core.  When a worker dies (killed,
    out of memory), Python marks the whole pool broken and fails every batch
    in it: the pool is then rebuilt once and each of those batches retried;
    if that fails too, the batch fails with L{WorkersFailed} so the caller
    can fall back.  Callers bound how much they submit at once (the
    pipeline's in-flight limit, a node's announced capacity).

    @cvar score_function: what a worker runs on a list of texts; a
        module-level function, so that it pickles by name.
    @param features: as L{monitor.analysis.local.LocalAnalyzer}'s (and a
        module-level function too): worked out in the workers with the
        scores.
    """

    name = "analysis-processes"
    log = Logger()
    score_function = staticmethod(score_texts)

    def __init__(
        self,
        classifier: Classifier,
        workers: int,
        reactor: Optional[Any] = None,
        start_method: Optional[str] = None,
        stop_timeout: float = STOP_TIMEOUT,
        features: Optional[Callable[[str, Optional[str]], tuple]] = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers!r}")
        if reactor is None:
            from twisted.internet import reactor
        self.classifier = classifier
        self.workers = workers
        self.reactor = reactor
        self.start_method = start_method or _start_method()
        self.stop_timeout = stop_timeout
        self.features = features
        self._classifier_dict = classifier.to_dict()
        self._executor: Optional[ProcessPoolExecutor] = None
        self._in_flight = InFlight()
        self.restarts = 0

    # -- lifecycle --

    def startService(self) -> None:
        super().startService()
        self._executor = self._new_executor()
        # Start every worker now (each imports VADER and reads its lexicon),
        # so the first batch does not wait for that.
        for _ in range(self.workers):
            self._deferred(self._executor.submit(_warm)).addErrback(
                lambda f: self.log.failure("an analysis worker failed to start", f)
            )

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context(self.start_method),
            initializer=_init_worker,
            initargs=(self._classifier_dict, os.getpid()),
        )

    def stopService(self) -> defer.Deferred:
        """
        Refuse new batches, let those in progress finish (for at most
        C{stop_timeout} seconds), then shut the workers down.

        Joining worker processes blocks, so it happens in a thread of its
        own; the returned Deferred fires when the workers are gone, killed
        if they have not exited within C{stop_timeout} seconds.
        """
        super().stopService()
        executor, self._executor = self._executor, None
        if executor is None:
            return defer.succeed(None)
        d = self._in_flight.idle()
        d.addTimeout(self.stop_timeout, self.reactor)
        d.addErrback(
            lambda f: self.log.warn(
                "stopping the analysis workers with {count} batches in progress", count=self._in_flight.count
            )
        )
        d.addCallback(lambda _: self._shutdown(executor))
        return d

    def _shutdown(self, executor: ProcessPoolExecutor) -> defer.Deferred:
        processes = list((getattr(executor, "_processes", None) or {}).values())
        executor.shutdown(wait=False, cancel_futures=True)
        done: defer.Deferred = defer.Deferred()

        def join() -> None:
            deadline = time.monotonic() + self.stop_timeout
            for p in processes:
                p.join(max(0.0, deadline - time.monotonic()))
            killed = 0
            for p in processes:
                if p.is_alive():
                    p.kill()
                    p.join(1.0)
                    killed += 1
            self.reactor.callFromThread(done.callback, killed)

        threading.Thread(target=join, name="analysis-workers-stop", daemon=True).start()

        def report(killed: int) -> None:
            if killed:
                self.log.warn("killed {count} analysis workers that did not exit", count=killed)

        done.addCallback(report)
        return done

    def analyze(self, posts) -> defer.Deferred:
        """
        Analyse C{posts}.  Fires with one L{Analysis} per post, in order.
        """
        texts = [post.text for post in posts]
        if self.features is None:
            d = self.score(texts)
            d.addCallback(lambda rows: [from_row(row) for row in rows])
            return d
        d = self.score(texts, [post.lang for post in posts])
        d.addCallback(lambda pairs: [_with_features(from_row(row), f) for row, f in pairs])
        return d

    def score(self, texts: list[str], langs: Optional[list] = None) -> defer.Deferred:
        """
        Score C{texts}.  Fires with one row (L{to_row}) per text, in order:
        the plain data an analysis node sends back to the hub; with the
        texts' C{langs}, one C{(row, features)} pair per text instead.
        """
        if self._executor is None:
            return defer.fail(AnalyzerNotRunning("score() called while not running"))
        if not texts:
            return defer.succeed([])
        parts = max(1, min(self.workers, len(texts) // MIN_PART))
        size = -(-len(texts) // parts)
        ds = [self._part(texts[i : i + size], langs=langs[i : i + size] if langs is not None else None)
              for i in range(0, len(texts), size)]  # fmt: skip
        d = defer.gatherResults(ds, consumeErrors=True)
        d.addCallback(lambda results: [row for rows in results for row in rows])
        d.addErrback(lambda f: f.value.subFailure if f.check(defer.FirstError) else f)
        return self._in_flight.track(d)

    def _part(self, texts: list[str], retried: bool = False, langs: Optional[list] = None) -> defer.Deferred:
        executor = self._executor
        if executor is None:
            return defer.fail(AnalyzerNotRunning("the analyzer stopped"))
        try:
            if langs is None:
                future = executor.submit(self.score_function, texts)
            else:
                future = executor.submit(score_with_features, self.score_function, texts, langs, self.features)
        except BrokenProcessPool:
            d = defer.fail()
        else:
            d = self._deferred(future)
        d.addErrback(self._retry, executor, texts, retried, langs)
        return d

    def _retry(self, failure: Failure, executor, texts: list[str], retried: bool, langs: Optional[list] = None):
        failure.trap(BrokenProcessPool)
        if retried:
            raise WorkersFailed(f"analysis workers died twice on a part of {len(texts)} texts")
        if self._executor is executor:
            self.restarts += 1
            self.log.error(
                "an analysis worker died ({error}); starting {count} new workers",
                error=failure.value,
                count=self.workers,
            )
            executor.shutdown(wait=False, cancel_futures=True)
            self._executor = self._new_executor()
        return self._part(texts, retried=True, langs=langs)

    def _deferred(self, future) -> defer.Deferred:
        """
        A Deferred that fires on the reactor thread with C{future}'s outcome.
        Cancelling it cancels the future if no worker has taken it yet.
        """
        d: defer.Deferred = defer.Deferred(lambda _: future.cancel())

        def fire(future) -> None:
            if d.called:
                return
            try:
                result = future.result()
            except FutureCancelled:
                d.errback(Failure(defer.CancelledError()))
            except BaseException as e:
                d.errback(Failure(e))
            else:
                d.callback(result)

        future.add_done_callback(lambda f: self.reactor.callFromThread(fire, f))
        return d
