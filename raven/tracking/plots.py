"""Loss curves of the training runs recorded in the MLflow store (one PNG per run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raven.io import atomic_path
from raven.tracking.runs import experiment_name
from raven.tracking.store import locked_call

COLUMNS = 6  # panels per line of a run's figure
PANEL_IN, TITLE_IN = (3.2, 2.4), 0.6  # a panel's width and height, the title line's height (inches)


def training_histories(tracking_uri: str, scale: str) -> list[tuple[Any, dict[str, list[tuple[int, float]]]]]:
    """(run, {metric: [(step, value), ...]}) for every active training run at `scale`."""

    def action(client: Any) -> list:
        experiment = client.get_experiment_by_name(experiment_name(scale))
        if experiment is None:
            return []
        runs = client.search_runs([experiment.experiment_id], "tags.kind = 'training'", max_results=10000)
        return [(run, {name: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, name))
                       for name in run.data.metrics}) for run in runs]

    return locked_call(tracking_uri, action)


def plot_training_runs(tracking_uri: str, scale: str, out_dir: Path) -> list[str]:
    """Write one PNG per training run (a panel per metric against step); returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for run, histories in training_histories(tracking_uri, scale):
        if not histories:
            continue
        name = run.info.run_name.replace("/", "_").replace(":", "-")  # `<stage>:<out below results/<scale>>`
        columns = min(COLUMNS, len(histories))
        rows = -(-len(histories) // columns)
        # a fixed grid (no tight_layout: it measures every label of every panel, most of a figure's time)
        height = PANEL_IN[1] * rows + TITLE_IN
        figure, axes = plt.subplots(rows, columns, figsize=(PANEL_IN[0] * columns, height), squeeze=False)
        figure.subplots_adjust(left=0.06, right=0.98, bottom=0.06, top=1 - TITLE_IN / height, wspace=0.35, hspace=0.55)
        for axis, (metric, points) in zip(axes.flat, sorted(histories.items())):
            axis.plot([step for step, _ in points], [value for _, value in points])
            axis.set_title(metric, fontsize=9)
            axis.tick_params(labelsize=7)
        for axis in axes.flat[len(histories):]:
            axis.set_visible(False)
        figure.suptitle(f"{run.info.run_name} (row {run.data.tags.get('row') or '-'}, scale {scale}; x: step)")
        with atomic_path(out_dir / f"{name}.png") as tmp:
            figure.savefig(tmp, format="png", dpi=80)
        plt.close(figure)
        written.append(f"{name}.png")
    return sorted(written)
