"""
The contract of L{monitor.store.interfaces.ILearningStore}, run against
every store provider (see C{conftest.PROVIDERS}).
"""

from __future__ import annotations

import pytest_twisted
from zope.interface.verify import verifyObject

from monitor.learn.linear import LinearModel
from monitor.model import Analysis, Post
from monitor.store.interfaces import Correction, ILearningStore
from tests.store.conftest import LEARNING_KINDS, backend_fixture

# Only the store kinds that provide learning so far (see conftest).
backend = backend_fixture(LEARNING_KINDS)

T0 = 1_700_000_000.0


def _post(n, text="acme charged me twice", lang="en", topics=("Acme",), by=None, sentiment="neutral", analysed=True):
    analysis = Analysis(0.1, 0.0, 1.0, 0.0, sentiment, (), by=by) if analysed else None
    return Post(source="s", network="s", native_id=str(n), text=text, author="a", created_at=T0 + n, lang=lang,
                topics=topics, analysis=analysis)  # fmt: skip


def _model(name="sentiment", version="sentiment-1", language="en", examples=30, f1=0.8):
    return LinearModel(name, version, ("negative", "neutral", "positive"), [0.0, 0.0, 0.0], {"refund": [1.0, 0.0, -1.0]},
                       language=language, examples=examples, evaluation={"macro_f1": f1, "baseline_macro_f1": 0.5})  # fmt: skip


def test_provides_the_interface(backend):
    """Every method of ILearningStore is there with its signature."""
    assert verifyObject(ILearningStore, backend.learning)


@pytest_twisted.ensureDeferred
async def test_a_correction_merges_and_empties_away(backend):
    """Corrections merge into the post's; a label None forgets it; nothing left means nothing stored."""
    learning = backend.learning
    await backend.store.store_batch([_post(1, text="<b>hostile</b>")], {})
    assert await learning.put_correction("s:404", "negative", True, {}, "ann", T0) is None
    first = await learning.put_correction("s:1", "negative", True, {"complaint": True}, "ann", T0)
    assert first == Correction("s:1", "negative", {"complaint": True}, "ann", T0, T0, "<b>hostile</b>")
    merged = await learning.put_correction("s:1", None, False, {"refund": False, "complaint": None}, "bob", T0 + 60)
    assert merged == Correction("s:1", "negative", {"refund": False}, "bob", T0, T0 + 60, "<b>hostile</b>")
    assert await learning.correction("s:1") == merged
    cleared = await learning.put_correction("s:1", None, True, {"refund": None}, "bob", T0 + 120)
    assert (cleared.sentiment, cleared.labels, cleared.created_at, cleared.text) == (None, {}, None, "<b>hostile</b>")
    assert await learning.correction("s:1") is None
    assert await learning.delete_correction("s:1") is False


@pytest_twisted.ensureDeferred
async def test_many_corrections_pages_and_training_rows(backend):
    """Lookups by many ids, pages latest change first without repeats, filters, and the training rows."""
    learning = backend.learning
    await backend.store.store_batch([_post(n, text=f"post {n}", lang="de" if n == 3 else "en") for n in range(6)], {})
    for n in range(6):
        labels = {"complaint": n % 2 == 0} if n != 5 else {}
        await learning.put_correction(f"s:{n}", "positive" if n == 5 else None, n == 5, labels,
                                      "ann" if n < 3 else "bob", T0 + (n if n != 4 else 2))  # fmt: skip
    found = await learning.corrections([f"s:{n}" for n in range(0, 1200)])
    assert sorted(found) == [f"s:{n}" for n in range(6)] and found["s:2"].text is None
    seen, after = [], None
    while True:
        page, more = await learning.correction_page(2, after)
        seen += [c.post_id for c in page]
        if not more:
            break
        after = (page[-1].updated_at, page[-1].post_id)
    # s:4 and s:2 were changed at the same time: the larger id first.
    assert seen == ["s:5", "s:3", "s:4", "s:2", "s:1", "s:0"]
    by_bob, _ = await learning.correction_page(50, by="bob")
    assert [c.post_id for c in by_bob] == ["s:5", "s:3", "s:4"]
    complaints, more = await learning.correction_page(50, label="complaint")
    assert [c.post_id for c in complaints] == ["s:3", "s:4", "s:2", "s:1", "s:0"] and not more
    rows = await learning.training_rows()
    assert [r["uid"] for r in rows] == ["s:0", "s:1", "s:2", "s:4", "s:3", "s:5"]  # first made, then id
    assert rows[4] == {"uid": "s:3", "sentiment": None, "labels": {"complaint": False}, "updated_at": T0 + 3,
                       "text": "post 3", "lang": "de"}  # fmt: skip
    assert await learning.delete_correction("s:0") is True
    assert "s:0" not in await learning.corrections(["s:0"])


