"""VBench adapter: commands it runs in the separate venv, result parsing, missing weights, the scored
folder. The real run (temporal_flickering, no weights) builds the VBench venv: marked `vbench`."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

from raven.evaluation.vbench_suite import (
    FULL_INFO,
    JOB_SCRIPT,
    REQUIREMENTS,
    assemble_scoring_folder,
    build_commands,
    check_weights,
    env_is_built,
    evaluate_command,
    job_environment,
    load_full_info,
    missing_weights,
    protocol,
    read_results,
    static_filter_command,
)


def test_requirements_pin_vbench_and_its_old_stack():
    pins = dict(line.split("==", 1) for line in REQUIREMENTS.read_text().splitlines()
                if "==" in line and not line.startswith("#") and "===" not in line)
    assert pins["vbench"] == "0.1.5" and pins["transformers"] == "4.33.2" and pins["numpy"].startswith("1.")


def test_commands(tmp_path):
    venv = tmp_path / "venv"
    assert build_commands(venv, REQUIREMENTS, "python3.11") == [
        ["python3.11", "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)]]
    single = evaluate_command(venv, "vids", "out", ["temporal_flickering", "color"])
    assert single == [str(venv / "bin" / "python"), str(JOB_SCRIPT), "--videos", "vids", "--out", "out", "--name",
                      "raven", "--full-info", str(FULL_INFO), "--dimensions", "temporal_flickering", "color"]
    multi = evaluate_command(venv, "vids", "out", ["scene"], gpus=8)
    assert multi[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "8"]
    assert static_filter_command(venv, "vids", "work", "cache") == [
        str(venv / "bin" / "vbench"), "static_filter", "--videos_path", "vids", "--result_path", "work", "--model",
        os.path.join("cache", "raft_model", "models", "raft-things.pth")]
    env = job_environment(tmp_path / "cache")
    assert env["VBENCH_CACHE_DIR"] == str((tmp_path / "cache").resolve()) and env["HF_HUB_OFFLINE"] == "1"
    assert not env_is_built(venv)


def test_missing_weights_are_listed(tmp_path):
    (tmp_path / "clip_model").mkdir()
    (tmp_path / "clip_model" / "ViT-B-32.pt").write_bytes(b"w")
    assert missing_weights(["temporal_flickering", "background_consistency"], tmp_path) == []
    missing = missing_weights(["appearance_style", "dynamic_degree", "temporal_style"], tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in missing] == [
        "ViCLIP/ViClip-InternVid-10M-FLT.pth", "raft_model/models/raft-things.pth"]
    with pytest.raises(FileNotFoundError, match="amt-s.pth"):
        check_weights(["motion_smoothness"], tmp_path)
    with pytest.raises(ValueError, match="unknown VBench dimensions"):
        missing_weights(["sharpness"], tmp_path)


def test_read_results(tmp_path):
    (tmp_path / "raven_eval_results.json").write_text(json.dumps(
        {"temporal_flickering": [0.97, [{"video_path": "a", "video_results": 0.97}]], "color": [0.5, []]}))
    assert read_results(tmp_path) == {"temporal_flickering": 0.97, "color": 0.5}
    with pytest.raises(FileNotFoundError, match="other_eval_results.json"):
        read_results(tmp_path, "other")


def test_scoring_folder_takes_static_clips_for_flicker_prompts(tmp_path):
    files = protocol(load_full_info(), max_prompts=77, flicker_samples=3, samples=2)
    videos, filtered = tmp_path / "videos", tmp_path / "filtered"
    videos.mkdir()
    filtered.mkdir()
    for item in files:
        (videos / item.name).write_bytes(b"v")
    flicker = sorted({f.prompt for f in files if f.flicker})
    for prompt in flicker[:-1]:  # the static filter found 2 static clips for all but one prompt
        for index in range(2):
            (filtered / f"{prompt}-{index}.mp4").write_bytes(b"s")
    counts = assemble_scoring_folder(videos, filtered, files, tmp_path / "scored", samples=2)
    assert counts["scored"] == 74 * 2 + 2 * 2
    assert counts["flicker_prompts_short_of_static"] == [flicker[-1]]
    (videos / files[-1].name).unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        assemble_scoring_folder(videos, filtered, files, tmp_path / "scored2", samples=2)


@pytest.mark.vbench
@pytest.mark.slow
def test_real_vbench_temporal_flickering_on_toy_videos(tmp_path, repo_root):
    """Builds results/envs/vbench from workflow/envs/vbench.txt once (several minutes and a few GB: VBench
    needs CUDA torch + torchvision), then about 15 s per run on CPU."""
    from raven.data.video import write_mp4
    from raven.evaluation.vbench_suite import build_env, run_vbench
    from raven.world.render import render

    venv = repo_root / "results" / "envs" / "vbench"
    try:
        build_env(venv)
    except subprocess.CalledProcessError as error:
        pytest.skip(f"could not build the VBench venv from {REQUIREMENTS} (no package index?): {error}")
    toy = ["red square right slow on black", "blue triangle still on white", "green circle down fast on grey"]
    expected = []
    for entry, prompt in zip(load_full_info()[:3], toy):
        for index in range(5):
            frames = render(prompt, index, 32, 32, 9, 8)
            write_mp4(tmp_path / "videos" / f"{entry['prompt_en']}-{index}.mp4", frames, 8)
            expected.append(1 - np.abs(np.diff(frames.astype(np.float64), axis=0)).mean() / 255)
    scores = run_vbench(venv, tmp_path / "videos", tmp_path / "out", ["temporal_flickering"], tmp_path / "cache")
    assert scores["temporal_flickering"] == pytest.approx(float(np.mean(expected)), abs=1e-6)


def test_protocol_cli_and_linking_samples_to_vbench_names(tmp_path, smoke_spec):
    from raven.cli import main
    from raven.config import write_spec
    from raven.data.prompts import read_prompt_file
    from raven.evaluation.vbench_suite import link_protocol_videos

    spec = smoke_spec.model_copy(update={"seed": 100, "stages": {**smoke_spec.stages, "vbench": {
        "max_prompts": 76, "flicker_samples": 3, "samples": 2}}})
    write_spec(spec, tmp_path / "spec.yaml")
    assert main(["eval", "vbench-protocol", "--spec", str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "plan.json"),
                 "--prompts", str(tmp_path / "prompts.txt")]) == 0
    plan = json.loads((tmp_path / "plan.json").read_text())
    texts = read_prompt_file(tmp_path / "prompts.txt")
    assert len(plan) == len(texts) == 75 * 3 + 2 and plan[0]["seed"] == 100 and plan[-1]["index"] == 1
    # what `raven sample --prompts prompts.txt --seeds-per-prompt 1` records: sample i, seed spec.seed + i
    records = [{"index": i, "prompt": t, "seed": 100 + i, "file": f"videos/{i:05d}.mp4"} for i, t in enumerate(texts)]
    for record in records:
        (tmp_path / "samples" / "videos").mkdir(parents=True, exist_ok=True)
        (tmp_path / "samples" / record["file"]).write_bytes(str(record["index"]).encode())
    files = protocol(load_full_info(), flicker_samples=3, samples=2, base_seed=100, max_prompts=76)
    assert link_protocol_videos(tmp_path / "samples", records, files, tmp_path / "named") == len(files)
    assert (tmp_path / "named" / "In a still frame, a stop sign-2.mp4").read_bytes() == b"2"
    records[5]["seed"] = 7
    with pytest.raises(ValueError, match="seed 7"):
        link_protocol_videos(tmp_path / "samples", records, files, tmp_path / "named2")


def test_detectron2_is_built_into_the_venv_from_a_local_tree(tmp_path):
    from raven.evaluation.vbench_suite import requirements_hash

    commands = build_commands(tmp_path / "venv", REQUIREMENTS, "python3", detectron2=tmp_path / "detectron2")
    assert commands[-1][-2:] == ["--no-build-isolation", str(tmp_path / "detectron2")]
    assert requirements_hash(REQUIREMENTS, tmp_path / "detectron2") != requirements_hash(REQUIREMENTS)


def test_protocol_samples_get_vbench_names_and_grit_needs_detectron2(tmp_path):
    """`raven eval vbench`'s path up to VBench itself: the row's samples of the protocol's prompt file linked
    under VBench's names, then the GRiT dimensions refused, listed, in a venv without detectron2."""
    import sys

    from raven.evaluation.options import VBenchOptions
    from raven.evaluation.vbench_suite import (
        BUILT_MARKER,
        WEIGHT_FILES,
        requirements_hash,
        score_protocol_samples,
        unscorable,
    )

    files = protocol(load_full_info(), flicker_samples=2, samples=1, base_seed=7, max_prompts=80)
    samples = tmp_path / "samples"
    (samples / "videos").mkdir(parents=True)
    records = []
    for index, item in enumerate(files):
        (samples / f"videos/{index:05d}.mp4").write_bytes(b"%d" % index)
        records.append({"index": index, "prompt": item.text, "seed": 7 + index, "file": f"videos/{index:05d}.mp4"})
    (samples / "samples.json").write_text(json.dumps(records))
    venv, cache = tmp_path / "venv", tmp_path / "cache"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)  # an interpreter without detectron2
    (venv / BUILT_MARKER).write_text(requirements_hash(REQUIREMENTS) + "\n")
    for name in {f for d in ("color", "temporal_flickering") for f in WEIGHT_FILES[d]}:
        (cache / name).parent.mkdir(parents=True, exist_ok=True)
        (cache / name).write_bytes(b"w")
    assert unscorable(venv, ["color", "temporal_flickering", "object_class"]) == ["color", "object_class"]
    options = VBenchOptions(venv=venv, cache_dir=cache, flicker_samples=2, samples=1, static_filter=False,
                            dimensions=["color", "temporal_flickering"])
    with pytest.raises(FileNotFoundError, match=r"cannot score \['color'\].*stages.vbench.detectron2"):
        score_protocol_samples(samples, files, options, tmp_path / "work")
    assert (tmp_path / "work/videos" / files[3].name).read_bytes() == b"3"
    assert len(list((tmp_path / "work/scored").iterdir())) == len(files) - 75  # one clip per flickering prompt
