"""
Training and cross-validation of L{LinearModel}s (numpy; run it in a
worker process, never on the reactor).

The model is multinomial logistic regression with an L2 penalty, fitted
exactly (to a small gradient) by L-BFGS on the whole training set, with
each class weighted by the inverse of its frequency so that a rare class
(complaints are a third of posts, custom labels often fewer) counts as
much as a common one: macro-F1 is what we are judged on.  Deterministic:
the same examples give the same weights.

A model is judged by k-fold cross-validation on the labelled posts against
the built-in answer (VADER's rule, the label rules) on the same posts; it
is worth using only when its macro-F1 is higher (L{better}).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

# One BLAS thread: the vectors here are small, and on a shared machine
# BLAS's own threads made a fit three times slower (it takes effect only
# when numpy is first imported here, as in a training worker).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

from monitor.config import default
from monitor.learn.features import features
from monitor.learn.linear import LinearModel
from monitor.learn.metrics import summary

#: The folds of cross-validation unless told ([learning] folds).
FOLDS = default("learning", "folds")

__all__ = [
    "Example",
    "L2",
    "MIN_DF",
    "better",
    "cross_validate",
    "fit",
    "train_model",
]

#: The L2 penalty (on the mean, class-weighted loss).
L2 = 3e-4

#: A feature must be seen in this many training posts to get a weight.
MIN_DF = 2

#: Most L-BFGS iterations of one fit.
MAX_ITER = 300


@dataclass(frozen=True, slots=True)
class Example:
    """
    One labelled post: its plain text, VADER's scores for it, the class
    people gave it and the built-in answer for it.
    """

    key: str
    text: str
    vader: Mapping[str, float]
    label: str
    baseline: str


class _Matrix:
    """
    A sparse post-by-feature matrix in CSR form, enough for logistic
    regression: products with a dense weight matrix and its transpose.
    """

    def __init__(self, rows: Sequence[Mapping[str, float]], index: Mapping[str, int]):
        indices, data, lengths = [], [], []
        for feats in rows:
            n = 0
            for name, value in feats.items():
                j = index.get(name)
                if j is not None:
                    indices.append(j)
                    data.append(value)
                    n += 1
            lengths.append(n)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.data = np.asarray(data, dtype=np.float64)
        self.row_of = np.repeat(np.arange(len(rows)), lengths)
        # Every row has VADER's features, so no row is empty (reduceat
        # would misread an empty one).
        self.starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        self.rows = len(rows)
        self.columns = len(index)

    def dot(self, w: np.ndarray) -> np.ndarray:
        return np.add.reduceat(self.data[:, None] * w[self.indices], self.starts, axis=0)

    def tdot(self, g: np.ndarray) -> np.ndarray:
        per_entry = self.data[:, None] * g[self.row_of]
        return np.stack(
            [np.bincount(self.indices, per_entry[:, k], self.columns) for k in range(g.shape[1])],
            axis=1,
        )


def _loss(x: _Matrix, y: np.ndarray, s: np.ndarray, l2: float, k: int):
    """
    The objective and its gradient as functions of the flat parameters
    (feature weights, then one bias per class).
    """
    d = x.columns
    total = s.sum()

    def f(theta: np.ndarray):
        w = theta[: d * k].reshape(d, k)
        b = theta[d * k :]
        z = x.dot(w) + b
        z -= z.max(axis=1, keepdims=True)
        logsum = np.log(np.exp(z).sum(axis=1))
        logp = z - logsum[:, None]
        value = -(s * logp[np.arange(len(y)), y]).sum() / total + 0.5 * l2 * (w * w).sum()
        g = np.exp(logp)
        g[np.arange(len(y)), y] -= 1.0
        g *= (s / total)[:, None]
        grad_w = x.tdot(g) + l2 * w
        grad_b = g.sum(axis=0)
        return value, np.concatenate([grad_w.ravel(), grad_b])

    return f


def _lbfgs(f, theta: np.ndarray, max_iter: int = MAX_ITER, memory: int = 10, tol: float = 1e-6):
    """
    Minimise C{f} (returning value and gradient) by L-BFGS with a
    backtracking (Armijo) line search.
    """
    value, grad = f(theta)
    pairs: list[tuple[np.ndarray, np.ndarray, float]] = []  # s, y, 1 / (y . s)
    for _ in range(max_iter):
        if np.abs(grad).max() < tol:
            break
        q = grad.copy()
        alphas = []
        for s_i, y_i, rho in reversed(pairs):
            a = rho * float(s_i @ q)
            alphas.append(a)
            q -= a * y_i
        if pairs:
            s_i, y_i, rho = pairs[-1]
            q *= 1.0 / (rho * float(y_i @ y_i))
        else:
            q /= max(float(np.sqrt(q @ q)), 1e-12)
        for (s_i, y_i, rho), a in zip(pairs, reversed(alphas)):
            q += s_i * (a - rho * float(y_i @ q))
        direction = -q
        slope = float(grad @ direction)
        if slope >= 0:
            direction, slope = -grad, -float(grad @ grad)
            pairs.clear()
        step = 1.0
        while True:
            candidate = theta + step * direction
            new_value, new_grad = f(candidate)
            if new_value <= value + 1e-4 * step * slope or step < 1e-10:
                break
            step *= 0.5
        s_new, y_new = candidate - theta, new_grad - grad
        theta, improvement = candidate, value - new_value
        value, grad = new_value, new_grad
        curvature = float(y_new @ s_new)
        if curvature > 1e-12:
            pairs.append((s_new, y_new, 1.0 / curvature))
            if len(pairs) > memory:
                pairs.pop(0)
        if improvement < 1e-10 * max(1.0, abs(value)):
            break
    return theta


def fit(
    rows: Sequence[Mapping[str, float]],
    labels: Sequence[str],
    classes: Sequence[str],
    l2: float = L2,
    min_df: int = MIN_DF,
) -> tuple[list[float], dict[str, list[float]]]:
    """
    Fit the weights of a linear model on feature dicts C{rows} with classes
    C{labels}; return the bias and the weights by feature name.
    """
    counts: dict[str, int] = {}
    for feats in rows:
        for name in feats:
            counts[name] = counts.get(name, 0) + 1
    names = sorted(n for n, c in counts.items() if c >= min_df or n.startswith("v:"))
    index = {n: i for i, n in enumerate(names)}
    k = len(classes)
    class_index = {c: i for i, c in enumerate(classes)}
    y = np.asarray([class_index[label] for label in labels], dtype=np.int64)
    present = np.bincount(y, minlength=k)
    # Balanced class weights; a class with no example gets none.
    per_class = np.where(present > 0, len(y) / (k * np.maximum(present, 1)), 0.0)
    s = per_class[y]
    x = _Matrix(rows, index)
    theta = _lbfgs(_loss(x, y, s, l2, k), np.zeros(len(names) * k + k))
    w = theta[: len(names) * k].reshape(len(names), k)
    bias = [round(float(b), 8) for b in theta[len(names) * k :]]
    weights = {n: [round(float(v), 8) for v in w[i]] for i, n in enumerate(names)}
    return bias, weights


def folds_for(examples: Sequence[Example], folds: int) -> list[int]:
    """
    A fold for each example, stratified by class: within each class the
    examples are ordered by a hash of their key and dealt out in turn, so
    the split is fixed for a given set of posts and every fold sees every
    class.
    """
    out = [0] * len(examples)
    by_class: dict[str, list[int]] = {}
    for i, e in enumerate(examples):
        by_class.setdefault(e.label, []).append(i)
    offset = 0
    for label in sorted(by_class):
        ordered = sorted(by_class[label], key=lambda i: hashlib.sha256(examples[i].key.encode()).digest())
        for n, i in enumerate(ordered):
            out[i] = (n + offset) % folds
        offset += len(ordered)
    return out


def cross_validate(
    examples: Sequence[Example],
    classes: Sequence[str],
    folds: int = FOLDS,
    l2: float = L2,
) -> dict:
    """
    k-fold cross-validation: the model's figures (L{summary}) with, beside
    them, the built-in answer's on the same posts (C{baseline_macro_f1},
    C{baseline_accuracy}, C{baseline_confusion}).
    """
    smallest = min((sum(1 for e in examples if e.label == c) for c in classes), default=0)
    folds = max(2, min(folds, max(smallest, 2)))
    rows = [features(e.text, e.vader) for e in examples]
    fold = folds_for(examples, folds)
    predicted = [""] * len(examples)
    for f in range(folds):
        train = [i for i in range(len(examples)) if fold[i] != f]
        test = [i for i in range(len(examples)) if fold[i] == f]
        if not train or not test:
            continue
        bias, weights = fit([rows[i] for i in train], [examples[i].label for i in train], classes, l2)
        model = LinearModel("cv", "cv", tuple(classes), bias, weights)
        for i in test:
            predicted[i] = model.answer(rows[i])
    truth = [e.label for e in examples]
    out = summary(truth, predicted, classes)
    base = summary(truth, [e.baseline for e in examples], classes)
    out["folds"] = folds
    out["baseline_macro_f1"] = base["macro_f1"]
    out["baseline_accuracy"] = base["accuracy"]
    out["baseline_confusion"] = base["confusion"]
    out["baseline_per_class"] = base["per_class"]
    return out


def better(evaluation: Mapping) -> bool:
    """
    Whether a cross-validated model beats the built-in answer.
    """
    return evaluation.get("macro_f1", 0.0) > evaluation.get("baseline_macro_f1", 1.0)


def train_model(
    name: str,
    version: str,
    examples: Sequence[Example],
    classes: Sequence[str],
    language: str = "en",
    folds: int = FOLDS,
    l2: float = L2,
    now: Optional[float] = None,
) -> dict:
    """
    Cross-validate, then fit on every example: the stored form of the new
    model (L{LinearModel.to_dict}), evaluation included.  A plain function
    of plain data, so it runs in a worker process.
    """
    evaluation = cross_validate(examples, classes, folds, l2)
    bias, weights = fit([features(e.text, e.vader) for e in examples], [e.label for e in examples], classes, l2)
    model = LinearModel(
        name=name,
        version=version,
        classes=tuple(classes),
        bias=bias,
        weights=weights,
        language=language,
        examples=len(examples),
        trained_at=time.time() if now is None else now,
        evaluation=evaluation,
    )
    return model.to_dict()
