"""`raven report`: pictures for the Snakemake report. `loss-curves`: every training run's logged metrics."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="plots for the report")
    commands = parser.add_subparsers(dest="report_command", required=True, metavar="PLOT")
    curves = commands.add_parser("loss-curves", help="one PNG per MLflow training run of the spec's scale")
    curves.add_argument("--spec", required=True, help="resolved run spec (scale, tracking_uri)")
    curves.add_argument("--out-dir", required=True, help="writes <stage>-<run name>.png, then summary.json")
    curves.set_defaults(handler=loss_curves)


def loss_curves(args: argparse.Namespace) -> int:
    from pathlib import Path

    from raven.config import read_spec
    from raven.io import atomic_write_json
    from raven.tracking.plots import plot_training_runs

    spec = read_spec(args.spec)
    written = plot_training_runs(spec.tracking_uri, spec.scale, Path(args.out_dir))
    atomic_write_json(Path(args.out_dir) / "summary.json", {"scale": spec.scale, "plots": written})
    return 0
