"""
The detector: rules applied to a stream of posts, in post time.

Pure and deterministic: no reactor, no store, no I/O.  The live engine feeds
it every stored batch; the backtest feeds it stored posts in a thread; both
get the same incidents from the same posts in the same order, whatever the
batching.

Its clock (C{now}) is the newest post time seen.  Before a post is counted,
the clock moves to the post's time, evaluating every window boundary on
the way, so a window is judged with exactly the posts that came before its
end.  When posts stop coming, the live engine moves the clock on with the
wall clock (L{Detector.advance}), so incidents still resolve.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Iterable, Optional

from monitor.alerts.explain import explain_posts, explain_story, story_terms
from monitor.alerts.incidents import IncidentBook, new_incident_id, post_score
from monitor.alerts.rules import BUCKET, Rule, engagement
from monitor.alerts.seen import SeenPosts
from monitor.alerts.windows import Evaluation, TopicHistory, WindowSums, minute
from monitor.analysis.trending import candidates
from monitor.config import default
from monitor.model import NEGATIVE, iso8601

__all__ = ["Detector", "MAX_SKEW"]

#: A post stamped further than this in the future (a wrong clock) counts
#: as written now plus this.
MAX_SKEW = 300.0

#: History kept per topic at least, in minutes (a day and an hour).
MIN_HORIZON = 25 * 60

#: While its incident is open, a window rule's signal needs only this share
#: of the opening threshold to keep it open.
HYSTERESIS = 0.5

#: Recent posts kept per topic to pick an incident's samples from.
RECENT = 500

#: Posts whose terms are kept between two explanations (most of a
#: window's posts are in the next one too); emptied when full.
TERMS_CACHE = 2 * RECENT

#: Posts remembered by uid: a post seen again (an overlapping source, a
#: source reporting new counts) is not counted twice, and its engagement
#: velocity is measured between the two sightings.
SEEN = 100_000


def _duration_text(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class Detector:
    """
    Rules, per-topic windows and the incident book, driven by posts.

    @ivar now: the detector's clock (newest post time), or C{None} before
        the first post.
    @ivar book: the L{IncidentBook}; callers drain its changes.
    """

    def __init__(self, rules: Iterable[Rule] = (), samples: int = default("alerts", "samples"), new_id=new_incident_id,
                 stories=None, exclude: frozenset = frozenset()) -> None:  # fmt: skip
        """
        @param stories: the story clusterer (L{monitor.stories.StoryClusterer})
            whose stories C{story} rules watch and explanations name; without
            it story rules never fire.
        @param exclude: words never shown as an incident's rising terms (the
            topics' own words).
        """
        self.book = IncidentBook(samples, new_id)
        self.stories = stories
        self.exclude = frozenset(exclude)
        self._terms: dict[str, dict] = {}
        self.samples = samples
        self.now: Optional[float] = None
        self.histories: dict[str, TopicHistory] = {}
        self.sums: dict[tuple[str, str], WindowSums] = {}
        self.recent: dict[str, deque] = {}
        self.seen = SeenPosts(SEEN)
        self.rules: dict[str, Rule] = {}
        #: Hits per rule name since the caller last took them.
        self.hits: Counter[str] = Counter()
        self.set_rules(rules)

    # -- rules -----------------------------------------------------------

    def set_rules(self, rules: Iterable[Rule]) -> None:
        """
        Apply a new set of rules from the next post on.  Window sums of
        rules whose window is unchanged are kept; new ones are computed from
        the topic's history, so an edited rule needs no new warm-up.
        """
        self.rules = {r.name: r for r in rules}
        active = [r for r in self.rules.values() if r.enabled]
        self._post_rules = [r for r in active if r.is_post_rule]
        self._window_rules = [r for r in active if r.is_window_rule]
        self._story_rules = [r for r in active if r.is_story_rule]
        self._for_topic: dict[str, tuple[list[Rule], list[Rule]]] = {}
        self.horizon = max([MIN_HORIZON] + [(r.window + r.baseline) // BUCKET + 1 for r in self._window_rules])
        for key, sums in list(self.sums.items()):
            rule = self.rules.get(key[0])
            if (
                rule is None
                or rule not in self._window_rules
                or not rule.applies_to(key[1])
                or (sums.window, sums.baseline) != (rule.window // BUCKET, rule.baseline // BUCKET)
            ):
                del self.sums[key]
        if self.now is not None:
            for topic in self.histories:
                self._ensure_sums(topic)

    def _rules_for(self, topic: str) -> tuple[list[Rule], list[Rule]]:
        cached = self._for_topic.get(topic)
        if cached is None:
            cached = self._for_topic[topic] = (
                [r for r in self._post_rules if r.applies_to(topic)],
                [r for r in self._window_rules if r.applies_to(topic)],
            )
        return cached

    def _ensure_sums(self, topic: str) -> None:
        history = self.histories[topic]
        for rule in self._rules_for(topic)[1]:
            key = (rule.name, topic)
            if key not in self.sums:
                self.sums[key] = WindowSums(rule.window // BUCKET, rule.baseline // BUCKET, minute(self.now), history)

    # -- start -----------------------------------------------------------

    def warm(self, now: float, counts: dict, first: dict, since: Optional[float] = None) -> None:
        """
        Start from stored history instead of nothing: C{counts} maps a topic
        to C{{minute: (posts, negative)}} (everything known from C{since}),
        C{first} a topic to the time of its first post ever.  The clock is
        set to C{now} without evaluating anything before it.
        """
        self.now = now
        start = minute(since) if since is not None else None
        for topic in set(counts) | set(first):
            history = self.histories.setdefault(topic, TopicHistory())
            for m, (total, negative) in counts.get(topic, {}).items():
                history.add(m, total, negative)
            if topic in first and first[topic] is not None:
                history.first = min(minute(first[topic]), history.first if history.first is not None else minute(now))
            if start is not None and history.first is not None:
                history.start = max(start, history.first)
        for topic in self.histories:
            self._ensure_sums(topic)

    def remember(self, seen) -> None:
        """
        Posts already counted before a restart: C{(uid, engagement,
        seen_at)}, oldest first.  Seen again, they are not counted or hit
        again (engagement rules still see new counts).
        """
        rules = frozenset(r.name for r in self._post_rules if r.type != "engagement")
        for uid, eng, seen_at in seen:
            self.seen.put(uid, int(eng or 0), float(seen_at or 0), rules)

    # -- posts -----------------------------------------------------------

    def observe(self, posts: Iterable, wall: Optional[float] = None) -> None:
        """
        Take posts in the order they were stored.  C{wall} (the wall clock)
        caps times from the future.
        """
        for post in posts:
            t = float(post.created_at)
            if wall is not None and t > wall + MAX_SKEW:
                t = wall + MAX_SKEW
            if self.now is None:
                self.now = t
            elif t > self.now:
                self.advance(t)
            self._post(post, t, wall)

    def _post(self, post, t: float, wall: Optional[float]) -> None:
        uid = post.uid
        previous = self.seen.get(uid)
        eng = engagement(post)
        seen_at = post.received_at or wall or t
        if previous is None:
            velocity = eng / max(seen_at - float(post.created_at), 60.0) * 3600
        else:
            velocity = max(eng - previous[0], 0) / max(seen_at - previous[1], 60.0) * 3600
        hit_rules = previous[2] if previous is not None else frozenset()
        negative = post.analysis is not None and post.analysis.sentiment == NEGATIVE
        m = minute(t)
        for topic in post.topics:
            post_rules, window_rules = self._rules_for(topic)
            if previous is None:
                history = self.histories.get(topic)
                if history is None:
                    history = self.histories[topic] = TopicHistory()
                    history.add(m, 1, int(negative))
                    self._ensure_sums(topic)
                else:
                    history.add(m, 1, int(negative))
                    for rule in window_rules:
                        sums = self.sums.get((rule.name, topic))
                        if sums is not None:
                            sums.added(m, 1, int(negative))
                recent = self.recent.get(topic)
                if recent is None:
                    recent = self.recent[topic] = deque(maxlen=RECENT)
                recent.append(post)
                for rule in window_rules:
                    if (rule.name, topic, None) in self.book.open and (rule.type == "volume_spike" or negative):
                        self.book.attach(rule, topic, post)
                story = getattr(post, "story", None)
                if story is not None and self._story_rules:
                    for rule in self._story_rules:
                        self.book.attach(rule, topic, post, source=f"story:{story}")
            for rule in post_rules:
                if previous is not None and (rule.type != "engagement" or rule.name in hit_rules):
                    continue
                if rule.matches(post, velocity):
                    self.hits[rule.name] += 1
                    self.book.hit(rule, t, topic=topic, posts=[post])
                    hit_rules = hit_rules | {rule.name}
        self.seen.put(uid, eng, seen_at, hit_rules)

    def enriched(self, posts: Iterable, wall: Optional[float] = None) -> None:
        """
        Posts already observed whose author's profile came after them: the
        rules that need followers look at them again (the others, and the
        windows, counted them already).  A rule that hit a post before does
        not hit it again.
        """
        for post in posts:
            uid = post.uid
            previous = self.seen.get(uid)
            if previous is None:
                continue  # forgotten, or never counted: nothing to redo
            eng, seen_at, hit_rules = previous
            t = float(post.created_at)
            if wall is not None and t > wall + MAX_SKEW:
                t = wall + MAX_SKEW
            before = hit_rules
            for topic in post.topics:
                for rule in self._rules_for(topic)[0]:
                    if not rule.needs_followers or rule.name in hit_rules:
                        continue
                    if rule.matches(post):
                        self.hits[rule.name] += 1
                        self.book.hit(rule, t, topic=topic, posts=[post])
                        hit_rules = hit_rules | {rule.name}
            if hit_rules is not before:
                self.seen.put(uid, eng, seen_at, hit_rules)

    # -- time ------------------------------------------------------------

    def advance(self, t: float) -> None:
        """
        Move the clock to C{t}: evaluate every window boundary crossed, in
        time order, then resolve incidents quiet for their cooldown.
        """
        if self.now is None or t <= self.now:
            return
        old, new = minute(self.now), minute(t)
        self.now = t
        if new > old:
            evaluations = []
            for (name, topic), sums in self.sums.items():
                history = self.histories[topic]
                for ev in sums.advance(history, new):
                    evaluations.append((ev.boundary, name, topic, ev))
            evaluations.sort(key=lambda e: e[:3])
            for _, name, topic, ev in evaluations:
                self._evaluate(self.rules[name], topic, ev)
            if self._story_rules and self.stories is not None:
                self._evaluate_stories(old, new)
            before = new - self.horizon
            for history in self.histories.values():
                history.prune(before)
            # Once a minute is enough: a key's next hit resolves its
            # expired incident first anyway, at the same time.
            self.book.sweep(t, clock="posts")

    def _is_open(self, rule: Rule, topic: str, at: float) -> bool:
        incident = self.book.open.get((rule.name, topic, None))
        return incident is not None and at - incident.last_hit_at < incident.cooldown

    def _evaluate(self, rule: Rule, topic: str, ev: Evaluation) -> None:
        if ev.age < rule.warmup // BUCKET:
            return
        # Hysteresis: an open incident is kept alive by a signal at half its
        # opening threshold, so a count hovering at the threshold is one
        # incident, not one every cooldown.
        keep = HYSTERESIS if self._is_open(rule, topic, ev.time) else 1.0
        if rule.type == "volume_spike":
            baseline = ev.base_median
            up = ev.count >= keep * max(rule.min_count, rule.factor * baseline)
            down = (
                rule.drops
                and baseline >= rule.min_count
                and ev.count <= baseline / rule.factor / keep
                and (keep == 1.0 or ev.count < baseline)
            )
            if not (up or down):
                return
            signal = {
                "value": ev.count,
                "unit": "posts in window",
                "direction": "up" if up else "down",
                "window": _duration_text(rule.window),
                "count": ev.count,
                "baseline": round(baseline, 2),
                "ratio": round(ev.count / baseline, 2) if baseline else None,
                "at": iso8601(ev.time),
            }
            self.hits[rule.name] += 1
            self.book.hit(
                rule, ev.time, topic=topic, posts=self._samples(topic, ev, rule, False),
                count=0, open_count=ev.count, value=ev.count, signal=signal,
                explanation=self._explain(rule, topic, ev, False, ev.count),
            )  # fmt: skip
        elif rule.type == "sentiment_shift":
            if ev.count < keep * rule.min_count:
                return
            share = ev.negative / ev.count
            base_share = ev.base_negative / ev.base_count if ev.base_count else 0.0
            slack = (1 - keep) * rule.margin
            if share < rule.threshold - slack or share < base_share + rule.margin - slack:
                return
            signal = {
                "value": round(share, 3),
                "unit": "negative share",
                "window": _duration_text(rule.window),
                "count": ev.count,
                "negative": ev.negative,
                "baseline_share": round(base_share, 3),
                "at": iso8601(ev.time),
            }
            self.hits[rule.name] += 1
            self.book.hit(
                rule, ev.time, topic=topic, posts=self._samples(topic, ev, rule, True),
                count=0, open_count=ev.negative, value=share, signal=signal,
                explanation=self._explain(rule, topic, ev, True, share),
            )  # fmt: skip

    def _peaks(self, rule: Rule, topic: str, source: Optional[str], at: float, value: float) -> bool:
        """
        Whether a hit of C{value} opens an incident or reaches its peak:
        an incident is explained at its strongest (its opening, then each
        new peak), not as it fades.
        """
        incident = self.book.open.get((rule.name, topic, source))
        if incident is None or at - incident.last_hit_at >= incident.cooldown:
            return True
        return value >= incident.peak.get("value", 0)

    def _explain(self, rule: Rule, topic: str, ev: Evaluation, negative_only: bool, value: float) -> Optional[dict]:
        """
        Why a window rule hit, if this hit is a peak (L{_peaks}): the
        topic's recent posts in the window against those before it within
        the baseline (L{explain_posts}).
        """
        if not self._peaks(rule, topic, None, ev.time, value):
            return None
        keep = _is_negative if negative_only else None
        return explain_posts(
            self.recent.get(topic, ()), ev.time - rule.window, ev.time, ev.time - rule.window - rule.baseline,
            _duration_text(rule.window), self.exclude, keep, self.stories, topic, self._terms_of,
        )  # fmt: skip

    def _terms_of(self, post) -> dict:
        terms = self._terms.get(post.uid)
        if terms is None:
            if len(self._terms) >= TERMS_CACHE:
                self._terms.clear()
            terms = self._terms[post.uid] = candidates(post.text, post.lang, self.exclude)
        return terms

    def _evaluate_stories(self, old: int, new: int) -> None:
        """
        The story rules at each minute boundary crossed from C{old} to
        C{new}: a story whose posts per minute over the rule's window reach
        its C{rate}, once it has C{min_size} posts, is a hit (kept open at
        half the rate, like the window rules).  Only stories of C{min_size}
        posts with posts in some window ending in the span are looked at.
        """
        longest = max(r.window for r in self._story_rules) // BUCKET
        hits = []
        for story in list(self.stories.stories.values()):
            last = minute(story.last_seen)
            if last < old + 1 - longest:
                continue
            for rule in self._story_rules:
                # Most stories are a post or two: too small to look at.
                if story.size < rule.min_size:
                    continue
                topics = [t for t in story.topics if rule.applies_to(t)]
                if not topics:
                    continue
                topic = max(topics, key=lambda t: (story.topics[t], t))
                w = rule.window // BUCKET
                for b in range(old + 1, min(new, last + w) + 1):
                    hits.append((b, rule.name, story.id, rule, topic, story))
        hits.sort(key=lambda h: h[:3])
        for b, _, _, rule, topic, story in hits:
            self._evaluate_story(rule, topic, story, b)

    def _evaluate_story(self, rule: Rule, topic: str, story, boundary: int) -> None:
        w = rule.window // BUCKET
        minutes = story.minutes
        count = sum(minutes.get(m, 0) for m in range(boundary - w, boundary))
        rate = count / w
        at = float(boundary * BUCKET)
        source = f"story:{story.id}"
        incident = self.book.open.get((rule.name, topic, source))
        keep = HYSTERESIS if incident is not None and at - incident.last_hit_at < incident.cooldown else 1.0
        if rate < keep * rule.rate or story.size < rule.min_size or count == 0:
            return
        before = sum(minutes.get(m, 0) for m in range(boundary - w - 60, boundary - w))
        baseline = before / 60 * w
        terms = story_terms(story)
        signal = {
            "value": round(rate, 2),
            "unit": "posts per minute",
            "window": _duration_text(rule.window),
            "story": story.id,
            "terms": terms,
            "count": count,
            "baseline": round(baseline, 1),
            "size": story.size,
            "at": iso8601(at),
        }
        explanation, samples = None, []
        if self._peaks(rule, topic, source, at, round(rate, 2)):
            explanation = explain_story(story, count, baseline, at - rule.window, at, _duration_text(rule.window),
                                        self.recent.get(topic, ()))  # fmt: skip
            samples = [dict({"likes": 0, "reposts": 0, "replies": 0, "author_followers": None, "sentiment": None,
                             "labels": []}, **p) for p in explanation["top_posts"]]  # fmt: skip
        self.hits[rule.name] += 1
        self.book.hit(rule, at, topic=topic, source=source, posts=samples, count=0, open_count=count, value=rate,
                      signal=signal, explanation=explanation)  # fmt: skip

    def _samples(self, topic: str, ev: Evaluation, rule: Rule, negative_only: bool) -> list:
        start, end = ev.time - rule.window, ev.time
        candidates = [
            p
            for p in self.recent.get(topic, ())
            if start <= p.created_at < end
            and (not negative_only or (p.analysis is not None and p.analysis.sentiment == NEGATIVE))
        ]
        candidates.sort(key=post_score, reverse=True)
        return candidates[: self.samples]


def _is_negative(post) -> bool:
    return post.analysis is not None and post.analysis.sentiment == NEGATIVE
