"""Held-out evaluation of a judge: correlation with the reference-based targets, beside baselines.

On ``groups`` mixtures of a corpus split that the judge never saw in training (``test``
by default; the corpus split is by source group, so no test source is in the train split),
candidate estimates are made exactly as for training (:class:`judge.data.JudgeDataset`,
another seed), their reference targets computed (:mod:`judge.targets`) and, for every
axis, the Pearson (PCC) and Spearman (SRCC) correlations of three scores with the target
are measured in the same run:

- ``judge``: the judge's prediction of that axis;
- ``energy_ratio``: the heuristic ``10 log10(E_estimate / E_mixture)`` (clamped to
  [-60, 10] dB), one score for every axis;
- ``text_audio``: cosine similarity between the joint-embedding vectors of the prompt and
  of the estimate, one score for every axis, from the project's ``clap-tiny`` text-audio
  embedding (``checkpoints/promptsep-clap-tiny``, :mod:`embeddings.clap`, imported
  lazily and only here) when that release exists; otherwise this baseline is reported as
  missing (null) and only the energy heuristic is compared.

It also reports the mean target and prediction per candidate kind and for silent
candidates (target present / absent), and (:func:`silent_probe`) the scores of an all-zero
estimate on mixtures whose target is present and on mixtures whose target is absent. With a
separator release
(:func:`evaluate_reranking`, ``--separator DIR``) it measures the re-ranking gain: the
SI-SDR of ``Separator.separate(..., candidates=K, ranker="judge")`` for K = 1, 4, 8, its
wall time, and an oracle pick among the same candidates.

``python -m judge.evaluate --checkpoint DIR --corpus ROOT --out DIR [--separator DIR]`` (or
``promptsep judge evaluate ...``) writes ``judge_eval.json`` and ``judge_eval.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from judge.targets import AXES
from promptsep.release import packaged_checkpoint

logger = logging.getLogger(__name__)

DEFAULT_CLAP = packaged_checkpoint("promptsep-clap-tiny")


def _pcc(x: torch.Tensor, y: torch.Tensor) -> float:
    from judge.train import pearson

    return pearson(x, y)


def _srcc(x: torch.Tensor, y: torch.Tensor) -> float:
    from judge.train import spearman

    return spearman(x, y)


def _group_resamples(group_of: torch.Tensor, n_groups: int, samples: int, seed: int) -> list[torch.Tensor]:
    """Index tensors of ``samples`` bootstrap resamples of whole groups (mixtures).

    Args:
        group_of: ``[P]`` group index of every candidate.
        n_groups: number of groups.
        samples: resamples (0: none).
        seed: generator seed.
    """
    if samples <= 0 or n_groups < 2:
        return []
    members = [torch.nonzero(group_of == g).reshape(-1) for g in range(n_groups)]
    gen = torch.Generator().manual_seed(int(seed))
    draws = torch.randint(0, n_groups, (samples, n_groups), generator=gen)
    return [torch.cat([members[int(g)] for g in row]) for row in draws]


def _corr_ci(x: torch.Tensor, y: torch.Tensor, resamples: Sequence[torch.Tensor], alpha: float) -> dict[str, Any]:
    """PCC and SRCC of ``x`` ``[P]`` with ``y`` ``[P]``, with percentile CIs over ``resamples``."""
    out: dict[str, Any] = {"pcc": _pcc(x, y), "srcc": _srcc(x, y)}
    for key, fn in (("pcc", _pcc), ("srcc", _srcc)):
        vals = [fn(x[idx], y[idx]) for idx in resamples]
        vals = torch.tensor([v for v in vals if v == v], dtype=torch.float64)
        out[f"{key}_ci"] = None if vals.numel() == 0 else [
            float(torch.quantile(vals, alpha / 2)), float(torch.quantile(vals, 1 - alpha / 2))]
    return out


def load_text_audio(path: str | Path | None = None):
    """The project's joint text-audio embedding (``clap-tiny``) or None when it is not available."""
    p = Path(path) if path is not None else DEFAULT_CLAP
    if not (p / "model.safetensors").is_file():
        return None
    try:
        from embeddings.clap import ClapTiny
    except ImportError as exc:  # bench is optional for the judge
        logger.warning("text-audio baseline unavailable: %s", exc)
        return None
    return ClapTiny.from_pretrained(p)


