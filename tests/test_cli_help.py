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


def test_method_citations_point_at_sections_of_docs_method():
    """Help, docstrings and comments cite `docs/method.md §N`: every cited section exists, nothing cites a
    document that is not in the repository."""
    sections = set(re.findall(r"^## (\d+)\. ", (REPO / "docs/method.md").read_text(), flags=re.MULTILINE))
    assert sections == {str(n) for n in range(1, 13)}
    cited, outside = set(), []
    for path in [*REPO.glob("raven/**/*.py"), *REPO.glob("workflow/**/*.smk"), *REPO.glob("config/**/*.yaml"),
                 REPO / "README.md", REPO / "Snakefile"]:
        text = path.read_text()
        cited |= {(n, path.name) for n in re.findall(r"docs/method\.md §(\d+)", text)}
        if "SPEC" + " §" in text:  # the old citations of a document outside the repository
            outside.append(str(path.relative_to(REPO)))
    assert outside == []
    assert len(cited) > 50 and {(n, name) for n, name in cited if n not in sections} == set()
