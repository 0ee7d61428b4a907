"""`raven report`: pictures for the Snakemake report. `loss-curves`: every training run's logged metrics;
`grid`: a qualitative grid of a row's samples (the paper's Figure 3), one sample per line, frames across."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="plots for the report")
    commands = parser.add_subparsers(dest="report_command", required=True, metavar="PLOT")
    curves = commands.add_parser("loss-curves", help="one PNG per MLflow training run of the spec's scale")
    curves.add_argument("--spec", required=True, help="resolved run spec (scale, tracking_uri)")
    curves.add_argument("--out-dir", required=True, help="writes <stage>-<run name>.png, then summary.json")
    curves.set_defaults(handler=loss_curves)
    grid = commands.add_parser("grid", help="PNG grid of the first samples of `raven sample` (frames across)")
    grid.add_argument("--samples", required=True, help="output folder of `raven sample` (videos.npy)")
    grid.add_argument("--out", required=True, help="PNG file")
    grid.add_argument("--count", type=int, default=4, help="samples shown, one per line (default 4)")
    grid.add_argument("--zoom", type=int, default=4, help="pixel upscaling of small toy videos (default 4)")
    grid.set_defaults(handler=sample_grid)


def loss_curves(args: argparse.Namespace) -> int:
    from pathlib import Path

    from raven.config import read_spec
    from raven.io import atomic_write_json
    from raven.tracking.plots import plot_training_runs

    spec = read_spec(args.spec)
    written = plot_training_runs(spec.tracking_uri, spec.scale, Path(args.out_dir))
    atomic_write_json(Path(args.out_dir) / "summary.json", {"scale": spec.scale, "plots": written})
    return 0


def tile(videos, count: int, zoom: int):
    """uint8 videos [N, T, H, W, 3] -> one image [count·H·zoom, T·W·zoom, 3]: sample i on line i."""
    import numpy as np

    shown = videos[:count]
    lines = [np.concatenate(list(video), axis=1) for video in shown]
    image = np.concatenate(lines, axis=0)
    return image.repeat(zoom, axis=0).repeat(zoom, axis=1)


def sample_grid(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from raven.config import ConfigError
    from raven.io import atomic_path

    path = Path(args.samples) / "videos.npy"
    if not path.is_file():
        raise ConfigError(f"{path}: missing; --samples must be an output folder of `raven sample`")
    videos = np.load(path, mmap_mode="r")
    with atomic_path(args.out) as tmp:
        Image.fromarray(tile(videos, args.count, args.zoom)).save(tmp, format="PNG")
    return 0
