"""Aggregates of benchmark results: bootstrap confidence intervals, summary, report, plots.

Input rows are the per-item x system records of ``results.jsonl`` (see
:mod:`bench.separation`). Every group (all items, each category, each prompt kind,
each subset, category x prompt kind) gets, per system and metric, the mean with a
percentile bootstrap 95% confidence interval, the median and the count.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: Metrics over items whose target is present (higher is better unless noted).
PRESENT_METRICS = (
    "si_sdr", "si_sdri", "sdr", "snr", "mrstft", "level_db", "residual_si_sdr", "consistency_db",
    "judge_overall", "judge_precision", "judge_recall", "judge_faithfulness",
)
#: Metrics over every item.
ALL_METRICS = ("rtf", "seconds")
#: Over absent-target items only (lower is better: the output should be silent).
ABSENT_METRICS = ("absent_energy_db", "judge_overall")

METRIC_LABELS = {
    "si_sdr": "SI-SDR (dB)", "si_sdri": "SI-SDRi (dB)", "sdr": "SDR (dB)", "snr": "SNR (dB)",
    "mrstft": "MR-STFT dist. (lower better)", "level_db": "target level re reference (dB, 0 best)",
    "residual_si_sdr": "residual SI-SDR vs true interferers (dB)", "consistency_db": "mix. consistency (dB)",
    "judge_overall": "judge overall (1-5)", "rtf": "real-time factor", "seconds": "seconds / item",
    "absent_energy_db": "output / mixture energy (dB, lower better)",
}


def bootstrap_ci(values: Sequence[float], samples: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict[str, Any]:
    """Mean and percentile bootstrap confidence interval of ``values`` (NaN/None dropped).

    Returns:
        ``{"mean", "lo", "hi", "median", "n"}`` (None statistics when there are no values).
    """
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "lo": None, "hi": None, "median": None, "n": 0}
    mean = float(v.mean())
    if v.size == 1 or samples <= 0:
        lo = hi = mean
    else:
        rng = np.random.default_rng(seed)
        means = v[rng.integers(0, v.size, size=(samples, v.size))].mean(axis=1)
        lo, hi = (float(x) for x in np.quantile(means, [alpha / 2, 1 - alpha / 2]))
    return {"mean": mean, "lo": lo, "hi": hi, "median": float(np.median(v)), "n": int(v.size)}


def _groups(row: dict) -> Iterable[str]:
    yield "all"
    if row.get("category") is not None:
        yield f"category={row['category']}"
    if row.get("prompt_kind") is not None:
        yield f"prompt_kind={row['prompt_kind']}"
    if row.get("subset") is not None:
        yield f"subset={row['subset']}"
    if row.get("category") is not None and row.get("prompt_kind") is not None:
        yield f"category={row['category']},prompt_kind={row['prompt_kind']}"


def summarize(rows: Sequence[dict], systems: Sequence[str], samples: int = 1000, seed: int = 0,
              alpha: float = 0.05) -> dict[str, Any]:
    """Group statistics of successful rows.

    Returns:
        ``{group: {system: {"present": {metric: stats}, "absent": {metric: stats},
        "all": {metric: stats}}}}`` where ``stats`` is :func:`bootstrap_ci`'s dict.
    """
    buckets: dict[str, dict[str, list[dict]]] = {}
    for r in rows:
        if r.get("status") != "ok":
            continue
        for g in _groups(r):
            buckets.setdefault(g, {}).setdefault(r["system"], []).append(r)
    out: dict[str, Any] = {}
    for g in sorted(buckets, key=lambda s: (s != "all", s.count(","), s)):
        out[g] = {}
        for s in systems:
            rs = buckets[g].get(s, [])
            pres = [r for r in rs if r.get("target_present")]
            absn = [r for r in rs if not r.get("target_present")]
            out[g][s] = {
                "present": {m: bootstrap_ci([r.get(m) for r in pres], samples, seed, alpha) for m in PRESENT_METRICS},
                "absent": {m: bootstrap_ci([r.get(m) for r in absn], samples, seed, alpha) for m in ABSENT_METRICS},
                "all": {m: bootstrap_ci([r.get(m) for r in rs], samples, seed, alpha) for m in ALL_METRICS},
            }
    return out


# ---------------------------------------------------------------------- report
def _fmt(st: dict | None, digits: int = 2, ci: bool = True, key: str = "mean") -> str:
    if not st or st.get(key) is None:
        return "-"
    if not ci or st["n"] < 2:
        return f"{st[key]:.{digits}f}"
    return f"{st['mean']:.{digits}f} [{st['lo']:.{digits}f}, {st['hi']:.{digits}f}]"


def reproduce_lines(command: str | None) -> list[str]:
    """Markdown lines ``Reproduce with:`` + a bash block of ``command`` (none without a command)."""
    return ["Reproduce with:", "", "```bash", command, "```", ""] if command else []


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def write_report(summary: dict[str, Any], path: str | Path) -> Path:
    """Render ``summary.json``'s content as Markdown tables."""
    systems: list[str] = summary["systems"]
    groups = summary["groups"]
    lines = ["# Separation benchmark", "", *reproduce_lines(summary.get("command"))]
    lines += [
        f"Checkpoint `{summary.get('checkpoint')}`, manifest `{summary.get('manifest')}`: "
        f"{summary['n_items']} items ({summary['n_present']} with the target present, {summary['n_absent']} absent), "
        f"{summary['n_failed_items']} failed as a whole, {len(summary.get('failed') or [])} result rows failed "
        "(see Failed below). Means with bootstrap {int(100 * (1 - summary['alpha']))}% confidence "
        f"intervals ({summary['bootstrap_samples']} resamples). Timings on {summary.get('device', 'cpu')}; the "
        "real-time factor (RTF) is wall time / audio duration, median over items (separator: batch time / items).",
        "",
    ]
    rel = summary.get("release_sampling")
    if rel:
        lines += [f"The release recommends `{rel.get('method')}` at {rel.get('steps')} step(s) (its config.json "
                  "`sampling`, what `promptsep separate` uses); the sampler column says what each system used.", ""]
    if summary.get("fingerprint"):
        lines += [f"Run fingerprint `{summary['fingerprint']}` (checkpoint, judge, sampling, manifest; see "
                  "fingerprint.json).", ""]
    lines += [
        "## All items (target present)",
        "",
    ]
    allg = groups.get("all", {})
    samplers = summary.get("samplers") or {}
    metrics = ("si_sdr", "si_sdri", "sdr", "snr", "mrstft", "consistency_db", "judge_overall")
    rows = []
    for s in systems:
        st = allg.get(s)
        if st is None:
            continue
        rows.append([s, samplers.get(s) or "-"] + [_fmt(st["present"][m]) for m in metrics]
                    + [_fmt(st["all"]["rtf"], 3, ci=False, key="median")])
    lines += _table(["system", "sampler", *[METRIC_LABELS[m] for m in metrics], "RTF (median)"], rows)

    def by(prefix: str, metric: str, title: str) -> None:
        keys = [g for g in groups if g.startswith(prefix) and "," not in g]
        if not keys:
            return
        lines.extend(["", f"## {title}", ""])
        table = []
        for g in keys:
            cells = [g.split("=", 1)[1]]
            n = 0
            for s in systems:
                st = groups[g].get(s, {}).get("present", {}).get(metric)
                cells.append(_fmt(st))
                n = max(n, (st or {}).get("n", 0))
            table.append([cells[0], str(n), *cells[1:]])
        lines.extend(_table(["group", "n", *systems], table))

    by("category=", "si_sdri", "SI-SDRi (dB) per category")
    by("prompt_kind=", "si_sdri", "SI-SDRi (dB) per prompt kind")
    by("subset=", "si_sdri", "SI-SDRi (dB) per subset (pair_cross: 2 sources of different categories)")
    if summary.get("judge"):
        by("category=", "judge_overall", "Judge overall score per category")

    lines += ["", "## Absent targets (output energy relative to the mixture, dB; lower is better)", ""]
    rows = []
    for s in systems:
        st = allg.get(s, {}).get("absent", {})
        rows.append([s, _fmt(st.get("absent_energy_db")), _fmt(st.get("judge_overall"))])
    lines += _table(["system", "energy (dB)", "judge overall"], rows)

    nfe_rows = summary.get("nfe_curve") or []
    if nfe_rows:
        lines += ["", "## Quality vs steps vs speed (separator)", ""]
        lines += _table(
            ["NFE", "refine", "SI-SDRi (dB)", "judge overall", "RTF (median)", "seconds / item (median)"],
            [[str(r["nfe"]), str(r.get("refine", "wiener")), _fmt(r["si_sdri"]), _fmt(r["judge_overall"]),
              _fmt(r["rtf"], 3, ci=False, key="median"), _fmt(r["seconds"], 3, ci=False, key="median")]
             for r in nfe_rows],
        )
    if summary.get("failed"):
        lines += ["", f"## Failed ({len(summary['failed'])})", ""]
        lines += _table(["item", "system", "reason"],
                        [[f["id"], f["system"], str(f["reason"]).replace("|", "/")] for f in summary["failed"][:200]])
    if summary.get("model_card"):
        lines += ["", "Model-card figures (per category / prompt kind, the text bar on 2-source pairs, the span gain, "
                  "absent targets): [model_card.md](model_card.md), `model_card.json`."]
    plots = summary.get("plots") or []
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    lines += [
        "",
        "Systems: `mixture` = the mixture as the estimate (SI-SDRi 0 by definition); `oracle_irm` = ideal ratio "
        "mask on the mixture STFT (uses the true target); `oracle_codec` = the true target through the "
        "separator's codec (the latent ceiling); `oracle_codec_wiener` = the mixture Wiener-masked with the codec "
        "round trips of the true stems (the ceiling of the refined output); `separator_nfeK` = the model with K "
        "function evaluations and its default Wiener refinement (`refine=\"wiener\"`); `separator_raw_nfeK` = the "
        "same generation without refinement (`refine=\"none\"`, the raw generative stems). See docs/BENCH.md.",
        "",
    ]
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text("\n".join(lines))
    os.replace(tmp, p)
    return p


