"""
Precision, recall, F1 and confusion matrices: how an answer compares with
people's labels.  Pure Python, so the quality report, the trainer and the
API all count the same way.
"""

from __future__ import annotations

from typing import Hashable, Sequence

__all__ = ["confusion", "scores", "summary"]


def confusion(truth: Sequence, predicted: Sequence, classes: Sequence) -> list[list[int]]:
    """
    The confusion matrix: row C{i} counts the posts whose true class is
    C{classes[i]}, column C{j} those predicted as C{classes[j]}.
    """
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} labels but {len(predicted)} predictions")
    index = {c: i for i, c in enumerate(classes)}
    matrix = [[0] * len(classes) for _ in classes]
    for t, p in zip(truth, predicted):
        matrix[index[t]][index[p]] += 1
    return matrix


def scores(matrix: list[list[int]], classes: Sequence) -> dict[Hashable, dict[str, float]]:
    """
    Precision, recall, F1 and support of each class from a confusion matrix.
    A class never predicted has precision 0; one never present, recall 0.
    """
    out = {}
    for i, c in enumerate(classes):
        tp = matrix[i][i]
        predicted = sum(row[i] for row in matrix)
        actual = sum(matrix[i])
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[c] = {"precision": precision, "recall": recall, "f1": f1, "support": actual}
    return out


def summary(truth: Sequence, predicted: Sequence, classes: Sequence) -> dict:
    """
    Macro-F1 (the mean of the classes' F1), accuracy, the per-class scores
    and the confusion matrix, as plain JSON-ready data.
    """
    matrix = confusion(truth, predicted, classes)
    per_class = scores(matrix, classes)
    n = len(truth)
    correct = sum(matrix[i][i] for i in range(len(classes)))
    return {
        "macro_f1": sum(s["f1"] for s in per_class.values()) / len(classes) if classes else 0.0,
        "accuracy": correct / n if n else 0.0,
        "classes": [str(c) for c in classes],
        "per_class": {str(c): s for c, s in per_class.items()},
        "confusion": matrix,
        "examples": n,
    }
