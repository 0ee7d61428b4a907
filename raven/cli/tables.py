"""`raven tables`: one paper table as Markdown + CSV (ours beside the paper's), and its MLflow row runs."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tables", help="build one table from row JSONs; log each row to MLflow")
    parser.add_argument("--spec", required=True, help="resolved run spec (scale, tracking_uri)")
    parser.add_argument("--table", required=True, help="a table of config/experiments.yaml, e.g. main")
    parser.add_argument("--row", action="append", default=[], metavar="LABEL=ROW_JSON", required=True,
                        help="a row label and the row JSON written by the evaluation stage (repeat)")
    parser.add_argument("--paper", default="config/paper_tables.yaml")
    parser.add_argument("--out-dir", required=True, help="writes <table>.md, <table>.csv, then <table>.json")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from raven.config import ConfigError, load_yaml, read_spec
    from raven.io import atomic_write_json, atomic_write_text, read_json
    from raven.tables import build_table, to_csv, to_markdown
    from raven.tracking import log_row, row_metrics

    spec = read_spec(args.spec)
    measured, paths = {}, {}
    for item in args.row:
        label, sep, path = item.partition("=")
        if not sep:
            raise ConfigError(f"--row {item!r}: expected LABEL=ROW_JSON")
        measured[label], paths[label] = read_json(path), Path(path)
    records = build_table(args.table, measured, load_yaml(args.paper))
    out = Path(args.out_dir)
    atomic_write_text(out / f"{args.table}.md", to_markdown(args.table, records, spec.scale))
    atomic_write_text(out / f"{args.table}.csv", to_csv(records))
    for label, row in measured.items():
        artifacts = [paths[label], *[Path(row[key]) for key in ("grid",) if row.get(key)]]
        log_row(spec, args.table, label, row_metrics(row), artifacts)
    atomic_write_json(out / f"{args.table}.json", {"table": args.table, "scale": spec.scale, "rows": records})
    return 0