@pytest_twisted.ensureDeferred
async def test_seeding_is_for_a_fresh_store_and_keeps_existing(backend):
    learning = backend.learning
    await backend.store.store_batch([_post(1), _post(2)], {})
    assert await learning.is_fresh()
    await learning.put_correction("s:1", "negative", True, {}, "ann", T0)
    assert not await learning.is_fresh()
    await learning.seed_corrections([("s:1", "positive", {"b": True, "a": False}, "seed"),
                                     ("s:2", "positive", {"b": True, "a": False}, "seed")], T0 + 5)  # fmt: skip
    assert (await learning.correction("s:1")).sentiment == "negative"
    assert await learning.correction("s:2") == Correction("s:2", "positive", {"a": False, "b": True}, "seed", T0 + 5,
                                                          T0 + 5, "acme charged me twice")  # fmt: skip


@pytest_twisted.ensureDeferred
async def test_models_versions_activation_and_holds(backend):
    """One active version per model; switching off holds it until activated again; versions come oldest first."""
    learning = backend.learning
    assert await learning.is_fresh()
    await learning.add_model(_model(), T0, True, T0)
    assert not await learning.is_fresh()
    await learning.add_model(_model(version="sentiment-2", examples=40, f1=0.9), T0 + 10, True, T0 + 10)
    await learning.add_model(_model("complaint", "complaint-1", examples=20), T0 + 5, False, T0 + 20)
    await learning.add_model(_model(version="sentiment-de-1", language="de"), T0, False, T0 + 30)
    assert await learning.latest_versions() == {("sentiment", "en"): (40, T0 + 10), ("complaint", "en"): (20, T0 + 5),
                                                ("sentiment", "de"): (30, T0)}  # fmt: skip
    assert await learning.version_counts() == {("sentiment", "en"): 2, ("complaint", "en"): 1, ("sentiment", "de"): 1}
    active = [LinearModel.from_json(text) for text in await learning.active_models()]
    assert [m.version for m in active] == ["sentiment-2"] and active[0].weights == {"refund": [1.0, 0.0, -1.0]}
    assert await learning.set_active("sentiment", "en", False, "root", None, T0 + 40) is True
    assert await learning.is_held("sentiment", "en") and not await learning.is_held("complaint", "en")
    assert await learning.active_models() == []
    versions = await learning.model_versions()
    assert [(v["version"], v["state"], v["held"]) for v in versions[("sentiment", "en")]] == [
        ("sentiment-1", "inactive", True),
        ("sentiment-2", "inactive", True),
    ]
    assert versions[("sentiment", "en")][1]["evaluation"] == {"macro_f1": 0.9, "baseline_macro_f1": 0.5}
    assert await learning.set_active("sentiment", "en", True, "root", "sentiment-1", T0 + 50) is True
    assert not await learning.is_held("sentiment", "en")
    versions = await learning.model_versions()
    assert [(v["version"], v["state"], v["activated_by"]) for v in versions[("sentiment", "en")]] == [
        ("sentiment-1", "active", "root"),
        ("sentiment-2", "inactive", "learner"),
    ]
    assert await learning.set_active("sentiment", "en", True, "root", "sentiment-9", T0) is False
    assert await learning.set_active("nothing", "en", True, "root", None, T0) is False


@pytest_twisted.ensureDeferred
async def test_sentiment_sources_and_rescoring(backend):
    """Who labelled the latest posts; re-scoring reads analysed posts by id and writes their new labels."""
    learning = backend.learning
    posts = [_post(1, by="model:sentiment-1"), _post(2), _post(3, topics=("Globex",), by="model:sentiment-1"),
             _post(4, analysed=False), _post(5, lang="de", by="unscored")]  # fmt: skip
    await backend.store.store_batch(posts, {})
    assert await learning.sentiment_sources(None, 100) == {"model": 2, "vader": 2, "unscored": 1}
    assert await learning.sentiment_sources("Acme", 100) == {"model": 1, "vader": 2, "unscored": 1}
    assert sum((await learning.sentiment_sources(None, 2)).values()) == 2
    assert await learning.count_posts() == 5
    first = await learning.scored_posts(0, 2)
    assert [r[1] for r in first] == ["acme charged me twice"] * 2
    rest = await learning.scored_posts(first[-1][0], 100)
    assert len(rest) == 2  # the unanalysed post is not re-scored
    ids = [r[0] for r in first + rest]
    assert ids == sorted(ids)
    await learning.rescore([("negative", "model:sentiment-2", " complaint ", ids[0])])
    again = await learning.scored_posts(0, 1)
    assert again[0][3:] == ("negative", "model:sentiment-2", " complaint ")
