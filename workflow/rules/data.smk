# Training prompts and real clips (toy world at toy scales; VidProM / OpenVid-HD at paper scale).

rule prompts:
    input: SHARED_SPEC
    output:
        train=RESULTS + "/data/prompts/train.txt",
        heldout=RESULTS + "/data/prompts/heldout.txt",
        summary=report(RESULTS + "/data/prompts/summary.json", category="Data"),
    log: RESULTS + "/logs/data/prompts.log"
    benchmark: RESULTS + "/benchmarks/data/prompts.tsv"
    shell: "raven data prompts --spec {input} --out-train {output.train} --out-heldout {output.heldout} --summary {output.summary} > {log} 2>&1"


rule clips:
    input: spec=SHARED_SPEC, prompts=rules.prompts.output.train
    output: RESULTS + "/data/clips/summary.json"
    params: out=RESULTS + "/data/clips"
    log: RESULTS + "/logs/data/clips.log"
    benchmark: RESULTS + "/benchmarks/data/clips.tsv"
    shell: "raven data clips --spec {input.spec} --prompts {input.prompts} --out {params.out} > {log} 2>&1"
