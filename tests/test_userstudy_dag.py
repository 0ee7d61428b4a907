"""People's votes survive the real Snakemake rules of workflow/rules/userstudy.smk at smoke scale, with
human raters: the judgements rule asks for votes, votes are cast through the study server, the study
is analysed, `--forcerun userstudy_prepare` regenerates the manifest and the votes and the tally
survive; after an opponent's videos change, its votes are archived (kept, said so) and the rest count.
The samples the study compares are written here; `--allowed-rules` keeps the training DAG out."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from raven.config import load_yaml
from raven.evaluation.judgements import JudgementStore, votes_stamp
from raven.evaluation.samples import write_samples
from raven.evaluation.webapp import create_app
from raven.io import read_json
from raven.world.render import render

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
PROMPTS = ["red square right slow on black", "green circle down slow on grey", "blue triangle still on white",
           "yellow square left slow on black"]
RULES = ["shared_spec", "userstudy_prepare", "userstudy_judgements", "userstudy_analyze"]
DIMS = ("quality", "semantic", "overall")


def snakemake(results: Path, *args: str, ok: bool = True) -> str:
    config = ["--config", "scale=smoke", f"results_dir={results}", f"tracking_uri=sqlite:///{results}/mlflow.db",
              "userstudy_raters=human"]
    result = subprocess.run(["snakemake", "--profile", "local", *config, "--allowed-rules", *RULES, *args, "--",
                             str(results / "smoke/userstudy/analysis.json")],
                            cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert (result.returncode == 0) == ok, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def write_study_samples(results: Path, frozen: str) -> dict[str, str]:
    """Samples of every row of the `user_study` table (label -> row); the `frozen` label's videos stand still."""
    labels = load_yaml(REPO / "config/experiments.yaml")["tables"]["user_study"]
    for label, row in labels.items():
        videos = np.stack([render(p, i, 16, 16, 9, 8) for i, p in enumerate(PROMPTS)])
        if label == frozen:
            videos = np.repeat(videos[:, :1], videos.shape[1], axis=1)
        write_samples(results / f"smoke/samples/{row}/userstudy", videos, PROMPTS, [0, 1, 2, 3], fps=8)
    return labels


def vote_as(app, database: Path, annotator: str, manifest: dict, prefer: str) -> None:
    """Judge every pair shown to `annotator` through the server, always preferring `prefer`'s video."""
    client = app.test_client()
    client.get(f"/start?annotator={annotator}")
    pairs = {p["pair"]: p for p in manifest["pairs"]}
    for pair in JudgementStore(database, manifest).order(annotator):
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").get_data(as_text=True)).group(1)
        side = "A" if pairs[pair]["A"]["method"] == prefer else "B" if pairs[pair]["B"]["method"] == prefer else "tie"
        assert client.post("/judge", data={"csrf_token": token, **dict.fromkeys(DIMS, side)}).status_code == 303


def test_votes_and_tally_survive_forced_upstream_rules(tmp_path):
    results = tmp_path / "results"
    study = results / "smoke/userstudy"
    labels = write_study_samples(results, frozen="causvid")
    output = snakemake(results, ok=False)  # no votes yet: the judgements rule says what to do
    assert "No judgements yet: run `raven userstudy serve" in output
    manifest = read_json(study / "manifest.json")
    database = study / "judgements.sqlite"
    app = create_app(manifest, study, database)
    vote_as(app, database, "alice", manifest, prefer="raven")
    vote_as(app, database, "bob", manifest, prefer="causvid")
    snakemake(results)
    first = read_json(study / "analysis.json")
    assert sorted(labels) == ["causal_forcing", "causvid", "raven", "reward_forcing", "self_forcing"]
    assert first["judgements"] == 2 * 3 * 4 * 4 and first["annotators"] == 2  # annotators x dims x prompts x opponents
    assert first["results"]["causvid"]["overall"]["counts"] == {"win": 4, "tie": 0, "loss": 4}
    assert first["results"]["self_forcing"]["overall"]["counts"] == {"win": 4, "tie": 4, "loss": 0}
    assert "Nothing to be done" in snakemake(results)

    output = snakemake(results, "--forcerun", "userstudy_prepare")
    assert "rule userstudy_prepare:" in output and "rule userstudy_analyze:" in output
    log = (results / "smoke/logs/userstudy/prepare.log").read_text()
    assert "96 votes on 16 pairs of this manifest are kept" in log
    assert read_json(study / "analysis.json") == first

    # causvid retrained: its new videos get new pairs; its old votes are archived, the rest still count
    write_study_samples(results, frozen="nobody")
    snakemake(results, "--forcerun", "userstudy_prepare")
    log = (results / "smoke/logs/userstudy/prepare.log").read_text()
    # the still prompt's frames are the same frozen or not: those pairs (and votes) remain
    assert "18 votes on 3 pairs this manifest no longer has are archived" in log
    after = read_json(study / "analysis.json")
    assert after["votes"]["archived"] == 18 and after["judgements"] == first["judgements"] - 18
    assert after["results"]["causvid"]["overall"]["counts"] == {"win": 1, "tie": 0, "loss": 1}
    assert {k: v for k, v in after["results"].items() if k != "causvid"} == \
        {k: v for k, v in first["results"].items() if k != "causvid"}
    assert votes_stamp(database) == "96:96"  # every vote is still in the database
