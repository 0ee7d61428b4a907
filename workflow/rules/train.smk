# Per-row training (docs/method.md §4, §7, §8): DMD from an ODE init, CM-GRPO / Flow-GRPO from another row's
# student. Rows come from config/experiments.yaml; an inference row trains nothing (sample.smk).


rule train_dmd:
    input:
        spec=RESULTS + "/specs/{dmd_row}.yaml",
        init=lambda w: RESULTS + f"/init/{ROWS[w.dmd_row]['init']}/student/summary.json",
        prompts=PROMPTS,
        clips=CLIPS + "/summary.json",
    output: RESULTS + "/train/{dmd_row}/summary.json"
    params: out=RESULTS + "/train/{dmd_row}", init=lambda w, input: os.path.dirname(input.init) + "/model_ema"
    log: RESULTS + "/logs/train/{dmd_row}.log"
    benchmark: RESULTS + "/benchmarks/train/{dmd_row}.tsv"
    shell: launched("dmd", RESULTS + "/logs/launch/{wildcards.dmd_row}/train") + " train dmd --spec {input.spec} "
           "--init {params.init} --prompts {input.prompts} --clips " + CLIPS + " --out {params.out} > {log} 2>&1"


rule train_cmgrpo:
    input:
        spec=RESULTS + "/specs/{cmgrpo_row}.yaml",
        init=lambda w: student_of(ROWS[w.cmgrpo_row]["from"])[0],
        prompts=PROMPTS,
    output: RESULTS + "/train/{cmgrpo_row}/summary.json"
    params: out=RESULTS + "/train/{cmgrpo_row}", init=lambda w: student_of(ROWS[w.cmgrpo_row]["from"])[1]
    log: RESULTS + "/logs/train/{cmgrpo_row}.log"
    benchmark: RESULTS + "/benchmarks/train/{cmgrpo_row}.tsv"
    shell: launched("cmgrpo", RESULTS + "/logs/launch/{wildcards.cmgrpo_row}/train") + " train cmgrpo "
           "--spec {input.spec} --init {params.init} --prompts {input.prompts} --out {params.out} > {log} 2>&1"
