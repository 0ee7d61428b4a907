# The paper tables (config/experiments.yaml `tables`) as Markdown, CSV and JSON: score tables print
# row JSONs beside the paper's numbers; `user_study` the study's win rates; `drift` the drift report.
# And the report's plots (chunk-weight curves, loss curves).
# snakemake --lint 'Mixed rules and functions': these helpers are the rules' own lookups, kept beside
# the rules that use them so that each rule stays a few lines.


def table_rows(table):
    return " ".join(f"--row={shlex.quote(f'{label}={RESULTS}/rows/{row}.json')}" for label, row in TABLES[table].items())


rule table:
    input:
        spec=SHARED_SPEC,
        rows=lambda w: [results(f"rows/{row}.json") for row in TABLES[w.table].values()],
    output:
        md=report(results("tables/{table}.md"), category="Tables"),
        csv=results("tables/{table}.csv"),
        json=results("tables/{table}.json"),
    params: rows=lambda w: table_rows(w.table), out=lambda w, output: os.path.dirname(output.md)
    conda: CONDA_ENV
    log: results("logs/tables/{table}.log")
    benchmark: results("benchmarks/tables/{table}.tsv")
    shell: "raven tables --spec {input.spec} --table {wildcards.table} {params.rows} --out-dir {params.out} > {log} 2>&1"


rule table_user_study:
    input: spec=SHARED_SPEC, analysis=results("userstudy/analysis.json")
    output:
        md=report(results("tables/user_study.md"), category="Tables"),
        csv=results("tables/user_study.csv"),
        json=results("tables/user_study.json"),
    params: out=lambda w, output: os.path.dirname(output.md)
    conda: CONDA_ENV
    log: results("logs/tables/user_study.log")
    benchmark: results("benchmarks/tables/user_study.tsv")
    shell: "raven tables --spec {input.spec} --table user_study --userstudy {input.analysis} --out-dir {params.out} "
           "> {log} 2>&1"


rule table_drift:
    input: spec=SHARED_SPEC, drift=results("eval/drift.json")
    output:
        md=report(results("tables/drift.md"), category="Tables"),
        csv=results("tables/drift.csv"),
        json=results("tables/drift.json"),
    params: out=lambda w, output: os.path.dirname(output.md)
    conda: CONDA_ENV
    log: results("logs/tables/drift.log")
    benchmark: results("benchmarks/tables/drift.tsv")
    shell: "raven tables --spec {input.spec} --table drift --drift {input.drift} --out-dir {params.out} > {log} 2>&1"


rule chunk_weight_curves:
    input: spec=SHARED_SPEC
    output: report(results("plots/chunk_weights.png"), category="Plots")
    conda: CONDA_ENV
    log: results("logs/plots/chunk_weights.log")
    benchmark: results("benchmarks/plots/chunk_weights.tsv")
    shell: "raven weights plot --spec {input.spec} --out {output} > {log} 2>&1"


rule loss_curves:
    """Every training run's logged losses, read from MLflow once all training has finished."""
    input:
        spec=SHARED_SPEC,
        runs=[results(f"train/{row}/summary.json") for row in TRAINED_ROWS],
    output: report(directory(results("plots/loss_curves")), patterns=["{name}.png"], category="Loss curves")
    conda: CONDA_ENV
    log: results("logs/plots/loss_curves.log")
    benchmark: results("benchmarks/plots/loss_curves.tsv")
    shell: "raven report loss-curves --spec {input.spec} --out-dir {output} > {log} 2>&1"