@torch.no_grad()
def text_audio_similarity(clap, estimates: torch.Tensor, texts: Sequence[str], sample_rate: int) -> torch.Tensor:
    """Cosine of joint embeddings ``[P]`` of estimates ``[P, 1, N]`` and texts (0 for silent audio)."""
    from promptsep.audio import resample

    wav = resample(estimates[:, 0].float(), sample_rate, clap.sample_rate)
    a = clap.embed_audio(wav)
    t = clap.embed_text(list(texts))
    sim = (a * t).sum(-1)
    silent = estimates[:, 0].abs().amax(-1) == 0
    return torch.nan_to_num(sim.masked_fill(silent, 0.0), nan=0.0)


@torch.no_grad()
def evaluate_judge(judge, corpus_root: str | Path, split: str = "test", groups: int = 64, seed: int = 1234,
                   mix_cfg: Any = None, cand_cfg: Any = None, codec: Any = None, clap: Any = "auto",
                   progress: bool = True, bootstrap: int = 1000, bootstrap_seed: int = 0,
                   alpha: float = 0.05) -> dict[str, Any]:
    """Correlations of the judge and two baselines with the reference targets on a held-out split.

    Args:
        judge: a :class:`~judge.model.Judge`.
        corpus_root: corpus folder.
        split: corpus split (``"test"``: sources never seen in training).
        groups: mixtures evaluated (each with ``cand_cfg.per_mixture`` candidates).
        seed: data seed.
        mix_cfg / cand_cfg: mixing and candidate settings (defaults: 2 s, 2-4 sources, 6 candidates).
        codec: codec (or release path) for ``codec`` candidates (None: no such candidates).
        clap: a text-audio model, a release path, ``"auto"`` (the shipped ``clap-tiny`` if present) or None.
        bootstrap / bootstrap_seed / alpha: ``1 - alpha`` percentile CIs of every correlation from
            ``bootstrap`` resamples of whole mixtures (the candidates of one mixture stay together);
            0: no CIs.

    Returns:
        ``{"items", "groups", "split", "correlations": {axis: {score: {"pcc", "srcc", "pcc_ci", "srcc_ci"}}},
        "per_kind": {kind: {"n", "target": [4], "judge": [4]}}, "silent": {"target_present" | "target_absent":
        {"n", "target": [4], "judge": [4]}}, "text_audio": str | None, "seconds"}``.
    """
    from tqdm import tqdm

    from judge.data import CandidateConfig, JudgeDataset
    from separation.data.mixing import MixConfig
    from separation.metrics import energy_ratio_db

    if mix_cfg is None:
        mix_cfg = MixConfig(segment_s=2.0, min_sources=2, max_sources=4, p_text=1.0, p_span=0.0, p_text_span=0.0,
                            p_video=0.0)
    cand_cfg = cand_cfg if cand_cfg is not None else CandidateConfig(per_mixture=6)
    if clap == "auto":
        clap = load_text_audio()
    elif isinstance(clap, (str, Path)):
        clap = load_text_audio(clap)
    ds = JudgeDataset(corpus_root, split, mix_cfg, cand_cfg, seed=seed, length=groups, codec=codec)
    judge.eval()
    preds, targets, energy, ta, kinds, present = [], [], [], [], [], []
    t0 = time.time()
    for i in tqdm(range(groups), desc=f"judge eval ({split})", disable=not progress):
        it = ds[i]
        est = it["estimates"]
        m = est.shape[0]
        mix = it["mixture"][None].expand(m, -1, -1)
        texts = [it["text"]] * m
        preds.append(judge(mix, est, texts).cpu())
        targets.append(it["targets"])
        energy.append(energy_ratio_db(est[:, 0], mix[:, 0]).clamp(-60, 10))
        if clap is not None:
            ta.append(text_audio_similarity(clap, est, texts, ds.sample_rate))
        kinds += it["kinds"]
        present += [it["target_present"]] * m
    group_of = torch.cat([torch.full((p.shape[0],), g) for g, p in enumerate(preds)])
    pred, ref, en = torch.cat(preds), torch.cat(targets), torch.cat(energy)
    tav = torch.cat(ta) if ta else None
    resamples = _group_resamples(group_of, len(preds), bootstrap, bootstrap_seed)
    corr: dict[str, dict] = {}
    for a, name in enumerate(AXES):
        row = {"judge": _corr_ci(pred[:, a], ref[:, a], resamples, alpha),
               "energy_ratio": _corr_ci(en, ref[:, a], resamples, alpha),
               "text_audio": None if tav is None else _corr_ci(tav, ref[:, a], resamples, alpha)}
        corr[name] = row
    per_kind: dict[str, dict] = {}
    for k in sorted(set(kinds)):
        idx = torch.tensor([j for j, kk in enumerate(kinds) if kk == k])
        per_kind[k] = {"n": len(idx), "target": [round(float(v), 3) for v in ref[idx].mean(0)],
                       "judge": [round(float(v), 3) for v in pred[idx].mean(0)]}
    # silent candidates: the right answer when the target is absent, the worst one when it is present
    silent: dict[str, dict] = {}
    for case, flag in (("target_present", True), ("target_absent", False)):
        idx = [j for j, (kk, pr) in enumerate(zip(kinds, present)) if kk == "silence" and pr == flag]
        if idx:
            ii = torch.tensor(idx)
            silent[case] = {"n": len(idx), "target": [round(float(v), 3) for v in ref[ii].mean(0)],
                            "judge": [round(float(v), 3) for v in pred[ii].mean(0)]}
    return {
        "split": split, "groups": groups, "items": int(pred.shape[0]), "seed": seed,
        "bootstrap": {"samples": bootstrap, "seed": bootstrap_seed, "alpha": alpha, "unit": "mixture"},
        "present_share": sum(present) / max(1, len(present)),
        "correlations": corr, "per_kind": per_kind, "silent": silent,
        "mae": [round(float(v), 3) for v in (pred - ref).abs().mean(0)],
        "text_audio": None if clap is None else "clap-tiny (checkpoints/promptsep-clap-tiny)",
        "seconds": round(time.time() - t0, 1),
    }


