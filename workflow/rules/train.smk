# Per-row training (docs/method.md §4, §7, §8): DMD from an ODE init, CM-GRPO / Flow-GRPO from another row's
# student. Rows come from config/experiments.yaml; an inference row trains nothing (sample.smk).
# snakemake --lint 'Mixed rules and functions': these helpers are the rules' own lookups, kept beside
# the rules that use them so that each rule stays a few lines.
from raven.config.load import row_overrides
from raven.config.spec import REAL_CLIP_MODES


def real_clips(row):
    """Real clips are an input of the rows whose history mode trains on them (tf, df) only."""
    mode = (row_overrides("config", row, SCALE).get("stages", {}).get("dmd", {}).get("history_mode")
            or SHARED.stages.get("dmd", {}).get("history_mode"))
    return [f"{CLIPS}/summary.json"] if mode in REAL_CLIP_MODES else []


rule train_dmd:
    input:
        spec=results("specs/{dmd_row}.yaml"),
        init=lambda w: results(f"init/{ROWS[w.dmd_row]['init']}/student/summary.json"),
        prompts=PROMPTS,
        clips=lambda w: real_clips(w.dmd_row),
        text=lambda w: CAPTION_CACHE if real_clips(w.dmd_row) else TEXT_CACHE,
        latents=lambda w: [CLIP_LATENTS] if real_clips(w.dmd_row) else [],
    output: results("train/{dmd_row}/summary.json")
    params:
        out=lambda w, output: os.path.dirname(output[0]),
        init=lambda w, input: os.path.join(os.path.dirname(input.init), "model_ema"),
        clips=lambda w, input: f"--clips {os.path.dirname(input.clips[0])}" if input.clips else "",
        text=text_cache_flag,
    conda: CONDA_ENV
    log: results("logs/train/{dmd_row}.log")
    benchmark: results("benchmarks/train/{dmd_row}.tsv")
    shell: launched("dmd", results("logs/launch/{wildcards.dmd_row}/train")) + " train dmd --spec {input.spec} "
           "--init {params.init} --prompts {input.prompts} {params.clips} {params.text} --out {params.out} > {log} 2>&1"


rule train_cmgrpo:
    input:
        spec=results("specs/{cmgrpo_row}.yaml"),
        init=lambda w: student_of(ROWS[w.cmgrpo_row]["from"])[0],
        prompts=PROMPTS,
        text=TEXT_CACHE,
    output: results("train/{cmgrpo_row}/summary.json")
    params:
        out=lambda w, output: os.path.dirname(output[0]),
        init=lambda w: student_of(ROWS[w.cmgrpo_row]["from"])[1],
        text=text_cache_flag,
    conda: CONDA_ENV
    log: results("logs/train/{cmgrpo_row}.log")
    benchmark: results("benchmarks/train/{cmgrpo_row}.tsv")
    shell: launched("cmgrpo", results("logs/launch/{wildcards.cmgrpo_row}/train")) + " train cmgrpo "
           "--spec {input.spec} --init {params.init} --prompts {input.prompts} {params.text} --out {params.out} > {log} 2>&1"
