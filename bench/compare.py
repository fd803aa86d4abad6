"""The shipped models' rows of this run beside a baseline run's (`bench/baseline.json`, the BENCHMARKS.json that
`make bench` wrote for the layout before the two planes), every run of each row shown, so that a change can be
told from run-to-run noise.

A row is "worse beyond noise" when even this run's best repeat is below the baseline's worst and the median ratio
is under `WORSE`: on a shared 2-core machine one run's req/s moves by tens of percent, so less than that says
nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BASELINE = Path(__file__).with_name("baseline.json")
WORSE = 0.9


def _rows(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every throughput row of the shipped models' service sections, by a name that both runs share."""
    rows: dict[str, dict[str, Any]] = {}
    for setting, figures in results["service"].items():
        for key in ("sample256_npy", "sample256_png", "sample64_npy", "sample64_png"):
            if key in figures:
                n, fmt = key.removeprefix("sample").split("_")
                rows[f"{setting}: `/sample?n={n}&format={fmt}` ({figures[key]['clients']} client(s))"] = figures[key]
        for key, path in (("encode", "POST /encode"), ("sample1", "GET /sample?n=1")):
            for row in figures.get(key, []):
                rows[f"{setting}: `{path}` ({row['clients']} client(s))"] = row
    return rows


def compare(results: dict[str, Any], baseline: dict[str, Any]) -> list[dict[str, Any]]:
    """Each row both runs have: the baseline's and this run's req/s (median and every repeat), and a verdict."""
    old, new = _rows(baseline), _rows(results)
    out = []
    for name, row in new.items():
        if name not in old:
            continue
        before, after = old[name], row
        runs_before = before.get("runs_rps", [before["rps"]])
        runs_after = after.get("runs_rps", [after["rps"]])
        ratio = after["rps"] / before["rps"]
        worse = max(runs_after) < min(runs_before) and ratio < WORSE
        out.append(
            {
                "row": name,
                "before": before["rps"],
                "before_runs": runs_before,
                "after": after["rps"],
                "after_runs": runs_after,
                "ratio": ratio,
                "worse": worse,
            }
        )
    return out


def load_baseline(path: Path = BASELINE) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def report(rows: list[dict[str, Any]]) -> list[str]:
    def runs(values: list[float]) -> str:
        return " / ".join(f"{v:.0f}" for v in values)

    worse = [r["row"] for r in rows if r["worse"]]
    return [
        "## The shipped models against the baseline run",
        "",
        "`bench/baseline.json` is the BENCHMARKS.json of the layout before the two planes (the same machine class, "
        "an earlier day). Each row: req/s, the median of its repeats, then every repeat; a row is worse beyond "
        f"noise when this run's best repeat is below the baseline's worst and the medians' ratio is under {WORSE}.",
        "",
        "| row | baseline req/s (repeats) | this run req/s (repeats) | ratio | worse beyond noise |",
        "|---|---|---|---|---|",
        *(
            f"| {r['row']} | {r['before']:.0f} ({runs(r['before_runs'])}) | {r['after']:.0f} ({runs(r['after_runs'])}) "
            f"| {r['ratio']:.2f} | {'**yes**' if r['worse'] else 'no'} |"
            for r in rows
        ),
        "",
        f"Rows worse beyond noise: {', '.join(worse) if worse else 'none'}.",
    ]
