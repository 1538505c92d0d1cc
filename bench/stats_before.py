"""
The same calls as bench/stats.py, answered the way a tree without rollups
answers them (its C{SQLiteStore._stats}, run on a plain read connection to
the same database), for a before/after on one machine under one load:

    PYTHONPATH=/path/to/older/tree python bench/stats_before.py --db /tmp/bench-stats.sqlite
"""

import argparse
import json
import sqlite3
import time

from monitor.store import StatsQuery
from monitor.store.sqlite import SQLiteStore

END = 1_700_000_000.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", default="/tmp/bench-stats.sqlite")
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()
    db = sqlite3.connect(args.db, isolation_level=None)
    out = {}
    for name, span in (("24h", 86400), ("7d", 7 * 86400)):
        for topic in (None, "acme"):
            times = []
            for k in range(args.calls):
                until = END - 17.25 - k * 7.5
                query = StatsQuery(topic=topic, since=until - span, until=until,
                                   bucket=1800 if span == 86400 else 3 * 3600, top=100)  # fmt: skip
                started = time.perf_counter()
                SQLiteStore._stats(db.cursor(), query)
                db.execute("COMMIT")
                times.append(time.perf_counter() - started)
            times.sort()
            out[f"{name} {topic or 'all'}"] = {"p50_ms": round(times[len(times) // 2] * 1000, 1),
                                               "max_ms": round(times[-1] * 1000, 1)}  # fmt: skip
            print(name, topic or "all", out[f"{name} {topic or 'all'}"], flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
