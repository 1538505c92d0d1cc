"""
The process-pool analyzer: real worker processes on the real reactor (each
wait bounded), the same results as local analysis, and workers that die.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import pytest_twisted

from monitor.analysis import Classifier, analyze_texts
from monitor.analysis.local import AnalyzerNotRunning
from monitor.analysis.process import MIN_PART, ProcessAnalyzer, WorkersFailed, from_row, to_row
from tests.nodes.helpers import die_always, die_when_marked, posts

CUSTOM = Classifier(crisis_words=["meltdown"])
WAIT = 60.0


def within(d, reactor, seconds=WAIT):
    return d.addTimeout(seconds, reactor)


@pytest.fixture
def ground_truth_texts(shared_data):
    path = shared_data / "vader_icwsm2014" / "tweets_GroundTruth.txt"
    return [line.split("\t", 2)[2] for line in path.read_text(encoding="utf-8").splitlines()]


class Dying(ProcessAnalyzer):
    score_function = staticmethod(die_when_marked)


class AlwaysDying(ProcessAnalyzer):
    score_function = staticmethod(die_always)


def test_needs_a_worker():
    """Fewer than one worker is refused."""
    with pytest.raises(ValueError):
        ProcessAnalyzer(Classifier(), 0)


def test_never_plain_fork():
    """Workers start by forkserver (or spawn), never by forking the reactor's process."""
    assert ProcessAnalyzer(Classifier(), 1).start_method in ("forkserver", "spawn")


def test_analyze_before_start_fails():
    """Analysing before startService fails at once."""
    failures = []
    ProcessAnalyzer(Classifier(), 1).analyze(posts(["a"])).addErrback(failures.append)
    assert failures[0].check(AnalyzerNotRunning)


def test_importing_does_not_install_a_reactor():
    """monitor.analysis.process leaves the global reactor alone at import."""
    code = "import sys, monitor.analysis.process; sys.exit('twisted.internet.reactor' in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_rows_round_trip_and_are_checked():
    """A row turns back into the same Analysis; rows of the wrong shape are refused."""
    (a,) = analyze_texts(["total meltdown, is it down?"], CUSTOM)
    assert from_row(list(to_row(a))) == a
    for bad in ([1, 2], [0, 0, 0, 0, "furious", []], [0, 0, 0, 0, "neutral", ["bogus"]], None):
        with pytest.raises(ValueError):
            from_row(bad)


@pytest_twisted.ensureDeferred
async def test_scores_exactly_like_local(reactor, ground_truth_texts):
    """Two workers split a batch and return exactly analyze_texts' results, with the given word lists."""
    texts = ground_truth_texts[:1000] + ["total meltdown at acme"]
    analyzer = ProcessAnalyzer(CUSTOM, 2, reactor=reactor)
    analyzer.startService()
    try:
        results = await within(analyzer.analyze(posts(texts)), reactor)
        assert results == analyze_texts(texts, CUSTOM)
        assert "crisis" in results[-1].labels
        assert len(texts) >= 2 * MIN_PART
        assert await within(analyzer.analyze([]), reactor) == []
    finally:
        await within(analyzer.stopService(), reactor)


@pytest_twisted.ensureDeferred
async def test_a_dead_worker_is_replaced_and_the_batch_retried(reactor, tmp_path):
    """A worker killed mid-batch breaks the pool; it is rebuilt and the batch analysed, nothing lost."""
    marker = tmp_path / "die"
    marker.write_text("")
    texts = [str(marker), "acme is great", "acme is down again"]
    analyzer = Dying(CUSTOM, 1, reactor=reactor)
    analyzer.startService()
    try:
        results = await within(analyzer.analyze(posts(texts)), reactor)
        assert results == analyze_texts(texts, CUSTOM)
        assert analyzer.restarts == 1 and not marker.exists()
        # The rebuilt pool keeps working.
        assert await within(analyzer.analyze(posts(["fine"])), reactor) == analyze_texts(["fine"], CUSTOM)
    finally:
        await within(analyzer.stopService(), reactor)


@pytest_twisted.ensureDeferred
async def test_workers_dying_twice_fail_the_batch(reactor):
    """If the rebuilt pool dies too, the batch fails with WorkersFailed so the caller can fall back."""
    analyzer = AlwaysDying(CUSTOM, 1, reactor=reactor)
    analyzer.startService()
    try:
        with pytest.raises(WorkersFailed):
            await within(analyzer.analyze(posts(["a"])), reactor)
    finally:
        await within(analyzer.stopService(), reactor)


@pytest_twisted.ensureDeferred
async def test_stop_waits_for_batches_then_ends_the_workers(reactor, ground_truth_texts):
    """stopService lets a batch in progress finish, then the worker processes exit."""
    analyzer = ProcessAnalyzer(CUSTOM, 2, reactor=reactor)
    analyzer.startService()
    batch = analyzer.analyze(posts(ground_truth_texts[:2000]))
    processes = list(analyzer._executor._processes.values())
    await within(analyzer.stopService(), reactor)
    assert len(await within(batch, reactor)) == 2000
    assert processes and all(p.exitcode is not None for p in processes)
    failures = []
    analyzer.analyze(posts(["late"])).addErrback(failures.append)
    assert failures[0].check(AnalyzerNotRunning)


@pytest_twisted.ensureDeferred
async def test_workers_work_out_story_features_too(reactor, ground_truth_texts):
    """With story features on, the workers send each text's features with its scores; the analyses are unchanged."""
    from monitor.stories import features

    texts = ground_truth_texts[:300]
    batch = posts(texts)
    for p in batch[::2]:
        p.lang = "en"
    analyzer = ProcessAnalyzer(CUSTOM, 2, reactor=reactor, features=features)
    analyzer.startService()
    try:
        results = await within(analyzer.analyze(batch), reactor)
    finally:
        await within(analyzer.stopService(), reactor)
    assert results == analyze_texts(texts, CUSTOM)
    assert [a.features for a in results] == [features(p.text, p.lang) for p in batch]
