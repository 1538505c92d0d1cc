"""
Window sums keyed by post time: the running sums always equal a recount,
late posts land in their own minute, and empty stretches are skipped.
"""

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.alerts.windows import TopicHistory, WindowSums, minute


def recount(history, boundary, window, baseline):
    count = negative = base = base_negative = 0
    for m, (t, n) in history.counts.items():
        if boundary - window <= m < boundary:
            count, negative = count + t, negative + n
        elif boundary - window - baseline <= m < boundary - window:
            base, base_negative = base + t, base_negative + n
    return count, negative, base, base_negative


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 120), st.booleans(), st.integers(0, 3)), min_size=1, max_size=80),
    st.integers(1, 10),
    st.integers(1, 40),
)
def test_running_sums_equal_a_recount(events, window, baseline):
    """Adding posts (also late ones) and advancing keeps the sums equal to a recount at every boundary."""
    history = TopicHistory()
    sums = WindowSums(window, baseline, 0, history)
    boundary = 0
    for m, negative, step in events:
        history.add(m, 1, int(negative))
        sums.added(m, 1, int(negative))
        boundary += step
        for ev in sums.advance(history, boundary):
            assert (ev.count, ev.negative, ev.base_count, ev.base_negative) == recount(
                history, ev.boundary, window, baseline
            )
        assert (sums.count, sums.negative, sums.base_count, sums.base_negative) == recount(
            history, sums.boundary, window, baseline
        )


def test_late_post_counts_in_its_own_minute():
    """A post older than the current window goes to the baseline, not to the window."""
    history = TopicHistory()
    sums = WindowSums(5, 60, 100, history)
    history.add(98)
    sums.added(98, 1, 0)
    history.add(50)
    sums.added(50, 1, 0)
    assert (sums.count, sums.base_count) == (1, 1)


def test_empty_stretches_are_skipped():
    """With nothing in window, baseline or ahead, a long jump yields no evaluations."""
    history = TopicHistory()
    history.add(10)
    sums = WindowSums(5, 60, 11, history)
    evaluations = list(sums.advance(history, 10_000))
    # Steps until the post has left window and baseline, then one jump.
    assert len(evaluations) == 65
    assert sums.boundary == 10_000


def test_history_known_and_age():
    """An evaluation says how much baseline is known and how old the topic is."""
    history = TopicHistory()
    history.add(100)
    sums = WindowSums(5, 60, 100, history)
    ev = next(sums.advance(history, 130))
    assert ev.boundary == 101 and ev.age == 1 and ev.history == 0
    *_, last = list(sums.advance(history, 130))
    assert last.boundary == 130 and last.history == 25 and last.age == 30


def test_prune_forgets_old_minutes():
    """Pruning drops minutes (and slices) before the horizon, an hour at a time, and moves the known start."""
    history = TopicHistory()
    for m in (1, 2, 50, 150):
        history.add(m)
    assert history.slices_of(5) == {0: 2, 10: 1, 30: 1}
    history.prune(30)
    assert sorted(history.counts) == [1, 2, 50, 150]  # less than an hour to forget: later
    history.prune(100)
    assert sorted(history.counts) == [150] and history.start == 100 and history.first == 1
    assert history.slices_of(5) == {30: 1}


def test_median_baseline_ignores_an_earlier_spike():
    """The baseline is the median of window-long slices: one big burst earlier does not raise it."""
    history = TopicHistory()
    for m in range(0, 120):
        for _ in range(200 if 60 <= m < 65 else 2):
            history.add(m)
    sums = WindowSums(5, 60, 120, history)
    ev = sums.evaluation(history)
    assert ev.base_slices == 12 and ev.base_median == 10.0
    assert ev.base_count / (ev.history / 5) > 90  # the mean would be ten times higher


def test_minute_is_floor():
    """Minutes are whole, by floor."""
    assert minute(119.9) == 1 and minute(120.0) == 2
