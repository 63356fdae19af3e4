"""Model-card figures of a benchmark run (``model_card.json`` and ``model_card.md``).

:func:`model_card` condenses the per-item rows of ``results.jsonl`` into the figures a
model card reports for one separator at one NFE (``BenchSettings.model_card_nfe``):

- per category and per prompt kind (main subset: mixtures of 2..4 sources, target present):
  SI-SDR improvement over the mixture of the separator, raw (``refine="none"``) and
  Wiener-refined (the default output), beside the mixture baseline (its SI-SDR; its
  SI-SDRi is 0 by definition) and the oracle codec round trip of the true target (and
  its Wiener-refined variant, the ceiling of the refined output);
- the same per prompt kind on 2-source mixtures of different categories (``pair_cross``,
  the text bar), and the paired gain of span prompts over text alone (the same mixtures
  prompted both ways);
- absent-target items: output energy relative to the mixture (dB, lower is better);
- the codec round trip of the true targets: SI-SDR and multi-resolution STFT distance.

Means come with percentile bootstrap confidence intervals (:func:`bench.report.bootstrap_ci`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.report import bootstrap_ci, reproduce_lines, write_table

#: Text-prompt SI-SDRi bar of issue #7 on 2-source mixtures of different categories (dB).
TEXT_BAR_DB = 4.0
#: Column keys of the card tables -> (system key in ``card["systems"]``, metric).
COLUMNS = (
    ("mixture_si_sdr", "mixture", "si_sdr"),
    ("oracle_codec_si_sdri", "oracle_codec", "si_sdri"),
    ("oracle_codec_wiener_si_sdri", "oracle_codec_wiener", "si_sdri"),
    ("separator_raw_si_sdri", "separator_raw", "si_sdri"),
    ("separator_si_sdri", "separator", "si_sdri"),
    ("separator_raw_si_sdr", "separator_raw", "si_sdr"),
    ("separator_si_sdr", "separator", "si_sdr"),
)
COLUMN_LABELS = {
    "mixture_si_sdr": "mixture SI-SDR",
    "oracle_codec_si_sdri": "oracle codec",
    "oracle_codec_wiener_si_sdri": "oracle codec + Wiener",
    "separator_raw_si_sdri": "separator raw",
    "separator_si_sdri": "separator (Wiener, default)",
}
#: Columns shown in the Markdown tables (all are in the JSON).
MD_COLUMNS = ("mixture_si_sdr", "oracle_codec_si_sdri", "oracle_codec_wiener_si_sdri", "separator_raw_si_sdri",
              "separator_si_sdri")
CATEGORY_ORDER = ("speech", "instrument", "music", "sfx")
KIND_ORDER = ("text", "span", "text+span", "video")


def _order(keys, preferred: Sequence[str]) -> list[str]:
    keys = set(keys)
    return [k for k in preferred if k in keys] + sorted(k for k in keys if k not in preferred)


def model_card(rows: Sequence[dict], settings: Any, device: str | None = None) -> dict[str, Any]:
    """Model-card figures from benchmark rows.

    Args:
        rows: rows of ``results.jsonl`` (failed rows are ignored).
        settings: the :class:`bench.separation.BenchSettings` of the run.
        device: where the run was timed (for the record).

    Returns:
        A JSON-able dict: ``systems`` (card key -> benchmark system), ``per_category``,
        ``per_prompt_kind``, ``pair_cross`` (per prompt kind), ``span_gain`` (paired),
        ``absent``, ``codec_round_trip``, ``bar`` and the provenance of the run.
    """
    from bench.separation import separator_system

    k = settings.model_card_nfe
    systems = {"mixture": "mixture", "oracle_codec": "oracle_codec", "oracle_codec_wiener": "oracle_codec_wiener",
               "separator_raw": separator_system(k, "none"), "separator": separator_system(k, "wiener")}
    systems = {key: name for key, name in systems.items() if name in settings.systems}
    nb, seed, alpha = settings.bootstrap_samples, settings.bootstrap_seed, settings.alpha

    ok = [r for r in rows if r.get("status") == "ok"]
    by_sys: dict[str, list[dict]] = {}
    for r in ok:
        by_sys.setdefault(r["system"], []).append(r)

    def table(select) -> dict[str, dict[str, Any]]:
        """Per value of ``select(row)`` (None: skipped): n and every column's statistics."""
        out: dict[str, dict[str, Any]] = {}
        keys = {select(r) for r in ok if r.get("target_present")} - {None}
        for key in keys:
            cell: dict[str, Any] = {}
            for col, sys_key, metric in COLUMNS:
                name = systems.get(sys_key)
                if name is None:
                    continue
                vals = [r.get(metric) for r in by_sys.get(name, []) if r.get("target_present") and select(r) == key]
                cell[col] = bootstrap_ci(vals, nb, seed, alpha)
            cell["n"] = max((c["n"] for c in cell.values() if isinstance(c, dict)), default=0)
            out[key] = cell
        return out

    def main_subset(r: dict) -> bool:
        return r.get("subset") != "pair_cross"

    per_category = table(lambda r: r.get("category") if main_subset(r) else None)
    per_kind = table(lambda r: r.get("prompt_kind") if main_subset(r) else None)
    pair = table(lambda r: r.get("prompt_kind") if r.get("subset") == "pair_cross" else None)
    main_all = table(lambda r: "all" if main_subset(r) else None).get("all", {})

    # Paired span gain on pair_cross scenes prompted both ways.
    span_gain: dict[str, Any] = {}
    for sys_key in ("separator_raw", "separator"):
        name = systems.get(sys_key)
        if name is None:
            continue
        per_scene: dict[str, dict[str, float]] = {}
        for r in by_sys.get(name, []):
            if r.get("subset") == "pair_cross" and r.get("scene") and r.get("si_sdri") is not None:
                per_scene.setdefault(r["scene"], {})[r.get("prompt_kind")] = r["si_sdri"]
        for other in ("text+span", "span"):
            diffs = [d[other] - d["text"] for d in per_scene.values() if "text" in d and other in d]
            if diffs:
                span_gain.setdefault(sys_key, {})[f"{other} - text"] = bootstrap_ci(diffs, nb, seed, alpha)

    absent: dict[str, Any] = {}
    for sys_key, name in systems.items():
        if sys_key.startswith("oracle"):
            continue  # oracles use the (silent) true target: not a measurement of the model
        vals = [r.get("absent_energy_db") for r in by_sys.get(name, []) if r.get("target_present") is False]
        absent[sys_key] = bootstrap_ci(vals, nb, seed, alpha)

    codec: dict[str, Any] = {}
    if "oracle_codec" in systems:
        cr = [r for r in by_sys.get(systems["oracle_codec"], []) if r.get("target_present")]
        codec = {"si_sdr": bootstrap_ci([r.get("si_sdr") for r in cr], nb, seed, alpha),
                 "mrstft": bootstrap_ci([r.get("mrstft") for r in cr], nb, seed, alpha)}

    text_pair = pair.get("text", {})
    bar: dict[str, Any] = {"text_bar_db": TEXT_BAR_DB}
    for sys_key in ("separator_raw", "separator"):
        st = text_pair.get(f"{sys_key}_si_sdri")
        if st and st.get("mean") is not None:
            gain = span_gain.get(sys_key, {}).get("text+span - text") or {}
            bar[sys_key] = {
                "text_si_sdri_pair_cross": st["mean"],
                "meets_text_bar": st["mean"] >= TEXT_BAR_DB,
                "span_gain_db": gain.get("mean"),
                "span_gain_significant": None if gain.get("lo") is None else gain["lo"] > 0,
            }

    n_items = len({r["id"] for r in rows})
    return {
        "checkpoint": settings.checkpoint, "manifest": settings.manifest, "command": settings.command,
        "nfe": k, "method": settings.method, "seed": settings.seed, "device": device,
        "bootstrap_samples": nb, "alpha": alpha, "systems": systems, "n_items": n_items,
        "n_failed_rows": sum(1 for r in rows if r.get("status") != "ok"),
        "main_all": main_all,
        "per_category": {c: per_category[c] for c in _order(per_category, CATEGORY_ORDER)},
        "per_prompt_kind": {c: per_kind[c] for c in _order(per_kind, KIND_ORDER)},
        "pair_cross": {c: pair[c] for c in _order(pair, KIND_ORDER)},
        "span_gain": span_gain, "absent": absent, "codec_round_trip": codec, "bar": bar,
    }


