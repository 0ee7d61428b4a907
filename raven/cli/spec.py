"""`raven spec`: resolve config files into one run spec YAML (the input of every other stage)."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("spec", help="resolve config/ into a run spec YAML for one scale and row")
    parser.add_argument("--config-dir", default="config", help="folder of config.yaml, scales/ and experiments.yaml")
    parser.add_argument("--scale", help="a file config/scales/<scale>.yaml (default: config.yaml's 'scale')")
    parser.add_argument("--row", help="a row of config/experiments.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one key path; the value is JSON or a YAML flow mapping, e.g. --set seed=3 "
                             "--set stages.dmd.iterations=10 --set 'stages.cmgrpo.reward_weights={aq_AES: 1}'")
    parser.add_argument("--out", required=True, help="where to write the resolved spec")
    parser.set_defaults(handler=run)


def override_value(raw: str):
    """A `--set` value: JSON (numbers, strings, lists, objects), or a YAML flow mapping or list
    (`{videoalign_TA: -2.0, aq_AES: 1}`); anything else stays the text as given (`--set row=raven`)."""
    import yaml

    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        pass
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    return value if isinstance(value, (dict, list)) else raw


def parse_overrides(items: list[str]) -> dict:
    """`["stages.dmd.iterations=120", ...]` as one nested override {stages: {dmd: {iterations: 120}}}."""
    from raven.config import ConfigError, deep_merge

    overrides: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. seed=3")
        value = override_value(raw)
        for part in reversed(key.split(".")):
            value = {part: value}
        overrides = deep_merge(overrides, value)
    return overrides


def run(args: argparse.Namespace) -> int:
    from raven.config import resolve_spec, write_spec

    spec = resolve_spec(args.config_dir, args.scale, args.row, parse_overrides(args.set))
    write_spec(spec, args.out)
    return 0
