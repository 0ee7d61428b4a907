# The RAVEN reproduction DAG. Rows and tables come from config/experiments.yaml; stage logic lives
# in the `raven` command. Profiles: `--profile local` (tiny scale), `--profile slurm` (paper scale,
# GPU stages submitted by submitit), `--config scale=smoke` for CI.
from snakemake.utils import validate

configfile: "config/config.yaml"
validate(config, "workflow/schemas/config.schema.yaml")
report: "workflow/report/workflow.rst"

include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"

rule all:
    input:
        expand(RESULTS + "/specs/{row}.yaml", row=ROWS),
        RESULTS + "/data/prompts/summary.json",
        RESULTS + "/data/clips/summary.json",
