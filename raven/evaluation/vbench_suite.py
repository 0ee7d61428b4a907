"""VBench protocol (docs/method.md §10) and the adapter that runs VBench in its own virtual environment.

Protocol: VBench's 946-prompt suite (`data/VBench_full_info.json`, copied from the vbench wheel);
the generator gets the extended prompt, the file is named by the short prompt `<prompt>-<i>.mp4`;
temporal-flickering prompts get `flicker_samples` (25) samples, all others `samples` (5); seed =
base seed + global file index. Repeated prompts name the same files, so 75·25 + 869·5 = 6,220 files.
VBench's static filter keeps `samples` static clips per flickering prompt: 4,720 videos are scored.

Adapter: VBench pins transformers 4.33 and numpy<2, so it lives in a separate venv built from
`workflow/envs/vbench.txt`; `vbench_job.py` (standard library + vbench only) runs inside it, on every GPU of
its node under torchrun. Weights come from a local cache (VBENCH_CACHE_DIR); a missing file is an error
listing every missing one, never a download. The GRiT dimensions need detectron2, which is not on PyPI:
`stages.vbench.detectron2` names a local source tree or wheel that the venv build installs; without it
those dimensions are listed as unscorable before anything runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from raven.evaluation.scores import DIMENSIONS, vbench_scores

FULL_INFO = Path(__file__).with_name("data") / "VBench_full_info.json"
JOB_SCRIPT = Path(__file__).with_name("vbench_job.py")
REQUIREMENTS = Path(__file__).resolve().parents[2] / "workflow" / "envs" / "vbench.txt"
FLICKER = "temporal_flickering"
BUILT_MARKER = ".raven-built"
RAFT = "raft_model/models/raft-things.pth"
GRIT_DIMENSIONS = ("object_class", "multiple_objects", "color", "spatial_relationship")  # need detectron2
# Files under VBENCH_CACHE_DIR each dimension loads (vbench 0.1.5, utils.init_submodules).
WEIGHT_FILES: dict[str, tuple[str, ...]] = {
    "subject_consistency": ("dino_model/facebookresearch_dino_main/hubconf.py", "dino_model/dino_vitbase16_pretrain.pth"),
    "background_consistency": ("clip_model/ViT-B-32.pt",),
    "temporal_flickering": (),
    "motion_smoothness": ("amt_model/amt-s.pth",),
    "dynamic_degree": (RAFT,),
    "aesthetic_quality": ("clip_model/ViT-L-14.pt", "aesthetic_model/emb_reader/sa_0_4_vit_l_14_linear.pth"),
    "imaging_quality": ("pyiqa_model/musiq_spaq_ckpt-358bb6af.pth",),
    "object_class": ("grit_model/grit_b_densecap_objectdet.pth",),
    "multiple_objects": ("grit_model/grit_b_densecap_objectdet.pth",),
    "color": ("grit_model/grit_b_densecap_objectdet.pth",),
    "spatial_relationship": ("grit_model/grit_b_densecap_objectdet.pth",),
    "human_action": ("umt_model/l16_ptk710_ftk710_ftk400_f16_res224.pth",),
    "scene": ("caption_model/tag2text_swin_14m.pth",),
    "appearance_style": ("clip_model/ViT-B-32.pt",),
    "temporal_style": ("ViCLIP/ViClip-InternVid-10M-FLT.pth",),
    "overall_consistency": ("ViCLIP/ViClip-InternVid-10M-FLT.pth",),
}


@dataclass(frozen=True)
class VBenchFile:
    """One file of the protocol: generated from `text`, saved as `<prompt>-<index>.mp4`."""

    prompt: str
    text: str
    index: int
    seed: int
    flicker: bool

    @property
    def name(self) -> str:
        return f"{self.prompt}-{self.index}.mp4"


def load_full_info(path: str | Path = FULL_INFO) -> list[dict]:
    entries = json.loads(Path(path).read_text())
    if not isinstance(entries, list) or not all("prompt_en" in e and "dimension" in e for e in entries):
        raise ValueError(f"{path}: not a VBench full-info JSON (a list of {{prompt_en, dimension}} entries)")
    return entries


def read_extended_prompts(path: str | Path, count: int) -> list[str]:
    """The extended prompt file: one line per full-info entry, in the same order."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no extended prompt file (stages.vbench.extended_prompts); put Self Forcing's "
                                "extended VBench list there (one line per suite prompt) or unset the key")
    lines = [line.strip() for line in Path(path).read_text().splitlines()]
    lines = [line for line in lines if line]
    if len(lines) != count:
        raise ValueError(f"{path}: {len(lines)} extended prompts, but the VBench suite has {count} prompts; "
                         "give one extended prompt per line, in the order of VBench_full_info.json")
    return lines


