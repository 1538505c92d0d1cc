"""
Analysis in a thread pool of the hub's own process.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

from zope.interface import implementer

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from monitor.analysis import analyze_texts, scorer
from monitor.analysis.classify import Classifier
from monitor.interfaces import IAnalyzer
from monitor.service import InFlight

__all__ = ["AnalyzerNotRunning", "LocalAnalyzer", "analyze_with_features", "with_features"]


class AnalyzerNotRunning(RuntimeError):
    """
    A batch was offered to an analyzer that is not started or is stopping.
    """


@implementer(IAnalyzer)
class LocalAnalyzer(Service):
    """
    Run L{analyze_texts} in a dedicated thread pool, so scoring never
    stalls the reactor.

    The pool is its own and not the reactor's: that one also resolves host
    names, and a queue of scoring jobs would hold up the collectors' DNS.
    VADER is pure Python and holds the GIL, so threads buy responsiveness,
    not throughput; one thread is the right default, and more only help
    when scoring shares the process with work that releases the GIL.

    C{analyze} works only between C{startService} and C{stopService}; at
    any other time it fails with L{AnalyzerNotRunning} instead of starting
    a pool behind the service's back, because a pool nobody stops keeps
    the process from exiting.

    @param features: C{(text, lang) -> tuple}, what the stories need of
        each post that depends on the post alone
        (L{monitor.stories.features}), worked out in the same thread job
        and carried on each analysis (L{monitor.model.Analysis.features}),
        so that the reactor does not; C{None} (stories off): not at all.
    """

    name = "analysis"

    def __init__(
        self,
        classifier: Classifier,
        threads: int = 1,
        reactor: Optional[object] = None,
        features: Optional[Callable[[str, Optional[str]], tuple]] = None,
    ):
        if threads < 1:
            raise ValueError(f"threads must be at least 1, not {threads!r}")
        self.classifier = classifier
        self.threads = threads
        self._reactor = reactor
        self.features = features
        self._pool: Optional[ThreadPool] = None
        self._in_flight = InFlight()

    def _get_reactor(self):
        if self._reactor is None:
            from twisted.internet import reactor

            return reactor
        return self._reactor

    def startService(self) -> None:
        # Choose (and check) the scorer now, so that a scorer that fails
        # its check against vaderSentiment is reported when the hub starts,
        # not when the first post arrives.
        scorer()
        super().startService()
        self._pool = ThreadPool(minthreads=1, maxthreads=self.threads, name="analysis")
        self._pool.start()

    def stopService(self) -> defer.Deferred:
        """
        Refuse new batches, wait for the ones in progress, then stop the pool.

        C{ThreadPool.stop} joins its threads, which blocks until their
        current job ends.  Waiting for the batches in flight first means
        the threads are idle by then, so the join is immediate and the reactor
        is never blocked for the length of a batch.  A batch is bounded
        (milliseconds per hundred posts), so the wait is short.
        """
        super().stopService()
        pool, self._pool = self._pool, None
        d = self._in_flight.idle()
        if pool is not None:
            d.addCallback(lambda _: pool.stop())
        return d

    def analyze(self, posts) -> defer.Deferred:
        """
        Analyse C{posts} in the pool.  Fires with one
        L{monitor.model.Analysis} per post, in order.
        """
        if self._pool is None:
            return defer.fail(AnalyzerNotRunning("analyze() called while not running"))
        texts = [post.text for post in posts]
        if not texts:
            return defer.succeed([])
        if self.features is None:
            d = deferToThreadPool(self._get_reactor(), self._pool, analyze_texts, texts, self.classifier)
        else:
            d = deferToThreadPool(self._get_reactor(), self._pool, analyze_with_features, texts,
                                  [post.lang for post in posts], self.classifier, self.features)  # fmt: skip
        return self._in_flight.track(d)


def analyze_with_features(texts: Sequence[str], langs: Sequence[Optional[str]], classifier: Classifier,
                          features: Callable[[str, Optional[str]], tuple]) -> list:  # fmt: skip
    """
    L{analyze_texts}, each analysis carrying the C{features} of its text
    (see L{LocalAnalyzer}).
    """
    return with_features(analyze_texts(texts, classifier), texts, langs, features)


def with_features(analyses: list, texts: Sequence[str], langs: Sequence[Optional[str]],
                  features: Callable[[str, Optional[str]], tuple]) -> list:  # fmt: skip
    """
    C{analyses}, each given the C{features} of its text.
    """
    for a, text, lang in zip(analyses, texts, langs):
        a.features = features(text, lang)
    return analyses
