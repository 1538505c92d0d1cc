"""
Counting windows keyed by each post's own time (C{created_at}), not by
when it arrived.

Every topic keeps per-minute counts (all posts, negative posts) for as long
as the longest baseline needs.  A window rule keeps, per topic, the sums of
its current window and of its baseline, and moves them one minute at a time
as the detector's clock (the newest post time) crosses minute boundaries: a
step adds the minute entering and subtracts the minute leaving, so an
evaluation costs the same whatever the window and baseline.

The volume baseline is the median of the counts of the window-long slices
(aligned on multiples of the window) of the baseline period: unlike a mean,
it is not raised for a day by the spike of this morning.

Because boundaries are crossed by post time, a replay at any speed meets
the same boundaries with the same counts as the live stream did; a late post
(a backfill after an outage) lands in its own minute, which the current
window no longer covers, so it never looks like a spike now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

from monitor.alerts.rules import BUCKET

__all__ = ["Evaluation", "TopicHistory", "WindowSums", "minute"]


def minute(t: float) -> int:
    """
    The minute index of a unix time.
    """
    return int(t // BUCKET)


class TopicHistory:
    """
    Per-minute counts of one topic's posts.

    @ivar first: the minute of the oldest post ever seen (or loaded) for
        the topic, for the warm-up: a topic with no history cannot have a
        baseline.
    @ivar start: the oldest minute still kept; baselines reaching further
        back are shortened to what is known.
    """

    def __init__(self, first: Optional[int] = None) -> None:
        self.counts: dict[int, list[int]] = {}
        self.first = first
        self.start: Optional[int] = None
        self.last: Optional[int] = None
        # Posts per slice of each window width in use: {width: {slice: n}}.
        self.slices: dict[int, dict[int, int]] = {}

    def add(self, m: int, total: int = 1, negative: int = 0) -> None:
        c = self.counts.get(m)
        if c is None:
            self.counts[m] = [total, negative]
        else:
            c[0] += total
            c[1] += negative
        for width, slices in self.slices.items():
            k = m // width
            slices[k] = slices.get(k, 0) + total
        if self.first is None or m < self.first:
            self.first = m
        if self.start is None or m < self.start:
            self.start = m
        if self.last is None or m > self.last:
            self.last = m

    def get(self, m: int) -> tuple[int, int]:
        c = self.counts.get(m)
        return (c[0], c[1]) if c else (0, 0)

    def slices_of(self, width: int) -> dict[int, int]:
        """
        Posts per slice of C{width} minutes (slice k is minutes
        C{[k * width, (k + 1) * width)}), kept up to date from now on.
        """
        slices = self.slices.get(width)
        if slices is None:
            slices = self.slices[width] = {}
            for m, (total, _) in self.counts.items():
                slices[m // width] = slices.get(m // width, 0) + total
        return slices

    def prune(self, before: int) -> None:
        """
        Forget minutes before C{before} (an hour at a time, so that a step
        of one minute costs nothing).
        """
        if self.start is not None and before - self.start >= 60:
            for m in [m for m in self.counts if m < before]:
                del self.counts[m]
            for width, slices in self.slices.items():
                for k in [k for k in slices if (k + 1) * width <= before]:
                    del slices[k]
            self.start = before


@dataclass(slots=True)
class Evaluation:
    """
    The sums at one boundary: the window is the C{window} minutes before
    C{boundary}, the baseline the C{baseline} minutes before the window.

    @ivar history: minutes of baseline actually known (shorter for a new
        topic or after a restart with little stored).
    @ivar age: minutes since the topic's first post.
    @ivar base_median: the median posts per window-long slice of the known
        baseline, over C{base_slices} slices (0 when none is known).
    """

    boundary: int
    count: int
    negative: int
    base_count: int
    base_negative: int
    history: int
    age: int
    base_median: float = 0.0
    base_slices: int = 0

    @property
    def time(self) -> float:
        return float(self.boundary * BUCKET)


class WindowSums:
    """
    The running window and baseline sums of one rule over one topic.
    """

    __slots__ = ("window", "baseline", "boundary", "count", "negative", "base_count", "base_negative")

    def __init__(self, window_minutes: int, baseline_minutes: int, boundary: int, history: TopicHistory) -> None:
        self.window = window_minutes
        self.baseline = baseline_minutes
        self.boundary = boundary
        self._recount(history)

    def _recount(self, history: TopicHistory) -> None:
        b, w, p = self.boundary, self.window, self.baseline
        self.count = self.negative = self.base_count = self.base_negative = 0
        for m, (total, negative) in history.counts.items():
            if b - w <= m < b:
                self.count += total
                self.negative += negative
            elif b - w - p <= m < b - w:
                self.base_count += total
                self.base_negative += negative

    def added(self, m: int, total: int, negative: int) -> None:
        """
        A post was counted in minute C{m} of the history: keep the sums
        right, including for late posts.
        """
        b, w = self.boundary, self.window
        if b - w <= m < b:
            self.count += total
            self.negative += negative
        elif b - w - self.baseline <= m < b - w:
            self.base_count += total
            self.base_negative += negative

    def evaluation(self, history: TopicHistory) -> Evaluation:
        b, w = self.boundary, self.window
        known_from = max(b - w - self.baseline, history.start if history.start is not None else b - w)
        if history.first is not None:
            known_from = max(known_from, history.first)
        # The slices wholly inside the known part of the baseline.
        slices = history.slices_of(w)
        end = (b - w) // w
        begin = max(end - self.baseline // w, -(-known_from // w))
        counts = sorted(slices.get(k, 0) for k in range(begin, end))
        n = len(counts)
        median = 0.0
        if n:
            median = float(counts[n // 2]) if n % 2 else (counts[n // 2 - 1] + counts[n // 2]) / 2
        return Evaluation(
            boundary=b,
            count=self.count,
            negative=self.negative,
            base_count=self.base_count,
            base_negative=self.base_negative,
            history=max(0, b - w - known_from),
            age=b - history.first if history.first is not None else 0,
            base_median=median,
            base_slices=n,
        )

    def advance(self, history: TopicHistory, to: int) -> Iterator[Evaluation]:
        """
        Move the window end to minute C{to}, yielding the evaluation at each
        boundary crossed.  Stretches where window and baseline are empty and
        nothing lies ahead are skipped: nothing can fire there.
        """
        w, p = self.window, self.baseline
        while self.boundary < to:
            if self.count == 0 and self.base_count == 0 and (history.last is None or history.last < self.boundary):
                self.boundary = to
                return
            b = self.boundary
            entering = history.get(b)
            to_base = history.get(b - w)
            leaving = history.get(b - w - p)
            self.count += entering[0] - to_base[0]
            self.negative += entering[1] - to_base[1]
            self.base_count += to_base[0] - leaving[0]
            self.base_negative += to_base[1] - leaving[1]
            self.boundary = b + 1
            yield self.evaluation(history)
