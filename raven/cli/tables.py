"""`raven tables`: one paper table as Markdown + CSV + JSON. Score tables: ours beside the paper's, from
the row JSONs of `raven eval row` (which also logs each row to MLflow, once per table that prints it);
`user_study` from `raven userstudy analyze`; `drift` from `raven eval drift`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from raven.config import RunSpec


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tables", help="build one paper table (Markdown, CSV, JSON)")
    parser.add_argument("--spec", required=True, help="resolved run spec (its scale)")
    parser.add_argument("--table", required=True, help="a table of config/experiments.yaml, e.g. main")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--row", action="append", metavar="LABEL=ROW_JSON",
                        help="score tables: a row label and its row JSON (raven eval row); repeat")
    source.add_argument("--userstudy", metavar="FILE", help="user_study: the JSON of `raven userstudy analyze`")
    source.add_argument("--drift", metavar="FILE", help="drift: the JSON of `raven eval drift`")
    parser.add_argument("--paper", default="config/paper_tables.yaml", help="the paper's numbers")
    parser.add_argument("--experiments", default="config/experiments.yaml",
                        help="its `comparisons.<table>` pairs are tested (difference with a 95%% interval)")
    parser.add_argument("--out-dir", required=True,
                        help="writes <table>.md, <table>.csv, then <table>.json (records + DVC metrics by label)")
    parser.set_defaults(handler=run)


def score_table(args: argparse.Namespace, spec: RunSpec) -> tuple[list, str, str, list]:
    from pathlib import Path

    from raven.config import ConfigError, load_experiments, load_yaml
    from raven.config.rows import rows_at_scale
    from raven.io import read_json
    from raven.tables import build_table, comparisons, comparisons_markdown, to_csv, to_markdown

    measured = {}
    for item in args.row:
        label, sep, path = item.partition("=")
        if not sep:
            raise ConfigError(f"--row {item!r}: expected LABEL=ROW_JSON")
        measured[label] = read_json(path)
    records = build_table(args.table, measured, load_yaml(args.paper))
    pairs = (load_yaml(args.experiments).get("comparisons") or {}).get(args.table) or []
    rows = rows_at_scale(load_experiments(Path(args.experiments).parent), spec.weights.baselines)
    tested = comparisons(args.table, measured, pairs, rows=rows)
    markdown = to_markdown(args.table, records, spec.scale) + "\n".join(comparisons_markdown(tested) + [""])
    return records, markdown.rstrip("\n") + "\n", to_csv(records), tested


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from raven.config import read_spec
    from raven.io import atomic_write_json, atomic_write_text, read_json
    from raven.tables import (drift_markdown, drift_records, records_csv, table_metrics, user_study_markdown,
                              user_study_records)

    spec = read_spec(args.spec)
    scale = spec.scale
    tested: list = []
    if args.row:
        records, markdown, table_csv, tested = score_table(args, spec)
    elif args.userstudy:
        analysis = read_json(args.userstudy)
        records = user_study_records(analysis)
        markdown, table_csv = user_study_markdown(analysis, records, scale), records_csv(records)
    else:
        records = drift_records(read_json(args.drift))
        markdown, table_csv = drift_markdown(records, scale), records_csv(records)
    out = Path(args.out_dir)
    atomic_write_text(out / f"{args.table}.md", markdown)
    atomic_write_text(out / f"{args.table}.csv", table_csv)
    atomic_write_json(out / f"{args.table}.json", {"table": args.table, "scale": scale, "rows": records,
                                                   "metrics": table_metrics(args.table, records),
                                                   "comparisons": tested})
    return 0
