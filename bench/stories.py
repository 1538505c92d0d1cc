"""
Stories: cost per post, memory and cluster quality on labelled posts.

The 1,032 CrisisLex tweets of the 2013 LAX shooting mixed (shuffled) with
the 3,449 complaint tweets of ten domains, clustered by
monitor.stories.StoryClusterer; purity and normalised mutual information
against the labels (the event, or the complaint's domain), the cost per
post against vaderSentiment's polarity_scores on the same texts in the same
run, and the Python heap the clusterer holds (tracemalloc).  The cost is
split as the hub spends it: the posts' features (monitor.stories.features,
worked out where posts are analysed, off the reactor) and the clusterer's
assignment of posts that carry them (on the reactor); "alone" is the
clusterer working the features out itself, as an older one did.

    python bench/stories.py [--threshold 0.3] [--repeat 5]

Run from an older checkout (with this file copied in) to compare.
"""

import argparse
import csv
import json
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

from monitor.model import Analysis, Post  # noqa: E402
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
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    data = rows()
    posts = []
    for i, (text, _) in enumerate(data):
        p = Post(source="s", network="s", native_id=str(i), text=text, author="a", created_at=1.7e9 + i)
        p.topics = ("T",)
        posts.append(p)
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    vader = SentimentIntensityAnalyzer()
    n = len(posts)
    print(f"{n} posts, threshold {args.threshold}, best of {args.repeat} runs")
    try:
        from monitor.stories import features
    except ImportError:  # an older clusterer: everything on the hub
        features = None
    for name, kw in (("default", {}), ("near-duplicates off", {"near_duplicate": 0})):
        make = lambda: StoryClusterer(threshold=args.threshold, **kw)  # noqa: E731
        try:
            make()
        except TypeError:  # an older clusterer, measured for comparison
            continue
        # The clusterer and VADER take turns on the same 100 posts, so that
        # both see the same load on a shared machine; the time is CPU time;
        # the ratios are the median run's.  Each turn, the posts' features
        # are worked out first (what the analysis stage does, off the
        # reactor), then the clusterer takes them (the reactor's share); and
        # every fourth run the clusterer works them out itself, as it does
        # for a post analysed elsewhere (the reactor does it all).
        runs, alone = [], []
        for run in range(args.repeat + (args.repeat + 3) // 4):
            whole = features is None or run >= args.repeat
            clusterer = make()
            spent_f = spent_c = spent_v = 0.0
            ids = []
            for start in range(0, n, 100):
                chunk = posts[start : start + 100]
                for p in chunk:
                    p.analysis = None
                if not whole:
                    t = time.process_time()
                    fs = [features(p.text, p.lang) for p in chunk]
                    spent_f += time.process_time() - t
                    for p, f in zip(chunk, fs):
                        p.analysis = Analysis(0.0, 0.0, 1.0, 0.0, "neutral", features=f)
                t = time.process_time()
                ids += [clusterer.add(p) for p in chunk]
                spent_c += time.process_time() - t
                t = time.process_time()
                for p in chunk:
                    vader.polarity_scores(p.text)
                spent_v += time.process_time() - t
            (alone if whole else runs).append(((spent_c + spent_f) / spent_v, spent_c / spent_v, spent_f / spent_v,
                                               spent_c, spent_f, spent_v))  # fmt: skip
        for p in posts:
            p.analysis = None
        median = lambda rs, i: sorted(r[i] for r in rs)[len(rs) // 2]  # noqa: E731
        best = lambda rs, i: min(r[i] for r in rs)  # noqa: E731
        if runs:
            print(f"{name}, split: hub {median(runs, 1):.2f}x VADER + analysis {median(runs, 2):.2f}x = "
                  f"{median(runs, 0):.2f}x; best run hub {best(runs, 3) / n * 1e6:.1f} us/post, "
                  f"features {best(runs, 4) / n * 1e6:.1f} us/post, vaderSentiment {best(runs, 5) / n * 1e6:.1f} us/post "
                  f"({len(runs)} runs)")  # fmt: skip
        ratio, best_c, best_v = median(alone, 0), best(alone, 3), best(alone, 5)
        tracemalloc.start()
        clusterer = make()
        for p in posts:
            clusterer.add(p)
        heap, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        t = time.process_time()
        if hasattr(clusterer, "snapshot"):
            state = json.dumps(clusterer.snapshot())
            make().restore(json.loads(state))
        else:
            state = ""
        round_trip = time.process_time() - t
        purity, nmi = quality([(s, lb) for s, (_, lb) in zip(ids, data) if s])
        print(f"{name}: {len(clusterer.stories)} stories, purity {purity:.3f}, NMI {nmi:.3f}; "
              f"clusterer alone {best_c / n * 1e6:.1f} us/post, vaderSentiment {best_v / n * 1e6:.1f} us/post, "
              f"ratio {ratio:.2f} ({len(alone)} runs); heap {heap / 2**20:.1f} MiB; "
              f"snapshot {len(state) / 2**20:.1f} MiB of JSON, {round_trip * 1000:.0f} ms there and back")  # fmt: skip
    for s in clusterer.list(limit=3):
        print(f"  {s['size']:4d} posts: {', '.join(s['terms'][:6])}")


if __name__ == "__main__":
    main()
