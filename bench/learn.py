"""
The cost per post of the learned models against VADER's.

Trains a sentiment model (on Hutto and Gilbert's rated tweets) and a
complaint model (on the complaints corpus) from ../shared/data as the
Learner would, then times, on one core and the same posts:

  * the built-in analysis (VADER's scores and label, the label rules:
    what every post costs anyway), and
  * applying the active models to it (L{monitor.learn.apply.apply_models}:
    the features of the post, then one weighted sum per model), with one
    model active and with both.

    python bench/learn.py                # 3,000 posts, best of 3
    python bench/learn.py --posts 10000 --repeat 5
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from monitor.analysis import Classifier, analyze_texts  # noqa: E402
from monitor.learn.apply import apply_models  # noqa: E402
from monitor.learn.datasets import complaints, vader_ground_truth  # noqa: E402
from monitor.learn.linear import LABEL_CLASSES, LinearModel  # noqa: E402
from monitor.learn.train import train_model  # noqa: E402
from monitor.model import SENTIMENTS  # noqa: E402

DATA = pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def best(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    tweets = [e for _, e in vader_ground_truth(DATA / "vader_icwsm2014/tweets_GroundTruth.txt")]
    corpus = [e for _, e, _ in complaints(DATA / "complaints/complaints-data.csv")]
    t = time.perf_counter()
    sentiment = LinearModel.from_dict(train_model("sentiment", "sentiment-1", tweets[:1000], SENTIMENTS, folds=2))
    complaint = LinearModel.from_dict(train_model("complaint", "complaint-1", corpus[:1000], LABEL_CLASSES, folds=2))
    trained = time.perf_counter() - t
    texts = [e.text for e in tweets + corpus]
    texts = (texts * (args.posts // len(texts) + 1))[: args.posts]
    classifier = Classifier()
    analyses = analyze_texts(texts, classifier)
    from monitor.analysis import scorer

    def cold():
        # Every post new to VADER's cache of repeated texts, as most are.
        cache = getattr(scorer(), "_cached", None)
        if hasattr(cache, "cache_clear"):
            cache.cache_clear()
        t = time.perf_counter()
        analyze_texts(texts, classifier)
        return time.perf_counter() - t

    builtin = min(cold() for _ in range(args.repeat))
    one = {("complaint", "en"): complaint}
    both = {("sentiment", "en"): sentiment, ("complaint", "en"): complaint}
    cost_one = best(args.repeat, lambda: [apply_models(a, x, None, one) for a, x in zip(analyses, texts)])
    cost_both = best(args.repeat, lambda: [apply_models(a, x, None, both) for a, x in zip(analyses, texts)])
    n = len(texts)
    print(
        f"{n} posts, best of {args.repeat}; two models trained on 1,000 posts each in {trained:.1f} s "
        f"({len(sentiment.weights):,} and {len(complaint.weights):,} features, "
        f"{len(sentiment.to_json()) // 1024:,} and {len(complaint.to_json()) // 1024:,} KiB as JSON)"
    )
    print("| what | µs per post | posts/s, one core | against the built-in |")
    print("|---|---|---|---|")
    for name, seconds in (
        ("built-in: VADER + label rules", builtin),
        ("+ one active model (complaint)", cost_one),
        ("+ two active models (sentiment, complaint)", cost_both),
    ):
        print(f"| {name} | {1e6 * seconds / n:.1f} | {n / seconds:,.0f} | {seconds / builtin:.2f}× |")


if __name__ == "__main__":
    main()
