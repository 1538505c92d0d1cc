"""
Where the hub's time per post goes, stage by stage, before and after, in one
run on the same posts: replay line parsing (C{parse_post}), topic matching
(C{Matcher.match}) and the label rules (C{Classifier.labels}).

    python bench/hotpath.py [--posts 20000] [--rounds 5] [--before main] [--json out.json]

The posts are the ones C{bench/pipeline.py} replays (two thirds the labelled
tweets of ../shared/data naming one of three brands, one third demo posts),
as replay lines, matched against the pipeline's three brand topics and
against 500 generated term topics (those of C{bench/match.py}).  "Before"
is the same modules as they are at the git revision C{--before} (read with
C{git show}, so no second checkout is needed); "after" is this checkout.
Each round times every stage before and after, alternating, on all posts;
the figure is the median of the rounds, in µs per post of CPU time of this
one process.  Before timing, it checks that before and after give the same
results on every post.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import statistics
import subprocess
import sys
import time
import types

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from monitor.analysis.text import plain_text  # noqa: E402
from monitor.analysis.vader import FastVader  # noqa: E402
from monitor.collect.demo_content import DemoContent, brand_terms  # noqa: E402
from monitor.collect.jsonl import format_post  # noqa: E402
from monitor.model import Post, Topic  # noqa: E402

BRANDS = ["Acme", "Globex", "Initech"]
SHARED = pathlib.Path(os.environ.get("MONITOR_SHARED", ROOT.parent / "shared"))
MANY_TOPICS: list = []
MODULES = {
    "parse": "monitor/collect/jsonl.py",
    "match": "monitor/match.py",
    "labels": "monitor/analysis/classify.py",
}


def texts(n: int) -> list[str]:
    """The texts of C{bench/pipeline.py}, in its order."""
    rows = (SHARED / "data/vader_icwsm2014/tweets_GroundTruth.txt").read_text(encoding="utf-8").splitlines()
    real = [r.split("\t", 2)[2] for r in rows]
    rng = random.Random(7)
    demo = DemoContent(BRANDS, rng)
    return [
        f"{rng.choice(BRANDS)} {real[i % len(real)]}" if i % 3 else demo.make_post(1.7e9 + i, "bench").text
        for i in range(n)
    ]


def replay_lines(bodies: list[str]) -> list[bytes]:
    """The replay lines C{bench/pipeline.py} writes for these texts."""
    return [
        format_post(
            Post(
                source="bench",
                network="bench",
                native_id=str(i),
                text=text,
                author=f"user{i % 997}",
                created_at=1.7e9 + i,
                author_followers=(i * 7919) % 100000,
                likes=i % 13,
            )
        )
        for i, text in enumerate(bodies)
    ]


def module_at(revision: str, path: str, name: str) -> types.ModuleType:
    """The module at C{path} as it is at git C{revision}, imported as C{name}."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:{path}"], check=True, capture_output=True, text=True
    ).stdout
    module = types.ModuleType(name)
    module.__file__ = f"{revision}:{path}"
    sys.modules[name] = module
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def cpu_per_post(fn, items: list) -> float:
    """µs of this process's CPU per item for C{fn} over C{items}."""
    started = time.process_time()
    for item in items:
        fn(item)
    return (time.process_time() - started) / len(items) * 1e6


def stages(revision: str, n: int):
    """
    (name, before, after, items) for every stage, with before and after
    checked to agree on every item.
    """
    import monitor.analysis.classify as classify_now
    import monitor.collect.jsonl as jsonl_now
    import monitor.match as match_now

    before = {stage: module_at(revision, path, f"_before_{stage}") for stage, path in MODULES.items()}
    bodies = texts(n)
    lines = replay_lines(bodies)
    parsed = [jsonl_now.parse_post(line, "bench", "bench", 0.0) for line in lines]
    pipeline_topics = [Topic(name=b, terms=brand_terms(b), group="vendors") for b in BRANDS]
    import match as match_bench  # bench/match.py: its 500 term topics

    match_bench.DATA = str(SHARED / "data/vader_icwsm2014/tweets_GroundTruth.txt")
    words = match_bench.vocabulary(match_bench.texts())
    many_topics = match_bench.term_topics(Topic, 500, words, random.Random(1))
    MANY_TOPICS[:] = many_topics
    vader = FastVader(cache_size=0)
    plain = [plain_text(t) for t in bodies]
    labelled = [(t, vader.polarity_scores(t)["compound"]) for t in plain]

    out = []

    def parse_with(module):
        return lambda line: module.parse_post(line, "bench", "bench", 0.0)

    out.append(("replay line parsing (`parse_post`)", parse_with(before["parse"]), parse_with(jsonl_now), lines))
    for label, topics in (("3 brand topics (the pipeline's)", pipeline_topics), ("500 term topics", many_topics)):
        old, new = before["match"].Matcher(topics), match_now.Matcher(topics)
        out.append((f"topic matching, {label}", old.match, new.match, parsed))
    old, new = before["labels"].Classifier(), classify_now.Classifier()
    out.append(("label rules (`Classifier.labels`)", lambda p: old.labels(*p), lambda p: new.labels(*p), labelled))
    for name, old_fn, new_fn, items in out:
        for item in items:
            a, b = old_fn(item), new_fn(item)
            if a != b:
                raise SystemExit(f"{name}: before and after differ on {item!r}: {a!r} != {b!r}")
    return out


def _ms(fn) -> float:
    started = time.process_time()
    fn()
    return (time.process_time() - started) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--posts", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--before", default="main", help="git revision of the 'before' modules")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    measured = stages(args.before, args.posts)
    results = {name: {"before": [], "after": []} for name, *_ in measured}
    for _ in range(args.rounds):
        for name, old_fn, new_fn, items in measured:
            results[name]["before"].append(cpu_per_post(old_fn, items))
            results[name]["after"].append(cpu_per_post(new_fn, items))
    print(f"{args.posts} posts, {args.rounds} rounds, before = {args.before}; µs per post, median of rounds (min-max)")
    print("| stage | before | after | after/before |\n|---|---|---|---|")
    summary = {}
    for name, r in results.items():
        b, a = statistics.median(r["before"]), statistics.median(r["after"])
        summary[name] = {"before_us": b, "after_us": a, "before_rounds": r["before"], "after_rounds": r["after"]}
        print(
            f"| {name} | {b:.1f} ({min(r['before']):.1f}-{max(r['before']):.1f}) "
            f"| {a:.1f} ({min(r['after']):.1f}-{max(r['after']):.1f}) | {a / b:.2f} |"
        )
    print("\nbuilding (on a topic or word list change, not per post), ms, median of 5:")
    import monitor.analysis.classify as classify_now
    import monitor.match as match_now

    old = sys.modules["_before_match"], sys.modules["_before_labels"]
    for label, build_old, build_new in (
        ("Matcher, 500 term topics", lambda: old[0].Matcher(MANY_TOPICS), lambda: match_now.Matcher(MANY_TOPICS)),
        ("Classifier, default lists", old[1].Classifier, classify_now.Classifier),
    ):
        b = statistics.median(_ms(build_old) for _ in range(5))
        a = statistics.median(_ms(build_new) for _ in range(5))
        summary[label] = {"before_ms": b, "after_ms": a}
        print(f"| {label} | {b:.1f} | {a:.1f} |")
    print(f"load average: {os.getloadavg()[0]:.1f}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
