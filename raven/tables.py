"""Paper tables: our rows beside the paper's numbers (config/paper_tables.yaml), as Markdown and CSV.

A row JSON (written by `raven eval row`) holds `total`, `quality`, `semantic` as fractions and
`dyn_deg` on the 1-4 scale; tables print the first three ×100 like the paper. The chunk-weighting
table of the paper lost which parameter belongs to which row within a family, so those rows are
compared as sets: within a family, our values and the paper's are matched in sorted order.
A row whose models a time guard stopped short of their iteration count (`stopped_by_budget`, only with
`on_budget: keep`) is marked in every table that prints it: it is not a complete result.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

COLUMNS = ("total", "quality", "semantic", "dyn_deg")
PERCENT = {"total", "quality", "semantic"}
HEADERS = {"total": "Total", "quality": "Quality", "semantic": "Semantic", "dyn_deg": "Dyn.Deg"}
SHORT_MARK = "(stopped short)"


def ours(row: Mapping[str, Any], column: str) -> float | None:
    value = row.get(column)
    if value is None:
        return None
    return float(value) * 100 if column in PERCENT else float(value)


def paper_rows(paper: Mapping[str, Any], table: str) -> dict[str, dict[str, float]]:
    """The paper's numbers of `table` keyed by our row labels (chunk-weighting pairs: see set_matches)."""
    entries = paper.get(table)
    if entries is None:
        return {}
    if table == "reward_weights":
        return {reward_label(entry): entry for entry in entries}
    if isinstance(entries, Mapping) and "rows" not in entries:
        return dict(entries)
    return {}


def reward_label(entry: Mapping[str, Any]) -> str:
    """`ta2_dd0.35_ms0.75_aq1_iq1` for a weight row of the paper; `raven_only` for the row without CM-GRPO."""
    if entry.get("ta") is None:
        return "raven_only"
    return "_".join(f"{key}{entry[key]:g}" for key in ("ta", "dd", "ms", "aq", "iq"))


def set_matches(paper: Mapping[str, Any], measured: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Chunk-weighting rows: within each family with several candidate specs, pair our rows with the
    paper's rows by the rank of their Total (the paper's assignment inside a family is unknown)."""
    families: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for entry in paper["chunk_weighting"]["rows"]:
        families.setdefault(tuple(entry["candidates"]), []).append(entry)
    matched: dict[str, dict[str, float]] = {}
    for candidates, entries in families.items():
        present = [label for label in candidates if label in measured]
        by_total = sorted(present, key=lambda label: ours(measured[label], "total") or 0.0)
        for label, entry in zip(by_total, sorted(entries, key=lambda e: e["total"])):
            matched[label] = dict(entry)
    return matched


def build_table(table: str, measured: Mapping[str, Mapping[str, Any]], paper: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One record per row label: ours, the paper's and the difference for every column."""
    reference = set_matches(paper, measured) if table == "chunk_weighting" else paper_rows(paper, table)
    records = []
    for label, row in measured.items():
        record: dict[str, Any] = {"row": label, "recipe": row.get("recipe", ""),
                                  "stopped_by_budget": bool(row.get("stopped_by_budget"))}
        for column in COLUMNS:
            mine, theirs = ours(row, column), reference.get(label, {}).get(column)
            record[column] = mine
            record[f"ci_{column}"] = scaled_interval(row, column)
            record[f"paper_{column}"] = theirs
            record[f"diff_{column}"] = None if mine is None or theirs is None else mine - theirs
        if row.get("by_objects"):  # the toy benchmark's accuracy per object, in one- and two-object prompts
            record["by_objects"] = row["by_objects"]
        records.append(record)
    return records


def scaled_interval(row: Mapping[str, Any], column: str) -> list[float] | None:
    """The row's 95% interval of `column` (raven.evaluation.stats) on the table's scale (×100 for fractions)."""
    bounds = (row.get("ci") or {}).get(column)
    if bounds is None:
        return None
    return [float(b) * 100 if column in PERCENT else float(b) for b in bounds]


