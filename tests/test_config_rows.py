"""Rows as a scale runs them: released baselines where the scale gives their checkpoints, one run for rows
that resolve to the same thing, errors naming the key."""

from __future__ import annotations

import pytest

from raven.config import ConfigError, load_experiments, resolve_spec
from raven.config.rows import rows_at_scale, same_runs, seed_paired
from raven.tracking import config_hash

ROWS = {
    "raven": {"method": "dmd", "init": "ode_causal", "recipe": "r"},
    "sf": {"method": "dmd", "init": "ode_bidirectional", "recipe": "sf mini", "released": "SF released (EMA)"},
    "cf": {"method": "dmd", "init": "ode_causal", "recipe": "cf mini", "released": "CF released"},
    "cf_rl": {"method": "cmgrpo", "from": "cf", "recipe": "rl"},
    "rolling": {"method": "inference", "from": "sf", "recipe": "rolling mini", "released": "RF released"},
}


def test_released_rows_where_the_scale_gives_their_checkpoints():
    rows = rows_at_scale(ROWS, {"sf": {"path": "sf.pt"}, "rolling": {"path": "rf.pt"}})
    assert rows["sf"] == {"method": "released", "recipe": "SF released (EMA)", "released": "SF released (EMA)"}
    assert rows["rolling"]["method"] == "released" and "from" not in rows["rolling"]
    assert rows["cf"] == ROWS["cf"] and rows["cf_rl"] == ROWS["cf_rl"]
    assert rows_at_scale(ROWS, {}) == ROWS  # toy scales: the miniatures


def test_released_rows_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"weights.baselines names \['nope'\]"):
        rows_at_scale(ROWS, {"nope": {"path": "x"}})
    with pytest.raises(ConfigError, match="rows.raven has no `released` line"):
        rows_at_scale(ROWS, {"raven": {"path": "x"}})
    with pytest.raises(ConfigError, match="weights.baselines.only"):
        rows_at_scale({"only": {"method": "released", "released": "x"}}, {})


def test_rows_with_the_same_run_map_to_the_first():
    specs = {"raven": "A", "sf": "B", "cf": "B", "cf_rl": "C", "rolling": "D"}
    assert same_runs(ROWS, specs.get) == {row: row for row in ROWS}  # sf and cf start from other inits
    same_init = {**ROWS, "sf": {**ROWS["sf"], "init": "ode_causal"}}
    runs = same_runs(same_init, specs.get)
    assert runs == {"raven": "raven", "sf": "sf", "cf": "sf", "cf_rl": "cf_rl", "rolling": "rolling"}
    # a row continuing the duplicate is the same run as the one continuing the first
    runs = same_runs({**same_init, "sf_rl": {"method": "cmgrpo", "from": "sf"}}, {**specs, "sf_rl": "C"}.get)
    assert runs["sf_rl"] == "cf_rl"
    released = rows_at_scale(ROWS, {"sf": {"path": "a.pt"}, "rolling": {"path": "a.pt"}})
    baselines = {"sf": ("a.pt", "generator_ema"), "rolling": ("a.pt", "generator_ema")}
    assert same_runs(released, {**specs, "rolling": "B"}.get, baselines)["rolling"] == "sf"
    assert same_runs(released, {**specs, "rolling": "B"}.get, {**baselines, "rolling": ("b.pt", None)})["rolling"] \
        == "rolling"


def test_a_from_cycle_is_an_error():
    with pytest.raises(ConfigError, match="a -> b -> a"):
        same_runs({"a": {"method": "cmgrpo", "from": "b"}, "b": {"method": "cmgrpo", "from": "a"}}, lambda r: 0)


@pytest.mark.parametrize("scale", ["smoke", "tiny", "paper"])
def test_no_two_rows_of_the_experiments_run_the_same_thing(repo_root, scale):
    config = repo_root / "config"
    baselines = resolve_spec(config, scale).weights.baselines
    rows = rows_at_scale(load_experiments(config), baselines)

    def identity(row):
        spec = resolve_spec(config, scale, row).model_dump(mode="json")
        return config_hash({k: v for k, v in spec.items() if k != "row"})

    runs = same_runs(rows, identity, baselines)
    assert all(run == row for row, run in runs.items()), {row: run for row, run in runs.items() if run != row}
    if scale == "paper":
        assert {"causvid", "self_forcing", "causal_forcing"} <= {r for r, s in rows.items() if s["method"] == "released"}


def test_a_released_row_prints_its_released_recipe(repo_root):
    from raven.evaluation.rows import row_recipe

    config = repo_root / "config"
    rows = load_experiments(config)
    paper = resolve_spec(config, "paper").weights.baselines
    assert row_recipe(config, "causvid", paper) == rows["causvid"]["released"]
    assert row_recipe(config, "causvid", resolve_spec(config, "tiny").weights.baselines) == rows["causvid"]["recipe"]
    assert row_recipe(config, "raven", paper) == rows["raven"]["recipe"]


def test_rows_are_seed_paired_when_one_continues_the_other_or_both_continue_one_row(repo_root):
    rows = rows_at_scale(load_experiments(repo_root / "config"), {})
    assert seed_paired(rows, "raven_cmgrpo", "raven") and seed_paired(rows, "raven", "raven_cmgrpo")
    assert seed_paired(rows, "raven_cmgrpo", "rw_ta1_dd0.35_ms0.75_aq1_iq1")  # both continue raven
    assert not seed_paired(rows, "raven", "self_forcing") and not seed_paired(rows, "raven", "raven")
    # where causal_forcing is trained it has replicas; where it is a released checkpoint it has none
    assert seed_paired(rows, "causal_forcing_cmgrpo", "causal_forcing")
    paper = rows_at_scale(load_experiments(repo_root / "config"), {"causal_forcing": {"path": "released"}})
    assert not seed_paired(paper, "causal_forcing_cmgrpo", "causal_forcing")
