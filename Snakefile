# The RAVEN reproduction DAG. Rows and tables come from config/experiments.yaml; stage logic lives
# in the `raven` command. Profiles: `--profile local` (tiny scale), `--profile slurm` (paper scale,
# GPU stages submitted by submitit), `--config scale=smoke` for CI.
from snakemake.utils import validate

from raven.config.check import check_config_files

configfile: "config/config.yaml"
envvars: "PATH"  # common.smk puts this environment's `raven` first on it
# Every key of config.yaml/--config, the scale file and config/experiments.yaml (rows, stage options),
# naming the file, row, key path and nearest valid key (workflow/schemas/).
check_config_files(config)
validate(config, "workflow/schemas/config.schema.yaml")
report: "workflow/report/workflow.rst"

include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/init.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/userstudy.smk"
include: "workflow/rules/tables.smk"

rule all:
    input:
        expand(results("tables/{table}.md"), table=TABLES),
        expand(results("samples/{row}/grid.png"), row=BASE_ROWS),
        results("plots/chunk_weights.png"),
        results("plots/loss_curves"),
