"""Weight-space interpolation of a judge and its fine-tuned copy (WiSE-FT).

Fine-tuning the shipped judge on anchor candidates teaches it the orderings against the
untouched mixture and silence, but moves its calibration across mixtures. Interpolating the
weights of the release it started from and the fine-tuned one, ``(1 - alpha) * base + alpha *
tuned`` (Wortsman et al., "Robust fine-tuning of zero-shot models", 2022), gives one judge
between the two; ``alpha`` is chosen on the valid split. Both releases must share their
architecture, codec, text encoder and grounding (a fine-tuned copy made with ``init_from`` does).

``python -m judge.soup --base checkpoints/promptsep-judge-tiny --tuned runs/judge-ftB/release --alpha 0.5 --out DIR``
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from judge.model import Judge


def interpolate_judges(base: Judge, tuned: Judge, alpha: float) -> Judge:
    """A judge whose trained weights are ``(1 - alpha) * base + alpha * tuned``.

    Args:
        base: the judge fine-tuning started from (returned weights at ``alpha = 0``).
        tuned: its fine-tuned copy (``alpha = 1``).
        alpha: interpolation weight in [0, 1].

    Returns:
        A new :class:`Judge` with ``base``'s configuration (frozen parts shared by both).

    Raises:
        ValueError: ``alpha`` outside [0, 1], or the two judges differ in configuration or tensors.
    """
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    cb, ct = base.cfg.to_dict(), tuned.cfg.to_dict()
    for key in ("codec_path", "clap_path"):  # where a release was loaded from does not matter; its hash does
        cb.pop(key, None)
        ct.pop(key, None)
    if cb != ct:
        diff = sorted(k for k in set(cb) | set(ct) if cb.get(k) != ct.get(k))
        raise ValueError(f"the judges differ in configuration ({diff}): only a fine-tuned copy of the same release "
                         "can be interpolated")
    keys = base.saved_state_keys()
    if sorted(keys) != sorted(tuned.saved_state_keys()):
        raise ValueError("the judges store different tensors")
    sb, st = base.state_dict(), tuned.state_dict()
    bad = [k for k in keys if sb[k].shape != st[k].shape]
    if bad:
        raise ValueError(f"tensor shapes differ: {bad[:5]}")
    out = copy.deepcopy(base)
    mixed = {k: (sb[k].float() * (1.0 - alpha) + st[k].float() * alpha).to(sb[k].dtype)
             if sb[k].is_floating_point() else sb[k].clone() for k in keys}
    missing, unexpected = out.load_state_dict(mixed, strict=False)
    if unexpected or [k for k in missing if k in keys]:
        raise ValueError(f"interpolated weights do not fit the judge (missing {missing[:5]}, unexpected {unexpected[:5]})")
    return out.eval()


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: write the interpolated judge as a release folder (with ``train_result.json`` recording
    both parents, their weights' SHA-256, ``alpha`` and the tuned run's grading recipe)."""
    from promptsep.release import sha256_file

    p = argparse.ArgumentParser(prog="python -m judge.soup", description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="the judge release fine-tuning started from")
    p.add_argument("--tuned", required=True, help="its fine-tuned copy")
    p.add_argument("--alpha", type=float, required=True, help="weight of the tuned judge, in [0, 1]")
    p.add_argument("--out", required=True, help="output release folder")
    args = p.parse_args(argv)
    try:
        base, tuned = Judge.from_pretrained(args.base), Judge.from_pretrained(args.tuned)
        judge = interpolate_judges(base, tuned, args.alpha)
    except (FileNotFoundError, ValueError) as exc:
        print(f"judge.soup: error: {exc}", file=sys.stderr)
        return 2
    out = judge.save_pretrained(args.out)
    tuned_result: dict[str, Any] = {}
    f = Path(args.tuned) / "train_result.json"
    if f.is_file():
        tuned_result = json.loads(f.read_text())
    base_sha = sha256_file(Path(args.base) / "model.safetensors")
    parent = (tuned_result.get("init_from") or {}).get("weights_sha256")
    if parent != base_sha:
        print(f"judge.soup: warning: {args.tuned} does not record {args.base} as the judge it was fine-tuned from "
              f"(init_from sha256 {str(parent)[:12]} vs {base_sha[:12]}): WiSE-FT assumes it was", file=sys.stderr)
    record = {"interpolated": {"base": str(args.base), "base_sha256": base_sha,
                               "tuned": str(args.tuned),
                               "tuned_sha256": sha256_file(Path(args.tuned) / "model.safetensors"),
                               "alpha": float(args.alpha)},
              "grade_recipe": tuned_result.get("grade_recipe"), "tuned_train_result": tuned_result}
    (Path(out) / "train_result.json").write_text(json.dumps(record, indent=2, default=str))
    print(f"wrote {out} (alpha {args.alpha})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["interpolate_judges"]
