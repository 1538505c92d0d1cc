"""
The active learned models applied to analysed posts.

VADER's four scores stay as they are.  The sentiment label becomes the
active sentiment model's answer (C{by = "model:VERSION"}); an active label
model decides its label, adding or removing the built-in rule's answer.
A post in a language that VADER does not know (by its source's language
tag) and for which no sentiment model is active is C{by = "unscored"},
with no sentiment label, rather than a meaningless neutral.
"""

from __future__ import annotations

import hashlib
from typing import Mapping, Optional

from twisted.internet import threads

from monitor.analysis import MAX_ANALYZED_CHARS, MAX_MARKUP_CHARS, plain_text
from monitor.learn.features import features
from monitor.learn.linear import ENGLISH, SENTIMENT, LinearModel, ModelFormatError, language_of
from monitor.model import LABELS, Analysis

__all__ = ["ModelSet", "apply_models", "apply_texts", "applied"]

_ORDER = {label: i for i, label in enumerate(LABELS)}


def apply_models(
    a: Analysis, text: str, lang: Optional[str], models: Mapping[tuple[str, str], LinearModel]
) -> Analysis:
    """
    C{a} (the built-in analysis of C{text}) as the active C{models} answer
    it.  Pure: the hub and an analysis node give the same answer.
    """
    language = language_of(lang)
    mine = [(name, m) for (name, lang_), m in models.items() if lang_ == language]
    sentiment, by, labels = a.sentiment, a.by, a.labels
    if language != ENGLISH and not any(name == SENTIMENT for name, _ in mine):
        sentiment, by = None, "unscored"
    if mine:
        if len(text) > MAX_MARKUP_CHARS:
            text = text[:MAX_MARKUP_CHARS]
        plain = plain_text(text)[:MAX_ANALYZED_CHARS]
        feats = features(plain, {"compound": a.compound, "pos": a.pos, "neu": a.neu, "neg": a.neg})
        chosen = set(labels)
        for name, model in sorted(mine, key=lambda nm: nm[0]):
            answer = model.answer(feats)
            if name == SENTIMENT:
                sentiment, by = answer, f"model:{model.version}"
            elif answer == "yes":
                chosen.add(name)
            else:
                chosen.discard(name)
        labels = tuple(sorted(chosen, key=lambda n: (_ORDER.get(n, len(_ORDER)), n)))
    if (sentiment, by, labels) == (a.sentiment, a.by, a.labels):
        return a
    return Analysis(a.compound, a.pos, a.neu, a.neg, sentiment, labels, by, a.features)


def apply_texts(analyses, texts, langs, models) -> list[Analysis]:
    return [apply_models(a, t, lang, models) for a, t, lang in zip(analyses, texts, langs)]


def applied(reactor, analyses, texts, langs, models):
    """
    L{apply_texts}, in the reactor's thread pool when there are models to
    apply (features and weights are pure Python: the reactor answers
    between batches), else at once.
    """
    if not models:
        return apply_texts(analyses, texts, langs, models)
    if reactor is None or not hasattr(reactor, "getThreadPool"):
        return apply_texts(analyses, texts, langs, models)
    return threads.deferToThreadPool(reactor, reactor.getThreadPool(), apply_texts, analyses, texts, langs, models)


class ModelSet:
    """
    A set of active models as it travels to analysis nodes: the models,
    their versions by key (C{sentiment}, C{complaint}, C{sentiment:de}) and
    a C{tag} (a digest of their stored JSON) that names the set on the wire.
    """

    def __init__(self, active: Mapping[tuple[str, str], LinearModel]) -> None:
        self.active = dict(active)
        self.versions = {
            (n if lang == ENGLISH else f"{n}:{lang}"): m.version for (n, lang), m in sorted(self.active.items())
        }
        digest = hashlib.sha256()
        for key in sorted(self.active):
            digest.update(self.active[key].sha256.encode("ascii"))
        self.tag = digest.hexdigest()[:32] if self.active else ""

    @property
    def labels(self) -> frozenset:
        """The learned labels this set can add."""
        return frozenset(name for name, _ in self.active if name != SENTIMENT)

    def payload(self) -> list[dict]:
        """The models' plain JSON (never pickle), in a stable order."""
        return [self.active[key].to_dict() for key in sorted(self.active)]

    @classmethod
    def from_payload(cls, payload) -> "ModelSet":
        """
        The set a hub sent.

        @raise ModelFormatError: not a list of stored models.
        """
        if not isinstance(payload, list):
            raise ModelFormatError("models must be a list")
        models = [LinearModel.from_dict(d) for d in payload]
        return cls({(m.name, m.language): m for m in models})