def protocol(full_info: Sequence[dict], extended: Sequence[str] | None = None, *, flicker_samples: int = 25,
             samples: int = 5, base_seed: int = 0, max_prompts: int | None = None) -> list[VBenchFile]:
    """Every file to generate, in generation order; the global index counts unique files."""
    entries = list(full_info)[:max_prompts]
    texts = list(extended)[: len(entries)] if extended is not None else [e["prompt_en"] for e in entries]
    files: list[VBenchFile] = []
    seen: set[str] = set()
    for entry, text in zip(entries, texts, strict=True):
        flicker = FLICKER in entry["dimension"]
        for index in range(flicker_samples if flicker else samples):
            item = VBenchFile(entry["prompt_en"], text, index, base_seed + len(files), flicker)
            if item.name not in seen:
                seen.add(item.name)
                files.append(item)
    return files


def scored_files(files: Sequence[VBenchFile], samples: int = 5) -> list[VBenchFile]:
    """The scoring folder's entries: every non-flickering file, and `samples` slots per flickering prompt
    (filled by the static filter with that prompt's first static clips, renamed `<prompt>-0..samples-1`)."""
    return [item for item in files if not item.flicker or item.index < samples]


def link_protocol_videos(samples_dir: str | Path, records: Sequence[dict], files: Sequence[VBenchFile],
                         out: str | Path) -> int:
    """Symlink `raven sample`'s `videos/{i:05d}.mp4` to VBench names `out/<prompt>-<i>.mp4`.

    The samples must come from the protocol's prompt file (one line per file, `--seeds-per-prompt 1`), so
    sample i is protocol file i with seed base + i; any mismatch of count, text or seed is an error."""
    if len(records) != len(files):
        raise ValueError(f"{samples_dir}: {len(records)} samples for {len(files)} protocol files; sample the "
                         "prompt file written by `raven eval vbench-protocol` with --seeds-per-prompt 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for record, item in zip(records, files):
        if record["prompt"] != item.text or int(record["seed"]) != item.seed:
            raise ValueError(f"{samples_dir}: sample {record['index']} is ({record['prompt']!r}, seed {record['seed']}) "
                             f"but the protocol expects ({item.text!r}, seed {item.seed}) for {item.name}")
        target = out / item.name
        if not target.exists():
            target.symlink_to((Path(samples_dir) / record["file"]).resolve())
    return len(files)


def assemble_scoring_folder(videos: str | Path, filtered: str | Path, files: Sequence[VBenchFile],
                            out: str | Path, samples: int = 5) -> dict:
    """Symlink the scored set into `out`: non-flickering files from `videos`, flickering ones from the
    static filter's `filtered` folder. Returns counts and the flickering prompts short of static clips."""
    videos, filtered, out = Path(videos), Path(filtered), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    missing, short = [], set()
    for item in scored_files(files, samples):
        source = (filtered if item.flicker else videos) / item.name
        if not source.is_file():
            (short.add(item.prompt) if item.flicker else missing.append(item.name))
            continue
        target = out / item.name
        if not target.exists():
            target.symlink_to(source.resolve())
    if missing:
        raise FileNotFoundError(f"{videos}: {len(missing)} protocol videos are missing, e.g. {missing[:3]}; "
                                "finish sampling (it resumes where files exist)")
    return {"scored": len(list(out.glob("*.mp4"))), "flicker_prompts_short_of_static": sorted(short)}


# ---- the VBench environment -------------------------------------------------------------------------


def requirements_hash(requirements: str | Path, detectron2: str | Path | None = None) -> str:
    extra = f"\ndetectron2 {Path(detectron2).resolve()}" if detectron2 else ""
    return hashlib.sha256(Path(requirements).read_bytes() + extra.encode()).hexdigest()[:16]


def venv_python(venv: str | Path) -> Path:
    return Path(venv) / "bin" / "python"


def env_is_built(venv: str | Path, requirements: str | Path = REQUIREMENTS, detectron2: str | Path | None = None) -> bool:
    marker = Path(venv) / BUILT_MARKER
    return marker.is_file() and marker.read_text().strip() == requirements_hash(requirements, detectron2)


def build_commands(venv: str | Path, requirements: str | Path, python: str = sys.executable,
                   detectron2: str | Path | None = None) -> list[list[str]]:
    """Create the venv with the same interpreter version as the main environment, install the pins, then
    detectron2 from its local source tree or wheel (built against the venv's torch: no build isolation)."""
    pip = [str(venv_python(venv)), "-m", "pip", "install", "-q"]
    commands = [[python, "-m", "venv", str(venv)], [*pip, "-r", str(requirements)]]
    if detectron2 is not None:
        commands.append([*pip, "--no-build-isolation", str(detectron2)])
    return commands


def build_env(venv: str | Path, requirements: str | Path = REQUIREMENTS, python: str = sys.executable,
              detectron2: str | Path | None = None) -> Path:
    """Build the VBench venv unless it is built from the same requirements; the marker is written last."""
    venv = Path(venv)
    if detectron2 is not None and not Path(detectron2).exists():
        raise FileNotFoundError(f"{detectron2}: no detectron2 source tree or wheel there (stages.vbench.detectron2)")
    if not env_is_built(venv, requirements, detectron2):
        for command in build_commands(venv, requirements, python, detectron2):
            subprocess.run(command, check=True)
        (venv / BUILT_MARKER).write_text(requirements_hash(requirements, detectron2) + "\n")
    return venv


def unscorable(venv: str | Path, dimensions: Sequence[str]) -> list[str]:
    """The dimensions this VBench venv cannot score: the GRiT ones when detectron2 does not import there."""
    grit = [d for d in dimensions if d in GRIT_DIMENSIONS]
    if not grit:
        return []
    probe = subprocess.run([str(venv_python(venv)), "-c", "import detectron2"], capture_output=True)
    return grit if probe.returncode else []


def missing_weights(dimensions: Sequence[str], cache_dir: str | Path, static_filter: bool = False) -> list[Path]:
    unknown = [d for d in dimensions if d not in WEIGHT_FILES]
    if unknown:
        raise ValueError(f"unknown VBench dimensions {unknown}; known: {list(DIMENSIONS)}")
    needed = {name for d in dimensions for name in WEIGHT_FILES[d]} | ({RAFT} if static_filter else set())
    return sorted(Path(cache_dir) / name for name in needed if not (Path(cache_dir) / name).is_file())


def check_weights(dimensions: Sequence[str], cache_dir: str | Path, static_filter: bool = False) -> None:
    missing = missing_weights(dimensions, cache_dir, static_filter)
    if missing:
        listing = "\n  ".join(str(p) for p in missing)
        raise FileNotFoundError(f"VBench weight files missing under the cache {cache_dir} (config key "
                                f"stages.vbench.cache_dir):\n  {listing}\nPut VBench's released checkpoints "
                                "there (same layout as ~/.cache/vbench); nothing is downloaded at run time")


def job_environment(cache_dir: str | Path) -> dict[str, str]:
    """Environment of a VBench process: local weights only; torch ≥ 2.6 would refuse VBench's pickled
    checkpoints with weights_only loading, which the variable turns off."""
    return {**os.environ, "VBENCH_CACHE_DIR": str(Path(cache_dir).resolve()), "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}


def evaluate_command(venv: str | Path, videos: str | Path, out: str | Path, dimensions: Sequence[str], *,
                     name: str = "raven", full_info: str | Path = FULL_INFO, gpus: int = 0) -> list[str]:
    """argv that scores `videos` (VBench-named files) on `dimensions`; several GPUs run under torchrun."""
    launcher = [str(venv_python(venv))]
    if gpus > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(gpus)]
    return [*launcher, str(JOB_SCRIPT), "--videos", str(videos), "--out", str(out), "--name", name,
            "--full-info", str(full_info), "--dimensions", *dimensions]


def static_filter_command(venv: str | Path, videos: str | Path, out: str | Path, cache_dir: str | Path) -> list[str]:
    """argv of VBench's static filter (RAFT) over the flickering prompts' clips; writes `out/filtered_videos/`."""
    return [str(Path(venv) / "bin" / "vbench"), "static_filter", "--videos_path", str(videos),
            "--result_path", str(out), "--model", str(Path(cache_dir) / RAFT)]


def read_results(out: str | Path, name: str = "raven") -> dict[str, float]:
    """{dimension: score} from VBench's `<name>_eval_results.json` ({dim: [score, per-video results]})."""
    path = Path(out) / f"{name}_eval_results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: VBench wrote no results; see the log of the VBench run")
    results = json.loads(path.read_text())
    return {dimension: float(value[0]) for dimension, value in results.items()}


