"""``promptsep bench paired``: paired differences of separation benchmark runs on one manifest.

Two releases (or one release under two settings) separated the same manifest with
``promptsep bench separation``; every item then has a figure under each run, and the
per-item difference removes the spread between items that dominates each run's own
confidence interval. This is how ablations and checkpoint choices are read::

    promptsep bench paired --base all_on=runs/a --run no_reverb=runs/b --run no_noise=runs/c \\
        --system separator_nfe2 --out runs/ablation

A run given as ``NAME=DIR@SYSTEM`` is read at its own system (two releases at their own
recommended steps, e.g. ``--base tiny=runs/a@separator_nfe1 --run v2=runs/b@separator_nfe4``);
the others use ``--system``.

For every run and group (all target-present items, each subset / prompt kind / category) it
reports the run's mean and the mean of ``run - base`` over the items both runs scored, with a
percentile bootstrap CI (:func:`bench.report.bootstrap_ci`). Runs on different manifests are
refused: their items are not the same mixtures.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.report import _groups, bootstrap_ci, write_table

#: Metrics compared by default (higher is better for both).
DEFAULT_METRICS: tuple[str, ...] = ("si_sdri", "judge_overall")


def _load(folder: str | Path, system: str) -> tuple[str, dict[str, dict]]:
    """``(manifest digest, {item id: row})`` of one run's successful target-present rows of ``system``."""
    folder = Path(folder)
    fp_path, res_path = folder / "fingerprint.json", folder / "results.jsonl"
    for p in (fp_path, res_path):
        if not p.is_file():
            raise FileNotFoundError(f"{folder} is not a `promptsep bench separation` output folder (no {p.name})")
    manifest = json.loads(fp_path.read_text())["parts"]["manifest"]
    rows: dict[str, dict] = {}
    for line in res_path.read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        if r.get("system") == system and r.get("status") == "ok" and r.get("target_present"):
            rows[r["id"]] = r
    if not rows:
        raise ValueError(f"{folder} has no successful target-present rows of system {system!r}")
    return manifest, rows


