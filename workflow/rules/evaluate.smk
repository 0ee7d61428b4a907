# Metrics of every row's samples and its row JSON (results/<scale>/rows/<row>.json, logged to MLflow
# once per table that prints it), the unit every score table is built from (docs/method.md §10). The scale
# decides the benchmark: the toy-world benchmark, or VBench (+ UnifiedReward dynamic degree) when
# the scale configures `stages.vbench` (`stages.unified_reward`). The toy-world benchmark and the
# drift report parse small toy videos on the CPU: light rules, run in place (no `raven launch`).


rule eval_toy:
    """The toy world's stand-in for the VBench job: the same names, static filter and scored set."""
    input: spec=results("specs/{row}.yaml"), samples=results("samples/{row}/summary.json"), plan=PROTOCOL
    output: results("eval/{row}/toy.json")
    params: samples=lambda w, input: os.path.dirname(input.samples), work=results("eval/{row}/toy")
    conda: CONDA_ENV
    log: results("logs/eval/{row}/toy.log")
    benchmark: results("benchmarks/eval/{row}/toy.tsv")
    shell: "raven eval toy --spec {input.spec} --samples {params.samples} --plan {input.plan} --work {params.work} "
           "--out {output} > {log} 2>&1"


rule vbench_protocol:
    """VBench's sampling plan (docs/method.md §10): every file's name `<prompt>-<i>.mp4`, text (the extended prompt
    when stages.vbench.extended_prompts is set) and seed offset, and the prompt file every evaluated row
    samples, one line per file (sample rule). Toy scales: the held-out prompts stand in for the suite."""
    input: spec=SHARED_SPEC, suite=[] if BENCHMARK == "vbench" else HELDOUT
    output: plan=PROTOCOL, prompts=PROTOCOL_PROMPTS
    params: suite=lambda w, input: f"--suite {input.suite}" if input.suite else ""
    conda: CONDA_ENV
    log: results("logs/eval/vbench_protocol.log")
    benchmark: results("benchmarks/eval/vbench_protocol.tsv")
    shell: "raven eval vbench-protocol --spec {input.spec} {params.suite} --out {output.plan} "
           "--prompts {output.prompts} > {log} 2>&1"


rule vbench_env:
    """The separate VBench virtual environment (workflow/envs/vbench.txt; VBench pins transformers 4.33)."""
    input: spec=SHARED_SPEC, requirements="workflow/envs/vbench.txt"
    output: results("eval/vbench_env.done")
    conda: CONDA_ENV
    log: results("logs/eval/vbench_env.log")
    benchmark: results("benchmarks/eval/vbench_env.tsv")
    shell: "raven eval vbench-env --spec {input.spec} > {log} 2>&1 && touch {output}"


rule eval_vbench:
    """One single-node job per row (launchers.vbench: one task that runs VBench on every GPU of its node):
    the protocol's names linked to the row's samples, VBench's static filter, the 16 dimensions, totals."""
    input:
        spec=results("specs/{row}.yaml"),
        samples=results("samples/{row}/summary.json"),
        plan=PROTOCOL,
        env=results("eval/vbench_env.done"),
    output: results("eval/{row}/vbench.json")
    params: samples=lambda w, input: os.path.dirname(input.samples), work=results("eval/{row}/vbench")
    conda: CONDA_ENV
    log: results("logs/eval/{row}/vbench.log")
    benchmark: results("benchmarks/eval/{row}/vbench.tsv")
    shell: launched("vbench", results("logs/launch/{wildcards.row}/vbench")) + " eval vbench --spec {input.spec} "
           "--samples {params.samples} --plan {input.plan} --work {params.work} --out {output} > {log} 2>&1"


rule eval_unified_reward:
    input: spec=results("specs/{row}.yaml"), samples=results("samples/{row}/summary.json")
    output: results("eval/{row}/unified_reward.json")
    params: samples=lambda w, input: os.path.dirname(input.samples)
    conda: CONDA_ENV
    log: results("logs/eval/{row}/unified_reward.log")
    benchmark: results("benchmarks/eval/{row}/unified_reward.tsv")
    shell: launched("unified_reward", results("logs/launch/{wildcards.row}/unified_reward")) + " eval unified-reward "
           "--spec {input.spec} --samples {params.samples} --out {output} > {log} 2>&1"


rule row:
    """One table row: the benchmark's metrics (+ UnifiedReward's dynamic degree) and the row's recipe."""
    input:
        spec=results("specs/{row}.yaml"),
        metrics=lambda w: [results(f"eval/{replica}/{BENCHMARK}.json") for replica in replicas_of(w.row)],
        dyn_deg=lambda w: [results(f"eval/{replica}/unified_reward.json") for replica in replicas_of(w.row)]
        if DYN_DEG_JUDGE else [],
        training=lambda w: sorted({s for replica in replicas_of(w.row) for s in training_chain(replica)}),
        grid=results("samples/{row}/grid.png"),
    output: results("rows/{row}.json")
    params:
        dyn_deg=lambda w, input: f"--dyn-deg {input.dyn_deg}" if input.dyn_deg else "",
        training=lambda w, input: f"--training {input.training}" if input.training else "",
    conda: CONDA_ENV
    log: results("logs/rows/{row}.log")
    benchmark: results("benchmarks/rows/{row}.tsv")
    shell: "raven eval row --spec {input.spec} --row {wildcards.row} --metrics {input.metrics} {params.dyn_deg} "
           "{params.training} --grid {input.grid} > {log} 2>&1"


rule long_samples:
    """Videos DRIFT_LENGTH times the training length, for the drift report."""
    input:
        spec=results("specs/{row}.yaml"),
        student=lambda w: student_of(w.row)[0],
        prompts=HELDOUT,
    output: results("samples/{row}/long/summary.json")
    params:
        out=results("samples/{row}/long"),
        model=lambda w: model_flags(w.row),
        mode=lambda w: sample_mode(w.row),
        chunks=DRIFT_LENGTH * len(SHARED.chunk_frames),
    conda: CONDA_ENV
    log: results("logs/sample/{row}_long.log")
    benchmark: results("benchmarks/sample/{row}_long.tsv")
    shell: launched("sample", results("logs/launch/{wildcards.row}/sample_long")) + " sample --spec {input.spec} "
           "{params.model} --prompts {input.prompts} --mode {params.mode} --chunks {params.chunks} "
           "--out {params.out} > {log} 2>&1"


rule drift:
    input:
        spec=SHARED_SPEC,
        samples=lambda w: [results(f"samples/{row}/long/summary.json") for row in TABLES["drift"].values()],
    output:
        json=results("eval/drift.json"),
        plot=report(results("plots/drift.png"), category="Plots"),
    params:
        samples=" ".join(f"--samples {label}={RESULTS}/samples/{row}/long" for label, row in TABLES["drift"].items()),
    conda: CONDA_ENV
    log: results("logs/eval/drift.log")
    benchmark: results("benchmarks/eval/drift.tsv")
    shell: "raven eval drift --spec {input.spec} {params.samples} --out {output.json} --plot {output.plot} > {log} 2>&1"