def run_vbench(venv: str | Path, videos: str | Path, out: str | Path, dimensions: Sequence[str],
               cache_dir: str | Path, *, name: str = "raven", gpus: int = 0,
               detectron2: str | Path | None = None) -> dict[str, float]:
    """Check weights and what the venv can score, score `videos` in the VBench venv, return {dimension: score}."""
    if not env_is_built(venv, REQUIREMENTS, detectron2):
        raise FileNotFoundError(f"{venv}: the VBench environment is not built from {REQUIREMENTS} (and "
                                "stages.vbench.detectron2); run `raven eval vbench-env` (Snakemake rule vbench_env)")
    check_weights(dimensions, cache_dir)
    missing = unscorable(venv, dimensions)
    if missing:
        raise FileNotFoundError(f"{venv}: cannot score {missing}: VBench's GRiT detector needs detectron2, which "
                                "is not on PyPI. Set stages.vbench.detectron2 to a local detectron2 source tree or "
                                "wheel (rebuilt into the venv by `raven eval vbench-env`), or leave these out of "
                                "stages.vbench.dimensions (the row then has no Total: a missing dimension is never 0)")
    subprocess.run(evaluate_command(venv, videos, out, dimensions, name=name, gpus=gpus),
                   check=True, env=job_environment(cache_dir))
    return read_results(out, name)


