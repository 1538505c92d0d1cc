"""
How good the analysis is, measured against people's labels.

    python quality/report.py [--only builtin|learned|curve] [--json out.json]

Prints Markdown tables (the figures in quality/README.md come from it):

* builtin: the built-in complaint rule per domain of the complaints corpus
  (precision, recall, F1; on the two samples of ordinary tweets, which hold
  no complaint, the share wrongly flagged); how often purchase_intent and
  question fire there (the corpus has no human labels for them); VADER's
  three-way label against the human mean ratings of Hutto and Gilbert's
  tweets (thresholds in monitor.learn.datasets).
* learned: the learned complaint model trained on every other domain and
  tested on each domain in turn (it never sees the brand it is tested on),
  and the learned sentiment model by 5-fold cross-validation on Hutto and
  Gilbert's tweets, each beside the built-in answer on the same posts.
* curve: macro-F1 of a model trained on the first 50, 100, 300, 1,000
  labelled posts (a fixed shuffle, as corrections would arrive), tested on
  1,000 held-out posts, against the built-in answer on those posts.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor.learn.datasets import HUMAN_NEGATIVE, HUMAN_POSITIVE, complaints, vader_ground_truth  # noqa: E402
from monitor.learn.features import features  # noqa: E402
from monitor.learn.linear import LABEL_CLASSES, LinearModel  # noqa: E402
from monitor.learn.metrics import summary  # noqa: E402
from monitor.learn.train import cross_validate, fit  # noqa: E402
from monitor.model import SENTIMENTS  # noqa: E402

SHARED = pathlib.Path(os.environ.get("MONITOR_SHARED", ROOT.parent / "shared"))
COMPLAINTS = SHARED / "data/complaints/complaints-data.csv"
VADER = SHARED / "data/vader_icwsm2014/tweets_GroundTruth.txt"
#: The two samples of ordinary tweets: no complaint among them.
ORDINARY = ("random_reply", "random_tweet")


def _f(x: float) -> str:
    return f"{x:.3f}"


def builtin(out: dict) -> None:
    data = complaints(COMPLAINTS)
    domains = sorted({d for d, _, _ in data})
    print("### Built-in `complaint` rule, complaints corpus (Preoţiuc-Pietro et al., 2019)\n")
    print("| domain | posts | complaints | precision | recall | F1 | purchase_intent fires | question fires |")
    print("|---|---|---|---|---|---|---|---|")
    table = {}
    for domain in domains + ["brands (all but ordinary)", "all"]:
        if domain == "all":
            rows = data
        elif domain.startswith("brands"):
            rows = [r for r in data if r[0] not in ORDINARY]
        else:
            rows = [r for r in data if r[0] == domain]
        truth = [e.label for _, e, _ in rows]
        s = summary(truth, [e.baseline for _, e, _ in rows], LABEL_CLASSES)["per_class"]["yes"]
        pi = sum("purchase_intent" in a.labels for _, _, a in rows) / len(rows)
        q = sum("question" in a.labels for _, _, a in rows) / len(rows)
        table[domain] = dict(s, purchase_intent_rate=pi, question_rate=q, posts=len(rows))
        if domain in ORDINARY:
            flagged = sum(e.baseline == "yes" for _, e, _ in rows) / len(rows)
            cells = f"– | – | {flagged:.1%} flagged |"
        else:
            cells = f"{_f(s['precision'])} | {_f(s['recall'])} | {_f(s['f1'])} |"
        print(f"| {domain} | {len(rows)} | {s['support']} | {cells} {pi:.1%} | {q:.1%} |")
    out["builtin_complaint"] = table

    rated = vader_ground_truth(VADER)
    truth = [e.label for _, e in rated]
    s = summary(truth, [e.baseline for _, e in rated], SENTIMENTS)
    majority = max(SENTIMENTS, key=truth.count)
    m = summary(truth, [majority] * len(truth), SENTIMENTS)
    print(
        f"\n### VADER's three-way label, Hutto and Gilbert's {len(rated)} tweets\n\n"
        f"Human class: mean rating >= {HUMAN_POSITIVE} positive, <= {HUMAN_NEGATIVE} negative, "
        "else neutral; VADER's: compound >= 0.05 positive, <= -0.05 negative.\n"
    )
    _sentiment_table(s)
    print(f"\nAlways answering the commonest class ({majority}): macro-F1 {_f(m['macro_f1'])}, accuracy {_f(m['accuracy'])}.")
    out["vader_sentiment"] = s


def _sentiment_table(s: dict) -> None:
    print("| class | posts | precision | recall | F1 |")
    print("|---|---|---|---|---|")
    for c in SENTIMENTS:
        p = s["per_class"][c]
        print(f"| {c} | {p['support']} | {_f(p['precision'])} | {_f(p['recall'])} | {_f(p['f1'])} |")
    print(f"| **macro-F1** | | | | **{_f(s['macro_f1'])}** |")
    print(f"\naccuracy {_f(s['accuracy'])}; confusion (rows people, columns answer, {', '.join(SENTIMENTS)}): {s['confusion']}")


def learned(out: dict) -> None:
    data = complaints(COMPLAINTS)
    domains = sorted({d for d, _, _ in data})
    print("### Learned `complaint` model, each domain unseen in training\n")
    print("| domain held out | posts | F1 learned | F1 built-in | precision learned / built-in | recall learned / built-in | seconds to train |")
    print("|---|---|---|---|---|---|---|")
    rows = [features(e.text, e.vader) for _, e, _ in data]
    table = {}
    answers: dict[int, str] = {}
    for domain in domains:
        train = [i for i, (d, _, _) in enumerate(data) if d != domain]
        test = [i for i, (d, _, _) in enumerate(data) if d == domain]
        start = time.process_time()
        bias, weights = fit([rows[i] for i in train], [data[i][1].label for i in train], LABEL_CLASSES)
        seconds = time.process_time() - start
        model = LinearModel("complaint", "report", LABEL_CLASSES, bias, weights)
        truth = [data[i][1].label for i in test]
        predicted = [model.answer(rows[i]) for i in test]
        base = [data[i][1].baseline for i in test]
        answers.update(zip(test, predicted))
        m = summary(truth, predicted, LABEL_CLASSES)["per_class"]["yes"]
        b = summary(truth, base, LABEL_CLASSES)["per_class"]["yes"]
        table[domain] = {"learned": m, "builtin": b}
        if domain in ORDINARY:
            fm = sum(p == "yes" for p in predicted) / len(test)
            fb = sum(p == "yes" for p in base) / len(test)
            print(f"| {domain} | {len(test)} | – | – | {fm:.1%} / {fb:.1%} flagged | – | {seconds:.1f} |")
        else:
            print(
                f"| {domain} | {len(test)} | **{_f(m['f1'])}** | {_f(b['f1'])} | {_f(m['precision'])} / {_f(b['precision'])} "
                f"| {_f(m['recall'])} / {_f(b['recall'])} | {seconds:.1f} |"
            )
    brands = [i for i, (d, _, _) in enumerate(data) if d not in ORDINARY]
    truth = [data[i][1].label for i in brands]
    m = summary(truth, [answers[i] for i in brands], LABEL_CLASSES)
    b = summary(truth, [data[i][1].baseline for i in brands], LABEL_CLASSES)
    print(
        f"| brands, pooled | {len(brands)} | **{_f(m['per_class']['yes']['f1'])}** | {_f(b['per_class']['yes']['f1'])} "
        f"| {_f(m['per_class']['yes']['precision'])} / {_f(b['per_class']['yes']['precision'])} "
        f"| {_f(m['per_class']['yes']['recall'])} / {_f(b['per_class']['yes']['recall'])} | |"
    )
    out["learned_complaint"] = table

    rated = [e for _, e in vader_ground_truth(VADER)]
    s = cross_validate(rated, SENTIMENTS, folds=5)
    print(f"\n### Learned sentiment model, 5-fold cross-validation on Hutto and Gilbert's {len(rated)} tweets\n")
    _sentiment_table(s)
    print(
        f"\nVADER's rule on the same posts: macro-F1 {_f(s['baseline_macro_f1'])}, accuracy {_f(s['baseline_accuracy'])}."
    )
    out["learned_sentiment"] = s


def curve(out: dict) -> None:
    sizes = (50, 100, 300, 1000)
    print("### Learning curve: macro-F1 on 1,000 held-out posts after N labelled posts\n")
    print("| data | model | " + " | ".join(f"after {n}" for n in sizes) + " | built-in on the same posts |")
    print("|---|---|" + "---|" * len(sizes) + "---|")
    sets = {
        "Hutto and Gilbert tweets": ("sentiment", SENTIMENTS, [e for _, e in vader_ground_truth(VADER)]),
        "complaints corpus": ("complaint", LABEL_CLASSES, [e for _, e, _ in complaints(COMPLAINTS)]),
    }
    for data_name, (name, classes, examples) in sets.items():
        examples = list(examples)
        random.Random(13).shuffle(examples)
        held, pool = examples[:1000], examples[1000:]
        truth = [e.label for e in held]
        held_rows = [features(e.text, e.vader) for e in held]
        base = summary(truth, [e.baseline for e in held], classes)["macro_f1"]
        cells = []
        for n in sizes:
            train = pool[:n]
            bias, weights = fit([features(e.text, e.vader) for e in train], [e.label for e in train], classes)
            model = LinearModel(name, "curve", tuple(classes), bias, weights)
            f1 = summary(truth, [model.answer(r) for r in held_rows], classes)["macro_f1"]
            cells.append(f1)
        out.setdefault("curve", {})[name] = {"sizes": sizes, "macro_f1": cells, "baseline_macro_f1": base}
        print(f"| {data_name} | {name} | " + " | ".join(_f(c) for c in cells) + f" | {_f(base)} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("builtin", "learned", "curve"))
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    out: dict = {}
    for name, part in (("builtin", builtin), ("learned", learned), ("curve", curve)):
        if args.only in (None, name):
            part(out)
            print()
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
