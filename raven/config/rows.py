"""The rows of config/experiments.yaml as one scale runs them.

- A baseline row whose released checkpoint the scale gives (`weights.baselines.<row>`, docs/method.md §9) is
  `method: released` there: sampled from that checkpoint with the row's inference settings (its
  `overrides`), trained nowhere; its recipe line is the row's `released` line. Elsewhere (toy scales) the
  row is the miniature its `method` trains.
- Rows that would run the same thing (same method, same starting point, same resolved spec but for the
  row name) are one run: `same_runs` maps each row to the first such row, and a table prints that run
  under every label that names one of them.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

from raven.config.load import ConfigError

WHERE = "config/experiments.yaml"
METHODS = ("dmd", "cmgrpo", "inference", "released")
TRAINED_METHODS = ("dmd", "cmgrpo")
# Keys that say where a row's model comes from; a released row has none of them.
SOURCES = ("init", "from")


def rows_at_scale(rows: Mapping[str, Mapping[str, Any]], baselines: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every row with the method it has at a scale whose `weights.baselines` holds `baselines`."""
    unknown = sorted(set(baselines) - set(rows))
    if unknown:
        raise ConfigError(f"weights.baselines names {unknown}, which are not rows of {WHERE}; a released "
                          f"checkpoint replaces one of its rows: {sorted(rows)}")
    resolved = {}
    for row, settings in rows.items():
        settings = dict(settings)
        if settings.get("method") == "released" and row not in baselines:
            raise ConfigError(f"{WHERE}: rows.{row} is method 'released', but this scale gives no "
                              f"weights.baselines.{row} (path, key, lora) in config/scales/<scale>.yaml")
        if row in baselines:
            if not settings.get("released"):
                raise ConfigError(f"{WHERE}: rows.{row} has no `released` line, but weights.baselines.{row} gives its "
                                  "released checkpoint; add one (the checkpoint and its inference settings)")
            settings = {key: value for key, value in settings.items() if key not in SOURCES}
            settings.update(method="released", recipe=settings["released"])
        resolved[row] = settings
    return resolved


def same_runs(rows: Mapping[str, Mapping[str, Any]], spec_identity: Callable[[str], Hashable],
              baselines: Mapping[str, Any] | None = None) -> dict[str, str]:
    """row -> the first row (in file order) that runs the same thing; a row nobody before it matches maps to
    itself. Two rows run the same thing when their methods, starting points (init; the `from` row's run; the
    released checkpoint) and `spec_identity` (the resolved spec without its row name) are equal."""
    baselines = baselines or {}
    keys: dict[str, Hashable] = {}

    def key(row: str, seen: tuple[str, ...] = ()) -> Hashable:
        if row in seen:
            raise ConfigError(f"{WHERE}: rows {' -> '.join((*seen, row))} continue each other in a cycle")
        if row not in keys:
            settings = rows[row]
            start = settings.get("init")
            if settings.get("from") is not None:
                start = key(settings["from"], (*seen, row))
            if settings.get("method") == "released":
                start = repr(baselines[row])
            keys[row] = (settings.get("method"), start, spec_identity(row))
        return keys[row]

    first: dict[Hashable, str] = {}
    return {row: first.setdefault(key(row), row) for row in rows}


def seed_paired(rows: Mapping[str, Mapping[str, Any]], a: str, b: str) -> bool:
    """Whether replica k of rows `a` and `b` (`<row>@s<k>`) share a trained starting point: one continues the
    other (`from`), or both continue the same row, replica k from its replica k. Their seed noise is then
    shared, and a comparison resamples their seeds together (raven.evaluation.stats.compare). A released or
    inference row has no replicas to share."""
    parent_a, parent_b = (rows.get(a) or {}).get("from"), (rows.get(b) or {}).get("from")
    if a == b or not (parent_a == b or parent_b == a or parent_a == parent_b):
        return False
    shared = b if parent_a == b else a if parent_b == a else parent_a
    return (rows.get(shared) or {}).get("method") in TRAINED_METHODS