def scoring_folder(samples: str | Path, files: Sequence[VBenchFile], work: str | Path, samples_per_prompt: int,
                   static_filter: Callable[[Path, Path], Path] | None) -> dict:
    """The protocol's wiring, shared by VBench and the toy scales' stand-ins: a row's samples of the protocol's
    prompt file linked under the protocol's names (`work/videos`), `static_filter(videos, work / "static")` over
    the flickering prompts' clips, returning the folder of the static ones named `<prompt>-0..` (None: their
    first clips are kept), and the scored set (`work/scored`)."""
    samples, work = Path(samples), Path(work)
    records = json.loads((samples / "samples.json").read_text())
    link_protocol_videos(samples, records, files, work / "videos")
    filtered = work / "videos" if static_filter is None else static_filter(work / "videos", work / "static")
    return assemble_scoring_folder(work / "videos", filtered, files, work / "scored", samples_per_prompt)


def score_protocol_samples(samples: str | Path, files: Sequence[VBenchFile], options, work: str | Path) -> dict:
    """`raven eval vbench`: the scoring folder of a row's samples (VBench's static filter, RAFT) scored on
    `options.dimensions` (`raven.evaluation.options.VBenchOptions`) in the VBench venv; totals when all 16 are."""
    work = Path(work)
    check_weights(options.dimensions, options.cache_dir, static_filter=options.static_filter)

    def vbench_static_filter(videos: Path, out: Path) -> Path:
        subprocess.run(static_filter_command(options.venv, videos, out, options.cache_dir), check=True,
                       env=job_environment(options.cache_dir))
        return out / "filtered_videos"

    counts = scoring_folder(samples, files, work, options.samples,
                            vbench_static_filter if options.static_filter else None)
    dimensions = run_vbench(options.venv, work / "scored", work / "results", options.dimensions, options.cache_dir,
                            gpus=options.gpus, detectron2=options.detectron2)
    report = {"kind": "vbench", "dimensions": dimensions, **counts}
    if set(DIMENSIONS) <= set(dimensions):
        report.update(vbench_scores(dimensions))
    return report


def plan_files(plan: Sequence[dict], base_seed: int) -> list[VBenchFile]:
    """The files of a plan written by `raven eval vbench-protocol`, with a row's seeds: its seed + global index
    (a seed replica of a row samples the same names with its own seeds)."""
    return [VBenchFile(entry["prompt"], entry["text"], int(entry["index"]), base_seed + position, bool(entry["flicker"]))
            for position, entry in enumerate(plan)]
