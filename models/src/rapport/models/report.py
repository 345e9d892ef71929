"""The evaluation report: ``evaluation.json``, ``evaluation.md`` and PNG plots.

``rapport-models evaluate`` reruns the item-scorer protocol (popularity,
item-kNN and EASE in one run) and every intent model in one run (choices by
cross-validation on train, then validation figures through the runtime code
that Triton serves, and Banking77 cross-validation).
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

from rapport.models import bias, encoder, intents, movielens, pipeline, ranking, textdata

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
    data = movielens.load()
    result = ranking.evaluate(data, progress=progress)
    audit = bias.served_audit(data, float(result.chosen["ease"]["lambda"]))
    return {**asdict(result), "bias": audit, "seconds": round(time.perf_counter() - started, 1)}


@dataclass(frozen=True)
class IntentRow:
    name: str
    params: intents.IntentParams
    served_data: bool = False  # trained on what is served: CLINC150 + Rapport's own intents


INTENT_ROWS = (
    IntentRow("TF-IDF + linear SVM (before)", intents.IntentParams(vectors=False)),
    IntentRow("encoder + logistic regression", intents.IntentParams(tfidf=False)),
    IntentRow("hybrid: both, one softmax", intents.IntentParams()),
    IntentRow("hybrid + Rapport's intents (served)", intents.IntentParams(), served_data=True),
)


def _size_mb(directory: Path) -> float:
    return round(sum(f.stat().st_size for f in directory.iterdir() if f.is_file()) / 1e6, 1)


def _banking77_cv(
    data: textdata.Labelled, vectors: np.ndarray, row: IntentRow, scales: tuple[float, float]
) -> float:
    """5-fold CV accuracy (argmax, no out-of-scope) with the scales chosen on CLINC150."""
    classes = sorted(set(data.intents))
    margins, logits, _ = intents.out_of_fold_scores(
        data, vectors if row.params.vectors else None, row.params, classes, progress=False
    )
    predicted = (margins * scales[0] + logits * scales[1]).argmax(axis=1)
    gold = np.array([classes.index(i) for i in data.intents])
    return float((predicted == gold).mean())


def evaluate_intents(progress: bool) -> dict[str, Any]:
    clinc = textdata.read_labelled(pipeline.clinc150("train"))
    served = textdata.read_labelled(*pipeline.served_intents_data())
    val = textdata.read_labelled(pipeline.clinc150("val"))
    banking = textdata.read_labelled(pipeline.data_dir() / "banking77" / "train.csv")
    encoder_dir = pipeline.default_encoder(progress=progress)
    sentence_encoder = encoder.load(encoder_dir)
    begun = time.perf_counter()
    vectors = {
        "served": encoder.encode_many(sentence_encoder, served.texts),
        "val": encoder.encode_many(sentence_encoder, val.texts),
        "banking77": encoder.encode_many(sentence_encoder, banking.texts),
    }
    texts_encoded = len(served.texts) + len(val.texts) + len(banking.texts)
    encode_ms = (time.perf_counter() - begun) / texts_encoded * 1000
    vectors["clinc"] = vectors["served"][: len(clinc.texts)]  # CLINC150 rows come first
    rows = []
    for row in INTENT_ROWS:
        data, key = (served, "served") if row.served_data else (clinc, "clinc")
        started = time.perf_counter()
        trained = intents.train(
            data,
            row.params,
            vectors=vectors[key] if row.params.vectors else None,
            encoder=sentence_encoder.id,
            progress=progress,
        )
        train_seconds = time.perf_counter() - started
        with tempfile.TemporaryDirectory() as tmp:
            folder = intents.save(trained, Path(tmp), source=key)
            model = intents.load(folder)
            size = _size_mb(folder)
        given = list(vectors["val"]) if row.params.vectors else [None] * len(val.texts)
        begun = time.perf_counter()
        labels = [model.predict(t, v).intent for t, v in zip(val.texts, given, strict=True)]
        head_ms = (time.perf_counter() - begun) / len(val.texts) * 1000
        chosen = trained.cv["chosen"]
        scales = (float(chosen["svm_scale"]), float(chosen["vector_scale"]))
        rows.append(
            {
                "model": row.name,
                "train_data": key,
                "params": trained.cv["params"],
                "chosen": {k: v for k, v in chosen.items() if k != "scales"},
                "val": intents.scores(val.intents, np.array(labels, dtype=object)),
                "banking77_cv_accuracy": _banking77_cv(banking, vectors["banking77"], row, scales),
                "train_seconds": round(train_seconds, 1),
                "head_mb": size,
                "encoder_mb": _size_mb(encoder_dir) if row.params.vectors else 0.0,
                "head_ms_per_message_offline": round(head_ms, 3),
                "encoder_ms_per_message_offline": round(encode_ms, 3) if row.params.vectors else 0,
            }
        )
    return {
        "data": {
            "clinc150_train": len(clinc.texts),
            "served_train": len(served.texts),
            "val": len(val.texts),
            "banking77": len(banking.texts),
            "intents": len(clinc.in_scope_labels),
        },
        "encoder": json.loads((encoder_dir / "metadata.json").read_text()),
        "rows": rows,
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
    for row, marker in zip(found["rows"], "*sDP", strict=False):
        ax.plot(
            100 * row["val"]["oos_recall"],
            100 * row["val"]["in_scope_accuracy"],
            marker,
            markersize=11,
            label=f"{row['model']} (val)",
        )
    for name, (acc, rec) in LARSON.items():
        ax.plot(rec, acc, "o", color="grey")
        ax.annotate(name, (rec, acc), textcoords="offset points", xytext=(4, 3), fontsize=8)
    ax.set_xlabel("out-of-scope recall (%)")
    ax.set_ylabel("in-scope accuracy (%)")
    ax.set_title("CLINC150: ours on val vs Larson et al. 2019 Table 2 (test)")
    ax.legend(loc="lower right", fontsize=7)
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
        if "bias" in items:
            lines += _bias_markdown(items["bias"])
    found = doc.get("intents")
    if found and "rows" in found:
        d, enc = found["data"], found["encoder"]
        lines += [
            "## Message understanding (CLINC150, Banking77)",
            "",
            f"Encoder: {enc['source']}, {enc['dimension']}-d, int8 ONNX graph "
            f"({enc['licence']}). Rows are trained on `clinc150/train.csv` ({d['clinc150_train']} "
            f"rows, {d['intents']} intents + `oos`); the served row adds "
            f"`data/rapport/intents.csv` ({d['served_train']} rows in all). Everything is chosen "
            "by 5-fold cross-validation on train: the two parts' scales by out-of-fold log loss, "
            "then the probability threshold and the distance floor as the most accurate pair "
            "whose out-of-fold out-of-scope recall is at least 50%. Validation "
            f"({d['val']} rows) was never used to choose. Banking77: 5-fold CV accuracy over "
            f"{d['banking77']} rows (no out-of-scope), with the scales chosen on CLINC150.",
            "",
            "| model | CLINC150 val in-scope acc. % | val OOS recall % | Banking77 5-fold acc. % "
            "| CV on train (acc. / OOS) | train s | head MB | + encoder MB | ms/message offline |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in found["rows"]:
            cv = row["chosen"]["cv_at_threshold"]
            ms = row["head_ms_per_message_offline"] + row["encoder_ms_per_message_offline"]
            lines.append(
                f"| {row['model']} | **{100 * row['val']['in_scope_accuracy']:.2f}** | "
                f"**{100 * row['val']['oos_recall']:.1f}** | "
                f"{100 * row['banking77_cv_accuracy']:.2f} | "
                f"{100 * cv['in_scope_accuracy']:.1f} / {100 * cv['oos_recall']:.0f} | "
                f"{row['train_seconds']} | {row['head_mb']} | {row['encoder_mb']} | {ms:.2f} |"
            )
        lines += [
            f"| {n} (Larson et al. Table 2) | {a} (test) | {r} (test) | | | | | | |"
            for n, (a, r) in LARSON.items()
        ]
        lines += [
            "",
            "In-scope accuracy counts in-scope messages predicted as `oos` as wrong. Larson et al. "
            "report the test split, which is not in our data folder; ours is val. `train s` is "
            "cross-validation plus the final fit, after the sentence vectors are computed "
            "(ms/message offline includes the encoder, one text at a time, on one thread).",
            "",
            "![intents](intents.png)",
            "",
        ]
    return "\n".join(lines)


def _bias_markdown(found: dict[str, Any]) -> list[str]:
    a, study = found["audit"], found["mitigation"]
    low, high = a["activity_thresholds"]
    lines = [
        "## Bias audit of the served ranker (same split)",
        "",
        "No demographics are stored: the audit measures exposure and quality across user "
        "activity and taste segments (`rapport.models.bias`, statistics from "
        "`rapport.common.drift`, the ones the live gauges use). Users with test items: "
        f"{a['users']}; the popular head is the most rated items that make "
        f"{a['head_share']:.0%} of the train ratings.",
        "",
        "| exposure | value |",
        "|---|---|",
        f"| catalogue coverage of the top-10s | {a['coverage']:.4f} |",
        f"| Gini of exposures (all {a['catalogue_size']} items) | {a['gini']:.4f} |",
        f"| long tail's share of the served slots | {a['long_tail_share']:.4f} |",
        f"| long tail's share of the train ratings | {a['interactions_long_tail_share']:.4f} |",
        f"| long tail's share of the catalogue's items | {a['catalogue_long_tail_share']:.4f} |",
        "",
        f"Popularity-biased: **{'yes' if a['popularity_biased'] else 'no'}** (the ranker gives "
        "the long tail a smaller share of its slots than users give it in their ratings).",
        "",
        f"Activity groups: tertiles of the users' train ratings (light ≤ {low}, "
        f"medium ≤ {high}, heavy > {high}). Segments: the runtime's nearest segment of the "
        f"user's train history. Gaps (best minus worst NDCG@10, groups of at least "
        f"{bias.MIN_GROUP_USERS} users): activity {a['activity_gap']:.4f}, segment "
        f"{a['segment_gap']:.4f}, **largest {a['largest_gap']:.4f}**. Read the activity gap "
        "with the protocol in mind: a user's test part is 20% of their ratings, so heavy users "
        "have more relevant items, which lifts NDCG@10 and lowers recall@10 by construction.",
        "",
        "| group | users | NDCG@10 | Recall@10 |",
        "|---|---|---|---|",
    ]
    for kind in ("by_activity", "by_segment"):
        lines += [
            f"| {name} | {g['users']} | {g['ndcg']:.4f} | {g['recall']:.4f} |"
            for name, g in a[kind].items()
        ]
    lines += [
        "",
        f"Mitigation studied (not served): a calibrated popularity penalty, `{study['penalty']}`, "
        "applied to the served scores. The strongest penalty costing at most "
        f"{study['acceptable_ndcg_cost']:.0%} of NDCG@10 is gamma = {study['chosen_gamma']:g} "
        "(chosen on this test split: a study, not a tuned setting).",
        "",
        "| gamma | NDCG@10 | NDCG cost | Recall@10 | coverage | Gini | long-tail share "
        "| largest gap |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['gamma']:g} | {r['ndcg@10']:.4f} | {r['ndcg_cost']:+.1%} | {r['recall@10']:.4f} "
        f"| {r['coverage']:.4f} | {r['gini']:.4f} | {r['long_tail_share']:.4f} "
        f"| {r['largest_gap']:.4f} |"
        for r in study["rows"]
    ]
    return [*lines, ""]


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
