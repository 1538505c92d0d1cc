"""
The reactor thread's share of the hub's time per post, before and after, in
one run on the same posts: the replay source reading its file into the
memory queue (read, C{parse_post}, C{emit}, the queue's C{put}), topic
matching, and the alert detector taking the stored posts (C{observe}).

    python bench/reactor.py [--posts 20000] [--rounds 5] [--before /tmp/hp-before]

The posts and replay lines are those of C{bench/hotpath.py} (so of
C{bench/pipeline.py}); the topics are the pipeline's three brands.  "Before"
is another checkout (C{git archive REV | tar -x -C DIR}); each round runs
every stage in a fresh process per tree, alternating, on a driven clock (no
wall-clock waits), and the figure is the median of the rounds in µs of this
thread's CPU per post.  The SQLite writer thread and VADER are left out:
C{bench/store.py} and C{bench/vader.py} measure them.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent


def child(root: str, path: str, n: int) -> dict:
    """Time the stages with the modules of C{root}; µs per post."""
    sys.path.insert(0, root)
    import time

    from twisted.internet.defer import ensureDeferred, succeed
    from twisted.internet.task import Clock

    from monitor.alerts.detector import Detector
    from monitor.collect.demo_content import brand_terms
    from monitor.collect.replay import ReplaySource
    from monitor.match import Matcher
    from monitor.metrics import Metrics
    from monitor.model import Analysis, Topic
    from monitor.queue.memory import MemoryQueue

    class Cursors:
        """The one store call a replay makes before reading."""

        def get_cursor(self, name):
            return succeed(None)

    clock = Clock()
    queue = MemoryQueue(size=n + 1, reactor=clock)
    source = ReplaySource("bench", queue, Cursors(), Metrics(), path, reactor=clock)
    out = {}
    started = time.thread_time()
    done = ensureDeferred(source.run())
    while not done.called:
        clock.advance(0)
    out["replay"] = time.thread_time() - started
    posts = queue._take(n)
    assert len(posts) == n, len(posts)

    matcher = Matcher([Topic(name=b, terms=list(brand_terms(b))) for b in ("Acme", "Globex", "Initech")])
    started = time.thread_time()
    for post in posts:
        post.topics = matcher.match(post)
    out["match"] = time.thread_time() - started
    for i, post in enumerate(posts):
        post.analysis = Analysis(0.5 - (i % 3) * 0.5, 0.1, 0.8, 0.1, ("positive", "neutral", "negative")[i % 3])
    matched = [p for p in posts if p.topics]

    detector = Detector([])
    started = time.thread_time()
    for i in range(0, len(matched), 500):
        detector.observe(matched[i : i + 500], wall=1.8e9)
    out["detector"] = time.thread_time() - started
    return {k: v / n * 1e6 for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--before", required=True, help="another checkout, the 'before' tree")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.posts)))
        return
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    from hotpath import replay_lines, texts

    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "posts.jsonl"
        path.write_bytes(b"".join(replay_lines(texts(args.posts))))
        runs: dict[str, list[dict]] = {"before": [], "after": []}
        for _ in range(args.rounds):
            for name, root in (("before", args.before), ("after", str(ROOT))):
                cmd = [sys.executable, __file__, "--posts", str(args.posts), "--before", "-"]
                cmd += ["--child", root, str(path)]
                result = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=tmp)
                runs[name].append(json.loads(result.stdout))
    print(f"{'stage':10} {'before µs':>10} {'after µs':>10}")
    for stage in runs["before"][0]:
        b = statistics.median(r[stage] for r in runs["before"])
        a = statistics.median(r[stage] for r in runs["after"])
        print(f"{stage:10} {b:10.1f} {a:10.1f}")


if __name__ == "__main__":
    main()
