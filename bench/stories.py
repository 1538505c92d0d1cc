"""
Stories: cost per post, memory and cluster quality on labelled posts.

The 1,032 CrisisLex tweets of the 2013 LAX shooting mixed (shuffled) with
the 3,449 complaint tweets of ten domains, clustered by
monitor.stories.StoryClusterer; purity and normalised mutual information
against the labels (the event, or the complaint's domain), the cost per
post against vaderSentiment's polarity_scores on the same texts in the same
run, and the Python heap the clusterer holds (tracemalloc).

    python bench/stories.py [--threshold 0.3] [--repeat 3]
"""

import argparse
import csv
import math
import os
import pathlib
import random
import sys
import time
import tracemalloc
from collections import Counter, defaultdict

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = pathlib.Path(os.environ.get("MONITOR_SHARED", ROOT.parent / "shared")) / "data"

from monitor.model import Post  # noqa: E402
from monitor.stories import StoryClusterer  # noqa: E402


def rows():
    out = []
    with open(DATA / "crisislex/T26_2013_LA_airport_shootings/2013_LA_airport_shootings-tweets_labeled.csv",
              encoding="utf-8") as f:  # fmt: skip
        reader = csv.reader(f)
        next(reader)
        out += [(r[1], "lax") for r in reader]
    with open(DATA / "complaints/complaints-data.csv", encoding="utf-8") as f:
        out += [(r[1], r[3]) for r in csv.reader(f)]
    random.Random(1).shuffle(out)
    return out


def quality(pairs):
    n = len(pairs)
    by = defaultdict(Counter)
    for s, label in pairs:
        by[s][label] += 1
    purity = sum(max(c.values()) for c in by.values()) / n
    a, b, ab = Counter(s for s, _ in pairs), Counter(lb for _, lb in pairs), Counter(pairs)
    mi = sum(c / n * math.log(c * n / (a[s] * b[lb])) for (s, lb), c in ab.items())
    h = lambda cs: -sum(c / n * math.log(c / n) for c in cs.values())  # noqa: E731
    return purity, 2 * mi / (h(a) + h(b))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threshold", type=float, default=0.3)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = rows()
    posts = []
    for i, (text, _) in enumerate(data):
        p = Post(source="s", network="s", native_id=str(i), text=text, author="a", created_at=1.7e9 + i)
        p.topics = ("T",)
        posts.append(p)
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    vader = SentimentIntensityAnalyzer()
    best_c = best_v = float("inf")
    for _ in range(args.repeat):
        clusterer = StoryClusterer(threshold=args.threshold)
        t = time.perf_counter()
        ids = [clusterer.add(p) for p in posts]
        best_c = min(best_c, time.perf_counter() - t)
        t = time.perf_counter()
        for p in posts:
            vader.polarity_scores(p.text)
        best_v = min(best_v, time.perf_counter() - t)
    tracemalloc.start()
    clusterer = StoryClusterer(threshold=args.threshold)
    for p in posts:
        clusterer.add(p)
    heap, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    purity, nmi = quality([(s, lb) for s, (_, lb) in zip(ids, data) if s])
    top = clusterer.list(limit=3)
    n = len(posts)
    print(f"{n} posts, threshold {args.threshold}: {len(clusterer.stories)} stories, "
          f"purity {purity:.3f}, NMI {nmi:.3f}")  # fmt: skip
    print(f"clusterer {best_c / n * 1e6:.1f} us/post, vaderSentiment {best_v / n * 1e6:.1f} us/post "
          f"(ratio {best_c / best_v:.2f}); heap {heap / 2**20:.1f} MiB")  # fmt: skip
    for s in top:
        print(f"  {s['size']:4d} posts: {', '.join(s['terms'][:6])}")


if __name__ == "__main__":
    main()
