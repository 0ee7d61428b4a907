"""`raven preflight`: check weights, data and each stage's GPU memory before anything is queued."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "preflight", help="check every local path the DAG needs and each stage's peak GPU memory per device",
        description="Checks that every weight and data path of the scale's DAG exists and has the expected format, "
                    "and estimates each stage's peak GPU memory per device (no GPU needed) against its launcher's "
                    "gpu_mem_gb. Prints a table; exits 1 naming each missing path (with its config key) and each "
                    "stage that would not fit (with the lever to change).")
    parser.add_argument("--config-dir", default="config", help="folder with config.yaml, scales/ and experiments.yaml")
    parser.add_argument("--scale", help="a file config/scales/<scale>.yaml (default: config.yaml's 'scale')")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one key path of every spec, e.g. --set launcher.name='\"slurm\"'")
    parser.add_argument("--out", help="write the report as JSON here (e.g. benchmarks/reports/preflight.json)")
    parser.add_argument("--warn-only", action="store_true",
                        help="print failures as warnings and exit 0 (the Snakemake dry run uses it)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from raven.cli.spec import parse_overrides
    from raven.io import atomic_write_json
    from raven.preflight_stages import run_preflight

    report = run_preflight(args.config_dir, args.scale, parse_overrides(args.set))
    print(report.table())
    if args.out:
        atomic_write_json(args.out, report.as_json())
    word = "warning" if args.warn_only else "error"
    for failure in report.failures:
        print(f"raven preflight: {word}: {failure}", file=sys.stderr)
    return 0 if args.warn_only or not report.failures else 1