# ---------------------------------------------------------------------- Markdown
def _f(st: dict | None, ci: bool = True) -> str:
    if not st or st.get("mean") is None:
        return "-"
    if not ci or st["n"] < 2:
        return f"{st['mean']:.2f}"
    return f"{st['mean']:.2f} [{st['lo']:.2f}, {st['hi']:.2f}]"


def _md_table(first: str, groups: dict[str, dict[str, Any]], cols: Sequence[str]) -> list[str]:
    lines = ["| " + " | ".join([first, "n", *(COLUMN_LABELS[c] for c in cols)]) + " |",
             "|" + "|".join(" --- " for _ in range(len(cols) + 2)) + "|"]
    for key, cell in groups.items():
        lines.append("| " + " | ".join([key, str(cell.get("n", 0)), *(_f(cell.get(c)) for c in cols)]) + " |")
    return lines


def write_card_md(card: dict[str, Any], path: str | Path) -> Path:
    """Render :func:`model_card`'s dict as Markdown (atomic write)."""
    cols = [c for c in MD_COLUMNS if any(c in cell for cell in card["per_category"].values())] or list(MD_COLUMNS)
    sysd = card["systems"]
    ci = int(round(100 * (1 - card["alpha"])))
    lines = [f"# Model-card figures: `{card['checkpoint']}`", "", *reproduce_lines(card.get("command"))]
    lines += [
        f"Manifest `{card['manifest']}` ({card['n_items']} items, {card['n_failed_rows']} failed rows). Separator at "
        f"{card['nfe']} function evaluations ({card['method']}, seed {card['seed']}): `{sysd.get('separator')}` is the "
        f"default output (Wiener refinement of the mixture with the generated stems), `{sysd.get('separator_raw')}` "
        f"the raw generative stems (`refine=\"none\"`). Values: SI-SDR improvement over the mixture (SI-SDRi, dB), "
        f"mean [{ci}% bootstrap CI]; `mixture SI-SDR` is the mixture baseline's SI-SDR (its SI-SDRi is 0 by "
        "definition); `oracle codec` is the true target through the codec (the latent ceiling), `oracle codec + "
        "Wiener` the mixture masked with the codec round trips of the true stems (the ceiling of the refined output).",
        "",
        "## Per category (test mixtures of 2-4 sources, every prompt kind, target present)",
        "",
    ]
    lines += _md_table("category", card["per_category"], cols)
    if card.get("main_all"):
        lines += _md_table("all", {"all": card["main_all"]}, cols)[2:]
    lines += ["", "## Per prompt kind (same mixtures)", ""]
    lines += _md_table("prompt kind", card["per_prompt_kind"], cols)
    if card["pair_cross"]:
        lines += ["", "## Two sources of different categories (`pair_cross`), per prompt kind", ""]
        lines += _md_table("prompt kind", card["pair_cross"], cols)
        if card["span_gain"]:
            names = sorted({n for g in card["span_gain"].values() for n in g}, reverse=True)
            lines += ["", "Paired gain of span prompts over text alone on the same mixtures (difference of SI-SDRi, dB):",
                      "", "| system | n | " + " | ".join(names) + " |", "|" + "|".join(" --- " for _ in range(len(names) + 2)) + "|"]
            for sys_key, gains in card["span_gain"].items():
                n = max(st["n"] for st in gains.values())
                lines.append(f"| {sys_key} (`{sysd[sys_key]}`) | {n} | " + " | ".join(_f(gains.get(x)) for x in names) + " |")
    bar = card.get("bar") or {}
    if any(k in bar for k in ("separator", "separator_raw")):
        lines += ["", f"## Bar (issue #7): text-prompted SI-SDRi >= {bar['text_bar_db']:g} dB on `pair_cross`; "
                  "span prompts add a measurable gain", ""]
        lines += ["| system | text SI-SDRi (dB) | meets bar | span gain (text+span - text, dB) | gain CI above 0 |",
                  "| --- | --- | --- | --- | --- |"]
        for sys_key in ("separator_raw", "separator"):
            b = bar.get(sys_key)
            if b:
                g = "-" if b["span_gain_db"] is None else f"{b['span_gain_db']:.2f}"
                sig = "-" if b["span_gain_significant"] is None else ("yes" if b["span_gain_significant"] else "no")
                lines.append(f"| {sys_key} | {b['text_si_sdri_pair_cross']:.2f} | "
                             f"{'yes' if b['meets_text_bar'] else 'no'} | {g} | {sig} |")
    lines += ["", "## Absent targets: output energy relative to the mixture (dB; lower is better, mixture = 0)", "",
              "| system | n | energy (dB) |", "| --- | --- | --- |"]
    for sys_key, st in card["absent"].items():
        lines.append(f"| {sys_key} (`{sysd[sys_key]}`) | {st['n']} | {_f(st)} |")
    if card.get("codec_round_trip"):
        cr = card["codec_round_trip"]
        lines += ["", "## Codec round trip of the true targets", "",
                  f"SI-SDR {_f(cr['si_sdr'])} dB, multi-resolution STFT distance {_f(cr['mrstft'])} "
                  f"(n = {cr['si_sdr']['n']}).", ""]
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, p)
    return p




