# Lookups shared by every rule: the scale, the rows and tables of config/experiments.yaml, the
# resolved run spec of a row, where each row's model comes from. No stage logic here.
# snakemake --lint 'Mixed rules and functions': these helpers are the rules' own lookups, kept beside
# the rules that use them so that each rule stays a few lines.
import functools
import json
import os
import shlex
import sys

from raven.config import ConfigError, load_experiments, load_yaml, replica_names, resolve_spec, with_replicas
from raven.config.rows import METHODS, rows_at_scale, same_runs
from raven.config.spec import FROM_SCRATCH, INIT_MODES
from raven.tracking import config_hash

# `raven` of the environment running Snakemake, even when that environment is not activated.
os.environ["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"

SCALE = config["scale"]
RESULTS = f"{config['results_dir']}/{SCALE}"


def results(path):
    """`path` below this scale's results folder (`results/<scale>/<path>`), as a rule's file or a job's folder."""
    return f"{RESULTS}/{path}"


# The software of every rule: the main environment (`--sdm conda` builds it; the VBench rule's own venv is
# built by `vbench_env` from workflow/envs/). Paths of `conda:` are relative to the rule's file.
CONDA_ENV = "../../environment.yml"
TABLES = load_yaml("config/experiments.yaml")["tables"]
RUN_SETTINGS = {key: config[key] for key in ("seed", "results_dir", "tracking_uri", "launcher")}
# Where a run writes and how it is submitted: not part of what a spec computes (spec_hash leaves them out).
PLACEMENT = ("results_dir", "tracking_uri", "launcher")
# `--config from_scratch=true`: train the base model and both ODE inits through this DAG instead of loading
# released weights (the tiny scale's data/weights/tiny; see its README).
if str(config.get("from_scratch")).lower() == "true":
    RUN_SETTINGS.update(FROM_SCRATCH)
# The shared run spec (no row): weights given as local paths replace the stages that would train them.
SHARED = resolve_spec("config", SCALE, None, RUN_SETTINGS)
# The rows as this scale runs them (raven.config.rows): a baseline whose released checkpoint the scale
# gives (weights.baselines.<row>) is `method: released`; rows that would run the same thing are one run,
# which every table prints under each label that names one of them (SAME_RUN, below).
SCALE_ROWS = rows_at_scale(load_experiments("config"), SHARED.weights.baselines)


def replicas_of(row):
    return replica_names(row, SHARED.seeds)


def rows_of(method):
    return [row for row, settings in ROWS.items() if settings.get("method") == method]


def check_rows(rows):
    """Every row names a known method, a known init (dmd) or an existing row with a student (`from`), and
    every table label points at a row: a bad entry stops Snakemake at start-up, naming it."""
    where = "config/experiments.yaml"
    for row, settings in rows.items():
        method = settings.get("method")
        if method not in METHODS:
            raise ConfigError(f"{where}: rows.{row}.method is {method!r}; expected one of {list(METHODS)}")
        if method == "dmd" and settings.get("init") not in INIT_MODES:
            raise ConfigError(f"{where}: rows.{row}.init is {settings.get('init')!r}; expected one of {list(INIT_MODES)}")
        if method in ("cmgrpo", "inference"):
            source = rows.get(settings.get("from"), {})
            if source.get("method") not in ("dmd", "cmgrpo", "released"):
                raise ConfigError(f"{where}: rows.{row}.from is {settings.get('from')!r}; it must name a dmd, cmgrpo "
                                  "or released row (a row with a student)")
            weights = SHARED.weights.baselines.get(settings["from"])
            if method == "cmgrpo" and weights and (weights.lora or weights.key not in (None, "generator")):
                raise ConfigError(f"{where}: rows.{row} trains on {settings['from']}'s released checkpoint, which "
                                  "`raven train cmgrpo --init` loads by its first entry (generator), without LoRA; "
                                  f"weights.baselines.{settings['from']} asks for key/lora")
    for table, labels in TABLES.items():
        for label, row in labels.items():
            if row not in rows:
                raise ConfigError(f"{where}: tables.{table}.{label} names row {row!r}, which is not under 'rows'")


def spec_identity(row):
    """Hash of the row's resolved spec without its name (what it trains or samples; raven.config.rows)."""
    spec = resolve_spec("config", SCALE, row, RUN_SETTINGS).model_dump(mode="json")
    return config_hash({key: value for key, value in spec.items() if key not in (*PLACEMENT, "row")})


check_rows(SCALE_ROWS)
SAME_RUN = same_runs(SCALE_ROWS, spec_identity, SHARED.weights.baselines)
BASE_ROWS = {row: {**settings, **({"from": SAME_RUN[settings["from"]]} if settings.get("from") else {})}
             for row, settings in SCALE_ROWS.items() if SAME_RUN[row] == row}
TABLES = {table: {label: SAME_RUN[row] for label, row in labels.items()} for table, labels in TABLES.items()}
# Every row and its seed replicas <row>@s1.. (`seeds` of the scale, raven.config.with_replicas): a replica
# trains, samples and is evaluated like a row; the row's JSON pools its replicas with their spread.
ROWS = with_replicas(BASE_ROWS, SHARED.seeds)
DMD_ROWS, CMGRPO_ROWS = rows_of("dmd"), rows_of("cmgrpo")
TRAINED_ROWS = DMD_ROWS + CMGRPO_ROWS
# Evaluation (evaluate.smk): VBench when the scale configures it, else the toy-world benchmark; the
# UnifiedReward judge's dynamic degree when configured, else the benchmark's own.
BENCHMARK = "vbench" if "vbench" in SHARED.stages else "toy"
DYN_DEG_JUDGE = "unified_reward" in SHARED.stages
DRIFT_LENGTH = 4  # drift videos: this many times the training length (the eval issue's 4x)
# Tables built from other files than row JSONs (tables.smk); every other table prints row JSONs.
SCORE_TABLES = [table for table in TABLES if table not in ("user_study", "drift")]


def alternatives(names):
    return "|".join(name.replace(".", r"\.") for name in names)


wildcard_constraints:
    row=alternatives(ROWS),
    dmd_row=alternatives(DMD_ROWS),
    cmgrpo_row=alternatives(CMGRPO_ROWS),
    init=alternatives(INIT_MODES),
    table=alternatives(SCORE_TABLES),


def spec_hash(row=None, settings=None):
    """Hash of what the row's spec determines (not where or how it runs): the `params` of a spec
    rule, so only rows whose spec changed rerun, and a new launcher or results folder reruns nothing."""
    return cached_spec_hash(row, json.dumps(settings or {}, sort_keys=True))


@functools.lru_cache(maxsize=None)
def cached_spec_hash(row, settings):
    spec = resolve_spec("config", SCALE, row, {**RUN_SETTINGS, **json.loads(settings)}).model_dump(mode="json")
    return config_hash({key: value for key, value in spec.items() if key not in PLACEMENT})


def spec_settings(settings):
    return " ".join(f"--set {key}={shlex.quote(json.dumps(value))}" for key, value in settings.items())


SPEC_SETTINGS = spec_settings(RUN_SETTINGS)
# snakemake --lint flags shell commands that use SCALE, SPEC_SETTINGS, LAUNCH and BASE_MODEL directly.
# Kept on purpose: as params they would join the `params` rerun trigger, and a new launcher, results
# folder or --config setting must rerun nothing (the spec-hash param covers what they decide).
# Heavy stages run through `raven launch --spec S --stage NAME {LAUNCH} --logs DIR -- <stage command>`;
# the launcher of this invocation (profile) wins over the one written in the spec.
LAUNCH = f"--launcher {shlex.quote(json.dumps(config['launcher']))}"


SHARED_SPEC = f"{RESULTS}/specs/_shared.yaml"
PROMPTS = f"{RESULTS}/data/prompts/train.txt"
HELDOUT = f"{RESULTS}/data/prompts/heldout.txt"
CLIPS = f"{RESULTS}/data/clips"


def trained(folder):
    """A training stage's output folder -> (its summary.json, written last, as the Snakemake target;
    the EMA weights the next stage loads)."""
    return f"{folder}/summary.json", f"{folder}/model_ema"


# The bidirectional base (its output folder, summary target, weights): weights.base when given (paper
# scale: Wan2.1-T2V-1.3B), else trained here.
BASE_OUT = f"{RESULTS}/init/base"
BASE_DONE, BASE_MODEL = trained(BASE_OUT)
if SHARED.weights.base is not None:
    BASE_OUT, BASE_DONE, BASE_MODEL = str(SHARED.weights.base), [], str(SHARED.weights.base)


def student_of(row):
    """(summary target, model path) of the student a row samples: its own training run, for an inference
    row the student of the row it re-samples, for a released row its checkpoint (no target: given)."""
    method = ROWS[row]["method"]
    if method == "inference":
        return student_of(ROWS[row]["from"])
    if method == "released":
        return [], str(released(row).path)
    return trained(f"{RESULTS}/train/{row}")


def released(row):
    """weights.baselines entry of a released row (a replica samples its row's checkpoint)."""
    return SHARED.weights.baselines[ROWS[row]["replica_of"]]


def model_flags(row):
    """`raven sample` flags naming a row's student: --model, and for a released checkpoint the entry that
    holds its weights (--model-key) and a LoRA merged into it (--lora)."""
    source = ROWS[row]["from"] if ROWS[row]["method"] == "inference" else row
    flags = f"--model {student_of(row)[1]}"
    if ROWS[source]["method"] == "released":
        weights = released(source)
        flags += f" --model-key {weights.key}" if weights.key else ""
        flags += f" --lora {weights.lora}" if weights.lora else ""
    return flags


def sample_mode(row):
    """`raven sample --mode` of a row: its spec's sampler kind when that is a streaming mode."""
    kind = ((ROWS[row].get("overrides") or {}).get("sampler") or {}).get("kind", SHARED.sampler.kind)
    return "rolling" if kind == "rolling" else "consistency"


def training_chain(row):
    """Summary targets of every training stage a row's student comes from: its own run, the run it
    continues (cmgrpo) or re-samples (inference), the ODE init and the base model it started from. The
    row JSON records their iteration counts and whether a time guard stopped one short."""
    method = ROWS[row]["method"]
    if method == "inference":
        return training_chain(ROWS[row]["from"])
    if method == "released":
        return []
    own = [trained(f"{RESULTS}/train/{row}")[0]]
    if method == "cmgrpo":
        return own + training_chain(ROWS[row]["from"])
    return own + [f"{RESULTS}/init/{ROWS[row]['init']}/student/summary.json"] + ([BASE_DONE] if BASE_DONE else [])


def launched(stage, logs):
    """The `raven launch` prefix of a heavy rule: submitit job named `stage`, files under `logs`."""
    return f"raven launch --spec {{input.spec}} --stage {stage} {{LAUNCH}} --logs {logs} --"


rule row_spec:
    output: results("specs/{row}.yaml")
    params: spec=lambda w: spec_hash(w.row)
    conda: CONDA_ENV
    log: results("logs/spec/{row}.log")
    benchmark: results("benchmarks/spec/{row}.tsv")
    shell: "raven spec --scale {SCALE} --row {wildcards.row} {SPEC_SETTINGS} --out {output} > {log} 2>&1"


rule shared_spec:
    output: SHARED_SPEC
    params: spec=spec_hash()
    conda: CONDA_ENV
    log: results("logs/spec/_shared.log")
    benchmark: results("benchmarks/spec/_shared.tsv")
    shell: "raven spec --scale {SCALE} {SPEC_SETTINGS} --out {output} > {log} 2>&1"


rule init_spec:
    """The shared spec with the ODE-pair mode of one init (causal chunkwise / bidirectional teacher)."""
    output: results("specs/_{init}.yaml")
    params:
        spec=lambda w: spec_hash(settings={"stages": {"ode_pairs": {"mode": INIT_MODES[w.init]}}}),
        mode=lambda w: INIT_MODES[w.init],
    conda: CONDA_ENV
    log: results("logs/spec/_{init}.log")
    benchmark: results("benchmarks/spec/_{init}.tsv")
    shell: "raven spec --scale {SCALE} {SPEC_SETTINGS} --set stages.ode_pairs.mode={params.mode} --out {output} > {log} 2>&1"
