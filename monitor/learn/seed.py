"""
Corrections shipped with a configuration (C{[learning] seed}): a JSON Lines
file of posts with the sentiment and labels a person gave them, loaded at a
store's first start, so that a fresh demo trains a model within a minute
and its dashboard shows the learned model at work beside VADER's answer.

Each line is C{{"id", "text", "lang", "sentiment", "labels"}}.  The posts
are stored under the network C{seed} (so their ids never meet a
collector's), written long enough ago (L{AGE}) to stay out of every
dashboard range, with no topic; the corrections are by C{seed}.  A store
that already has a correction or a trained model is left alone.

The demo's file (C{seed = "demo"}), monitor/learn/demo-corrections.jsonl,
shipped in the package, is L{demo_corrections}: posts
the demo source writes, corrected by what the demo meant each to be (a
complaint is negative and a complaint, praise positive, and so on), which
is what a person labels them and what VADER often misses.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Optional

from twisted.application.service import Service
from twisted.internet.defer import ensureDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from monitor.analysis import Classifier, analyze_texts
from monitor.learn.feedback import check_feedback
from monitor.model import Post

__all__ = ["DEMO", "SeedCorrections", "demo_corrections", "read_seed", "seed_path"]

#: How old the seeded posts are made (seconds): older than the longest
#: dashboard range (30 days), so they do not show among live figures.
AGE = 45 * 86400

#: The demo's corrections, shipped in the package.
DEMO = Path(__file__).with_name("demo-corrections.jsonl")

#: The network (and source) of seeded posts.
NETWORK = "seed"

#: What the demo meant each kind of post to be: (sentiment, complaint label).
_DEMO_TRUTH: dict[str, tuple[str, Optional[bool]]] = {
    "complaint": ("negative", True),
    "outage": ("negative", None),
    "crisis": ("negative", None),
    "praise": ("positive", False),
    "news": ("neutral", False),
    "official": ("neutral", False),
    "mention": ("neutral", False),
    "question": ("neutral", False),
    "purchase_intent": ("neutral", False),
}


def demo_corrections(count: int = 240, seed: int = 13) -> list[dict[str, Any]]:
    """
    The demo's shipped corrections: C{count} distinct English demo posts
    (outside and inside bursts) with what the demo meant them to be.
    """
    from monitor.collect.demo_content import DemoContent

    content = DemoContent(["Acme", "Globex", "Initech"], random.Random(seed), base_rate=5.0, burst_every=300.0)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    now = 1.7e9
    while len(out) < count:
        now += 7.0
        post = content.make_post(now, "demo")
        kind = post.extra["demo_kind"]
        if post.lang != "en" or kind not in _DEMO_TRUTH or post.text in seen:
            continue
        seen.add(post.text)
        sentiment, complaint = _DEMO_TRUTH[kind]
        out.append({"id": f"demo-{len(out) + 1}", "text": post.text, "lang": "en", "sentiment": sentiment,
                    "labels": {} if complaint is None else {"complaint": complaint}})  # fmt: skip
    return out


def seed_path(value: str, resolve) -> Optional[Path]:
    """
    The file C{[learning] seed} names: C{None} for none, L{DEMO} for
    C{"demo"}, else the path (resolved as the configuration's paths are).
    """
    if not value:
        return None
    return DEMO if value == "demo" else Path(resolve(value))


def read_seed(path: Path) -> list[dict[str, Any]]:
    """
    The corrections of a seed file, checked like those of the API.

    @raise ValueError: naming the line and what is wrong with it.
    """
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if (
                    not isinstance(row, dict)
                    or not isinstance(row.get("id"), str)
                    or not isinstance(row.get("text"), str)
                ):
                    raise ValueError("needs a string id and text")
                sentiment, _, labels = check_feedback(
                    {"sentiment": row.get("sentiment"), "labels": row.get("labels") or {}}
                )
            except Exception as e:
                raise ValueError(f"{path}:{n}: {e}") from None
            out.append({"id": row["id"], "text": row["text"], "lang": row.get("lang"), "sentiment": sentiment,
                        "labels": {k: v for k, v in labels.items() if v is not None}})  # fmt: skip
    return out


class SeedCorrections(Service):
    """
    Load the seed file into a store that has no corrections and no trained
    model yet, then let the learner know.
    """

    name = "seed-corrections"
    log = Logger()

    def __init__(self, store, learning, feedback, path: Optional[Path], classifier: Classifier, reactor) -> None:
        self.store = store
        self.learning = learning
        self.feedback = feedback
        self.path = path
        self.classifier = classifier
        self.reactor = reactor

    def startService(self):
        super().startService()
        if self.path is None:
            return
        # In the background: the hub's first start does not wait for it.
        d = ensureDeferred(self.load())
        d.addErrback(
            lambda f: self.log.failure("could not load the seed corrections from {path}", f, path=str(self.path))
        )

    async def load(self) -> int:
        """
        Store the seed's posts and corrections if the store has none; how
        many were loaded.
        """
        if not await self.learning.is_fresh():
            return 0
        rows = read_seed(self.path)
        if not rows:
            return 0
        now = self.reactor.seconds()
        texts = [r["text"] for r in rows]
        if hasattr(self.reactor, "getThreadPool"):
            analyses = await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), analyze_texts, texts,
                                               self.classifier)  # fmt: skip
        else:
            analyses = analyze_texts(texts, self.classifier)
        posts = [
            Post(source=NETWORK, network=NETWORK, native_id=r["id"], text=r["text"], author="seed",
                 created_at=now - AGE - i, lang=r["lang"], received_at=now, analysis=a)
            for i, (r, a) in enumerate(zip(rows, analyses))
        ]  # fmt: skip
        await self.store.store_batch(posts, {}, collected={})
        uids = [p.uid for p in posts]
        await self.learning.seed_corrections(
            [(uid, r["sentiment"], r["labels"], NETWORK) for uid, r in zip(uids, rows)], now
        )
        self.log.info("loaded {count} shipped corrections from {path}", count=len(rows), path=str(self.path))
        self.feedback.notify()
        return len(rows)
