"""``rapport-models``: train, evaluate, export to Triton, and label a CSV.

rapport-models train items [--out DIR]
rapport-models train intents [--data FILE.csv ...] [--out DIR]
rapport-models evaluate [items|intents|all] [--reports DIR]
rapport-models export [--repository DIR] [--catalog FILE] [--items DIR] [--intents DIR]
rapport-models predict intents [--model DIR] --data FILE.csv --out FILE.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from tqdm import tqdm

from rapport.models import encoder, export, intents, movielens, pipeline, report, textdata


def _train(args: argparse.Namespace) -> None:
    progress = not args.quiet
    if args.what == "items":
        out = pipeline.train_items(args.out or Path("models/build/items"), progress=progress)
    else:
        data = args.data or pipeline.served_intents_data()
        out = pipeline.train_intents(
            data, args.out or Path("models/build/intents"), progress=progress
        )
    print(f"wrote {out}")


def _evaluate(args: argparse.Namespace) -> None:
    written = report.run(args.what, args.reports, progress=not args.quiet)
    for path in written:
        print(f"wrote {path}")


def _export(args: argparse.Namespace) -> None:
    progress = not args.quiet
    repository: Path = args.repository
    catalog_path: Path = args.catalog or pipeline.default_catalog(repository)
    items_dir = args.items or pipeline.default_items(progress=progress)
    intents_dir = args.intents or pipeline.default_intents(progress=progress)
    encoder_dir = pipeline.encoder_for(
        intents_dir, intents.load(intents_dir).encoder, progress=progress
    )
    sources = export.served_models(items_dir, encoder_dir, intents_dir)
    written = export.export_repository(repository, sources, keep=args.keep)
    export.write_catalog(catalog_path, movielens.load().catalog())
    for name, version in written.items():
        print(f"{repository / name / str(version)}")
    print(f"wrote {catalog_path}")


def _predict(args: argparse.Namespace) -> None:
    texts = textdata.read_texts(args.data)
    model_dir = args.model or pipeline.default_intents(progress=not args.quiet)
    model = intents.load(model_dir)
    vectors = [None] * len(texts)
    if model.uses_vectors:
        encoder_dir = pipeline.encoder_for(model_dir, model.encoder, progress=not args.quiet)
        vectors = list(encoder.encode_many(encoder.load(encoder_dir), texts))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "intent", "confidence"])
        for text, vector in tqdm(
            zip(texts, vectors, strict=True), desc="predict", disable=args.quiet
        ):
            found = model.predict(text, vector)
            writer.writerow([text, found.intent, f"{found.confidence:.4f}"])
    print(f"wrote {args.out} ({len(texts)} rows, model {model_dir})")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="rapport-models", description=__doc__.split("\n\n")[0])
    root.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = root.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model into a folder")
    train.add_argument("what", choices=["items", "intents"])
    train.add_argument(
        "--data",
        type=Path,
        nargs="+",
        help="intents: text,intent CSVs, concatenated (default CLINC150 train + data/rapport)",
    )
    train.add_argument("--out", type=Path, help="the model folder (default models/build/<what>)")
    train.set_defaults(run=_train)

    evaluate = sub.add_parser("evaluate", help="evaluate and write the report (md, json, png)")
    evaluate.add_argument("what", nargs="?", default="all", choices=["items", "intents", "all"])
    evaluate.add_argument("--reports", type=Path, default=pipeline.DEFAULT_REPORTS)
    evaluate.set_defaults(run=_evaluate)

    exp = sub.add_parser("export", help="add a new version of every model to a Triton repository")
    exp.add_argument("--repository", type=Path, default=pipeline.DEFAULT_REPOSITORY)
    exp.add_argument("--catalog", type=Path, help="default: catalog.json beside the repository")
    exp.add_argument("--items", type=Path, help="a trained item model folder (default: cached)")
    exp.add_argument("--intents", type=Path, help="a trained intent model folder (default: cached)")
    exp.add_argument("--keep", type=int, default=export.KEEP_VERSIONS, help="versions kept")
    exp.set_defaults(run=_export)

    predict = sub.add_parser("predict", help="label the text column of a CSV")
    predict.add_argument("what", choices=["intents"])
    predict.add_argument("--model", type=Path, help="an intent model folder (default: CLINC150)")
    predict.add_argument("--data", type=Path, required=True)
    predict.add_argument("--out", type=Path, required=True)
    predict.set_defaults(run=_predict)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except (textdata.CsvError, pipeline.PipelineError, movielens.DataMissingError) as exc:
        print(f"rapport-models: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
