"""
A learned model as plain data: a linear model over named features, stored
as JSON (never pickle), applied in pure Python.

A model answers one question: the sentiment of a post (classes
C{positive}, C{neutral}, C{negative}) or whether a label applies (classes
C{no}, C{yes}).  Its score for a class is the bias plus the sum of the
weights of the post's features; the answer is the class with the highest
score.  The JSON holds every weight by feature name, so anyone can read why
a model answers what it does (C{top_features} lists the heaviest).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from monitor.learn.features import features

__all__ = ["ENGLISH", "FORMAT", "LABEL_CLASSES", "LinearModel", "ModelFormatError", "SENTIMENT", "language_of"]

#: The language of posts with no language tag (a model is of one language).
ENGLISH = "en"


def language_of(lang: Optional[str]) -> str:
    """
    The language a post's tag stands for: C{"pt-BR"} is C{"pt"}; no tag is
    English (VADER's language, and most sources' default).
    """
    if not lang:
        return ENGLISH
    return lang.split("-")[0].split("_")[0].lower() or ENGLISH


#: The value of a stored model's C{format} key; a reader refuses others.
FORMAT = "monitor-linear-model/1"

#: The name of the sentiment model; every other model is a label's.
SENTIMENT = "sentiment"

#: The classes of a label model.
LABEL_CLASSES = ("no", "yes")


class ModelFormatError(ValueError):
    """
    A stored model is not one this code can read.
    """


@dataclass(slots=True)
class LinearModel:
    """
    @ivar name: C{"sentiment"} or the label's name.
    @ivar version: C{NAME-N}, N counting the models trained under that name.
    @ivar language: the language of the posts it was trained on (C{"en"}).
    @ivar classes: its possible answers, in the order of C{bias} and of each
        weight list.
    @ivar weights: feature name to one weight per class.
    @ivar examples: how many labelled posts it was trained on.
    @ivar evaluation: its cross-validated figures (L{monitor.learn.train}).
    """

    name: str
    version: str
    classes: tuple[str, ...]
    bias: list[float]
    weights: dict[str, list[float]]
    language: str = "en"
    examples: int = 0
    trained_at: float = 0.0
    evaluation: dict[str, Any] = field(default_factory=dict)

    @property
    def is_sentiment(self) -> bool:
        return self.name == SENTIMENT

    def scores(self, feats: Mapping[str, float]) -> list[float]:
        """
        The score of each class for a post's features.
        """
        total = list(self.bias)
        weights = self.weights
        k = len(total)
        for name, value in feats.items():
            w = weights.get(name)
            if w is not None:
                for i in range(k):
                    total[i] += w[i] * value
        return total

    def answer(self, feats: Mapping[str, float]) -> str:
        """
        The class with the highest score (the first of equals).
        """
        s = self.scores(feats)
        return self.classes[max(range(len(s)), key=s.__getitem__)]

    def predict(self, text: str, vader: Mapping[str, float]) -> str:
        """
        The answer for one post's plain text and VADER scores.
        """
        return self.answer(features(text, vader))

    def top_features(self, cls: str, count: int = 20) -> list[tuple[str, float]]:
        """
        The features that most favour C{cls} over the other classes.
        """
        i = self.classes.index(cls)
        k = len(self.classes)

        def margin(w: list[float]) -> float:
            others = [w[j] for j in range(k) if j != i]
            return w[i] - max(others) if others else w[i]

        ranked = sorted(self.weights.items(), key=lambda kv: margin(kv[1]), reverse=True)
        return [(name, round(margin(w), 6)) for name, w in ranked[:count]]

    # -- the stored form --

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "name": self.name,
            "version": self.version,
            "language": self.language,
            "classes": list(self.classes),
            "examples": self.examples,
            "trained_at": self.trained_at,
            "evaluation": self.evaluation,
            "bias": list(self.bias),
            "weights": {k: list(v) for k, v in sorted(self.weights.items())},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @property
    def sha256(self) -> str:
        """
        A digest of the stored form: two models with one digest answer alike.
        """
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LinearModel":
        """
        Read a stored model, checking its shape.

        @raise ModelFormatError: not a model of L{FORMAT}, or inconsistent.
        """
        if not isinstance(d, Mapping) or d.get("format") != FORMAT:
            raise ModelFormatError(f"not a {FORMAT} model")
        try:
            classes = tuple(str(c) for c in d["classes"])
            bias = [float(b) for b in d["bias"]]
            weights = {str(k): [float(x) for x in v] for k, v in d["weights"].items()}
            model = cls(
                name=str(d["name"]),
                version=str(d["version"]),
                classes=classes,
                bias=bias,
                weights=weights,
                language=str(d.get("language") or "en"),
                examples=int(d.get("examples") or 0),
                trained_at=float(d.get("trained_at") or 0.0),
                evaluation=dict(d.get("evaluation") or {}),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ModelFormatError(f"bad model: {e}") from None
        if len(classes) < 2 or len(bias) != len(classes):
            raise ModelFormatError("a model needs one bias per class, and two classes or more")
        if any(len(w) != len(classes) for w in weights.values()):
            raise ModelFormatError("every weight list must have one weight per class")
        return model

    @classmethod
    def from_json(cls, text: str) -> "LinearModel":
        try:
            d = json.loads(text)
        except ValueError as e:
            raise ModelFormatError(f"not JSON: {e}") from None
        return cls.from_dict(d)
