"""The user study's votes: an append-only SQLite store that outlives every manifest.

- A pair id is a content id (`pair_id`): both methods, the prompt, both seeds, the sample number and a
  SHA-256 of each video's frames. A regenerated manifest gives the same pair the same id, so its
  votes stay attached to the videos people saw; a vote whose pair the manifest no longer has (other
  prompts, retrained videos) is archived: kept in the database, left out of the tally, reported by
  `summary()`, and counted again if that pair comes back.
- Votes are never updated or deleted: a second vote on a pair is history, the latest one counts.
- Each vote names the preferred method (or a tie), so it means the same whichever side showed it.
- The web page may only record a vote with the single-use token it issued when it showed that pair to
  that annotator (`issue` / `record_shown`): no votes for pairs never shown, no replayed forms.
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
import sqlite3
import time
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

DIMENSIONS = ("quality", "semantic", "overall")
CHOICES = ("A", "B", "tie")

SCHEMA = """
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pair TEXT NOT NULL, annotator TEXT NOT NULL, dimension TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('A', 'B', 'tie')), preferred TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS shown (
    token TEXT PRIMARY KEY, annotator TEXT NOT NULL, pair TEXT NOT NULL, issued REAL NOT NULL, used REAL);
"""


def pair_id(sides: Mapping[str, Mapping[str, Any]], prompt: str, sample: int) -> str:
    """The content id of a pair: the same methods, prompt, seeds, sample number and frames give the
    same id, whichever side each video is shown on. `sides`: {method: {"seed", "digest"}}."""
    content = {"prompt": prompt, "sample": sample,
               "videos": sorted([method, int(v["seed"]), v["digest"]] for method, v in sides.items())}
    return "p" + hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:20]


def votes_stamp(path: str | Path) -> str:
    """'<votes>:<last id>' of a database ('none' without one): changes whenever someone votes, so a
    Snakemake param built from it reruns the export after new votes. Read-only."""
    path = Path(path)
    if not path.is_file():
        return "none"
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)) as db:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'votes'").fetchone():
            return "0:0"
        count, last = db.execute("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM votes").fetchone()
    return f"{count}:{last}"


class SubmissionError(ValueError):
    """A malformed vote: missing dimension, bad choice or bad annotator id (HTTP 400)."""


class RefusedError(PermissionError):
    """A vote the annotator may not cast: a pair never shown to them, or a form already used (HTTP 403)."""


class JudgementStore:
    """The votes of one database, seen through one manifest (WAL: safe for concurrent raters)."""

    def __init__(self, path: str | Path, manifest: Mapping[str, Any]):
        self.path = Path(path)
        self.pairs = {p["pair"]: p for p in manifest["pairs"]}
        self.seed = manifest.get("seed", 0)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self.connect()) as db, db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    def connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    # ---- writing ----------------------------------------------------------------------------------

    @staticmethod
    def check_annotator(annotator: str) -> str:
        annotator = (annotator or "").strip()
        if not annotator or len(annotator) > 64:
            raise SubmissionError("annotator id must be 1-64 characters")
        return annotator

    def validate(self, pair: str, answers: Mapping[str, str]) -> None:
        if pair not in self.pairs:
            raise SubmissionError(f"unknown pair {pair!r}")
        for dimension in DIMENSIONS:
            if answers.get(dimension) not in CHOICES:
                raise SubmissionError(f"{dimension}: choose one of {', '.join(CHOICES)} "
                                      f"(got {answers.get(dimension)!r})")
        extra = set(answers) - set(DIMENSIONS)
        if extra:
            raise SubmissionError(f"unknown dimensions {sorted(extra)}")

    def insert(self, db: sqlite3.Connection, pair: str, annotator: str, answers: Mapping[str, str]) -> None:
        entry = self.pairs[pair]
        rows = [(pair, annotator, d, answers[d], "tie" if answers[d] == "tie" else entry[answers[d]]["method"],
                 time.time()) for d in DIMENSIONS]
        db.executemany("INSERT INTO votes (pair, annotator, dimension, choice, preferred, created) "
                       "VALUES (?, ?, ?, ?, ?, ?)", rows)

    def record(self, pair: str, annotator: str, answers: Mapping[str, str]) -> None:
        """Store one pair's three answers atomically (all or none), for trusted callers (simulated raters)."""
        annotator = self.check_annotator(annotator)
        self.validate(pair, answers)
        with closing(self.connect()) as db, db:
            self.insert(db, pair, annotator, answers)

    def issue(self, annotator: str, pair: str) -> str:
        """The single-use form token for showing `pair` to `annotator` (an unused one is reused on reload)."""
        annotator = self.check_annotator(annotator)
        with closing(self.connect()) as db, db:
            row = db.execute("SELECT token FROM shown WHERE annotator = ? AND pair = ? AND used IS NULL",
                             (annotator, pair)).fetchone()
            if row:
                return row[0]
            token = secrets.token_urlsafe(24)
            db.execute("INSERT INTO shown (token, annotator, pair, issued) VALUES (?, ?, ?, ?)",
                       (token, annotator, pair, time.time()))
            return token

    def record_shown(self, token: str, annotator: str, answers: Mapping[str, str]) -> str:
        """Store the answers to the pair that `token` showed `annotator`; the token is spent in the same
        transaction, so a replayed form is refused. Returns the pair id."""
        annotator = self.check_annotator(annotator)
        with closing(self.connect()) as db, db:
            row = db.execute("SELECT pair FROM shown WHERE token = ? AND annotator = ? AND used IS NULL",
                             (token or "", annotator)).fetchone()
            if row is None or row[0] not in self.pairs:
                raise RefusedError("this form is not valid: the comparison was not shown to you, or the form "
                                   "was already submitted")
            self.validate(row[0], answers)
            db.execute("UPDATE shown SET used = ? WHERE token = ?", (time.time(), token))
            self.insert(db, row[0], annotator, answers)
            return row[0]

    # ---- reading ----------------------------------------------------------------------------------

    def order(self, annotator: str) -> list[str]:
        """The annotator's own pair order: a shuffle seeded by the study seed and the annotator id."""
        ids = sorted(self.pairs)
        random.Random(f"{self.seed}:{annotator.strip()}").shuffle(ids)
        return ids

    def was_shown(self, annotator: str, pair: str) -> bool:
        with closing(self.connect()) as db:
            return db.execute("SELECT 1 FROM shown WHERE annotator = ? AND pair = ?",
                              (annotator.strip(), pair)).fetchone() is not None

    def rows(self, history: bool = False) -> list[dict[str, Any]]:
        """The votes on this manifest's pairs: the latest per (pair, annotator, dimension), or every one."""
        latest = "" if history else "WHERE id IN (SELECT MAX(id) FROM votes GROUP BY pair, annotator, dimension)"
        with closing(self.connect()) as db:
            cursor = db.execute(f"SELECT id, pair, annotator, dimension, choice, preferred, created FROM votes "
                                f"{latest} ORDER BY id")
            keys = ("id", "pair", "annotator", "dimension", "choice", "preferred", "created")
            return [row for row in (dict(zip(keys, r)) for r in cursor) if row["pair"] in self.pairs]

    def judged_pairs(self, annotator: str) -> set[str]:
        """This manifest's pairs the annotator has answered on every dimension."""
        with closing(self.connect()) as db:
            rows = db.execute("SELECT pair FROM votes WHERE annotator = ? GROUP BY pair "
                              "HAVING COUNT(DISTINCT dimension) = ?", (annotator.strip(), len(DIMENSIONS)))
            return {row[0] for row in rows if row[0] in self.pairs}

    def next_pair(self, annotator: str) -> str | None:
        """The first pair of the annotator's order not judged yet: reloading resumes there."""
        done = self.judged_pairs(annotator)
        return next((p for p in self.order(annotator) if p not in done), None)

    def summary(self) -> dict[str, Any]:
        """Counts for the analysis and for `prepare`: votes that count, superseded (history) and archived."""
        with closing(self.connect()) as db:
            everything = db.execute("SELECT pair, annotator, dimension FROM votes").fetchall()
        current = [r for r in everything if r[0] in self.pairs]
        archived = [r for r in everything if r[0] not in self.pairs]
        counted = len(set(current))
        submissions: dict[tuple[str, str], int] = {}
        for pair, annotator, _ in current:
            submissions[(pair, annotator)] = submissions.get((pair, annotator), 0) + 1
        return {"counted": counted, "superseded": len(current) - counted,
                "revised_pairs": sum(n > len(DIMENSIONS) for n in submissions.values()),
                "pairs_judged": len({r[0] for r in current}),
                "archived": len(archived), "archived_pairs": len({r[0] for r in archived})}


def describe(summary: Mapping[str, Any], path: str | Path) -> str:
    """One line for the prepare log: what happened to earlier votes under a (re)generated manifest."""
    text = (f"{path}: {summary['counted']} votes on {summary['pairs_judged']} pairs of this manifest are kept "
            f"({summary['superseded']} earlier ones kept as history)")
    if summary["archived"]:
        text += (f"; {summary['archived']} votes on {summary['archived_pairs']} pairs this manifest no longer has "
                 "are archived: they stay in the database, are left out of the tally, and count again if those "
                 "pairs come back")
    return text


def export(store: JudgementStore, path: str | Path) -> dict[str, Any]:
    """The votes that count now plus the summary, as JSON: the snapshot Snakemake's analysis reads."""
    from raven.io import atomic_write_json

    snapshot = {"summary": store.summary(), "votes": store.rows()}
    atomic_write_json(path, snapshot)
    return snapshot

