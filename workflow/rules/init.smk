# Shared initialisation stages, built once and reused by every row (docs/method.md §1, §6): the bidirectional
# base model, the causal teacher, ODE trajectories of a teacher and the ODE-initialised causal student.
# snakemake --lint 'Mixed rules and functions': these helpers are the rules' own lookups, kept beside
# the rules that use them so that each rule stays a few lines.


def base_data(wildcards):
    """The base model's training data: prompts (objective exact: the toy world's denoiser) or clips."""
    objective = SHARED.stages.get("base", {}).get("objective", "flow")
    return PROMPTS if objective == "exact" else f"{CLIPS}/summary.json"


def data_flag(path):
    return f"--prompts {path}" if path == PROMPTS else f"--clips {os.path.dirname(path)}"


def base_text(wildcards):
    """The text cache of the base model's data: the prompts', or the clips' captions'."""
    return TEXT_CACHE if base_data(wildcards) == PROMPTS else CAPTION_CACHE


def base_latents(wildcards):
    """Trained on clips: their latents, encoded once (rule clip_latents)."""
    return [] if base_data(wildcards) == PROMPTS else CLIP_LATENTS


rule train_base:
    input: spec=SHARED_SPEC, data=base_data, text=base_text, latents=base_latents
    output: results("init/base/summary.json")
    params: out=lambda w, output: os.path.dirname(output[0]), data=lambda w, input: data_flag(input.data), text=text_cache_flag
    conda: CONDA_ENV
    log: results("logs/init/base.log")
    benchmark: results("benchmarks/init/base.tsv")
    shell: launched("base", results("logs/launch/base")) + " train base --spec {input.spec} {params.data} "
           "{params.text} --out {params.out} > {log} 2>&1"


rule causal_teacher:
    input: spec=SHARED_SPEC, base=BASE_DONE, data=base_data, text=base_text, latents=base_latents
    output: results("init/causal_teacher/summary.json")
    params: out=lambda w, output: os.path.dirname(output[0]), data=lambda w, input: data_flag(input.data), text=text_cache_flag
    conda: CONDA_ENV
    log: results("logs/init/causal_teacher.log")
    benchmark: results("benchmarks/init/causal_teacher.tsv")
    shell: launched("causal_teacher", results("logs/launch/causal_teacher")) + " train causal-teacher "
           "--spec {input.spec} --init {BASE_MODEL} {params.data} {params.text} --out {params.out} > {log} 2>&1"


def pairs_teacher(init):
    """(target, folder) of the teacher whose ODE trajectories an init regresses on: the causal teacher
    (Causal Forcing) or the bidirectional base (CausVid)."""
    if init == "ode_causal":
        return results("init/causal_teacher/summary.json"), results("init/causal_teacher")
    return BASE_DONE, BASE_OUT


rule ode_pairs:
    input:
        spec=results("specs/_{init}.yaml"),
        teacher=lambda w: pairs_teacher(w.init)[0],
        prompts=PROMPTS,
        text=TEXT_CACHE,
    output: results("init/{init}/pairs/summary.json")
    params: out=lambda w, output: os.path.dirname(output[0]), teacher=lambda w: pairs_teacher(w.init)[1], text=text_cache_flag
    conda: CONDA_ENV
    log: results("logs/init/{init}/pairs.log")
    benchmark: results("benchmarks/init/{init}/pairs.tsv")
    shell: launched("ode_pairs", results("logs/launch/{wildcards.init}/pairs")) + " ode pairs --spec {input.spec} "
           "--teacher {params.teacher} --prompts {input.prompts} {params.text} --out {params.out} > {log} 2>&1"


# The released student that replaces an init's trajectories and regression when given (paper scale: Causal
# Forcing's ODE init; tiny scale: data/weights/tiny, unless --config from_scratch=true).
def ode_pairs_input(wildcards):
    """The released init's file (a new one reruns the stage), or the ODE pairs. A released file not here yet
    (paper weights before they are copied) is no input, so that `-n` plans the DAG; the stage names it."""
    released = SHARED.weights.released_init(INIT_MODES[wildcards.init])
    if released is None:
        return results(f"init/{wildcards.init}/pairs/summary.json")
    return str(released) if os.path.exists(released) else []


rule ode_init:
    input: spec=results("specs/_{init}.yaml"), base=BASE_DONE, pairs=ode_pairs_input, text=TEXT_CACHE
    output: results("init/{init}/student/summary.json")
    params: out=lambda w, output: os.path.dirname(output[0]), pairs=results("init/{init}/pairs"), text=text_cache_flag
    conda: CONDA_ENV
    log: results("logs/init/{init}/student.log")
    benchmark: results("benchmarks/init/{init}/student.tsv")
    shell: launched("ode_init", results("logs/launch/{wildcards.init}/student")) + " train ode-init "
           "--spec {input.spec} --pairs {params.pairs} --init {BASE_MODEL} {params.text} --out {params.out} > {log} 2>&1"
