"""Report of the embedding benchmark: ``summary.json``, ``report.md``, PNG plots.

The per-task result files are mteb's own ``TaskResult`` files, written by ``mteb.evaluate``
under ``<out>/mteb/results/<model>/<revision>/``; this module only renders the thin layer
(fidelity, bootstrap intervals, long-audio table) on top of them.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.embedding.tasks import TASK_NAMES

logger = logging.getLogger(__name__)

BENCH_VERSION = "promptsep-embedding-bench/1"


def _clean(x: Any) -> Any:
    """JSON-safe copy (NaN/inf -> None)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "item"):
        return _clean(x.item())
    return x


def write_json(path: str | Path, obj: Any) -> Path:
    """Write JSON atomically (NaN as null)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(_clean(obj), indent=2))
    os.replace(tmp, p)
    return p


def _fmt(v: Any, ci: Sequence[float] | None = None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    s = f"{v:.{digits}f}"
    if ci:
        if ci[0] is not None and ci[1] is not None:
            s += f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    return s


def _sep_info(info: Mapping[str, Any]) -> str:
    """One-line description of how the separated condition was made."""
    if info.get("kind") == "oracle":
        return f"oracle pseudo-separation, leak {info.get('leak')}"
    parts = [f"{k} {info[k]}" for k in ("steps", "refine", "seed") if info.get(k) is not None]
    if info.get("seconds_per_item") is not None:
        parts.append(f"{info['seconds_per_item']:.2f} s per item")
    parts.append(f"{info.get('cached', 0)} from cache")
    return ", ".join(parts)


def write_report(out_dir: str | Path, summary: Mapping[str, Any]) -> Path:
    """Write ``report.md`` from the run summary (see :func:`bench.embedding.run.run_benchmark`)."""
    out = Path(out_dir)
    lines = ["# Embedding-fidelity benchmark", ""]
    meta = summary.get("meta", {})
    lines += [f"- command: `{meta.get('command', '')}`", f"- corpus: `{meta.get('corpus')}` (split `{meta.get('split')}`,"
              f" manifest sha1 `{str(meta.get('dataset_revision'))[:12]}`)",
              f"- separator: `{meta.get('separator')}`" + (f" ({_sep_info(meta.get('separation'))})" if meta.get("separation") else ""),
              f"- items: {meta.get('n_items')} (per category: "
              f"{meta.get('category_counts')}), mixture seed {meta.get('items_seed')}",
              f"- bootstrap: {meta.get('bootstrap')} resamples, 95% percentile intervals in brackets",
              f"- scores: mteb {meta.get('mteb_version')} (`mteb.evaluate`); its TaskResult files are in `mteb/results/`, "
              "its per-item predictions (the bootstrap's input) in `mteb_predictions/`", ""]
    lines += ["fidelity = (separated - mixture) / (reference - mixture): 1 = separated stems embed like clean "
              "references, 0 = no better than the unseparated mixture.", ""]
    speech = [n for n, m in summary.get("models", {}).items() if (m.get("info") or {}).get("speech_only")]
    if speech:
        lines += [f"Speech models ({', '.join(speech)}) are meant for speech stems: read their `speech` rows in the "
                  "per-category tables; their all-item rows are given for completeness.", ""]

    models = summary.get("models", {})
    if any(m.get("tasks") for m in models.values()):
        lines += ["## Fidelity table (all items)", "",
                  "| model | task | metric | reference | separated | mixture | fidelity |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for name, m in models.items():
            for task, t in (m.get("tasks") or {}).items():
                e = t["evaluation"].get("all")
                if e is None:
                    continue
                sc, ci = e["scores"], e["ci"]
                main = t["main"]
                cells = [_fmt(sc[c][main], ci.get(c)) if c in sc else "-" for c in ("reference", "separated", "mixture")]
                fid = _fmt(e.get("fidelity"), e.get("fidelity_ci"))
                if e.get("fidelity") is not None and e.get("fidelity_stable") is False:
                    fid += " (unstable)"
                lines.append(f"| {name} | {task} | {main} | {' | '.join(cells)} | {fid} |")
        lines.append("")
        if any(t["evaluation"].get("all", {}).get("fidelity_stable") is False
               for m in models.values() for t in (m.get("tasks") or {}).values()):
            lines += ["(unstable): the bootstrap interval of reference - mixture includes 0, so the fidelity ratio "
                      "divides by noise; compare the separated and mixture scores directly.", ""]
        cats = sorted({s for m in models.values() for t in (m.get("tasks") or {}).values()
                       for s in t["evaluation"] if s != "all"})
        if cats:
            lines += ["## Fidelity per category", "", "| model | task | " + " | ".join(cats) + " |",
                      "| --- | --- | " + " | ".join("---" for _ in cats) + " |"]
            for name, m in models.items():
                for task, t in (m.get("tasks") or {}).items():
                    row = []
                    for c in cats:
                        e = t["evaluation"].get(c) or {}
                        cell = _fmt(e.get("fidelity"), None, 2)
                        row.append(cell + "*" if e.get("fidelity") is not None and e.get("fidelity_stable") is False
                                   else cell)
                    lines.append(f"| {name} | {task} | " + " | ".join(row) + " |")
            lines.append("")
            lines += ["\\* unstable (reference - mixture interval includes 0).", ""]
            lines += ["Scores per category (reference / separated / mixture, main metric):", "",
                      "| model | task | " + " | ".join(cats) + " |", "| --- | --- | " + " | ".join("---" for _ in cats) + " |"]
            for name, m in models.items():
                for task, t in (m.get("tasks") or {}).items():
                    row = []
                    for c in cats:
                        e = t["evaluation"].get(c)
                        if e is None:
                            row.append("-")
                            continue
                        row.append(" / ".join(_fmt(e["scores"][k][t["main"]], None, 2) if k in e["scores"] else "-"
                                              for k in ("reference", "separated", "mixture")))
                    lines.append(f"| {name} | {task} | " + " | ".join(row) + " |")
            lines.append("")

    clean_rows = [(n, m["clean"]) for n, m in models.items() if m.get("clean")]
    if clean_rows:
        cc = meta.get("clean_clips") or {}
        note = (f"{cc.get('excluded')} clips of the groups in `{cc.get('exclude_groups')}` left out"
                if cc.get("excluded") else "")
        lines += [f"## Clean clips (unmixed {meta.get('split')} clips)", ""] + ([note, ""] if note else []) + [
                  "| model | clips | labels | zero-shot acc | text->audio P@5 | probe acc | V-measure |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for name, c in clean_rows:
            def g(task, key, c=c):
                t = c.get(task)
                return None if t is None else t.get(key)
            lines.append(
                f"| {name} | {c.get('n')} | {c.get('labels')} | {_fmt(g('zero_shot', 'accuracy'))} | "
                f"{_fmt(g('text_to_audio', 'precision_at_5'))} | {_fmt(g('classification', 'accuracy'))} | "
                f"{_fmt(g('clustering', 'v_measure'))} |")
        lines.append("")

    long_rows = [r for m in models.values() for r in (m.get("long_audio") or [])]
    if long_rows:
        la = summary.get("long_audio_meta", {})
        lines += ["## Long audio: segment length x aggregation", "",
                  f"{la.get('recordings')} recordings of {la.get('duration_s')} s ({la.get('labels')} labels); accuracy = "
                  f"{la.get('folds')}-fold probe accuracy; time = median seconds per recording for embedding its segments "
                  "(shared by the aggregations of a segment length); memory = peak growth during the embedding pass.", "",
                  "| model | segment (s) | aggregation | accuracy | dim | segments | embed s (median) | x realtime | aggregate+probe s | peak MB |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in long_rows:
            lines.append(f"| {r['model']} | {r['segment_s']} | {r['aggregation']} | {_fmt(r['accuracy'])} | {r['dim']} | "
                         f"{r['segments']:.1f} | {_fmt(r['embed_s_median'], None, 4)} | {_fmt(r['realtime_factor'], None, 0)} | "
                         f"{_fmt(r['aggregate_s'], None, 2)} | {_fmt(r['peak_mem_mb'], None, 1)} |")
        lines.append("")

    named = summary.get("mteb_tasks") or {}
    if named:
        lines += ["## mteb tasks by name", "", "| model | task | main score |", "| --- | --- | --- |"]
        for name, res in named.items():
            if "error" in res:
                lines.append(f"| {name} | - | error: {res['error']} |")
            else:
                lines += [f"| {name} | {t} | {_fmt(v)} |" for t, v in res.items()]
        lines.append("")
    warned = [(n, w) for n, m in models.items() for w in (m.get("warnings") or [])]
    if warned:
        lines += ["## Warnings", ""] + [f"- {n}: {w}" for n, w in warned] + [""]
    skipped = {n: m["skipped"] for n, m in models.items() if m.get("skipped")}
    if skipped:
        lines += ["## Skipped models", ""] + [f"- {n}: {why}" for n, why in skipped.items()] + [""]
    plots = summary.get("plots") or []
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots] + [""]
    p = out / "report.md"
    p.write_text("\n".join(lines))
    return p


def make_plots(out_dir: str | Path, summary: Mapping[str, Any]) -> list[str]:
    """Write ``fidelity.png``, ``conditions.png`` and ``long_audio.png`` (those with data)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out = Path(out_dir)
    written: list[str] = []
    models = {n: m for n, m in summary.get("models", {}).items() if m.get("tasks")}
    tasks = sorted({t for m in models.values() for t in m["tasks"]}, key=lambda t: list(TASK_NAMES).index(t)
                   if t in TASK_NAMES else 99)
    if models and tasks:
        has_fid = any(t["evaluation"].get("all", {}).get("fidelity") is not None
                      for m in models.values() for t in m["tasks"].values())
        if has_fid:
            fig, ax = plt.subplots(figsize=(1.6 * len(tasks) + 2, 4))
            w = 0.8 / len(models)
            for j, (name, m) in enumerate(models.items()):
                vals, lo, hi = [], [], []
                for t in tasks:
                    e = (m["tasks"].get(t) or {}).get("evaluation", {}).get("all", {})
                    f = e.get("fidelity")
                    ci = e.get("fidelity_ci")
                    vals.append(np.nan if f is None else f)
                    lo.append(0 if f is None or not ci else max(0.0, f - ci[0]))
                    hi.append(0 if f is None or not ci else max(0.0, ci[1] - f))
                x = np.arange(len(tasks)) + (j - (len(models) - 1) / 2) * w
                ax.bar(x, vals, w, yerr=[lo, hi], capsize=2, label=name)
            ax.axhline(1.0, color="k", lw=0.8, ls="--")
            ax.axhline(0.0, color="k", lw=0.8)
            ax.set_xticks(np.arange(len(tasks)), [t.replace("_", "\n") for t in tasks], fontsize=8)
            ax.set_ylabel("fidelity (1 = clean, 0 = mixture)")
            ax.legend(fontsize=8)
            ax.set_title("Embedding fidelity of separated stems")
            fig.tight_layout()
            fig.savefig(out / "fidelity.png", dpi=110)
            plt.close(fig)
            written.append(str(out / "fidelity.png"))
        fig, axes = plt.subplots(1, len(models), figsize=(3.2 * len(models) + 1, 3.6), squeeze=False)
        for ax, (name, m) in zip(axes[0], models.items()):
            conds = ["reference", "separated", "mixture"]
            w = 0.8 / len(conds)
            for j, c in enumerate(conds):
                vals = []
                for t in tasks:
                    tt = m["tasks"].get(t)
                    e = (tt or {}).get("evaluation", {}).get("all", {})
                    v = e.get("scores", {}).get(c, {}).get(tt["main"]) if tt else None
                    vals.append(np.nan if v is None else v)
                ax.bar(np.arange(len(tasks)) + (j - 1) * w, vals, w, label=c)
            ax.set_xticks(np.arange(len(tasks)), [t[:10] for t in tasks], rotation=60, fontsize=7)
            ax.set_title(name, fontsize=9)
            ax.set_ylim(0, 1.05)
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "conditions.png", dpi=110)
        plt.close(fig)
        written.append(str(out / "conditions.png"))
    long_rows = [r for m in summary.get("models", {}).values() for r in (m.get("long_audio") or [])]
    if long_rows:
        fig, ax = plt.subplots(figsize=(6, 4))
        markers = {"mean": "o", "max": "^", "concat": "s", "attention": "D", "whole": "*"}
        for name in sorted({r["model"] for r in long_rows}):
            rs = [r for r in long_rows if r["model"] == name]
            color = None
            for r in rs:
                h = ax.scatter(r["embed_s_median"], r["accuracy"], marker=markers.get(r["aggregation"], "x"), color=color,
                               label=name if color is None else None)
                color = h.get_facecolor()[0]
                ax.annotate(str(r["segment_s"]), (r["embed_s_median"], r["accuracy"]), fontsize=6)
        ax.set_xscale("log")
        ax.set_xlabel("median embed seconds per recording")
        ax.set_ylabel("probe accuracy")
        ax.set_title("Long audio: segment (s) x aggregation (marker)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "long_audio.png", dpi=110)
        plt.close(fig)
        written.append(str(out / "long_audio.png"))
    return written


def write_split_comparison(out_dir: str | Path, summaries: Mapping[str, Mapping[str, Any]],
                           missing: Sequence[str] = ()) -> Path:
    """``report.md`` with the fidelity of every model and task per split, side by side."""
    splits = list(summaries)
    lines = ["# Embedding-fidelity benchmark: splits side by side", "",
             "fidelity = (separated - mixture) / (reference - mixture) [95% bootstrap interval]; each split's full "
             "report is in its folder: " + ", ".join(f"[{s}]({s}/report.md)" for s in splits), "",
             *([f"Not in the corpus manifest (skipped): {', '.join(missing)}", ""] if missing else []),
             "| model | task | metric | " + " | ".join(splits) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in splits) + " |"]
    rows: dict[tuple[str, str], dict[str, str]] = {}
    mains: dict[tuple[str, str], str] = {}
    for sp, summ in summaries.items():
        for name, m in (summ.get("models") or {}).items():
            for task, t in (m.get("tasks") or {}).items():
                e = t["evaluation"].get("all") or {}
                rows.setdefault((name, task), {})[sp] = _fmt(e.get("fidelity"), e.get("fidelity_ci"), 2)
                mains[(name, task)] = t["main"]
    for (name, task), cells in rows.items():
        lines.append(f"| {name} | {task} | {mains[(name, task)]} | " + " | ".join(cells.get(s, "-") for s in splits)
                     + " |")
    p = Path(out_dir) / "report.md"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("\n".join(lines) + "\n")
    return p
