"""`raven weights plot`: the chunk weight curves of weighting specs (the paper's Figure 5, docs/method.md §5)."""

from __future__ import annotations

import argparse

RELEASE_SPECS = ["-1", "0", "1", "ln_0_1", "mode_0.81", "mode_-0.54"]
CONTINUOUS_CHUNKS = 64


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("weights", help="chunk-wise loss weighting (plots)")
    commands = parser.add_subparsers(dest="weights_command", required=True, metavar="COMMAND")
    plot = commands.add_parser("plot", help="plot chunk weights per weighting spec to a PNG")
    plot.add_argument("--spec", required=True, help="resolved run spec YAML (its chunk geometry is plotted)")
    plot.add_argument("--out", required=True, help="PNG file")
    plot.add_argument("--weighting", nargs="+", default=RELEASE_SPECS,
                      help="weighting specs (default: the release's ablations)")
    plot.set_defaults(handler=run_plot)


def run_plot(args: argparse.Namespace) -> int:
    import sys

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from raven.config import read_spec
    from raven.io import atomic_path
    from raven.training.weighting import chunk_weights

    spec = read_spec(args.spec)
    channels, _, height, width = spec.latent_shape
    frames = spec.chunk_frames
    numel = [channels * f * height * width for f in frames]
    try:
        for weighting in args.weighting:
            chunk_weights(numel, weighting)
    except ValueError as error:
        print(f"raven weights plot: error: --weighting: {error}", file=sys.stderr)
        return 2
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for weighting in args.weighting:
        left.plot(range(1, len(numel) + 1), chunk_weights(numel, weighting).numpy(), marker="o", label=weighting)
        fine = chunk_weights([1] * CONTINUOUS_CHUNKS, weighting).numpy()
        right.plot([(k + 0.5) / CONTINUOUS_CHUNKS for k in range(CONTINUOUS_CHUNKS)], fine, label=weighting)
    left.set(title=f"{len(numel)} chunks of frames {frames} (scale {spec.scale})", xlabel="chunk k",
             ylabel="weight w_k (mean per element 1)")
    right.set(title=f"{CONTINUOUS_CHUNKS} equal chunks", xlabel="position in video (chunk centre / length)",
              ylabel="weight w_k")
    left.legend(title="weighting spec")
    figure.tight_layout()
    with atomic_path(args.out) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    plt.close(figure)
    return 0
