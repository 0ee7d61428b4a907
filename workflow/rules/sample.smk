# Samples of every row's student on the held-out prompts (toy protocol; SPEC §10), with the row's
# inference scheme (rolling window, sink/window come from its spec), and a qualitative grid (Figure 3).


rule sample:
    input:
        spec=RESULTS + "/specs/{row}.yaml",
        student=lambda w: student_of(w.row)[0],
        prompts=HELDOUT,
    output: RESULTS + "/samples/{row}/summary.json"
    params:
        out=RESULTS + "/samples/{row}",
        model=lambda w: student_of(w.row)[1],
        mode=lambda w: sample_mode(w.row),
    log: RESULTS + "/logs/sample/{row}.log"
    benchmark: RESULTS + "/benchmarks/sample/{row}.tsv"
    shell: launched("sample", RESULTS + "/logs/launch/{wildcards.row}/sample") + " sample --spec {input.spec} "
           "--model {params.model} --prompts {input.prompts} --mode {params.mode} --out {params.out} > {log} 2>&1"


rule sample_grid:
    input: RESULTS + "/samples/{row}/summary.json"
    output: report(RESULTS + "/samples/{row}/grid.png", category="Samples", subcategory="{row}")
    params: samples=RESULTS + "/samples/{row}"
    log: RESULTS + "/logs/sample/{row}_grid.log"
    benchmark: RESULTS + "/benchmarks/sample/{row}_grid.tsv"
    shell: "raven report grid --samples {params.samples} --out {output} > {log} 2>&1"
