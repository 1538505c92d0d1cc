"""
The Learner on people's real labels (../shared/data): corrections of
stored complaint tweets from some brand domains and of Hutto and Gilbert's
rated tweets go in through L{Feedback}; a real worker process trains; the
models become active only because they beat the built-in answer, and the
active complaint model, applied as the hub applies it, beats the rules on
brand domains it never saw.  An admin's switch holds.
"""

import pytest
import pytest_twisted

from monitor.analysis import Classifier, analyze_texts
from monitor.learn.apply import apply_models, applied
from monitor.learn.datasets import complaints, vader_ground_truth
from monitor.learn.feedback import Feedback
from monitor.learn.learner import Learner
from monitor.learn.metrics import summary
from monitor.model import Analysis, Post
from monitor.store.sqlite import SQLiteStore
from monitor.store.sqlite_learning import SQLiteLearning

TRAIN_DOMAINS = ("apparel", "electronics", "software")
HELD_OUT = ("cars", "food", "services", "transport", "retail", "other")
SETTINGS = {"min_examples": 20, "min_per_class": 3, "retrain_after": 10, "delay": 0, "folds": 3, "auto_activate": True}


def _post(network, key, text, lang=None):
    [a] = analyze_texts([text], Classifier())
    return Post(
        source="s", network=network, native_id=key, text=text, author="a", created_at=1.7e9, lang=lang, analysis=a
    )


@pytest.fixture(scope="module")
def data(shared_data_module):
    corpus = complaints(shared_data_module / "complaints/complaints-data.csv")
    train = [e for d, e, _ in corpus if d in TRAIN_DOMAINS][:240]
    held = [(d, e, a) for d, e, a in corpus if d in HELD_OUT]
    tweets = [e for _, e in vader_ground_truth(shared_data_module / "vader_icwsm2014/tweets_GroundTruth.txt")][:150]
    return train, held, tweets


@pytest.fixture(scope="module")
def shared_data_module():
    from tests.conftest import SHARED

    return SHARED / "data"


@pytest_twisted.async_yield_fixture
async def store(tmp_path, reactor):
    service = SQLiteStore(tmp_path / "monitor.sqlite", reactor=reactor)
    await service.startService()
    yield service
    await service.stopService()


@pytest_twisted.ensureDeferred
async def test_learns_from_corrections_and_beats_the_rules_on_unseen_domains(store, reactor, data):
    train, held, tweets = data
    posts = [_post("c", e.key, e.text) for e in train] + [_post("h", e.key, e.text) for e in tweets]
    await store.store_batch(posts, {})
    feedback = Feedback(SQLiteLearning(store), reactor)
    for e in train:
        await feedback.put(f"c:{e.key}", {"labels": {"complaint": e.label == "yes"}}, "tester")
    for e in tweets:
        await feedback.put(f"h:{e.key}", {"sentiment": e.label}, "tester")
    learner = Learner(SQLiteLearning(store), feedback, Classifier(), dict(SETTINGS, enabled=False), reactor=reactor)
    changes = []
    learner.listeners.append(lambda: changes.append(dict(learner.versions())))
    await learner.startService()
    try:
        before = {m["name"]: m for m in await learner.models()}
        assert before["complaint"]["state"] == "collecting" and before["complaint"]["examples"] == len(train)
        assert before["sentiment"]["examples"] == len(tweets)

        new = await learner.train_due()  # in the worker process
        assert {n["version"] for n in new} == {"complaint-1", "sentiment-1"}
        models = {m["name"]: m for m in await learner.models()}
        complaint = models["complaint"]
        e = complaint["evaluation"]
        # Active because, cross-validated on the corrected posts, it beats the rules on them.
        assert complaint["state"] == "active" and complaint["version"] == "complaint-1"
        assert e["macro_f1"] > e["baseline_macro_f1"] and sum(map(sum, e["confusion"])) == len(train)
        assert complaint["curve"] == [{"version": "complaint-1", "examples": len(train), "macro_f1": e["macro_f1"],
                                       "baseline_macro_f1": e["baseline_macro_f1"]}]  # fmt: skip
        s = models["sentiment"]
        assert s["state"] == (
            "active" if s["evaluation"]["macro_f1"] > s["evaluation"]["baseline_macro_f1"] else "inactive"
        )
        assert changes and changes[-1]["complaint"] == "complaint-1"

        # Applied as the hub applies it, to brand domains it never saw.
        model = learner.active[("complaint", "en")]
        truth, learned, rules = [], [], []
        for _, ex, a in held:
            truth.append(ex.label)
            learned.append(
                "yes" if "complaint" in apply_models(a, ex.text, None, {("complaint", "en"): model}).labels else "no"
            )
            rules.append("yes" if "complaint" in a.labels else "no")
        f1_learned = summary(truth, learned, ("no", "yes"))["per_class"]["yes"]["f1"]
        f1_rules = summary(truth, rules, ("no", "yes"))["per_class"]["yes"]["f1"]
        assert f1_learned > f1_rules + 0.1, (f1_learned, f1_rules)

        # An admin switches it off: it stays off, even when a better version is trained.
        answer = await learner.set_active("complaint", "en", False, "admin")
        assert answer["state"] == "inactive" and answer["held"] and ("complaint", "en") not in learner.active
        assert await learner.train_due() == []  # nothing new
        for ex in train[:10]:
            await feedback.put(
                f"c:{ex.key}", {"labels": {"complaint": ex.label != "yes"}, "sentiment": "neutral"}, "t2"
            )
        assert [n["version"] for n in await learner.train_due()] == ["complaint-2", "sentiment-2"]
        assert ("complaint", "en") not in learner.active
        answer = await learner.set_active("complaint", "en", True, "admin", version="complaint-1")
        assert answer["state"] == "active" and answer["version"] == "complaint-1" and answer["activated_by"] == "admin"
        assert await learner.set_active("billing", "en", True, "admin") is None
    finally:
        await learner.stopService()


@pytest_twisted.ensureDeferred
async def test_a_language_without_a_model_is_unscored(reactor):
    """A post tagged German gets no sentiment label from VADER; an English one keeps VADER's."""

    posts = [_post("x", "1", "Das ist schlecht", lang="de"), _post("x", "2", "This is bad", lang="en-GB"),
             _post("x", "3", "This is bad")]  # fmt: skip
    analyses = analyze_texts([p.text for p in posts], Classifier())
    de, en, untagged = applied(reactor, analyses, [p.text for p in posts], [p.lang for p in posts], {})
    assert (de.by, de.sentiment) == ("unscored", None)
    assert (en.by, en.sentiment) == ("vader", "negative") == (untagged.by, untagged.sentiment)
    assert Analysis.from_dict(de.to_dict()) == de