def paired(base: tuple[str, str | Path] | tuple[str, str | Path, str],
           runs: Sequence[tuple[str, str | Path] | tuple[str, str | Path, str]], system: str,
           metrics: Sequence[str] = DEFAULT_METRICS, samples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Per-group means of each run and paired differences against ``base``.

    Args:
        base: ``(name, folder)`` of the reference run, or ``(name, folder, system)`` to read it
            at its own system.
        runs: ``(name, folder[, system])`` of the runs compared with it (same manifest).
        system: the system rows compared where a run names none, e.g. ``separator_nfe2``.
        metrics: row metrics to compare.
        samples: bootstrap resamples.
        seed: bootstrap seed.

    Returns:
        ``{"system", "base", "runs", "groups": {group: {"n", "base": {metric: stats},
        name: {metric: {"mean": stats, "diff": stats}}}}}``; ``stats`` is
        :func:`bench.report.bootstrap_ci`'s dict.

    Raises:
        ValueError: a run was made on another manifest, or a name repeats.
    """
    def sys_of(spec: tuple) -> str:
        return spec[2] if len(spec) > 2 and spec[2] else system

    names = [base[0], *(r[0] for r in runs)]
    if len(set(names)) != len(names):
        raise ValueError(f"run names must be distinct, got {names}")
    base_manifest, base_rows = _load(base[1], sys_of(base))
    loaded = {}
    systems = {base[0]: sys_of(base)}
    for spec in runs:
        name, folder = spec[0], spec[1]
        systems[name] = sys_of(spec)
        manifest, rows = _load(folder, systems[name])
        if manifest != base_manifest:
            raise ValueError(f"run {name!r} ({folder}) was made on another manifest than {base[0]!r}: "
                             "paired differences need the same items")
        loaded[name] = rows
    groups: dict[str, Any] = {}
    for item_id, b in base_rows.items():
        for g in _groups(b):
            groups.setdefault(g, []).append(item_id)
    out: dict[str, Any] = {}
    for g in sorted(groups, key=lambda s: (s != "all", s.count(","), s)):
        ids = groups[g]
        entry: dict[str, Any] = {"n": len(ids), "base": {m: bootstrap_ci([base_rows[i].get(m) for i in ids], samples, seed)
                                                       for m in metrics}}
        for name, rows in loaded.items():
            entry[name] = {}
            for m in metrics:
                both = [i for i in ids if i in rows and rows[i].get(m) is not None and base_rows[i].get(m) is not None]
                entry[name][m] = {
                    "mean": bootstrap_ci([rows[i][m] for i in both], samples, seed),
                    "diff": bootstrap_ci([rows[i][m] - base_rows[i][m] for i in both], samples, seed),
                }
        out[g] = entry
    shared = set(systems.values())
    return {"system": shared.pop() if len(shared) == 1 else system, "systems": systems, "base": base[0],
            "runs": [r[0] for r in runs], "groups": out}


def paired_md(table: dict[str, Any], metric: str = "si_sdri") -> str:
    """Markdown of :func:`paired`'s dict for one metric: per group, each run's mean and its difference."""
    def fmt(st: dict) -> str:
        if st["mean"] is None:
            return "-"
        return f"{st['mean']:+.2f} [{st['lo']:+.2f}, {st['hi']:+.2f}]" if st["n"] > 1 else f"{st['mean']:+.2f}"

    runs = table["runs"]
    systems = table.get("systems", {})
    head = ["group", "n", f"{table['base']} (base)", *(f"{r} - base" for r in runs)]
    which = ", ".join(f"{n}: `{s}`" for n, s in systems.items()) if len(set(systems.values())) > 1 \
        else f"`{table['system']}`"
    lines = [f"Paired `{metric}` of {which}, target-present items (mean [95 % CI]).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g, e in table["groups"].items():
        if metric not in e["base"] or e["base"][metric]["n"] == 0:
            continue
        cells = [g, str(e["n"]), fmt(e["base"][metric]), *(fmt(e[r][metric]["diff"]) for r in runs)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``promptsep bench paired --base NAME=DIR --run NAME=DIR [...] --system SYSTEM --out DIR``."""
    import argparse

    p = argparse.ArgumentParser(prog="promptsep bench paired",
                                description="Paired per-item differences of separation benchmark runs on one manifest.")
    p.add_argument("--base", required=True, metavar="NAME=DIR[@SYSTEM]", help="the reference run")
    p.add_argument("--run", action="append", required=True, metavar="NAME=DIR[@SYSTEM]",
                   help="a run compared with the base")
    p.add_argument("--system", default="separator_nfe1",
                   help="system rows compared where a run names none (default separator_nfe1)")
    p.add_argument("--metric", action="append", default=None, help=f"metrics (default {', '.join(DEFAULT_METRICS)})")
    p.add_argument("--out", required=True, help="folder for paired.json and paired.md")
    p.add_argument("--bootstrap", type=int, default=1000)
    args = p.parse_args(argv)

    def spec(s: str) -> tuple[str, str, str]:
        name, sep, rest = s.partition("=")
        folder, system = rest, ""
        if "@" in rest and not Path(rest).is_dir():  # a folder whose name has '@' stays a folder
            folder, _, system = rest.rpartition("@")
            if not system or "/" in system:
                raise ValueError(f"expected NAME=DIR@SYSTEM with a system name after '@', got {s!r}")
        if not sep or not name or not folder:
            raise ValueError(f"expected NAME=DIR or NAME=DIR@SYSTEM, got {s!r}")
        return name, folder, system

    try:
        table = paired(spec(args.base), [spec(s) for s in args.run], args.system,
                       metrics=tuple(args.metric or DEFAULT_METRICS), samples=args.bootstrap)
    except (FileNotFoundError, ValueError) as exc:
        print(f"promptsep bench paired: error: {exc}", file=sys.stderr)
        return 2
    write_table(args.out, "paired", table, "\n".join(paired_md(table, m) for m in (args.metric or DEFAULT_METRICS)))
    return 0


__all__ = ["DEFAULT_METRICS", "main", "paired", "paired_md"]
