# The paper tables (config/experiments.yaml `tables`) as Markdown, CSV and JSON: score tables print
# row JSONs beside the paper's numbers; `user_study` the study's win rates; `drift` the drift report.
# And the report's plots (chunk-weight curves, loss curves).


def table_rows(table):
    return " ".join(f"--row={shlex.quote(f'{label}={RESULTS}/rows/{row}.json')}" for label, row in TABLES[table].items())


rule table:
    input:
        spec=SHARED_SPEC,
        rows=lambda w: [RESULTS + f"/rows/{row}.json" for row in TABLES[w.table].values()],
    output:
        md=report(RESULTS + "/tables/{table}.md", category="Tables"),
        csv=RESULTS + "/tables/{table}.csv",
        json=RESULTS + "/tables/{table}.json",
    params: rows=lambda w: table_rows(w.table), out=RESULTS + "/tables"
    log: RESULTS + "/logs/tables/{table}.log"
    benchmark: RESULTS + "/benchmarks/tables/{table}.tsv"
    shell: "raven tables --spec {input.spec} --table {wildcards.table} {params.rows} --out-dir {params.out} > {log} 2>&1"


rule table_user_study:
    input: spec=SHARED_SPEC, analysis=RESULTS + "/userstudy/analysis.json"
    output:
        md=report(RESULTS + "/tables/user_study.md", category="Tables"),
        csv=RESULTS + "/tables/user_study.csv",
        json=RESULTS + "/tables/user_study.json",
    params: out=RESULTS + "/tables"
    log: RESULTS + "/logs/tables/user_study.log"
    benchmark: RESULTS + "/benchmarks/tables/user_study.tsv"
    shell: "raven tables --spec {input.spec} --table user_study --userstudy {input.analysis} --out-dir {params.out} "
           "> {log} 2>&1"


rule table_drift:
    input: spec=SHARED_SPEC, drift=RESULTS + "/eval/drift.json"
    output:
        md=report(RESULTS + "/tables/drift.md", category="Tables"),
        csv=RESULTS + "/tables/drift.csv",
        json=RESULTS + "/tables/drift.json",
    params: out=RESULTS + "/tables"
    log: RESULTS + "/logs/tables/drift.log"
    benchmark: RESULTS + "/benchmarks/tables/drift.tsv"
    shell: "raven tables --spec {input.spec} --table drift --drift {input.drift} --out-dir {params.out} > {log} 2>&1"


rule chunk_weight_curves:
    input: spec=SHARED_SPEC
    output: report(RESULTS + "/plots/chunk_weights.png", category="Plots")
    log: RESULTS + "/logs/plots/chunk_weights.log"
    benchmark: RESULTS + "/benchmarks/plots/chunk_weights.tsv"
    shell: "raven weights plot --spec {input.spec} --out {output} > {log} 2>&1"


rule loss_curves:
    """Every training run's logged losses, read from MLflow once all training has finished."""
    input:
        spec=SHARED_SPEC,
        runs=[RESULTS + f"/train/{row}/summary.json" for row in TRAINED_ROWS],
    output: report(directory(RESULTS + "/plots/loss_curves"), patterns=["{name}.png"], category="Loss curves")
    log: RESULTS + "/logs/plots/loss_curves.log"
    benchmark: RESULTS + "/benchmarks/plots/loss_curves.tsv"
    shell: "raven report loss-curves --spec {input.spec} --out-dir {output} > {log} 2>&1"
