"""
The matcher's cost per post: N topics of terms, or of queries, over the
labelled tweets of ../shared/data/vader_icwsm2014 (half of them naming one
of the topics' brands, so that some posts are candidates and some match).

    python bench/match.py                     # 500 term topics and 500 query topics
    python bench/match.py --topics 500 --kind terms
    PYTHONPATH=/path/to/older/checkout python bench/match.py --kind terms

The last form times an older matcher (one without queries) on the same
topics and posts, for a before/after comparison.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data", "vader_icwsm2014", "tweets_GroundTruth.txt")


def texts() -> list[str]:
    with open(DATA, encoding="utf-8") as f:
        return [line.rstrip("\r\n").split("\t")[2] for line in f if line.count("\t") >= 2]


def vocabulary(all_texts: list[str]) -> list[str]:
    """
    Real words of the tweets, from the 100th most common on: words that
    occur, but not in every post.
    """
    counts = collections.Counter(w for t in all_texts for w in re.findall(r"[a-z]{4,}", t.lower()))
    return [w for w, _ in counts.most_common()[100:3000]]


def term_topics(Topic, n: int, words: list[str], rnd: random.Random) -> list:
    return [
        Topic(
            name=f"t{i}",
            terms=(
                f"brand{i}",
                f"@brand{i}support",
                f'"{rnd.choice(words)} {rnd.choice(words)}"',
                f"#{rnd.choice(words)}",
            ),
            variants=(f"brnd{i}",),
            fuzzy=i % 20 == 0,
            exclude=("giveaway",),
        )
        for i in range(n)
    ]


def query_topics(Topic, n: int, words: list[str], rnd: random.Random) -> list:
    topics = []
    for i in range(n):
        a, b, c, d, e = (rnd.choice(words) for _ in range(5))
        query = f'(brand{i} OR @brand{i}support OR {a}) AND ({b[:5]}* OR "{c} {d}" OR {e}) -giveaway'
        if i % 10 == 1:
            query = f"(outage OR down OR {a}) NEAR/3 (brand{i} OR {b})"
        if i % 20 == 2:
            query = f"(brand{i} OR {a}~1) NOT {b}"
        if i % 25 == 3:
            query += " likes:>=10"
        topics.append(Topic(name=f"q{i}", query=query))
    return topics


def posts(Post, all_texts: list[str], n_topics: int, rnd: random.Random) -> list:
    out = []
    for i, text in enumerate(all_texts):
        if i % 2:
            text = f"{text} brand{rnd.randrange(n_topics)}"
        out.append(
            Post(source="bench", network="bench", native_id=str(i), text=text, author="a", created_at=0.0, lang="en")
        )
    return out


def run(matcher, sample: list, seconds: float) -> tuple[float, int]:
    """
    µs per post: the fastest of repeated passes over C{sample} for
    C{seconds} (the machine is shared: the minimum is the least disturbed
    pass), and how many posts matched.
    """
    matched = sum(1 for p in sample if matcher.match(p))
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while True:
        started = time.perf_counter()
        for p in sample:
            matcher.match(p)
        ended = time.perf_counter()
        best = min(best, ended - started)
        if ended >= deadline:
            return best / len(sample) * 1e6, matched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--topics", type=int, default=500)
    parser.add_argument("--kind", choices=("terms", "queries", "both"), default="both")
    parser.add_argument("--seconds", type=float, default=3.0, help="time each measurement this long")
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args()

    from monitor.match import Matcher
    from monitor.model import Post, Topic

    rnd = random.Random(args.seed)
    all_texts = texts()
    words = vocabulary(all_texts)
    sample = posts(Post, all_texts, args.topics, rnd)
    kinds = ["terms", "queries"] if args.kind == "both" else [args.kind]
    print(f"python {sys.version.split()[0]}, {len(sample)} posts, {args.topics} topics per run")
    print("| topics | build | µs per post | posts matched |")
    print("|---|---|---|---|")
    for kind in kinds:
        make = term_topics if kind == "terms" else query_topics
        topics = make(Topic, args.topics, words, random.Random(args.seed))
        started = time.perf_counter()
        matcher = Matcher(topics)
        built = time.perf_counter() - started
        per_post, matched = run(matcher, sample, args.seconds)
        print(f"| {args.topics} {kind} | {built * 1000:.0f} ms | {per_post:.1f} | {matched} of {len(sample)} |")


if __name__ == "__main__":
    main()