def comparisons(table: str, measured: Mapping[str, Mapping[str, Any]], pairs: Sequence[Sequence[str]],
                metric: str = "total", rows: Mapping[str, Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Label a − label b in `metric` with its 95% interval for each configured pair whose rows carry units
    (per-seed, per-prompt scores); the difference is on the table's scale. With `rows` (the experiments' rows
    at this scale) the seeds of rows that continue one another are resampled together
    (raven.config.rows.seed_paired)."""
    from raven.config.rows import seed_paired
    from raven.evaluation.stats import Units, compare

    results = []
    for a, b in pairs:
        if not measured.get(a, {}).get("units") or not measured.get(b, {}).get("units"):
            continue  # a partial table, or rows without per-video scores
        result = compare(Units.from_json(measured[a]["units"]), Units.from_json(measured[b]["units"]), metric,
                         paired_seeds=rows is not None and seed_paired(rows, measured[a].get("row", a),
                                                                       measured[b].get("row", b)))
        scale = 100 if metric in PERCENT else 1
        results.append({"table": table, "a": a, "b": b, **result, "diff": result["diff"] * scale,
                        "ci": [bound * scale for bound in result["ci"]]})
    return results


def comparisons_markdown(results: Sequence[Mapping[str, Any]]) -> list[str]:
    if not results:
        return []
    lines = ["", "Comparisons (95% interval over seeds and prompts; prompts paired):", "",
             "| a − b | metric | diff | 95% CI | seeds | prompts | |", "|---|---|---|---|---|---|---|"]
    for r in results:
        verdict = "**significant**" if r["significant"] else "within the noise"
        if min(r["seeds"]) < 2:  # one seed: the interval holds the prompts' noise, not the training's
            verdict += " (prompt noise only: one seed)"
        seeds = f"{r['seeds'][0]}/{r['seeds'][1]}" + (" paired" if r.get("seeds_paired") else "")
        lines.append(f"| {r['a']} − {r['b']} | {HEADERS.get(r['metric'], r['metric'])} | {r['diff']:+.2f} | "
                     f"[{r['ci'][0]:+.2f}, {r['ci'][1]:+.2f}] | {seeds} | {r['prompts']} | {verdict} |")
    return lines


def number(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def signed(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:+.{digits}f}"


def to_markdown(table: str, records: list[dict[str, Any]], scale: str) -> str:
    """Markdown: one line per row, each column as `ours [95% CI] (paper, ±diff)` (the interval when the row
    has several seeds or per-video scores)."""
    lines = [f"# {table} ({scale} scale)", ""]
    if scale != "paper":
        lines += [f"**Toy-world scores** (scale `{scale}`): the toy-world benchmark's Total/Quality/Semantic and "
                  "dynamic degree, not VBench / UnifiedReward. The paper's numbers are shown for orientation only.", ""]
    short = [record["row"] for record in records if record.get("stopped_by_budget")]
    if short:
        lines += [f"**Not complete results**: {', '.join(short)} {SHORT_MARK}: a time guard (`budget_s`, with "
                  "`on_budget: keep`) stopped training before the iteration count that defines the run; see the "
                  "row JSON's `training`, and rerun the stage to finish it (README, \"Training length\").", ""]
    if table == "chunk_weighting":
        lines += ["The paper's table lost which spec belongs to which row within a family (mode_0.81 / mode_-0.54; "
                  "0 / 1): those rows are compared as sets, matched by rank of Total.", ""]
    lines.append("| row | " + " | ".join(HEADERS[c] + " (paper, diff)" for c in COLUMNS) + " | recipe |")
    lines.append("|---" * (len(COLUMNS) + 2) + "|")
    for record in records:
        cells = []
        for column in COLUMNS:
            digits = 3 if column == "dyn_deg" else 2
            ci = record.get(f"ci_{column}")
            spread = "" if ci is None else f" [{number(ci[0], digits)}, {number(ci[1], digits)}]"
            cells.append(f"{number(record[column], digits)}{spread} ({number(record['paper_' + column], digits)}, "
                         f"{signed(record['diff_' + column], digits)})")
        label = f"{record['row']} {SHORT_MARK}" if record.get("stopped_by_budget") else record["row"]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {record['recipe']} |")
    return "\n".join(lines + objects_lines(records)) + "\n"


def objects_lines(records: list[dict[str, Any]]) -> list[str]:
    """The toy benchmark's colour / shape / direction accuracy per object in one- and two-object prompts
    (raven.world.parser.by_objects, pooled over seeds), below the table, when the rows carry it."""
    split = [(record["row"], record["by_objects"]) for record in records if record.get("by_objects")]
    if not split:
        return []
    lines = ["", "Per object, colour / shape / direction (toy world; two-object prompts need each word bound to "
             "its object):", "", "| row | one-object prompts | two-object prompts |", "|---|---|---|"]
    for row, groups in split:
        cells = [" / ".join(f"{groups[group][key + '_acc']:.2f}" for key in ("colour", "shape", "direction"))
                 + f" ({groups[group]['objects']} objects)" if group in groups else "–"
                 for group in ("one_object", "two_objects")]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines


def to_csv(records: list[dict[str, Any]]) -> str:
    fields = ["row", *[f"{p}{c}" for c in COLUMNS for p in ("", "ci_low_", "ci_high_", "paper_", "diff_")], "recipe",
              "stopped_by_budget"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for record in records:
        flat = dict(record)
        for column in COLUMNS:
            ci = record.get(f"ci_{column}") or [None, None]
            flat[f"ci_low_{column}"], flat[f"ci_high_{column}"] = ci
        writer.writerow({key: "" if flat.get(key) is None else flat[key] for key in fields})
    return buffer.getvalue()


def user_study_records(analysis: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One record per (opponent, dimension) of `raven userstudy analyze`: the method's win / tie / loss
    rates (percent) with their 95% bootstrap intervals and the number of judgements."""
    records = []
    for opponent, dimensions in analysis["results"].items():
        for dimension, result in dimensions.items():
            record: dict[str, Any] = {"opponent": opponent, "dimension": dimension, "n": result["n"]}
            for outcome in ("win", "tie", "loss"):
                rate, interval = result["rates"][outcome], result["ci95"][outcome]
                record[outcome] = None if rate is None else 100 * rate
                record[f"{outcome}_ci"] = None if interval is None else [100 * bound for bound in interval]
            records.append(record)
    return records


def user_study_markdown(analysis: Mapping[str, Any], records: list[dict[str, Any]], scale: str) -> str:
    lines = [f"# user_study ({scale} scale)", "",
             f"{analysis['method']} against each opponent: win / tie / loss in % of {analysis['judgements']} "
             f"judgements by {analysis['annotators']} annotators, 95% bootstrap intervals in brackets. The paper "
             "reports RAVEN preferred over every opponent on all three dimensions (Figure 6; no percentages).", ""]
    if scale != "paper":
        lines += [f"**Toy-world study** (scale `{scale}`): simulated raters who prefer the video with the better "
                  "toy-world scores, not people.", ""]
    lines += ["| opponent | dimension | win | tie | loss | n |", "|---|---|---|---|---|---|"]
    for record in records:
        cells = [f"{number(record[o], 1)} [{interval(record[o + '_ci'])}]" for o in ("win", "tie", "loss")]
        lines.append(f"| {record['opponent']} | {record['dimension']} | " + " | ".join(cells) + f" | {record['n']} |")
    return "\n".join(lines) + "\n"


def interval(bounds: list[float] | None) -> str:
    return "–" if bounds is None else f"{bounds[0]:.1f}, {bounds[1]:.1f}"


def drift_records(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One record per (method, consistency key) of `raven eval drift`: the per-chunk values (fractions)."""
    return [{"row": label, "key": key, "length_x_training": result.get("length_x_training"), "per_chunk": values}
            for label, result in report["drift"].items() for key, values in result["per_chunk"].items()]


def drift_markdown(records: list[dict[str, Any]], scale: str) -> str:
    chunks = max(len(record["per_chunk"]) for record in records)
    lines = [f"# drift ({scale} scale)", "",
             "Long-horizon drift (beyond the paper): consistency with the first chunk per chunk index, from the "
             "toy-world parser, for videos longer than the training length.", "",
             "| row | consistency | length × training | " + " | ".join(f"chunk {k}" for k in range(chunks)) + " |",
             "|---" * (chunks + 3) + "|"]
    for record in records:
        values = " | ".join(number(value, 3) for value in record["per_chunk"])
        lines.append(f"| {record['row']} | {record['key']} | {number(record['length_x_training'], 1)} | {values} |")
    return "\n".join(lines) + "\n"


def records_csv(records: list[dict[str, Any]]) -> str:
    """CSV of records whose values may be lists (joined with ';')."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({key: ";".join(f"{v:g}" for v in value) if isinstance(value, list) else
                         "" if value is None else value for key, value in record.items()})
    return buffer.getvalue()


def table_metrics(table: str, records: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """The numbers of a table keyed by row label, for `dvc metrics show` (which skips lists)."""
    metrics: dict[str, dict[str, float | None]] = {}
    for record in records:
        if table == "user_study":
            values = {f"{record['dimension']}_{o}": record[o] for o in ("win", "tie", "loss")}
            metrics.setdefault(record["opponent"], {}).update(values)
        elif table == "drift":
            values = {f"{record['key']}_chunk{k}": value for k, value in enumerate(record["per_chunk"])}
            metrics.setdefault(record["row"], {}).update(values)
        else:
            metrics[record["row"]] = {column: record[column] for column in COLUMNS}
    return metrics