# ---------------------------------------------------------------------- side by side
#: Column names of the corpus splits in side-by-side tables.
SPLIT_LABELS = {"test": "test (source-disjoint)", "test_in": "test_in (in-distribution)",
                "valid": "valid (source-disjoint)", "valid_in": "valid_in (in-distribution)"}


def _run_rows(run_dir: Path) -> tuple[list[dict], dict[str, Any]]:
    """Successful rows of a benchmark folder's ``results.jsonl`` and its ``summary.json``."""
    import json

    summary_path, results_path = run_dir / "summary.json", run_dir / "results.jsonl"
    if not summary_path.is_file() or not results_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a finished benchmark run (no summary.json / results.jsonl)")
    summary = json.loads(summary_path.read_text())
    rows = [json.loads(line) for line in results_path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("status") == "ok"], summary


def side_by_side(runs: dict[str, str | Path], samples: int = 1000, seed: int = 0,
                 alpha: float = 0.05) -> dict[str, Any]:
    """Key figures of several benchmark runs (e.g. one per corpus split) in one table.

    Args:
        runs: ``{column name: benchmark output folder}`` (e.g. ``{"test": ..., "test_in": ...}``),
            in column order; each folder is a finished ``promptsep bench separation`` run.
        samples / seed / alpha: bootstrap confidence intervals (:func:`bench.report.bootstrap_ci`).

    Returns:
        ``{"columns", "runs", "card_nfe", "rows": [{"figure", "system", "cells": {column: stats}}]}``;
        every ``stats`` is :func:`bench.report.bootstrap_ci`'s dict (``n`` 0 when a run lacks the system).
    """
    from bench.separation import BASELINES, parse_system, separator_system

    loaded = {col: _run_rows(Path(d)) for col, d in runs.items()}
    card_nfe = {s.get("card_nfe") for _, s in loaded.values()}
    if len(card_nfe) != 1:
        raise ValueError(f"the runs were summarised at different NFE {sorted(map(str, card_nfe))}")
    k = card_nfe.pop()
    systems: list[str] = []
    for _, s in loaded.values():
        systems += [x for x in s["systems"] if x not in systems]
    nfes = sorted({n for n in (parse_system(x)[0] for x in systems) if n is not None})
    sep, raw = separator_system(k, "wiener"), separator_system(k, "none")
    baselines = [b for b in BASELINES if b != "mixture" and b in systems]

    def stat(col: str, system: str, metric: str, keep) -> dict[str, Any]:
        rows = loaded[col][0]
        return bootstrap_ci([r.get(metric) for r in rows if r["system"] == system and keep(r)], samples, seed, alpha)

    def pair_text(r: dict) -> bool:
        return r.get("subset") == "pair_cross" and r.get("prompt_kind") == "text" and bool(r.get("target_present"))

    def main_present(r: dict) -> bool:
        return r.get("subset") != "pair_cross" and bool(r.get("target_present"))

    def main_absent(r: dict) -> bool:
        return r.get("subset") != "pair_cross" and r.get("target_present") is False

    spec: list[tuple[str, str, str, Any]] = []
    fig = "text-prompted SI-SDRi, 2-source cross-category (pair_cross) [dB]"
    spec += [(fig, x, "si_sdri", pair_text) for x in (sep, raw, *baselines)]
    spec += [(fig, separator_system(n, "wiener"), "si_sdri", pair_text) for n in nfes if n != k]
    fig = "SI-SDRi, all target-present mixtures (2-4 sources, every prompt kind) [dB]"
    spec += [(fig, x, "si_sdri", main_present) for x in (sep, raw, *baselines)]
    spec += [(fig, separator_system(n, "wiener"), "si_sdri", main_present) for n in nfes if n != k]
    cats = sorted({r.get("category") for rows, _ in loaded.values() for r in rows if main_present(r)} - {None},
                  key=lambda c: (CATEGORY_ORDER.index(c) if c in CATEGORY_ORDER else 99, c))
    for c in cats:
        spec.append((f"SI-SDRi, {c} targets [dB]", sep, "si_sdri",
                     lambda r, c=c: main_present(r) and r.get("category") == c))
    spec.append(("judge overall of the separator's output, all target-present mixtures (1-5)", sep, "judge_overall",
                 main_present))
    spec.append(("absent target: output energy vs mixture [dB, lower better]", sep, "absent_energy_db", main_absent))
    out_rows = []
    for figure, system, metric, keep in spec:
        if system not in systems:
            continue
        out_rows.append({"figure": figure, "system": system, "metric": metric,
                         "cells": {col: stat(col, system, metric, keep) for col in runs}})
    # paired span gain on pair_cross scenes prompted both ways
    for other in ("text+span", "span"):
        cells = {}
        for col in runs:
            per_scene: dict[str, dict[str, float]] = {}
            for r in loaded[col][0]:
                if (r["system"] == sep and r.get("subset") == "pair_cross" and r.get("scene")
                        and r.get("si_sdri") is not None):
                    per_scene.setdefault(r["scene"], {})[r.get("prompt_kind")] = r["si_sdri"]
            diffs = [d[other] - d["text"] for d in per_scene.values() if "text" in d and other in d]
            cells[col] = bootstrap_ci(diffs, samples, seed, alpha)
        out_rows.append({"figure": f"span gain on pair_cross: {other} - text (paired) [dB]", "system": sep,
                         "metric": "si_sdri", "cells": cells})
    return {"columns": list(runs), "runs": {c: str(d) for c, d in runs.items()}, "card_nfe": k,
            "samplers": {c: s.get("samplers") for c, (_, s) in loaded.items()},
            "manifests": {c: s.get("manifest") for c, (_, s) in loaded.items()},
            "commands": {c: s.get("command") for c, (_, s) in loaded.items()},
            "bootstrap_samples": samples, "alpha": alpha, "rows": out_rows}


