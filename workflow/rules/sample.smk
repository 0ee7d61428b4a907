# Samples of every row's student (trained here, or a baseline's released checkpoint) with the row's
# inference scheme (rolling window, sink/window come from its spec), and a qualitative grid (Figure 3).
# The prompts are the protocol's (docs/method.md §10; evaluate.smk, rule vbench_protocol): one line per file, seed =
# the row's seed + file index; VBench's suite at paper scale, the held-out toy prompts at toy scales.
PROTOCOL = results("eval/protocol.json")
PROTOCOL_PROMPTS = results("data/prompts/protocol.txt")


rule sample:
    input:
        spec=results("specs/{row}.yaml"),
        student=lambda w: student_of(w.row)[0],
        prompts=PROTOCOL_PROMPTS,
    output: results("samples/{row}/summary.json")
    params:
        out=results("samples/{row}"),
        model=lambda w: model_flags(w.row),
        mode=lambda w: sample_mode(w.row),
    conda: CONDA_ENV
    log: results("logs/sample/{row}.log")
    benchmark: results("benchmarks/sample/{row}.tsv")
    shell: launched("sample", results("logs/launch/{wildcards.row}/sample")) + " sample --spec {input.spec} "
           "{params.model} --prompts {input.prompts} --mode {params.mode} --out {params.out} > {log} 2>&1"


rule sample_grid:
    input: results("samples/{row}/summary.json")
    output: report(results("samples/{row}/grid.png"), category="Samples", subcategory="{row}")
    params: samples=lambda w, input: os.path.dirname(input[0])
    conda: CONDA_ENV
    log: results("logs/sample/{row}_grid.log")
    benchmark: results("benchmarks/sample/{row}_grid.tsv")
    shell: "raven report grid --samples {params.samples} --out {output} > {log} 2>&1"