@torch.no_grad()
def evaluate_reranking(judge, separator, corpus_root: str | Path, split: str = "test", groups: int = 16,
                       ks: Sequence[int] = (1, 4, 8), steps: int = 8, seed: int = 4321, mix_cfg: Any = None,
                       refine: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Re-ranking gain: SI-SDR of ``Separator.separate(..., candidates=K, ranker="judge")`` for each K.

    On ``groups`` held-out mixtures whose target is present, the separator is run once per K
    with the same seed (candidate 0 is the same noise for every K, so K = 1 is the plain
    output), and the SI-SDR of the kept target against the reference target is measured,
    with the wall time of the call (generation + judge scoring). Beside it, with the same
    candidates, an *oracle* pick (the candidate with the best SI-SDR against the reference:
    the most any ranker can gain) is reported for the largest K.

    Args:
        judge: the :class:`~judge.model.Judge` used as the ranker.
        separator: a :class:`~separation.separator.Separator` (its ``judge`` is set to ``judge``
            for the run and restored after).
        corpus_root / split / groups / seed / mix_cfg: held-out mixtures (text prompts, target present).
        ks: candidate counts compared (1 = no re-ranking).
        steps: sampling steps of the separator.
        refine: passed to ``separate`` when not None (the separator's default otherwise).

    Returns:
        ``{"split", "groups", "steps", "ks": {K: {"si_sdr", "si_sdri", "seconds"}},
        "oracle": {"k", "si_sdr"}, "mixture_si_sdr", "per_item": [...]}`` (SI-SDR in dB, means
        over items; ``si_sdri`` is the improvement over the unprocessed mixture).
    """
    from tqdm import tqdm

    from separation.data.mixing import MixConfig, MixtureDataset
    from separation.metrics import si_sdr

    if mix_cfg is None:
        mix_cfg = MixConfig(segment_s=2.0, min_sources=2, max_sources=4, p_text=1.0, p_span=0.0, p_text_span=0.0,
                            p_video=0.0, absent_prob=0.0)
    ks = sorted({int(k) for k in ks})
    ds = MixtureDataset(corpus_root, split, mix_cfg, seed=seed, length=max(1, groups))
    sr = int(mix_cfg.sample_rate)
    kwargs = {} if refine is None else {"refine": refine}
    old_judge = separator.judge
    separator.judge = judge
    per_item = []
    try:
        for i in tqdm(range(groups), desc=f"re-ranking ({split})", disable=not progress):
            it = ds[i]
            if not it["target_present"]:
                continue
            mix, ref = it["mixture"], it["target"]
            row = {"text": it["text"], "mixture_si_sdr": float(si_sdr(mix, ref).mean())}
            for k in ks:
                t0 = time.perf_counter()
                out = separator.separate(mix, sr, text=it["text"], steps=steps, candidates=k, seed=seed + i,
                                         ranker="judge" if k > 1 else None, **kwargs)
                row[f"k{k}_seconds"] = time.perf_counter() - t0
                row[f"k{k}_si_sdr"] = float(si_sdr(out.target[..., : ref.shape[-1]], ref).mean())
            kmax = ks[-1]
            if kmax > 1:
                best = []

                def oracle(m, cands, rate, spans=None, text=None, _ref=ref, _best=best):
                    v = si_sdr(cands[:, 0, : _ref.shape[-1]].float(), _ref[0, : cands.shape[-1]].float()[None])
                    _best.append(v)
                    return v

                out = separator.separate(mix, sr, text=it["text"], steps=steps, candidates=kmax, seed=seed + i,
                                         ranker=oracle, **kwargs)
                row["oracle_si_sdr"] = float(si_sdr(out.target[..., : ref.shape[-1]], ref).mean())
            per_item.append(row)
    finally:
        separator.judge = old_judge
    n = max(1, len(per_item))

    def mean(key):
        return round(sum(r[key] for r in per_item) / n, 3) if per_item else float("nan")

    mix_mean = mean("mixture_si_sdr")
    res_ks = {}
    for k in ks:
        res_ks[k] = {"si_sdr": mean(f"k{k}_si_sdr"), "si_sdri": round(mean(f"k{k}_si_sdr") - mix_mean, 3),
                     "seconds": mean(f"k{k}_seconds")}
    return {"split": split, "groups": groups, "items": len(per_item), "steps": steps, "ks": res_ks,
            "oracle": {"k": ks[-1], "si_sdr": mean("oracle_si_sdr")} if ks[-1] > 1 and per_item else None,
            "mixture_si_sdr": mix_mean, "per_item": per_item}


def reranking_table(r: dict[str, Any]) -> str:
    """The re-ranking result as markdown."""
    base = r["ks"][min(r["ks"])]
    lines = [f"Re-ranking with the judge on {r['items']} held-out `{r['split']}` mixtures ({r['steps']} steps; "
             f"mixture SI-SDR {r['mixture_si_sdr']:+.2f} dB):", "",
             "| K | SI-SDR (dB) | SI-SDRi (dB) | gain over K=1 (dB) | seconds / item |", "| --- | --- | --- | --- | --- |"]
    for k, v in r["ks"].items():
        lines.append(f"| {k} | {v['si_sdr']:+.2f} | {v['si_sdri']:+.2f} | {v['si_sdr'] - base['si_sdr']:+.2f} | "
                     f"{v['seconds']:.2f} |")
    if r.get("oracle"):
        lines.append(f"| {r['oracle']['k']} (oracle pick) | {r['oracle']['si_sdr']:+.2f} | "
                     f"{r['oracle']['si_sdr'] - r['mixture_si_sdr']:+.2f} | "
                     f"{r['oracle']['si_sdr'] - base['si_sdr']:+.2f} | - |")
    return "\n".join(lines) + "\n"


@torch.no_grad()
def silent_probe(judge, corpus_root: str | Path, split: str = "test", groups: int = 32, seed: int = 999,
                 mix_cfg: Any = None) -> dict[str, Any]:
    """Scores of an all-zero estimate on ``groups`` held-out mixtures whose prompted target is
    present and on ``groups`` whose target is absent (the prompt names a label not in the mix).

    The reference targets (:mod:`judge.targets`) are 5/1/5/1 (precision, recall,
    faithfulness, overall) when the target is present and 5/5/5/5 when it is absent.

    Returns:
        ``{"target_present" | "target_absent": {"n", "target": [4], "judge_mean": [4],
        "judge_std": [4]}, "overall_auc"}`` where ``overall_auc`` is the probability that the
        judge's overall for silence on an absent-target mixture exceeds that on a present one
        (1: always told apart, 0.5: chance).
    """
    import dataclasses

    from judge.targets import reference_targets
    from separation.data.mixing import MixConfig, MixtureDataset

    if mix_cfg is None:
        mix_cfg = MixConfig(segment_s=2.0, min_sources=2, max_sources=4, p_text=1.0, p_span=0.0, p_text_span=0.0,
                            p_video=0.0)
    out: dict[str, Any] = {}
    overall: dict[str, torch.Tensor] = {}
    judge.eval()
    for case, absent in (("target_present", 0.0), ("target_absent", 1.0)):
        ds = MixtureDataset(corpus_root, split, dataclasses.replace(mix_cfg, absent_prob=absent), seed=seed,
                            length=max(1, groups))
        preds, refs = [], []
        for i in range(groups):
            it = ds[i]
            mix = it["mixture"][None]
            z = torch.zeros_like(mix)
            preds.append(judge(mix, z, [it["text"]]).cpu()[0])
            refs.append(reference_targets(z[:, 0], it["target"], it["residual"], int(mix_cfg.sample_rate))[0])
        p, r = torch.stack(preds), torch.stack(refs)
        overall[case] = p[:, 3]
        out[case] = {"n": groups, "target": [round(float(v), 3) for v in r.mean(0)],
                     "judge_mean": [round(float(v), 3) for v in p.mean(0)],
                     "judge_std": [round(float(v), 3) for v in p.std(0)] if groups > 1 else [0.0] * 4}
    a, b = overall["target_absent"], overall["target_present"]
    out["overall_auc"] = round(float(((a[:, None] > b[None]).float() + 0.5 * (a[:, None] == b[None]).float()).mean()), 3)
    return out


def _fmt(v: dict | None, key: str) -> str:
    if v is None or v.get(key) is None or v[key] != v[key]:
        return "n/a"
    ci = v.get(f"{key}_ci")
    return f"{v[key]:+.3f}" + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else "")


#: Human names of the corpus splits (the source-disjoint split first).
SPLIT_NAMES = {"test": "test (source-disjoint)", "test_in": "test_in (in-distribution)",
               "valid": "valid (source-disjoint)", "valid_in": "valid_in (in-distribution)"}


def side_by_side_table(results: dict[str, dict[str, Any]]) -> str:
    """Judge correlations (PCC and SRCC with CIs) of several splits side by side, as markdown.

    Args:
        results: ``{split: evaluate_judge(...) result}`` in column order.
    """
    splits = list(results)
    head = " | ".join(f"{SPLIT_NAMES.get(sp, sp)} PCC | {SPLIT_NAMES.get(sp, sp)} SRCC" for sp in splits)
    lines = ["Judge vs its reference-based grades, side by side (95 % CIs: bootstrap over mixtures):", "",
             "| axis | " + head + " |", "| --- |" + " --- | --- |" * len(splits)]
    axes = list(next(iter(results.values()))["correlations"]) if splits else []
    for name in axes:
        cells = []
        for sp in splits:
            row = results[sp]["correlations"].get(name, {}).get("judge")
            cells += [_fmt(row, "pcc"), _fmt(row, "srcc")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| split | mixtures | candidates | target present |", "| --- | --- | --- | --- |"]
    for sp in splits:
        r = results[sp]
        lines.append(f"| {SPLIT_NAMES.get(sp, sp)} | {r['groups']} | {r['items']} | {100 * r['present_share']:.0f} % |")
    if all(results[sp].get("silent_probe") for sp in splits):
        lines += ["", "Silent-estimate probe, judge overall (target present / absent; 1.0 / 5.0 is right):", "",
                  "| split | present | absent | P(absent > present) |", "| --- | --- | --- | --- |"]
        for sp in splits:
            p = results[sp]["silent_probe"]
            lines.append(f"| {SPLIT_NAMES.get(sp, sp)} | {p['target_present']['judge_mean'][3]:.2f} | "
                         f"{p['target_absent']['judge_mean'][3]:.2f} | {p['overall_auc']:.3f} |")
    return "\n".join(lines) + "\n"


def markdown_table(result: dict[str, Any]) -> str:
    """The correlation table (and per-kind means) as markdown."""
    lines = [
        f"Held-out `{result['split']}` split: {result['groups']} mixtures, {result['items']} candidates "
        f"(target present in {100 * result['present_share']:.0f} %).",
        "",
        "| axis | judge PCC | judge SRCC | energy-ratio PCC | energy-ratio SRCC | text-audio PCC | text-audio SRCC |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in result["correlations"].items():
        lines.append(f"| {name} | {_fmt(row['judge'], 'pcc')} | {_fmt(row['judge'], 'srcc')} | "
                     f"{_fmt(row['energy_ratio'], 'pcc')} | {_fmt(row['energy_ratio'], 'srcc')} | "
                     f"{_fmt(row['text_audio'], 'pcc')} | {_fmt(row['text_audio'], 'srcc')} |")
    ta = result.get("text_audio")
    lines += ["", f"Text-audio baseline: {ta or 'not available (no joint text-audio embedding release found)'}.",
              "", "Mean scores per candidate kind (target / judge; precision, recall, faithfulness, overall):", "",
              "| kind | n | target | judge |", "| --- | --- | --- | --- |"]
    lines += _target_judge_rows(result["per_kind"].items())
    if result.get("silent"):
        lines += ["", "Silent (all-zero) candidates (target / judge; precision, recall, faithfulness, overall):", "",
                  "| case | n | target | judge |", "| --- | --- | --- | --- |"]
        lines += _target_judge_rows((case.replace("_", " "), v) for case, v in result["silent"].items())
    if result.get("silent_probe"):
        sp = result["silent_probe"]
        lines += ["", "Silent-estimate probe: an all-zero estimate scored on held-out mixtures whose target is present / "
                  "absent (precision, recall, faithfulness, overall):", "",
                  "| case | n | target | judge mean | judge std |", "| --- | --- | --- | --- | --- |"]
        for case in ("target_present", "target_absent"):
            v = sp[case]
            lines.append(f"| {case.replace('_', ' ')} | {v['n']} | {' '.join(f'{x:.2f}' for x in v['target'])} | "
                         f"{' '.join(f'{x:.2f}' for x in v['judge_mean'])} | "
                         f"{' '.join(f'{x:.2f}' for x in v['judge_std'])} |")
        lines += ["", f"P(overall of silence, target absent > target present) = {sp['overall_auc']:.3f}."]
    if result.get("reranking"):
        lines += ["", reranking_table(result["reranking"]).rstrip("\n")]
    return "\n".join(lines) + "\n"


def _target_judge_rows(groups) -> list[str]:
    """Markdown rows ``| name | n | target | judge |`` (four axes each) of ``(name, stats)`` pairs."""
    rows = []
    for name, v in groups:
        t = " ".join(f"{x:.2f}" for x in v["target"])
        j = " ".join(f"{x:.2f}" for x in v["judge"])
        rows.append(f"| {name} | {v['n']} | {t} | {j} |")
    return rows


def write_report(result: dict[str, Any], out_dir: str | Path, name: str = "judge_eval") -> tuple[Path, Path]:
    """Write ``<name>.json`` and ``<name>.md`` under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    j = out / f"{name}.json"
    j.write_text(json.dumps(result, indent=2))
    m = out / f"{name}.md"
    m.write_text(markdown_table(result))
    return j, m


def write_side_by_side(results: dict[str, dict[str, Any]], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``judge_eval_<split>.json/.md`` per split and the side-by-side ``judge_eval.json/.md``."""
    out = Path(out_dir)
    parts = [markdown_table(r) for r in results.values()]
    for sp, r in results.items():
        write_report(r, out, f"judge_eval_{sp}")
    j = out / "judge_eval.json"
    j.write_text(json.dumps({"splits": list(results), "results": results}, indent=2))
    m = out / "judge_eval.md"
    m.write_text(side_by_side_table(results) + "".join(f"\n## `{sp}`\n\n{t}" for sp, t in zip(results, parts)))
    return j, m


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m judge.evaluate --checkpoint DIR [--corpus ROOT] [--groups N] [--out DIR]``."""
    import os

    p = argparse.ArgumentParser(prog="promptsep judge evaluate",
                                description="Correlate a judge with reference targets on held-out mixtures.")
    p.add_argument("--checkpoint", default=str(packaged_checkpoint("promptsep-judge-tiny")))
    p.add_argument("--corpus", default=os.environ.get("PROMPTSEP_CORPUS", "/work/corpus"))
    p.add_argument("--split", default="test",
                   help="held-out corpus split, or several comma-separated to report side by side "
                        "(e.g. test,test_in: source-disjoint and in-distribution)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of mixtures for CIs (0: none)")
    p.add_argument("--groups", type=int, default=64)
    p.add_argument("--per-mixture", type=int, default=6)
    p.add_argument("--segment-s", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--codec", default=None, help="codec release for 'codec' candidates (default: the judge's codec)")
    p.add_argument("--clap", default=None, help="joint text-audio embedding release (default: the shipped clap-tiny)")
    p.add_argument("--silent-groups", type=int, default=32,
                   help="mixtures per case (target present / absent) of the silent-estimate probe (0: skip)")
    p.add_argument("--separator", default=None,
                   help="separator release: also measure the re-ranking gain (SI-SDR with --rerank-k candidates)")
    p.add_argument("--rerank-k", default="1,4,8", help="candidate counts for the re-ranking measurement")
    p.add_argument("--rerank-groups", type=int, default=16)
    p.add_argument("--rerank-steps", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="runs/judge_eval")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from judge.data import CandidateConfig
    from judge.model import Judge
    from separation.data.mixing import MixConfig

    try:
        judge = Judge.from_pretrained(args.checkpoint)
    except (FileNotFoundError, ValueError) as exc:
        print(f"promptsep judge evaluate: error: {exc}", file=sys.stderr)
        return 2
    codec = args.codec or judge.cfg.codec_path
    mix_cfg = MixConfig(segment_s=args.segment_s, min_sources=2, max_sources=4, p_text=1.0, p_span=0.0,
                        p_text_span=0.0, p_video=0.0)
    cand = CandidateConfig(per_mixture=args.per_mixture)
    if codec is None:
        cand.weights["codec"] = 0.0
    splits = [sp.strip() for sp in args.split.split(",") if sp.strip()]
    if not splits or "train" in splits or len(set(splits)) != len(splits):
        print(f"promptsep judge evaluate: error: --split needs distinct held-out splits, got {args.split!r}",
              file=sys.stderr)
        return 2
    sep = None
    if args.separator:
        from separation.separator import Separator

        try:
            sep = Separator.from_pretrained(args.separator)
        except (FileNotFoundError, ValueError) as exc:
            print(f"promptsep judge evaluate: error: {exc}", file=sys.stderr)
            return 2
    results: dict[str, dict[str, Any]] = {}
    for split in splits:
        try:
            result = evaluate_judge(judge, args.corpus, split, args.groups, args.seed, mix_cfg, cand, codec=codec,
                                    clap=args.clap or "auto", bootstrap=args.bootstrap)
        except ValueError as exc:  # an empty or unknown split
            print(f"promptsep judge evaluate: error: {exc}", file=sys.stderr)
            return 2
        result["checkpoint"] = str(args.checkpoint)
        if args.silent_groups > 0:
            result["silent_probe"] = silent_probe(judge, args.corpus, split, args.silent_groups, args.seed + 2,
                                                  mix_cfg)
        if sep is not None:
            ks = [int(k) for k in args.rerank_k.split(",") if k.strip()]
            result["reranking"] = evaluate_reranking(judge, sep, args.corpus, split, args.rerank_groups, ks,
                                                     steps=args.rerank_steps, seed=args.seed + 1)
            result["reranking"]["separator"] = str(args.separator)
        results[split] = result
    if len(results) == 1:
        j, m = write_report(results[splits[0]], args.out)
    else:
        j, m = write_side_by_side(results, args.out)
    print(m.read_text())
    print(f"wrote {j} and {m}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