def side_by_side_md(table: dict[str, Any]) -> str:
    """Markdown of :func:`side_by_side`'s dict: one row per (figure, system), one column per run."""
    cols = table["columns"]
    ci = int(round(100 * (1 - table["alpha"])))
    lines = [f"Means [{ci} % bootstrap CI] (n); separator systems at the release's sampler "
             f"(`separator_nfe{table['card_nfe']}` is the default output).", "",
             "| figure | system | " + " | ".join(SPLIT_LABELS.get(c, c) for c in cols) + " |",
             "| --- | --- |" + " --- |" * len(cols)]
    for row in table["rows"]:
        cells = [f"{_f(row['cells'][c])} (n={row['cells'][c]['n']})" if row["cells"][c]["n"] else "-" for c in cols]
        lines.append(f"| {row['figure']} | `{row['system']}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``promptsep bench side-by-side --run test=DIR --run test_in=DIR --out DIR``."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="promptsep bench side-by-side",
                                description="Key figures of several separation benchmark runs (e.g. the source-disjoint "
                                            "test split and the in-distribution test_in split) side by side.")
    p.add_argument("--run", action="append", required=True, metavar="NAME=DIR",
                   help="a column: its name (e.g. test, test_in) and a `promptsep bench separation` output folder")
    p.add_argument("--out", required=True, help="folder for side_by_side.json and side_by_side.md")
    p.add_argument("--bootstrap", type=int, default=1000)
    args = p.parse_args(argv)
    runs: dict[str, str] = {}
    for spec in args.run:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder or name in runs:
            print(f"promptsep bench side-by-side: error: --run needs distinct NAME=DIR, got {spec!r}", file=sys.stderr)
            return 2
        runs[name] = folder
    try:
        table = side_by_side(runs, samples=args.bootstrap)
    except (FileNotFoundError, ValueError) as exc:
        print(f"promptsep bench side-by-side: error: {exc}", file=sys.stderr)
        return 2
    write_table(args.out, "side_by_side", table, side_by_side_md(table))
    return 0


__all__ = ["SPLIT_LABELS", "TEXT_BAR_DB", "main", "model_card", "side_by_side", "side_by_side_md", "write_card_md"]
