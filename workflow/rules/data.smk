# Training prompts and real clips (toy world at toy scales; VidProM / OpenVid-HD at paper scale).
# snakemake --lint 'Mixed rules and functions': the preflight's planning-time warnings and text_cache_flag
# are these rules' own lookups, kept beside the rules that use them.

# `raven preflight` checks every weight and data path of the DAG and each stage's GPU memory per device.
# On a cluster (launcher slurm) it is the first job, and Snakemake prints its warnings while planning
# (also with -n): the path problems, and the stages that did not fit in the last report.
PREFLIGHT = results("preflight.json")
ON_CLUSTER = config["launcher"]["name"] == "slurm"
if ON_CLUSTER:
    from raven.preflight import quick_warnings

    for warning in quick_warnings("config", SCALE, RUN_SETTINGS, PREFLIGHT):
        print(f"raven preflight: warning: {warning}", file=sys.stderr)


rule preflight:
    input: SHARED_SPEC
    output: PREFLIGHT
    conda: CONDA_ENV
    log: results("logs/preflight.log")
    benchmark: results("benchmarks/preflight.tsv")
    shell: "raven preflight --scale {SCALE} {SPEC_SETTINGS} --out {output} > {log} 2>&1"


rule prompts:
    input: spec=SHARED_SPEC, preflight=PREFLIGHT if ON_CLUSTER else []
    output:
        train=results("data/prompts/train.txt"),
        heldout=results("data/prompts/heldout.txt"),
        summary=report(results("data/prompts/summary.json"), category="Data"),
    conda: CONDA_ENV
    log: results("logs/data/prompts.log")
    benchmark: results("benchmarks/data/prompts.tsv")
    shell: "raven data prompts --spec {input.spec} --out-train {output.train} --out-heldout {output.heldout} --summary {output.summary} > {log} 2>&1"


rule clips:
    input: spec=SHARED_SPEC, prompts=rules.prompts.output.train
    output: results("data/clips/summary.json")
    params: out=lambda w, output: os.path.dirname(output[0])
    conda: CONDA_ENV
    log: results("logs/data/clips.log")
    benchmark: results("benchmarks/data/clips.tsv")
    shell: launched("clips", results("logs/launch/clips")) + " data clips --spec {input.spec} --prompts {input.prompts} "
           "--out {params.out} > {log} 2>&1"


# Text embeddings, encoded once by a launched job (bf16 on the GPU) into a memory-mapped cache that every
# trainer reads per batch (raven.data.text_cache): the training prompts, and the clips' captions for the
# stages that train on real clips, each with the empty and the negative prompts.
TEXT_CACHE = results("data/text_cache/index.json")
CAPTION_CACHE = results("data/clips/text_cache/index.json")


def text_cache_flag(wildcards, input):
    return f"--text-cache {os.path.dirname(input.text)}"


rule text_cache:
    input: spec=SHARED_SPEC, prompts=PROMPTS
    output: TEXT_CACHE
    params: out=lambda w, output: os.path.dirname(output[0])
    conda: CONDA_ENV
    log: results("logs/data/text_cache.log")
    benchmark: results("benchmarks/data/text_cache.tsv")
    shell: launched("text_cache", results("logs/launch/text_cache")) + " data text-cache --spec {input.spec} "
           "--prompts {input.prompts} --out {params.out} > {log} 2>&1"


rule caption_cache:
    input: spec=SHARED_SPEC, clips=results("data/clips/summary.json")
    output: CAPTION_CACHE
    params: out=lambda w, output: os.path.dirname(output[0]), clips=lambda w, input: os.path.dirname(input.clips)
    conda: CONDA_ENV
    log: results("logs/data/caption_cache.log")
    benchmark: results("benchmarks/data/caption_cache.tsv")
    shell: launched("text_cache", results("logs/launch/caption_cache")) + " data text-cache --spec {input.spec} "
           "--clips {params.clips} --out {params.out} > {log} 2>&1"


# Clip latents, encoded once by a launched job (the VAE on the GPU) and streamed by the real-clip stages.
CLIP_LATENTS = results("data/clips/latents/index.json")


rule clip_latents:
    input: spec=SHARED_SPEC, clips=results("data/clips/summary.json")
    output: CLIP_LATENTS
    params: clips=lambda w, input: os.path.dirname(input.clips)
    conda: CONDA_ENV
    log: results("logs/data/clip_latents.log")
    benchmark: results("benchmarks/data/clip_latents.tsv")
    shell: launched("clip_latents", results("logs/launch/clip_latents")) + " data clip-latents --spec {input.spec} "
           "--clips {params.clips} > {log} 2>&1"
