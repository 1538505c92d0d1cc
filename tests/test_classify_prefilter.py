"""
The label rules skip the regex search of a word list when none of the
list's anchor words is in the post: these tests prove that the skips never
change a label, against the same rules with every regex searched.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.analysis.classify import (
    DEFAULT_COMPLAINT_TARGETS,
    DEFAULT_COMPLAINT_WORDS,
    DEFAULT_CRISIS_WORDS,
    DEFAULT_EXCEPTIONS,
    DEFAULT_PURCHASE_INTENT_WORDS,
    DEFAULT_QUESTION_OPENERS,
    Classifier,
    _runs,
    _WordList,
)
from monitor.collect.demo_content import TEMPLATES

from .test_vader import FAST, shared_texts

DEFAULT = Classifier()
COMPOUNDS = (-0.9, -0.3, 0.0, 0.6)


def assert_same_labels(classifier, texts):
    for text in texts:
        for compound in COMPOUNDS:
            assert classifier.labels(text, compound) == classifier.labels_by_every_regex(text, compound), text


def test_shared_texts_label_the_same(shared_data):
    """Every post of the three data sets, at its own compound and at four others."""
    texts = shared_texts(shared_data)
    for text in texts:
        compound = FAST.polarity_scores(text)["compound"]
        assert DEFAULT.labels(text, compound) == DEFAULT.labels_by_every_regex(text, compound), text
    assert_same_labels(DEFAULT, texts[::4])
    labelled = sum(1 for t in texts if DEFAULT.labels(t, 0.0))
    assert labelled > len(texts) // 6  # the rules fire often on these posts


def test_every_list_entry_and_template():
    """Each entry of each default list, alone, in a sentence, shouted, and each demo template."""
    entries = (DEFAULT_CRISIS_WORDS + DEFAULT_COMPLAINT_WORDS + DEFAULT_PURCHASE_INTENT_WORDS
               + DEFAULT_QUESTION_OPENERS + DEFAULT_COMPLAINT_TARGETS + DEFAULT_EXCEPTIONS)
    texts = []
    for e in entries:
        filled = e.replace("*", "acme").replace("'", "")
        texts += [e, filled, f"@acme {e}?", f"Well. {e.upper()} today!", f"#Acme{e.lstrip('#')}", f"x{e}y"]
    texts += [t for kinds in TEMPLATES.values() for lines in kinds.values() for t in lines]
    assert_same_labels(DEFAULT, texts)


def test_runs_are_the_regex_runs(shared_data):
    """The word runs the prefilter uses are exactly \\w+'s, ASCII or not."""
    for text in shared_texts(shared_data):
        assert _runs(text) == frozenset(re.findall(r"\w+", text))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_runs_of_any_text(text):
    assert _runs(text) == frozenset(re.findall(r"\w+", text))


def test_anchors():
    """Anchors are whole plain words, rare ones first; hashtags and apostrophes are handled."""
    words = _WordList(["is * down", "doesn't work", "#outage", "rip-off", "what's the best"])
    assert words.anchors == {"down", "work", "off", "best"}
    assert words.hashtags == ("outage",)
    assert _WordList(["what's", "can't"]).anchors is None  # no plain word: always search
    assert _WordList(["what's", "can't"]).may_match("anything", frozenset({"anything"}))
    assert not words.may_match("all good here", _runs("all good here"))
    assert words.may_match("#acmeoutage now", _runs("#acmeoutage now"))


_entry_word = st.sampled_from(
    ["down", "is", "app", "piraté", "PIRATE", "don't", "doesnt", "doesn’t", "rip-off", "*", "#down", "#fail",
     "calm", "recall", "i", "it's", "hack", "what's", "Ölfeld", "東京", "best"]
)
_entry = st.lists(_entry_word, min_size=1, max_size=3).map(" ".join).filter(lambda e: e.strip("* "))
_filler = st.sampled_from(
    ["down", "is", "the", "app", "pirate", "piraté", "dont", "don't", "doesn’t", "rip", "off", "rip-off", "#AcmeDown",
     "#fail", "calm", "recall", "I", "its", "it's", "hack", "whats", "what's", "ölfeld", "oelfeld", "東京", "best",
     "?", "!", ".", "@acme", "https://x.example/down", "www.down.example", "\n", "  ", "acme", "lost"]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_entry, max_size=6),
    st.lists(_entry, max_size=4),
    st.lists(_filler, max_size=25).map(" ".join),
    st.sampled_from(COMPOUNDS),
)
def test_generated_lists_and_posts(words, exceptions, text, compound):
    """Word lists and posts built from the same pieces (case, accents, apostrophes, *, #, links)."""
    classifier = Classifier(words, words[::-1], words[1:], question_openers=words[:2],
                            complaint_targets=words[-1:], exceptions=exceptions)
    assert classifier.labels(text, compound) == classifier.labels_by_every_regex(text, compound)
