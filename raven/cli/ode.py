"""`raven ode pairs`: ODE trajectories of a teacher for the causal ODE initialisation (docs/method.md §6 step 2)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ode", help="ODE trajectories for the causal ODE initialisation")
    commands = parser.add_subparsers(dest="ode_command", required=True, metavar="COMMAND")
    pairs = commands.add_parser("pairs", help="sample ODE trajectories (many Euler steps, CFG) into shards")
    pairs.add_argument("--spec", required=True, help="resolved run spec YAML (raven spec)")
    pairs.add_argument("--teacher", required=True,
                       help="output folder of `raven train causal-teacher` (chunkwise) or of `raven train base` "
                            "(bidirectional, the CausVid variant)")
    pairs.add_argument("--prompts", required=True, help="training prompt file")
    pairs.add_argument("--out", required=True, help="folder for pairs-*.safetensors and summary.json")
    pairs.add_argument("--text-cache", help="text-embedding cache folder (raven data text-cache); default: encode")
    pairs.set_defaults(handler=run_pairs)


def run_pairs(args: argparse.Namespace) -> int:
    from raven.training.ode_init import ode_pairs_stage

    ode_pairs_stage(args.spec, teacher=args.teacher, prompts=args.prompts, out=args.out, text_cache=args.text_cache)
    return 0
