"""
Raw vaderSentiment against monitor's FastVader, per core, on the same texts.

The texts are every post of ../shared/data (the 4,200 VADER tweets, the
complaints, the CrisisLex tweets), as the pipeline's plain text.  Each scorer
runs over all of them ROUNDS times, alternating, and the best round counts
(CPU time of this process, so other work on the machine costs as little as
possible).  FastVader runs with its cache off (every text is new) and, in a
separate figure, with the cache on for a second pass (every text a repost).
Then, per post on the same texts, the label rules with and without their
prefilter, plain text, and all of analyze_texts; and the cost of one post of
2,000 emoji, and of 10,000 for FastVader.

    python bench/vader.py [--rounds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import random
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer  # noqa: E402

from monitor.analysis.text import plain_text  # noqa: E402
from monitor.analysis.vader import FastVader  # noqa: E402


def shared_texts() -> list[str]:
    data = pathlib.Path(os.environ.get("MONITOR_SHARED", ROOT.parent / "shared")) / "data"
    raw = (data / "vader_icwsm2014" / "tweets_GroundTruth.txt").read_bytes().decode("utf-8")
    texts = [line.split("\t")[2] for line in raw.split("\r\n")]
    with open(data / "complaints" / "complaints-data.csv", newline="", encoding="utf-8") as f:
        texts += [row[1] for row in csv.reader(f)]
    for path in sorted((data / "crisislex").glob("*/*tweets_labeled.csv")):
        with open(path, newline="", encoding="utf-8") as f:
            rows = csv.reader(f)
            next(rows)
            texts += [row[1] for row in rows]
    return [plain_text(t) for t in texts]


def cpu_seconds(score, texts) -> float:
    started = time.process_time()
    for t in texts:
        score(t)
    return time.process_time() - started


def emoji_post(n: int, analyzer) -> str:
    emoji = [k for k in analyzer.emojis if len(k) == 1]
    rng = random.Random(n)
    return "".join(rng.choice(emoji) for _ in range(n))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)

    texts = shared_texts()
    reference = SentimentIntensityAnalyzer()
    fresh = FastVader(reference, cache_size=0)
    cached = FastVader(reference)
    best = {"vaderSentiment": float("inf"), "FastVader": float("inf")}
    for _ in range(args.rounds):
        best["vaderSentiment"] = min(best["vaderSentiment"], cpu_seconds(reference.polarity_scores, texts))
        best["FastVader"] = min(best["FastVader"], cpu_seconds(fresh.polarity_scores, texts))
    # Reposts: the cache holds 4,096 texts, so repeat a window that fits.
    window = texts[:4000]
    cpu_seconds(cached.polarity_scores, window)
    reposts = min(cpu_seconds(cached.polarity_scores, window) for _ in range(args.rounds))

    out = {
        "texts": len(texts),
        "vaderSentiment_posts_per_s": round(len(texts) / best["vaderSentiment"]),
        "FastVader_posts_per_s": round(len(texts) / best["FastVader"]),
        "FastVader_reposts_per_s": round(len(window) / reposts),
    }
    out["ratio"] = round(out["FastVader_posts_per_s"] / out["vaderSentiment_posts_per_s"], 2)
    out["ratio_reposts"] = round(out["FastVader_reposts_per_s"] / out["vaderSentiment_posts_per_s"], 2)

    # Per post, the other stages of analysis on the same texts.
    from monitor.analysis import Classifier, analyze_texts

    classifier = Classifier()
    compounds = [fresh.polarity_scores(t)["compound"] for t in texts]
    pairs = list(zip(texts, compounds))

    def per_post_us(run) -> float:
        best = float("inf")
        for _ in range(args.rounds):
            started = time.process_time()
            run()
            best = min(best, time.process_time() - started)
        return round(best / len(texts) * 1e6, 2)

    out["us_vaderSentiment"] = round(1e6 / out["vaderSentiment_posts_per_s"], 2)
    out["us_FastVader"] = round(1e6 / out["FastVader_posts_per_s"], 2)
    out["us_labels_every_regex"] = per_post_us(lambda: [classifier.labels_by_every_regex(t, c) for t, c in pairs])
    out["us_labels"] = per_post_us(lambda: [classifier.labels(t, c) for t, c in pairs])
    out["us_plain_text"] = per_post_us(lambda: [plain_text(t) for t in texts])
    out["us_analyze_texts"] = per_post_us(lambda: analyze_texts(texts, classifier))

    two_k = emoji_post(2000, reference)
    ten_k = emoji_post(10_000, reference)
    out["emoji_2000_vaderSentiment_s"] = round(cpu_seconds(reference.polarity_scores, [two_k]), 3)
    out["emoji_2000_FastVader_ms"] = round(min(cpu_seconds(fresh.polarity_scores, [two_k]) for _ in range(5)) * 1e3, 2)
    out["emoji_10000_FastVader_ms"] = round(min(cpu_seconds(fresh.polarity_scores, [ten_k]) for _ in range(5)) * 1e3, 2)

    for key, value in out.items():
        print(f"{key:32} {value}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
