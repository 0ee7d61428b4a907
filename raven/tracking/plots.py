"""Loss curves of the training runs recorded in the MLflow store (one PNG per run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raven.io import atomic_path
from raven.tracking.runs import experiment_name
from raven.tracking.store import locked_call


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
        figure, axes = plt.subplots(1, len(histories), figsize=(4 * len(histories), 3), squeeze=False)
        for axis, (metric, points) in zip(axes[0], sorted(histories.items())):
            axis.plot([step for step, _ in points], [value for _, value in points])
            axis.set_title(metric)
            axis.set_xlabel("step")
        figure.suptitle(f"{run.info.run_name} (row {run.data.tags.get('row') or '-'}, scale {scale})")
        figure.tight_layout()
        with atomic_path(out_dir / f"{name}.png") as tmp:
            figure.savefig(tmp, format="png", dpi=80)
        plt.close(figure)
        written.append(f"{name}.png")
    return sorted(written)
