"""`raven train <trainer>`: every trainer runs the one loop of `raven.training.loop`.

Trainers: `base` (bidirectional base model, docs/method.md §1), `causal-teacher` and `ode-init` (docs/method.md §6),
`dmd` (docs/method.md §4, §5, §7) and `cmgrpo` (docs/method.md §8).
Each writes checkpoints, `<out>/model`, `<out>/model_ema` and `<out>/summary.json` last; a rerun resumes.
"""

from __future__ import annotations

import argparse

OUT_HELP = "output folder: checkpoints/, the exported model folders and summary.json (written last)"
TEXT_CACHE_HELP = "text-embedding cache folder (raven data text-cache): embeddings read per batch, no text encoder loaded"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a model (base, causal-teacher, ode-init, ...)")
    commands = parser.add_subparsers(dest="train_command", required=True, metavar="TRAINER")

    base = commands.add_parser("base", help="pretrain the bidirectional base model (flow matching)")
    base.add_argument("--spec", required=True, help="resolved run spec YAML (raven spec)")
    data = base.add_mutually_exclusive_group(required=True)
    data.add_argument("--clips", help="clip shards (raven data clips): objective flow")
    data.add_argument("--prompts", help="training prompt file: objective exact (the toy world's denoiser)")
    base.add_argument("--out", required=True, help=OUT_HELP)
    base.add_argument("--text-cache", help=TEXT_CACHE_HELP)
    base.set_defaults(handler=run_base)

    teacher = commands.add_parser("causal-teacher", help="block-causal teacher by teacher forcing (docs/method.md §6 step 1)")
    teacher.add_argument("--spec", required=True, help="resolved run spec YAML (raven spec)")
    teacher.add_argument("--init", help="base model folder (save_pretrained); not needed for kind 'exact'")
    data = teacher.add_mutually_exclusive_group()
    data.add_argument("--clips", help="clip shards of real videos")
    data.add_argument("--prompts", help="training prompt file (videos drawn from the toy world's mixture)")
    teacher.add_argument("--out", required=True, help=OUT_HELP)
    teacher.add_argument("--text-cache", help=TEXT_CACHE_HELP)
    teacher.set_defaults(handler=run_causal_teacher)

    ode_init = commands.add_parser("ode-init", help="regress the few-step causal student on ODE pairs (docs/method.md §6)")
    ode_init.add_argument("--spec", required=True, help="resolved run spec YAML (raven spec)")
    ode_init.add_argument("--pairs", required=True, help="folder written by `raven ode pairs`")
    ode_init.add_argument("--init", required=True, help="base model folder (save_pretrained)")
    ode_init.add_argument("--out", required=True, help=OUT_HELP)
    ode_init.add_argument("--text-cache", help=TEXT_CACHE_HELP)
    ode_init.set_defaults(handler=run_ode_init)

    dmd = commands.add_parser("dmd", help="DMD of the causal student with a history mode (docs/method.md §4, §7)")
    dmd.add_argument("--spec", required=True, help="resolved run spec YAML (raven spec)")
    dmd.add_argument("--init", required=True, help="ODE-init student folder (<ode_init out>/model)")
    dmd.add_argument("--prompts", required=True, help="training prompt file (raven data prompts)")
    dmd.add_argument("--clips", help="clip shards of real videos: needed by history modes tf and df")
    dmd.add_argument("--critic-init", help="bidirectional base model folder for the critic; default weights.base, "
                     "else the base model recorded in <init>/../summary.json")
    dmd.add_argument("--out", required=True, help=OUT_HELP)
    dmd.add_argument("--text-cache", help=TEXT_CACHE_HELP)
    dmd.set_defaults(handler=run_dmd)

    cmgrpo = commands.add_parser("cmgrpo", help="CM-GRPO (or Flow-GRPO) of the causal student with rewards (docs/method.md §8)")
    cmgrpo.add_argument("--spec", required=True, help="resolved run spec YAML (raven spec)")
    cmgrpo.add_argument("--init", required=True, help="student folder to start from (<dmd out>/model_ema)")
    cmgrpo.add_argument("--prompts", required=True, help="training prompt file (raven data prompts)")
    cmgrpo.add_argument("--out", required=True, help=OUT_HELP)
    cmgrpo.add_argument("--text-cache", help=TEXT_CACHE_HELP)
    cmgrpo.set_defaults(handler=run_cmgrpo)


def run_base(args: argparse.Namespace) -> int:
    from raven.training.base import train_base

    train_base(args.spec, clips=args.clips, prompts=args.prompts, out=args.out, text_cache=args.text_cache)
    return 0


def run_causal_teacher(args: argparse.Namespace) -> int:
    from raven.training.causal_teacher import train_causal_teacher

    train_causal_teacher(args.spec, init=args.init, clips=args.clips, prompts=args.prompts, out=args.out,
                         text_cache=args.text_cache)
    return 0


def run_ode_init(args: argparse.Namespace) -> int:
    from raven.training.ode_init import train_ode_init

    train_ode_init(args.spec, pairs=args.pairs, init=args.init, out=args.out, text_cache=args.text_cache)
    return 0


def run_dmd(args: argparse.Namespace) -> int:
    from raven.training.dmd import train_dmd

    train_dmd(args.spec, init=args.init, prompts=args.prompts, out=args.out, clips=args.clips,
              critic_init=args.critic_init, text_cache=args.text_cache)
    return 0


def run_cmgrpo(args: argparse.Namespace) -> int:
    from raven.training.cmgrpo import train_cmgrpo

    train_cmgrpo(args.spec, init=args.init, prompts=args.prompts, out=args.out, text_cache=args.text_cache)
    return 0
