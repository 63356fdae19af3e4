"""``promptsep bench video``: does the separator follow a video prompt?

Two-source mixtures of a corpus split become synthetic audio-visual scenes
(:func:`separation.data.av.render_av_scene`: each source an object animated by its own
loudness). Each scene is rendered once and masked twice, on the target's object and on the
other one, so the two video prompts differ only in the box. Two sets of scenes:

- ``diff``: the two sources have different labels (text can choose);
- ``same``: two different clips of the **same** label, prompted by that label's text (text cannot
  choose; only the video can).

Conditions, each scored on the release's output (refined as the release does):

- ``text``: the label's text alone (SI-SDRi against the target);
- ``video``: the video, target boxed, no text;
- ``text+video``: both;
- ``wrong_box``: the video with the *other* object boxed (with the text for ``same`` scenes,
  none for ``diff``): ``follow_db = SI-SDR(out, boxed source) - SI-SDR(out, target)``, the share
  of scenes where it is > 0 (the output follows the box), the same share for the untouched
  mixture (which "follows" whichever source is louder: the baseline) and the SI-SDRi against the
  boxed source.

Every figure comes with a 95 % bootstrap CI; paired gains (``text+video - text``) are bootstrapped
per scene. Usage::

    promptsep bench video --separator runs/promptsep-v2-video/export --split valid --items 64 --out DIR
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

#: Scene sets and the conditions run on each.
SETS: dict[str, tuple[str, ...]] = {
    "diff": ("text", "video", "text+video", "wrong_box"),
    "same": ("text", "video", "text+video", "wrong_box"),
}


def build_scenes(corpus: str | Path, split: str, n: int, same_label: bool, seed: int = 0, segment_s: float = 4.0,
                 sample_rate: int = 16000, fps: float = 10.0, size: int = 64) -> list[dict[str, Any]]:
    """``n`` two-source scenes of a split, each with both masks.

    Args:
        corpus: corpus folder.
        split: corpus split.
        n: number of scenes.
        same_label: two clips of one label (``same``) or two labels (``diff``).
        seed: item seed (the scenes are a pure function of the arguments).
        segment_s / sample_rate: mixture length and rate.
        fps / size: the scene's frame rate and frame size (those of training).

    Returns:
        Dicts with ``mixture``, ``sources`` ``[2, N]`` (target first), ``text``, ``label``,
        ``frames`` ``[F, 3, H, W]``, ``masks`` ``[2, F, H, W]`` (mask ``j`` on source ``j``), ``fps``.
    """
    from separation.data.av import render_av_scene
    from separation.data.mixing import MixConfig, MixtureDataset

    cfg = MixConfig(sample_rate=sample_rate, segment_s=segment_s, min_sources=2, max_sources=2, absent_prob=0.0,
                    p_text=0.0 if same_label else 1.0, p_span=0.0, p_text_span=0.0, p_video=0.0,
                    p_text_video=1.0 if same_label else 0.0, p_same_label=1.0 if same_label else 0.0,
                    video=same_label, video_fps=fps, video_size=size)
    ds = MixtureDataset(corpus, split, cfg, seed=seed, length=n * 4)
    scenes: list[dict[str, Any]] = []
    for i in range(len(ds)):
        if len(scenes) == n:
            break
        item = ds[i]
        if bool(item.get("same_label")) != same_label or item["num_sources"] != 2:
            continue  # a label with a single clip falls back to an ordinary item
        target, other = item["target"][0], item["residual"][0]
        srcs = [target, other]
        rng_key = [seed, i, 0x51DE]
        parts = [render_av_scene(srcs, j, sample_rate, fps, size, np.random.default_rng(rng_key)) for j in (0, 1)]
        if not torch.equal(parts[0]["frames"], parts[1]["frames"]):
            raise RuntimeError("the two renderings of one scene differ: render_av_scene must not draw on target_index")
        scenes.append({"mixture": item["mixture"][0], "sources": torch.stack(srcs), "text": item["text"],
                       "label": item["label"], "frames": parts[0]["frames"],
                       "masks": torch.stack([p["masks"] for p in parts]), "fps": parts[0]["fps"]})
    if len(scenes) < n:
        raise ValueError(f"the {split!r} split gave only {len(scenes)} {'same' if same_label else 'diff'}-label "
                         f"two-source scenes of the {n} asked for")
    return scenes


def _prompts(scene: dict[str, Any], condition: str, same: bool) -> tuple[str | None, Any, int]:
    """``(text, video, boxed source)`` of a condition."""
    from prompts.types import VideoPrompt

    boxed = 1 if condition == "wrong_box" else 0
    use_text = condition in ("text", "text+video") or (condition == "wrong_box" and same)
    use_video = condition != "text"
    video = VideoPrompt(frames=scene["frames"], fps=scene["fps"], masks=scene["masks"][boxed]) if use_video else None
    return (scene["text"] if use_text else None), video, boxed


def evaluate(separator: Any, scenes: Sequence[dict[str, Any]], same: bool, batch: int = 8,
             steps: int | None = None, method: str | None = None) -> dict[str, list[float]]:
    """Per-scene figures of every condition of a set.

    Returns:
        ``{"<condition>": [SI-SDRi per scene], "wrong_box_follow_db": [...], "wrong_box_boxed_si_sdr": [...],
        "wrong_box_target_si_sdr": [...]}``.
    """
    from separation.metrics import si_sdr

    sr = separator.sample_rate
    out: dict[str, list[float]] = {}
    conditions = SETS["same" if same else "diff"]
    for cond in conditions:
        for lo in tqdm(range(0, len(scenes), batch), desc=f"{'same' if same else 'diff'} {cond}", leave=False):
            part = scenes[lo : lo + batch]
            prompts = [_prompts(s, cond, same) for s in part]
            res = separator.separate_batch([s["mixture"][None] for s in part], [sr] * len(part),
                                           [p[0] for p in prompts], None, [p[1] for p in prompts],
                                           steps=steps, method=method)
            for s, r, (_, _, boxed) in zip(part, res, prompts):
                est = r.target[0].float()
                mix, srcs = s["mixture"].float(), s["sources"].float()
                base = float(si_sdr(mix, srcs[0]))
                if cond == "wrong_box":
                    on_box, on_target = float(si_sdr(est, srcs[boxed])), float(si_sdr(est, srcs[0]))
                    mix_box = float(si_sdr(mix, srcs[boxed]))
                    out.setdefault("wrong_box_boxed_si_sdri", []).append(on_box - mix_box)
                    out.setdefault("wrong_box_follow_db", []).append(on_box - on_target)
                    out.setdefault("wrong_box_follow_db_mixture", []).append(mix_box - base)
                else:
                    out.setdefault(cond, []).append(float(si_sdr(est, srcs[0])) - base)
    return out


def summarise(per_scene: dict[str, list[float]], samples: int = 1000) -> dict[str, Any]:
    """Means with 95 % bootstrap CIs, the paired gains and the share of scenes following the box."""
    from bench.report import bootstrap_ci

    s: dict[str, Any] = {k: bootstrap_ci(v, samples) for k, v in per_scene.items()}
    for a, b in (("text+video", "text"), ("video", "text")):
        if a in per_scene and b in per_scene:
            s[f"gain[{a} - {b}]"] = bootstrap_ci([x - y for x, y in zip(per_scene[a], per_scene[b])], samples)
    if "wrong_box_follow_db" in per_scene:  # the untouched mixture "follows" whichever source is louder
        for key, name in (("wrong_box_follow_db", "wrong_box_follows_share"),
                          ("wrong_box_follow_db_mixture", "wrong_box_follows_share_mixture")):
            s[name] = bootstrap_ci([float(x > 0) for x in per_scene[key]], samples)
    return s


def render_table(summary: dict[str, Any]) -> str:
    """A Markdown table: rows = figures, columns = ``separator/split/set``."""
    cols = sorted(summary)
    keys: list[str] = []
    for c in cols:
        keys += [k for k in summary[c] if k not in keys]
    lines = ["| figure | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for k in keys:
        cells = []
        for c in cols:
            v = summary[c].get(k)
            cells.append("" if not v or v["mean"] is None else f"{v['mean']:+.2f} [{v['lo']:+.2f}, {v['hi']:+.2f}]")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``promptsep bench video``."""
    ap = argparse.ArgumentParser(prog="promptsep bench video", description=__doc__.split("\n")[0])
    ap.add_argument("--separator", action="append", required=True,
                    help="NAME=DIR or DIR of a separator release (repeat to compare on the same scenes)")
    ap.add_argument("--corpus", default=None, help="corpus folder (default: $PROMPTSEP_CORPUS or /work/corpus)")
    ap.add_argument("--split", default="valid", help="corpus split(s), comma-separated (choose on valid)")
    ap.add_argument("--items", type=int, default=64, help="scenes per set and split")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=None, help="sampler steps (default: the release's)")
    ap.add_argument("--method", default=None, help="sampler (default: the release's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True, help="output folder (per_scene.json, summary.json, report.md)")
    args = ap.parse_args(argv)
    import os

    from separation.separator import Separator

    torch.set_num_threads(max(1, args.threads))
    corpus = args.corpus or os.environ.get("PROMPTSEP_CORPUS", "/work/corpus")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seps = dict(s.split("=", 1) if "=" in s else (Path(s).name, s) for s in args.separator)
    per_scene: dict[str, dict[str, list[float]]] = {}
    summary: dict[str, dict[str, Any]] = {}
    loaded = {name: Separator.from_pretrained(path) for name, path in seps.items()}
    for split in [x.strip() for x in args.split.split(",") if x.strip()]:
        for set_name in SETS:
            same = set_name == "same"
            sr = next(iter(loaded.values())).sample_rate
            scenes = build_scenes(corpus, split, args.items, same, seed=args.seed, sample_rate=sr)
            for name, sep in loaded.items():
                key = f"{name}/{split}/{set_name}"
                per_scene[key] = evaluate(sep, scenes, same, steps=args.steps, method=args.method)
                summary[key] = summarise(per_scene[key])
                logger.info("%s: %s", key, {k: round(v["mean"], 2) for k, v in summary[key].items() if v["mean"]})
    (out / "per_scene.json").write_text(json.dumps(per_scene, indent=1))
    (out / "summary.json").write_text(json.dumps({"separators": seps, "items": args.items, "seed": args.seed,
                                                  "steps": args.steps, "method": args.method,
                                                  "summary": summary}, indent=1))
    table = render_table(summary)
    (out / "report.md").write_text("# Video prompts on synthetic audio-visual scenes\n\n" + table)
    print(table)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    raise SystemExit(main())
