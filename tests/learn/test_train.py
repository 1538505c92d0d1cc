"""
Learned models: features, the JSON form, training and cross-validation,
measured on people's labels in ../shared/data.
"""

import json

import pytest

from monitor.learn.datasets import complaints, human_sentiment, vader_ground_truth
from monitor.learn.features import features
from monitor.learn.linear import FORMAT, LABEL_CLASSES, LinearModel, ModelFormatError
from monitor.learn.metrics import summary
from monitor.learn.train import Example, better, cross_validate, fit, folds_for, train_model
from monitor.model import SENTIMENTS

VADER = {"compound": -0.4, "pos": 0.0, "neu": 0.7, "neg": 0.3}

#: The brand domains the cross-domain test trains on; it tests on the rest.
TRAIN_DOMAINS = {"apparel", "electronics", "retail", "software", "random_tweet"}


@pytest.fixture(scope="module")
def complaint_data(request):
    from tests.conftest import SHARED

    return complaints(SHARED / "data/complaints/complaints-data.csv")


def test_features_name_words_pairs_ngrams_and_vader():
    """A post's features are named, deterministic, and carry VADER's scores."""
    f = features("@Acme charged me TWICE! http://x.co/a", VADER)
    assert f == features("@Acme charged me TWICE! http://x.co/a", VADER)
    assert {"w:charged", "w:twice", "w:_user_", "w:_url_", "w:!", "b:charged me", "c: tw", "c:ice "} <= set(f)
    text = [v for k, v in f.items() if not k.startswith("v:")]
    assert abs(sum(v * v for v in text) - 1.0) < 1e-9
    assert f["v:compound"] == -0.4 and f["v:compound-"] == 0.4 and f["v:compound+"] == 0.0


