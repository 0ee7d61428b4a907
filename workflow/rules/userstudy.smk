# The blinded A/B user study (docs/method.md §10): RAVEN against each opponent of the `user_study` table, on the
# first `stages.userstudy.prompts` held-out prompts with `samples_per_prompt` seeds each. Judgements:
# simulated raters driven by the toy-world benchmark (config `userstudy_raters: simulated`, toy
# scales) or people through `raven userstudy serve` (`human`, see README "User study").

from raven.evaluation.judgements import votes_stamp

USER_STUDY = SHARED.stages.get("userstudy", {})
STUDY = results("userstudy")
# People's votes. Never a rule output, so no rerun, --forcerun or cleanup can delete it: `raven userstudy
# serve` and `simulate` append to it, and the judgements rule exports the votes that count under the
# current manifest (pair ids are content ids: a regenerated manifest keeps the votes on unchanged pairs).
JUDGEMENTS = results("userstudy/judgements.sqlite")
VOTES = results("userstudy/votes.json")


rule userstudy_prompts:
    input: HELDOUT
    output: results("userstudy/prompts.txt")
    params: prompts=USER_STUDY.get("prompts", 100)
    log: results("logs/userstudy/prompts.log")
    conda: CONDA_ENV
    benchmark: results("benchmarks/userstudy/prompts.tsv")
    shell: "head -n {params.prompts} {input} > {output} 2> {log}"


rule userstudy_samples:
    input:
        spec=results("specs/{row}.yaml"),
        student=lambda w: student_of(w.row)[0],
        prompts=results("userstudy/prompts.txt"),
    output: results("samples/{row}/userstudy/summary.json")
    params:
        out=results("samples/{row}/userstudy"),
        model=lambda w: model_flags(w.row),
        mode=lambda w: sample_mode(w.row),
        seeds=USER_STUDY.get("samples_per_prompt", 4),
    log: results("logs/sample/{row}_userstudy.log")
    conda: CONDA_ENV
    benchmark: results("benchmarks/sample/{row}_userstudy.tsv")
    shell: launched("sample", results("logs/launch/{wildcards.row}/sample_userstudy")) + " sample --spec {input.spec} "
           "{params.model} --prompts {input.prompts} --mode {params.mode} --seeds-per-prompt {params.seeds} "
           "--out {params.out} > {log} 2>&1"


rule userstudy_prepare:
    input:
        spec=SHARED_SPEC,
        samples=[results(f"samples/{row}/userstudy/summary.json") for row in TABLES["user_study"].values()],
    output: results("userstudy/manifest.json")
    params:
        samples=" ".join(f"--samples {label}={results(f'samples/{row}/userstudy')}"
                         for label, row in TABLES["user_study"].items()),
        study=lambda w, output: os.path.dirname(output[0]),
        db=JUDGEMENTS,
    log: results("logs/userstudy/prepare.log")
    conda: CONDA_ENV
    benchmark: results("benchmarks/userstudy/prepare.tsv")
    shell: "raven userstudy prepare --spec {input.spec} {params.samples} --out {params.study} --db {params.db} "
           "> {log} 2>&1"


if config["userstudy_raters"] == "simulated":
    rule userstudy_judgements:
        """Simulated raters add the votes they have not cast yet to the database, then export."""
        input: results("userstudy/manifest.json")
        output: VOTES
        params: study=lambda w, input: os.path.dirname(input[0]), db=JUDGEMENTS, seed=config["seed"]
        log: results("logs/userstudy/judgements.log")
        conda: CONDA_ENV
        benchmark: results("benchmarks/userstudy/judgements.tsv")
        shell: "raven userstudy simulate --study {params.study} --db {params.db} --seed {params.seed} "
               "--out {output} > {log} 2>&1"
else:
    rule userstudy_judgements:
        """People vote in the browser (`raven userstudy serve`); this exports their votes, and fails with
        instructions while there are none. The param reruns it whenever someone has voted since."""
        input: results("userstudy/manifest.json")
        output: VOTES
        params:
            study=lambda w, input: os.path.dirname(input[0]),
            db=JUDGEMENTS,
            votes=lambda w: votes_stamp(JUDGEMENTS),
        log: results("logs/userstudy/judgements.log")
        conda: CONDA_ENV
        benchmark: results("benchmarks/userstudy/judgements.tsv")
        shell: "raven userstudy export --study {params.study} --db {params.db} --out {output} 2>&1 | tee {log}"


rule userstudy_analyze:
    input: manifest=results("userstudy/manifest.json"), votes=VOTES
    output:
        json=results("userstudy/analysis.json"),
        plot=report(results("plots/user_study.png"), category="Plots"),
    params: study=lambda w, input: os.path.dirname(input.manifest), bootstrap=USER_STUDY.get("bootstrap", 2000)
    log: results("logs/userstudy/analyze.log")
    conda: CONDA_ENV
    benchmark: results("benchmarks/userstudy/analyze.tsv")
    shell: "raven userstudy analyze --study {params.study} --votes {input.votes} --bootstrap {params.bootstrap} "
           "--out {output.json} --plot {output.plot} > {log} 2>&1"
