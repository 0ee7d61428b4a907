"""Runs INSIDE the VBench virtual environment (standard library + vbench only; never imports raven).

Scores a folder of VBench-named videos (`<prompt>-<i>.mp4`) on the given dimensions with VBench's
standard mode and local weights (VBENCH_CACHE_DIR); writes `<out>/<name>_eval_results.json`.
Under torchrun (several GPUs) it joins VBench's process group first.
"""

import argparse
import os


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--videos", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--full-info", required=True)
    parser.add_argument("--dimensions", nargs="+", required=True)
    args = parser.parse_args()

    import torch
    from vbench import VBench
    from vbench.distributed import dist_init

    if "LOCAL_RANK" in os.environ:
        dist_init()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bench = VBench(device, args.full_info, args.out)
    bench.evaluate(videos_path=args.videos, name=args.name, dimension_list=args.dimensions, local=True,
                   mode="vbench_standard")


if __name__ == "__main__":
    main()