def test_metrics_count_like_the_textbook():
    """Precision, recall, F1 and the confusion matrix of a small known case."""
    s = summary(["yes", "yes", "no", "no", "no"], ["yes", "no", "yes", "no", "no"], LABEL_CLASSES)
    assert s["confusion"] == [[2, 1], [1, 1]]
    assert s["per_class"]["yes"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert s["per_class"]["no"]["f1"] == pytest.approx(2 / 3)
    assert s["accuracy"] == pytest.approx(0.6)
    assert s["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 2)


def test_stored_form_is_plain_json_and_answers_alike():
    """A model survives its JSON form exactly; a foreign document is refused."""
    examples = [
        Example(str(i), text, VADER, label, "no")
        for i, (text, label) in enumerate(
            [
                ("my bill is wrong again", "yes"),
                ("billing charged me twice", "yes"),
                ("lovely day at the beach", "no"),
                ("new phone arrived today", "no"),
                ("refund my bill now", "yes"),
                ("great concert tonight", "no"),
            ]
        )
    ]
    stored = train_model("billing", "billing-1", examples, LABEL_CLASSES, now=1.0)
    text = json.dumps(stored)
    model = LinearModel.from_json(text)
    assert model.to_dict() == stored and stored["format"] == FORMAT
    assert model.version == "billing-1" and model.examples == 6
    assert model.predict("why is my bill so high", VADER) == "yes"
    assert model.predict("a lovely concert at the beach", VADER) == "no"
    assert model.top_features("yes", 3)[0][0].startswith(("w:bill", "c:", "b:"))
    for bad in ('{"format": "pickle"}', "not json", json.dumps(dict(stored, bias=[0.0]))):
        with pytest.raises(ModelFormatError):
            LinearModel.from_json(bad)


def test_folds_are_stratified_and_fixed():
    """Each fold holds every class, and the split depends only on the posts."""
    examples = [Example(f"k{i}", "t", VADER, "yes" if i % 3 == 0 else "no", "no") for i in range(30)]
    fold = folds_for(examples, 5)
    assert fold == folds_for(list(examples), 5)
    for f in range(5):
        assert {e.label for e, g in zip(examples, fold) if g == f} == {"yes", "no"}


def test_complaint_model_beats_the_rules_on_unseen_domains(complaint_data):
    """
    Trained on five domains, the learned complaint model finds complaints in
    six brand domains it never saw better than the built-in rules (F1 on
    the pooled unseen brand posts), and flags few ordinary tweets.
    """
    train = [(d, e) for d, e, _ in complaint_data if d in TRAIN_DOMAINS]
    test = [(d, e) for d, e, _ in complaint_data if d not in TRAIN_DOMAINS]
    assert {d for d, _ in test} == {"cars", "food", "other", "services", "transport", "random_reply"}
    bias, weights = fit([features(e.text, e.vader) for _, e in train], [e.label for _, e in train], LABEL_CLASSES)
    model = LinearModel("complaint", "complaint-1", LABEL_CLASSES, bias, weights)
    brands = [e for d, e in test if d != "random_reply"]
    truth = [e.label for e in brands]
    learned = summary(truth, [model.predict(e.text, e.vader) for e in brands], LABEL_CLASSES)["per_class"]["yes"]
    builtin = summary(truth, [e.baseline for e in brands], LABEL_CLASSES)["per_class"]["yes"]
    # Measured: learned 0.79, built-in 0.54 (the quality report has every domain).
    print(f"unseen brand domains: F1 learned {learned['f1']:.3f}, built-in {builtin['f1']:.3f}")
    assert builtin["f1"] < 0.6
    assert learned["f1"] > builtin["f1"] + 0.15
    assert learned["recall"] > 1.8 * builtin["recall"]
    ordinary = [e for d, e in test if d == "random_reply"]
    flagged = sum(model.predict(e.text, e.vader) == "yes" for e in ordinary) / len(ordinary)
    assert flagged < 0.35


def test_cross_validation_reports_the_builtin_answer_on_the_same_posts(complaint_data):
    """
    Cross-validation on one domain's posts gives the model's figures and the
    rules' on the same posts; here the model is better, so it may be used.
    """
    examples = [e for d, e, _ in complaint_data if d in ("services", "transport")]
    result = cross_validate(examples, LABEL_CLASSES, folds=3)
    assert result["examples"] == len(examples) and result["folds"] == 3
    assert sum(map(sum, result["confusion"])) == len(examples)
    truth = [e.label for e in examples]
    assert result["baseline_macro_f1"] == summary(truth, [e.baseline for e in examples], LABEL_CLASSES)["macro_f1"]
    assert result["macro_f1"] > result["baseline_macro_f1"]
    assert better(result)
    assert not better(dict(result, macro_f1=result["baseline_macro_f1"]))


def test_sentiment_model_beats_vader_on_held_out_tweets():
    """
    Trained on half of Hutto and Gilbert's tweets, the sentiment model's
    macro-F1 on the other half is above VADER's own rule on them.
    """
    from tests.conftest import SHARED

    rated = vader_ground_truth(SHARED / "data/vader_icwsm2014/tweets_GroundTruth.txt")
    assert human_sentiment(0.5) == "positive" and human_sentiment(-0.49) == "neutral"
    train = [e for i, (_, e) in enumerate(rated) if i % 2 == 0]
    test = [e for i, (_, e) in enumerate(rated) if i % 2 == 1]
    bias, weights = fit([features(e.text, e.vader) for e in train], [e.label for e in train], SENTIMENTS)
    model = LinearModel("sentiment", "sentiment-1", SENTIMENTS, bias, weights)
    truth = [e.label for e in test]
    learned = summary(truth, [model.predict(e.text, e.vader) for e in test], SENTIMENTS)
    vader = summary(truth, [e.baseline for e in test], SENTIMENTS)
    assert learned["macro_f1"] > vader["macro_f1"] + 0.02
    assert learned["per_class"]["neutral"]["f1"] > vader["per_class"]["neutral"]["f1"]
