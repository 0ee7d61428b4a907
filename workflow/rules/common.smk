# Lookups shared by every rule: the scale, the rows and tables of config/experiments.yaml, the
# resolved run spec of a row. No stage logic here.
import json
import os
import shlex
import sys

from raven.config import load_experiments, load_yaml, resolve_spec
from raven.tracking import config_hash

# `raven` of the environment running Snakemake, even when that environment is not activated.
os.environ["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"

SCALE = config["scale"]
RESULTS = f"{config['results_dir']}/{SCALE}"
ROWS = load_experiments("config")
TABLES = load_yaml("config/experiments.yaml")["tables"]
RUN_SETTINGS = {key: config[key] for key in ("seed", "results_dir", "tracking_uri", "launcher")}

wildcard_constraints:
    row="|".join(map(lambda name: name.replace(".", r"\."), ROWS)),


def spec_hash(row=None):
    """Hash of what the row's spec determines (not where or how it runs): the `params` of a spec
    rule, so only rows whose spec changed rerun, and a new launcher or results folder reruns nothing."""
    return config_hash(resolve_spec("config", SCALE, row, RUN_SETTINGS).model_dump(mode="json"))


SPEC_SETTINGS = " ".join(f"--set {key}={shlex.quote(json.dumps(value))}" for key, value in RUN_SETTINGS.items())
# Heavy stages run through `raven launch {LAUNCH} --stage NAME --logs DIR -- <stage command>`; the
# launcher of this invocation (profile) wins over the one written in the spec.
LAUNCH = f"--launcher {shlex.quote(json.dumps(config['launcher']))}"


def spec_of(row):
    return f"{RESULTS}/specs/{row}.yaml"


SHARED_SPEC = f"{RESULTS}/specs/_shared.yaml"


rule row_spec:
    output: RESULTS + "/specs/{row}.yaml"
    params: spec=lambda w: spec_hash(w.row)
    log: RESULTS + "/logs/spec/{row}.log"
    benchmark: RESULTS + "/benchmarks/spec/{row}.tsv"
    shell: "raven spec --scale {SCALE} --row {wildcards.row} {SPEC_SETTINGS} --out {output} > {log} 2>&1"


rule shared_spec:
    output: SHARED_SPEC
    params: spec=spec_hash()
    log: RESULTS + "/logs/spec/_shared.log"
    benchmark: RESULTS + "/benchmarks/spec/_shared.tsv"
    shell: "raven spec --scale {SCALE} {SPEC_SETTINGS} --out {output} > {log} 2>&1"