def write_plots(summary: dict[str, Any], out_dir: str | Path) -> list[str]:
    """Per-category SI-SDRi bars and quality vs NFE vs real-time factor; returns the PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    systems = summary["systems"]
    groups = summary["groups"]
    paths: list[str] = []

    cats = [g for g in groups if g.startswith("category=") and "," not in g]
    card_nfe = summary.get("card_nfe")
    if card_nfe is not None:  # the bars: baselines and the separator at the model-card NFE
        systems = [s for s in systems if not s.startswith("separator") or s.endswith(f"nfe{card_nfe}")]
    if cats:
        fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(cats) + 2), 4))
        width = 0.8 / max(1, len(systems))
        for j, s in enumerate(systems):
            means, errs = [], [[], []]
            for g in cats:
                st = groups[g].get(s, {}).get("present", {}).get("si_sdri") or {}
                m = st.get("mean")
                means.append(np.nan if m is None else m)
                errs[0].append(0 if m is None else m - st["lo"])
                errs[1].append(0 if m is None else st["hi"] - m)
            x = np.arange(len(cats)) + (j - (len(systems) - 1) / 2) * width
            ax.bar(x, means, width, yerr=errs, capsize=2, label=s)
        ax.set_xticks(np.arange(len(cats)), [g.split("=", 1)[1] for g in cats])
        ax.axhline(0, color="k", lw=0.5)
        ax.set_ylabel("SI-SDRi (dB), mean and 95% CI")
        ax.set_title("SI-SDR improvement per category")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        p = out / "plot_category.png"
        fig.savefig(p, dpi=120)
        plt.close(fig)
        paths.append(str(p))

    curve_all = [r for r in (summary.get("nfe_curve") or []) if r["si_sdri"].get("mean") is not None]
    if curve_all:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
        all_nfe = sorted({r["nfe"] for r in curve_all})
        for refine in dict.fromkeys(r.get("refine", "wiener") for r in curve_all):
            curve = [r for r in curve_all if r.get("refine", "wiener") == refine]
            label = "separator (Wiener)" if refine == "wiener" else "separator (raw)"
            nfe = [r["nfe"] for r in curve]
            q = [r["si_sdri"]["mean"] for r in curve]
            lo = [r["si_sdri"]["mean"] - r["si_sdri"]["lo"] for r in curve]
            hi = [r["si_sdri"]["hi"] - r["si_sdri"]["mean"] for r in curve]
            a1.errorbar(nfe, q, yerr=[lo, hi], marker="o", capsize=3, label=label)
            rtf = [r["rtf"]["median"] for r in curve]
            a2.plot(rtf, q, marker="o", label=label)
            for k, x, y in zip(nfe, rtf, q):
                a2.annotate(f"{k}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        rtf_all = [r["rtf"]["median"] for r in curve_all]
        for s, style in (("oracle_codec", "--"), ("oracle_codec_wiener", (0, (5, 1))), ("oracle_irm", ":"),
                         ("mixture", "-.")):
            st = groups.get("all", {}).get(s, {}).get("present", {}).get("si_sdri") or {}
            if st.get("mean") is not None:
                a1.axhline(st["mean"], ls=style, color="gray", label=s)
        a1.set_xscale("log", base=2)
        a1.set_xticks(all_nfe, [str(k) for k in all_nfe])
        a1.set_xlabel("function evaluations (NFE)")
        a1.set_ylabel("SI-SDRi (dB)")
        a1.set_title("quality vs steps")
        a1.legend(fontsize=7)
        a2.legend(fontsize=7)
        if all(x and x > 0 for x in rtf_all):
            a2.set_xscale("log")
        a2.set_xlabel(f"real-time factor (median, {summary.get('device', 'cpu')}; lower is faster)")
        a2.set_ylabel("SI-SDRi (dB)")
        a2.set_title("quality vs speed (labels: NFE)")
        fig.tight_layout()
        p = out / "plot_nfe.png"
        fig.savefig(p, dpi=120)
        plt.close(fig)
        paths.append(str(p))
    return paths


def write_json(obj: Any, path: str | Path) -> Path:
    """Atomic JSON write."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, p)
    return p


def write_table(out_dir: str | Path, stem: str, table: Any, md: str) -> Path:
    """Write a comparison table as ``<stem>.json`` and ``<stem>.md`` in ``out_dir`` (created) and print the markdown."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(table, out / f"{stem}.json")
    (out / f"{stem}.md").write_text(md)
    print(md)
    return out


__all__ = ["bootstrap_ci", "summarize", "write_json", "write_plots", "write_report", "write_table"]
