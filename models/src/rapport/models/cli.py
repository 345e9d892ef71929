"""``rapport-models``: train, evaluate, export to Triton, and label a CSV.

rapport-models train items [--out DIR] [--before DATE]
rapport-models train intents [--data FILE.csv ...] [--out DIR]
rapport-models evaluate [items|intents|all] [--reports DIR]
rapport-models export [--repository DIR] [--catalog FILE] [--items DIR] [--intents DIR]
rapport-models predict intents [--model DIR] --data FILE.csv --out FILE.csv
rapport-models retrain --tenant T [--with-public] [--dry-run] [--report FILE] ...
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from aiokafka.errors import KafkaError
from pymongo.errors import PyMongoError
from tqdm import tqdm

from rapport.common.settings import KafkaSettings, MongoSettings
from rapport.models import (
    encoder,
    export,
    intents,
    interactions,
    movielens,
    pipeline,
    report,
    retrain,
    textdata,
)

log = logging.getLogger("rapport.models.retrain")


def _train(args: argparse.Namespace) -> None:
    progress = not args.quiet
    if args.what == "items":
        out = pipeline.train_items(
            args.out or Path("models/build/items"), progress=progress, before=args.before
        )
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
    if args.only_items:
        written = export.export_items(repository, items_dir, keep=args.keep)
    else:
        intents_dir = args.intents or pipeline.default_intents(progress=progress)
        encoder_dir = pipeline.encoder_for(
            intents_dir, intents.load(intents_dir).encoder, progress=progress
        )
        sources = export.served_models(items_dir, encoder_dir, intents_dir)
        written = export.export_repository(repository, sources, keep=args.keep)
    export.write_beside_repository(catalog_path, movielens.load().catalog(), repository)
    for name, version in written.items():
        print(f"{repository / name / str(version)}")
    print(f"wrote {catalog_path} and {export.references_path(catalog_path)}")


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


def _date(text: str) -> datetime:
    """An ISO 8601 date or time; without an offset, UTC."""
    try:
        found = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date: {text!r}") from exc
    return found if found.tzinfo else found.replace(tzinfo=UTC)


async def _read_stream(
    kafka: KafkaSettings, mongo: MongoSettings, tenant: str
) -> tuple[interactions.Interactions, interactions.CatalogLog]:
    return await asyncio.gather(
        interactions.load(kafka, mongo, tenant), interactions.read_catalog(kafka, tenant)
    )


def _retrain(args: argparse.Namespace) -> None:
    repository: Path = args.repository
    config = retrain.RetrainConfig(
        repository=repository,
        catalog=args.catalog or pipeline.default_catalog(repository),
        tenant=args.tenant,
        with_public=args.with_public,
        public_before=args.public_before,
        since=args.since,
        holdout_fraction=args.holdout_fraction,
        holdout_days=args.holdout_days,
        margins=retrain.Margins(
            ndcg=args.ndcg_margin, gap=args.gap_margin, coverage=args.coverage_margin
        ),
        tune_lambda=args.tune_lambda,
        dry_run=args.dry_run,
        keep=args.keep,
    )
    # Settings from the environment (RAPPORT_KAFKA_*, RAPPORT_MONGO_*), the flags win.
    kafka = KafkaSettings(**({"kafka_bootstrap_servers": args.bootstrap} if args.bootstrap else {}))
    mongo = MongoSettings(**({"mongo_url": args.mongo} if args.mongo else {}))
    outcome, result = "error", None
    try:
        retrain.latest_served(repository)  # before reading anything: nothing to compare with
        found, posted = asyncio.run(_read_stream(kafka, mongo, args.tenant))
        public = movielens.load() if args.with_public else None
        result = retrain.retrain(config, found, posted, public)
        outcome = result.outcome
        log.info(result.line())
        if args.report:
            args.report.parent.mkdir(parents=True, exist_ok=True)
            document = {
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "margins": vars(config.margins),
                **result.as_json(),
            }
            args.report.write_text(json.dumps(document, indent=2) + "\n")
    finally:
        if args.metrics_file or args.pushgateway:
            retrain.publish_outcome(
                outcome,
                result,
                textfile=args.metrics_file,
                pushgateway=args.pushgateway,
                tenant=args.tenant,
                now=time.time(),
            )


def _add_retrain(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    margins = retrain.Margins()
    again = sub.add_parser(
        "retrain",
        help="retrain the item scorer from Rapport's events; export only past the gate",
        description="Train a candidate item scorer on one tenant's events (consent respected, "
        "erased users absent), compare it with the served version on a time holdout, and "
        "export it only if the gate passes (models/README.md, 'Retraining and the gate'). "
        "Exit status 0 whether it was exported or kept. Intents are not retrained: no "
        "labelled intent feedback exists (events carry no intent labels).",
    )
    again.add_argument("--tenant", required=True, help="whose events (an API key's tenant)")
    again.add_argument("--repository", type=Path, default=pipeline.DEFAULT_REPOSITORY)
    again.add_argument("--catalog", type=Path, help="default: catalog.json beside the repository")
    again.add_argument(
        "--bootstrap", help="Kafka bootstrap servers ($RAPPORT_KAFKA_BOOTSTRAP_SERVERS)"
    )
    again.add_argument("--mongo", help="MongoDB URI ($RAPPORT_MONGO_URL)")
    public = again.add_mutually_exclusive_group()
    public.add_argument(
        "--with-public",
        action="store_true",
        help="train on MovieLens-100K and the events together (union of positives)",
    )
    public.add_argument(
        "--events-only",
        dest="with_public",
        action="store_false",
        help="train on the events alone (the default)",
    )
    again.add_argument(
        "--public-before", type=_date, help="with --with-public: only ratings made before then"
    )
    again.add_argument(
        "--since", type=_date, help="the candidate learns only from events since then"
    )
    split = again.add_mutually_exclusive_group()
    split.add_argument(
        "--holdout-fraction",
        type=float,
        default=retrain.DEFAULT_HOLDOUT_FRACTION,
        help="the newest share of the interactions held out (default %(default)s)",
    )
    split.add_argument("--holdout-days", type=float, help="or: the last N days held out")
    for name, default in vars(margins).items():  # --ndcg-margin, --gap-margin, --coverage-margin
        again.add_argument(f"--{name}-margin", type=float, default=default, help="%(default)s")
    again.add_argument(
        "--tune-lambda",
        action="store_true",
        help="choose EASE's lambda on a time split of the training events (default: the "
        "served model's)",
    )
    again.add_argument("--dry-run", action="store_true", help="evaluate; never export")
    again.add_argument("--report", type=Path, help="write the comparison as JSON")
    again.add_argument(
        "--metrics-file", type=Path, help="write the outcome metric (Prometheus textfile)"
    )
    again.add_argument("--pushgateway", help="push the outcome metric to this Pushgateway URL")
    again.add_argument("--keep", type=int, default=export.KEEP_VERSIONS, help="versions kept")
    again.set_defaults(run=_retrain)


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
    train.add_argument(
        "--before",
        type=_date,
        help="items: only the ratings made before this date (ISO 8601, UTC if no offset)",
    )
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
    exp.add_argument(
        "--only-items",
        action="store_true",
        help="a new item_scorer and a reply carrying the other models' served versions",
    )
    exp.set_defaults(run=_export)

    _add_retrain(sub)

    predict = sub.add_parser("predict", help="label the text column of a CSV")
    predict.add_argument("what", choices=["intents"])
    predict.add_argument("--model", type=Path, help="an intent model folder (default: CLINC150)")
    predict.add_argument("--data", type=Path, required=True)
    predict.add_argument("--out", type=Path, required=True)
    predict.set_defaults(run=_predict)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "retrain":
        # one line per run (the outcome and its deltas); the libraries' chatter stays out
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        logging.getLogger("rapport.models").setLevel(logging.INFO)
    try:
        args.run(args)
    except (
        textdata.CsvError,
        pipeline.PipelineError,
        movielens.DataMissingError,
        retrain.RetrainError,
        KafkaError,
        PyMongoError,
        OSError,
    ) as exc:
        print(f"rapport-models: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
