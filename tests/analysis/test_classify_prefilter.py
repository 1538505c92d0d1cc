"""
The label rules read a post once with one automaton for all word lists and
check each hit in place: these tests prove that this never changes a label,
against the same rules with every list's regex searched.
"""

from __future__ import annotations

import re
import unicodedata
from itertools import product

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
    _spellings,
    normalize,
)
from monitor.collect.demo_content import TEMPLATES

from tests.analysis.test_vader import FAST, shared_texts

DEFAULT = Classifier()
COMPOUNDS = (-0.9, -0.3, 0.0, 0.6)


def assert_same_labels(classifier, texts):
    for text in texts:
        for compound in COMPOUNDS:
            assert classifier.labels(text, compound) == classifier.labels_by_every_regex(text, compound)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=80), st.sampled_from(COMPOUNDS))
def test_any_text_default_lists(text, compound):
    """Arbitrary Unicode text labels the same with the default lists."""
    assert DEFAULT.labels(text, compound) == DEFAULT.labels_by_every_regex(text, compound), text


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
    entries = (
        DEFAULT_CRISIS_WORDS
        + DEFAULT_COMPLAINT_WORDS
        + DEFAULT_PURCHASE_INTENT_WORDS
        + DEFAULT_QUESTION_OPENERS
        + DEFAULT_COMPLAINT_TARGETS
        + DEFAULT_EXCEPTIONS
    )
    texts = []
    for e in entries:
        filled = e.replace("*", "acme").replace("'", "")
        texts += [e, filled, f"@acme {e}?", f"Well. {e.upper()} today!", f"#Acme{e.lstrip('#')}", f"x{e}y"]
    texts += [t for kinds in TEMPLATES.values() for lines in kinds.values() for t in lines]
    assert_same_labels(DEFAULT, texts)


def test_spellings_are_what_the_regex_matches():
    """Each apostrophe of an entry word is optional, in every combination."""
    assert _spellings("down") == ("down",)
    assert _spellings("doesn't") == ("doesn't", "doesnt")
    assert sorted(_spellings("y'all'd")) == ["y'all'd", "y'alld", "yall'd", "yalld"]
    for word in ("y'all'd", "'tis", "rock'n'roll", "x''"):
        pattern = re.compile(re.escape(word).replace("'", "'?"))
        assert all(pattern.fullmatch(s) for s in _spellings(word))
        parts = word.split("'")
        every = {
            "".join(p + k for p, k in zip(parts, keep + ("",))) for keep in product(("'", ""), repeat=len(parts) - 1)
        }
        assert sorted(_spellings(word)) == sorted(every)


def test_openers_sentences_and_mentions():
    """Openers after leading @mentions, after a sentence's end, and not mid-sentence or after a link."""
    c = Classifier(
        [], [], [], question_openers=["how do", "* there", "#help"], complaint_targets=[], exceptions=["calm down"]
    )
    for text in [
        "how do I",
        "@a @b how do I",
        "Fine. How do I",
        "fine.  how do i",
        "well how do i",
        "x https://u how do",
        "https://u how do",
        "@a https://u how do",
        "ok! is there",
        "@a is there",
        "#help me",
        "x #help",
        "x. #help",
        "calm down. how do",
        "how calm down do",
        "@calm down how do",
        ".how do",
        "@a. how do",
    ]:
        assert_same_labels(c, [text])


def test_unanchored_entries():
    """Entries with no literal word (all *, or only apostrophes) still match as their regex does."""
    c = Classifier(["*"], ["* *"], ["'"], question_openers=["* *"], complaint_targets=["' x"], exceptions=["a * b"])
    assert_same_labels(c, ["", " ", "x", "x y", "@a x y", "a x b", "a x y b", "'", "x ' y", "'x", ". x y", "? x y"])


def test_blanked_exceptions_can_make_a_match():
    """A blanked exception is one chunk, so "is * down" matches "is calm down down" and "is slow down again down"."""
    c = Classifier(["is * down", "a * b"], [], [], exceptions=["slow down again", "x y"])
    assert_same_labels(c, ["is slow down again down", "is calm down down", "a x y b", "a x y z b"])


_entry_word = st.sampled_from(
    [
        "down",
        "is",
        "app",
        "piraté",
        "PIRATE",
        "don't",
        "doesnt",
        "doesn’t",
        "rip-off",
        "*",
        "#down",
        "#fail",
        "calm",
        "recall",
        "i",
        "it's",
        "hack",
        "what's",
        "Ölfeld",
        "東京",
        "best",
        "#",
        "##down",
        "down?",
        ".",
        "'",
    ]
)
_entry = st.lists(_entry_word, min_size=1, max_size=3).map(" ".join).filter(lambda e: e.strip("* "))
_filler = st.sampled_from(
    [
        "down",
        "is",
        "the",
        "app",
        "pirate",
        "piraté",
        "dont",
        "don't",
        "doesn’t",
        "rip",
        "off",
        "rip-off",
        "#AcmeDown",
        "#fail",
        "calm",
        "recall",
        "I",
        "its",
        "it's",
        "hack",
        "whats",
        "what's",
        "ölfeld",
        "oelfeld",
        "東京",
        "best",
        "?",
        "!",
        ".",
        "@acme",
        "https://x.example/down",
        "www.down.example",
        "\n",
        "  ",
        "acme",
        "lost",
        "#",
        "##down",
        "_down",
        "down_",
        "x.#down",
        "'",
        "|",
        "is.",
        "down?",
        "@acme:",
        "downdown",
        "#downdown",
        "i'",
        "2down",
    ]
)


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(_entry, max_size=6),
    st.lists(_entry, max_size=4),
    st.lists(_filler, max_size=25).map(" ".join),
    st.sampled_from(COMPOUNDS),
)
def test_generated_lists_and_posts(words, exceptions, text, compound):
    """Word lists and posts built from the same pieces (case, accents, apostrophes, *, #, links)."""
    classifier = Classifier(
        words, words[::-1], words[1:], question_openers=words[:2], complaint_targets=words[-1:], exceptions=exceptions
    )
    assert classifier.labels(text, compound) == classifier.labels_by_every_regex(text, compound)


def normalize_as_written(text):
    """The label rules' normalisation as first written, char by char."""
    if text.isascii():
        return " ".join(text.lower().split())
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(text.translate({0x2019: "'", 0x2018: "'", 0x2BC: "'", 0x2032: "'"}).split())


def test_normalize_as_written(shared_data):
    """The table-driven normalisation folds every shared post as the first one did."""
    for text in shared_texts(shared_data):
        assert normalize(text) == normalize_as_written(text)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60))
def test_normalize_any_text(text):
    assert normalize(text) == normalize_as_written(text)


def test_pure_python_automaton_labels_the_same(shared_data):
    """Without pyahocorasick the label rules give the same labels (a sample of the shared posts)."""
    from unittest import mock

    from monitor import automaton

    with mock.patch.object(automaton, "Automaton", automaton.PurePython):
        pure = Classifier()
    assert isinstance(pure._lists.by_word, automaton.PurePython) and isinstance(
        pure._lists.by_pair, automaton.PurePython
    )
    for text in shared_texts(shared_data)[::3]:
        for compound in COMPOUNDS:
            assert pure.labels(text, compound) == DEFAULT.labels_by_every_regex(text, compound), text
