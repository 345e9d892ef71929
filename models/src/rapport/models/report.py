"""The evaluation report: ``evaluation.json``, ``evaluation.md`` and PNG plots.

``rapport-models evaluate`` reruns the item-scorer protocol (popularity,
item-kNN and EASE in one run) and the intent model (C by cross-validation on
train, then validation figures through the runtime code that Triton serves).
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

from rapport.models import intents, movielens, pipeline, ranking, textdata

INTENT_C_GRID = (0.5, 1.0, 2.0)
# Dacrema et al., RecSys 2019 (MovieLens-100K, their split): P@10, R@10, NDCG@10.
DACREMA = {
    "TopPop": (0.1907, 0.1180, 0.1361),
    "ItemKNN": (0.3327, 0.2199, 0.2603),
    "UserKNN": (0.2913, 0.1802, 0.2055),
    "PureSVD": (0.1289, 0.1087, 0.1177),
}
# Larson et al., EMNLP 2019, Table 2 (CLINC150 test, "full"): in-scope accuracy, OOS recall.
LARSON = {
    "FastText": (89.0, 9.7),
    "SVM": (91.0, 14.5),
    "CNN": (91.2, 18.9),
    "DialogFlow": (91.7, 14.0),
    "Rasa": (91.5, 45.3),
    "MLP on USE": (93.5, 47.4),
    "BERT": (96.9, 40.3),
}
REPORT_JSON = "evaluation.json"


def evaluate_items(progress: bool) -> dict[str, Any]:
    started = time.perf_counter()
    result = ranking.evaluate(movielens.load(), progress=progress)
    return {**asdict(result), "seconds": round(time.perf_counter() - started, 1)}


def evaluate_intents(progress: bool) -> dict[str, Any]:
    started = time.perf_counter()
    train = textdata.read_labelled(pipeline.clinc150("train"))
    val = textdata.read_labelled(pipeline.clinc150("val"))
    trained = intents.train(train, intents.IntentParams(), search=INTENT_C_GRID, progress=progress)
    train_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        model = intents.load(intents.save(trained, Path(tmp), source="clinc150/train.csv"))
        begun = time.perf_counter()
        probs = np.array([model.probabilities(t) for t in val.texts])
        per_message_ms = (time.perf_counter() - begun) / len(val.texts) * 1000
    classes = [str(c) for c in trained.arrays["classes"]]
    threshold = float(trained.cv["chosen"]["threshold"])
    labels, _ = intents.decide(probs, classes, threshold)
    curve = []
    for t in np.round(np.arange(0.0, 0.96, 0.02), 2):
        curve.append(
            {
                "threshold": float(t),
                **intents.scores(val.intents, intents.decide(probs, classes, float(t))[0]),
            }
        )
    return {
        "data": {
            "train": len(train.texts),
            "val": len(val.texts),
            "intents": len(train.in_scope_labels),
        },
        "model": "TF-IDF word 1-2 grams + char_wb 2-5 grams, linear SVM, softmax with temperature",
        "cv": trained.cv,
        "val": intents.scores(val.intents, labels),
        "val_curve_for_illustration": curve,
        "runtime_ms_per_message_offline": round(per_message_ms, 3),
        "train_seconds": round(train_seconds, 1),
    }


def _plot_ranking(items: dict[str, Any], out: Path) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    metrics = ["precision@10", "recall@10", "ndcg@10"]
    rows = items["test"]
    width = 0.8 / len(rows)
    for n, row in enumerate(rows):
        left.bar(np.arange(3) + n * width, [row[m] for m in metrics], width, label=row["model"])
    left.set_xticks(np.arange(3) + width * (len(rows) - 1) / 2, metrics)
    left.set_title("MovieLens-100K test (same split, one run)")
    left.legend()
    ease_rows = items["validation"]["ease"]
    right.plot([r["lambda"] for r in ease_rows], [r["ndcg@10"] for r in ease_rows], "o-")
    right.axvline(items["chosen"]["ease"]["lambda"], color="grey", linestyle="--")
    right.set_xscale("log")
    right.set_xlabel("EASE lambda")
    right.set_ylabel("validation NDCG@10")
    right.set_title("lambda chosen on validation (carved from train)")
    fig.tight_layout()
    path = out / "ranking.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_intents(found: dict[str, Any], out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6.5, 5))
    curve = found["val_curve_for_illustration"]
    ax.plot(
        [100 * r["oos_recall"] for r in curve],
        [100 * r["in_scope_accuracy"] for r in curve],
        "-",
        color="lightgrey",
        label="ours at other thresholds (val, illustration only)",
    )
    ax.plot(
        100 * found["val"]["oos_recall"],
        100 * found["val"]["in_scope_accuracy"],
        "r*",
        markersize=14,
        label=f"ours (threshold {found['cv']['chosen']['threshold']} from CV on train)",
    )
    for name, (acc, rec) in LARSON.items():
        ax.plot(rec, acc, "o", color="tab:blue")
        ax.annotate(name, (rec, acc), textcoords="offset points", xytext=(4, 3), fontsize=8)
    ax.set_xlabel("out-of-scope recall (%)")
    ax.set_ylabel("in-scope accuracy (%)")
    ax.set_title("CLINC150: ours on val vs Larson et al. 2019 Table 2 (test)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = out / "intents.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _markdown(doc: dict[str, Any]) -> str:
    lines = [
        "# Model evaluation",
        "",
        f"Generated by `rapport-models evaluate` on {doc['when']} ({doc['machine']}).",
        "Numbers below are copied from `evaluation.json` in this folder.",
        "",
    ]
    items = doc.get("items")
    if items:
        p = items["protocol"]
        lines += [
            "## Item scorer (MovieLens-100K)",
            "",
            f"Protocol: {p['dataset']}; {p['split']}; hyper-parameters chosen on a validation "
            f"split ({p['validation']}), never on test; top {p['k']} excludes the user's train "
            f"items. {p['users']} users, {p['items']} items, {p['train_interactions']} train and "
            f"{p['test_interactions']} test interactions.",
            "",
            "| model | hyper-parameters | Precision@10 | Recall@10 | NDCG@10 |",
            "|---|---|---|---|---|",
        ]
        for row in items["test"]:
            params = ", ".join(
                f"{k}={v:g}" for k, v in row.items() if k != "model" and "@" not in k
            )
            lines.append(
                f"| {row['model']} | {params or '-'} | {row['precision@10']:.4f} | "
                f"{row['recall@10']:.4f} | {row['ndcg@10']:.4f} |"
            )
        lines += [
            "",
            "Published (Dacrema et al., RecSys 2019, ML-100K) for orientation only: their split "
            "differs (one fixed split from the original papers, not our per-user 80/20), so the "
            "numbers are not comparable one to one.",
            "",
            "| model | Precision@10 | Recall@10 | NDCG@10 |",
            "|---|---|---|---|",
        ]
        lines += [f"| {n} | {a:.4f} | {b:.4f} | {c:.4f} |" for n, (a, b, c) in DACREMA.items()]
        lines += ["", "![ranking](ranking.png)", ""]
    found = doc.get("intents")
    if found:
        chosen = found["cv"]["chosen"]
        val = found["val"]
        lines += [
            "## Message understanding (CLINC150)",
            "",
            f"Model: {found['model']}. Trained on `clinc150/train.csv` "
            f"({found['data']['train']} rows, {found['data']['intents']} intents + `oos`). C, the "
            "softmax temperature and the out-of-scope threshold were chosen by "
            f"{found['cv']['params']['folds']}-fold "
            "cross-validation on train: C by CV in-scope accuracy at the threshold, the threshold "
            f"as the most accurate one whose CV out-of-scope recall is at least "
            f"{found['cv']['params']['min_oos_recall']:.0%}. Validation was never used to choose.",
            "",
            f"Chosen: C={chosen['c']:g}, temperature={chosen['temperature']:g}, "
            f"threshold={chosen['threshold']:g} (CV: in-scope "
            f"{100 * chosen['cv_at_threshold']['in_scope_accuracy']:.1f}%, OOS recall "
            f"{100 * chosen['cv_at_threshold']['oos_recall']:.1f}%).",
            "",
            "| model | data | in-scope accuracy % | OOS recall % |",
            "|---|---|---|---|",
            f"| **ours** | val ({found['data']['val']}) | "
            f"**{100 * val['in_scope_accuracy']:.2f}** | **{100 * val['oos_recall']:.1f}** |",
        ]
        lines += [
            f"| {n} (Larson et al. Table 2) | test | {a} | {r} |" for n, (a, r) in LARSON.items()
        ]
        lines += [
            "",
            "In-scope accuracy counts in-scope messages predicted as `oos` as wrong. Larson et al. "
            "report the test split, which is not in our data folder; ours is val.",
            "",
            f"Offline runtime cost: {found['runtime_ms_per_message_offline']} ms per message "
            "(numpy runtime, one message at a time, no Triton). Through Triton: see "
            "`bench/triton_models.py` (models/README.md).",
            "",
            "![intents](intents.png)",
            "",
        ]
    return "\n".join(lines)


def run(what: str, out: Path, *, progress: bool = True) -> list[Path]:
    mpl.use("Agg")  # files only, no display
    out.mkdir(parents=True, exist_ok=True)
    path = out / REPORT_JSON
    doc: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    doc["when"] = datetime.now(UTC).isoformat(timespec="seconds")
    doc["machine"] = f"{platform.machine()}, Python {platform.python_version()}"
    written = [path, out / "evaluation.md"]
    if what in ("items", "all"):
        doc["items"] = evaluate_items(progress)
        written.append(_plot_ranking(doc["items"], out))
    if what in ("intents", "all"):
        doc["intents"] = evaluate_intents(progress)
        written.append(_plot_intents(doc["intents"], out))
    path.write_text(json.dumps(doc, indent=2) + "\n")
    (out / "evaluation.md").write_text(_markdown(doc))
    return written
