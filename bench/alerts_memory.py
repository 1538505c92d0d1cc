"""
What the alert detector holds after N posts (Python heap, by tracemalloc):
its memory of seen posts (monitor.alerts.seen) and the recent posts per
topic it picks incident samples from.

    python bench/alerts_memory.py [--posts 100000] [--topics 1]
"""

import argparse
import pathlib
import sys
import tracemalloc

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from monitor.alerts.detector import Detector  # noqa: E402
from monitor.model import Analysis, Post  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--topics", type=int, default=1)
    args = parser.parse_args()
    detector = Detector([])
    tracemalloc.start()
    for i in range(args.posts):
        p = Post(source="bluesky", network="bluesky", native_id=f"at://did:plc:abcdefghijkl{i % 5000:08d}/app.bsky.feed.post/3l{i:012x}",
                 text=f"acme post {i} " + "words " * 30, author=f"a{i % 500}", created_at=1.7e9 + i * 0.01)  # fmt: skip
        p.topics = (f"topic{i % args.topics}",)
        p.analysis = Analysis(0.1, 0.1, 0.8, 0.1, "neutral", ())
        detector.observe([p])
    size, peak = tracemalloc.get_traced_memory()
    print(
        f"{args.posts} posts, {args.topics} topics: detector heap {size / 2**20:.1f} MiB (peak {peak / 2**20:.1f} MiB)"
    )


if __name__ == "__main__":
    main()
