"""`raven sample` on 2 gloo ranks: the samples are split across the ranks, each written as it is made, and
the folder equals the 1-process one; a rerun resumes after the finished samples (issue 14)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from local_services import free_port

from raven.config import write_spec
from raven.data.prompts import write_prompt_file
from raven.evaluation.samples import pixels_file, sample_folder, video_file

PROMPTS = ["red circle left fast on black", "blue square still on white", "green triangle up slow on black"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, repo_root):
    from raven.config import resolve_spec
    from raven.models import build_transformer

    root = tmp_path_factory.mktemp("sample_ranks")
    spec = resolve_spec(repo_root / "config", "smoke")
    write_spec(spec, root / "spec.yaml")
    write_prompt_file(root / "prompts.txt", PROMPTS)
    torch.manual_seed(0)
    build_transformer(spec).save_pretrained(root / "model")
    return root


def arguments(root, out):
    return [str(root / "spec.yaml"), str(root / "model"), str(root / "prompts.txt"), str(out)]


SAMPLE = "from raven.evaluation.samples import sample_folder; sample_folder(*sys.argv[1:5], seeds_per_prompt=2, batch_size=2)"
# Rank 1 slowed where it reads sample 0's pixels after the ranks gathered: rank 0 must not remove them first
SLOW_RANK_1 = ("import os, time, numpy; load = numpy.load\n"
               "def slow(path, *a, **k):\n"
               "    if os.environ['RANK'] == '1' and str(path).endswith('pixels/00000.npy'): time.sleep(3)\n"
               "    return load(path, *a, **k)\n"
               "numpy.load = slow\n")


def sample_on_two_ranks(root, out, prelude=""):
    port = str(free_port())
    processes = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "OMP_NUM_THREADS": "1"}
        processes.append(subprocess.Popen([sys.executable, "-c", f"import sys\n{prelude}{SAMPLE}", *arguments(root, out)],
                                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=120)[0] for p in processes]
    assert all(p.returncode == 0 for p in processes), outputs


@pytest.fixture(scope="module")
def single(inputs):
    """The 1-process folder both two-rank runs are compared with."""
    sample_folder(*arguments(inputs, inputs / "single"), seeds_per_prompt=2, batch_size=2)
    return inputs / "single"


@pytest.mark.parametrize("prelude", ["", SLOW_RANK_1], ids=["plain", "rank_1_slow_after_the_gather"])
def test_two_ranks_split_the_samples_and_write_the_one_process_folder(inputs, single, prelude, tmp_path):
    root, double = inputs, tmp_path / "double"
    sample_on_two_ranks(root, double, prelude)
    expected, videos = np.load(single / "videos.npy"), np.load(double / "videos.npy")
    assert expected.shape == (6, 9, 16, 16, 3) and np.array_equal(expected, videos)
    summary = json.loads((double / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["videos"] == 6 and summary["generation_fps"] > 0
    assert json.loads((double / "samples.json").read_text()) == json.loads((single / "samples.json").read_text())
    assert not (double / "pixels").exists() and len(list((double / "videos").glob("*.mp4"))) == 6


def test_a_rerun_resumes_after_the_finished_samples(inputs):
    """Sample 1 is already written (here: a marked video): it is kept, the others are generated."""
    from raven.evaluation.samples import write_sample

    root = inputs
    out = root / "resumed"
    marked = np.full((9, 16, 16, 3), 7, dtype=np.uint8)
    write_sample(out, 1, marked, fps=8)
    summary = sample_folder(*arguments(root, out), batch_size=2)
    videos = np.load(out / "videos.npy")
    assert np.array_equal(videos[1], marked) and not np.array_equal(videos[0], marked)
    assert (out / video_file(2)).is_file() and not (out / pixels_file(2)).exists()
    assert summary["videos"] == 3 and summary["frames_per_video"] == 9


def test_the_batch_size_comes_from_the_spec_and_does_not_change_the_videos(inputs, single, tmp_path):
    """`stages.sample.batch_size` (here 5: batches of 5 and 1, against the fixture's three of 2) sets the batches
    when no batch size is given; every video has its own seed, so the pixels are the same."""
    from raven.config import read_spec

    spec = read_spec(inputs / "spec.yaml")
    write_spec(spec.model_copy(update={"stages": {**spec.stages, "sample": {"batch_size": 5}}}), tmp_path / "spec.yaml")
    summary = sample_folder(str(tmp_path / "spec.yaml"), *arguments(inputs, tmp_path / "out")[1:], seeds_per_prompt=2)
    assert summary["batch_size"] == 5
    assert np.array_equal(np.load(tmp_path / "out" / "videos.npy"), np.load(single / "videos.npy"))
