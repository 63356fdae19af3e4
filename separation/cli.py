"""The ``promptsep`` command: a thin dispatcher over each package's ``main(argv)``.

Sub-commands::

    promptsep separate IN.wav --text "dog barking" [--span +1.0:2.5] [--video clip.mp4 --box x0,y0,x1,y1] --out-dir DIR
    promptsep info CHECKPOINT
    promptsep data build --out DIR          # build the offline corpus
    promptsep train [hydra overrides]       # train a separator (Hydra)
    promptsep train-codec [hydra overrides] # train the DAC-VAE codec (Hydra)
    promptsep judge MIX.wav EST.wav --text "..."
    promptsep bench {separation,embedding,speed} ...
    promptsep demo [--host --port --share]
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from separation.errors import InputError

logger = logging.getLogger(__name__)

#: Where a clean checkout keeps the shipped default model.
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "promptsep-tiny"

#: sub-command -> "module:function" taking argv.
COMMANDS = {
    "separate": "separation.cli:separate_main",
    "info": "separation.cli:info_main",
    "data": "corpus_build.build:cli_main",
    "train": "separation.train:main",
    "train-codec": "separation.train_codec:main",
    "judge": "judge.cli:main",
    "bench": "bench.cli:main",
    "demo": "demo.app:main",
}


def _parse_box(s: str) -> tuple[int, int, int, int]:
    try:
        x0, y0, x1, y1 = (int(float(v)) for v in s.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"box must be x0,y0,x1,y1 in pixels, got {s!r}") from exc
    return x0, y0, x1, y1


def separate_main(argv: Sequence[str] | None = None) -> int:
    """``promptsep separate``: write ``target.wav`` and ``residual.wav``."""
    p = argparse.ArgumentParser(prog="promptsep separate", description="Isolate a prompted sound from a recording.")
    p.add_argument("input", help="audio file (wav, flac, ogg, ...)")
    p.add_argument("--text", help='what to isolate, e.g. "dog barking"')
    p.add_argument("--span", action="append", default=[], help="+START:END where the target sounds, -START:END where it is silent (seconds); repeatable")
    p.add_argument("--video", help="video file showing the sound source")
    p.add_argument("--box", type=_parse_box, help="x0,y0,x1,y1 box around the target object in the video (pixels)")
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="release folder or hub id (default: the shipped promptsep-tiny)")
    p.add_argument("--out-dir", default="separated", help="output folder")
    p.add_argument("--steps", type=int, default=None, help="ODE function evaluations (default: the release's recommended)")
    p.add_argument("--method", default=None, choices=["midpoint", "euler", "diffusers"],
                   help="ODE sampler (default: the release's recommended)")
    p.add_argument("--candidates", type=int, default=1, help="draw K results and keep the best")
    p.add_argument("--ranker", choices=["judge", "activity"], default=None)
    p.add_argument("--judge", default=None, help="judge checkpoint folder, for --ranker judge")
    p.add_argument("--guidance", type=float, default=1.0, help="guidance scale for the text prompt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--refine", choices=["wiener", "none"], default="wiener",
                   help="wiener: soft-mask the mixture with the generated stems (stems sum to the input); none: raw generated stems")
    p.add_argument("--mono", action="store_true", help="average channels instead of separating each")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    from separation.audio import load_audio, provenance, save_audio
    from separation.separator import Separator

    try:
        wav, sr = load_audio(args.input)
        video = None
        if args.video:
            from prompts.video import load_video

            video = load_video(args.video)
            if args.box is None:
                raise InputError("--video needs --box x0,y0,x1,y1 to select the target object")
            video.box = args.box
        elif args.box is not None:
            raise InputError("--box is only meaningful with --video")
        judge = None
        if args.ranker == "judge" or args.judge:
            from judge.model import Judge

            judge = Judge.from_pretrained(args.judge or str(DEFAULT_CHECKPOINT.parent / "promptsep-judge-tiny"))
        sep = Separator.from_pretrained(args.checkpoint, device=args.device, judge=judge)
        res = sep.separate(
            wav, sr, text=args.text, spans=args.span or None, video=video, steps=args.steps, method=args.method,
            candidates=args.candidates, guidance={"text": args.guidance} if args.guidance != 1.0 else None,
            seed=args.seed, ranker=args.ranker, channels="mono" if args.mono else "per_channel",
            refine=args.refine,
        )
    except (InputError, FileNotFoundError) as exc:
        print(f"promptsep separate: error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out_dir)
    # What made the stems, in their metadata (WAV LIST/INFO comment).
    made = provenance(Path(args.input).name, args.text, args.span, bool(args.video),
                      checkpoint=Path(args.checkpoint).name, steps=res.info["steps"], method=res.info["method"],
                      refine=res.info["refine"])
    save_audio(out / "target.wav", res.target, res.sample_rate, comment=f"target; {made}")
    save_audio(out / "residual.wav", res.residual, res.sample_rate, comment=f"residual; {made}")
    print(json.dumps({"target": str(out / "target.wav"), "residual": str(out / "residual.wav"),
                      "seconds": round(res.info["seconds"], 3), "audio_seconds": round(res.info["audio_seconds"], 3)}))
    return 0


def info_main(argv: Sequence[str] | None = None) -> int:
    """``promptsep info CHECKPOINT``: print the configuration and parameter counts."""
    p = argparse.ArgumentParser(prog="promptsep info")
    p.add_argument("checkpoint", nargs="?", default=str(DEFAULT_CHECKPOINT))
    args = p.parse_args(argv)
    from separation.model import resolve_checkpoint

    try:
        root = resolve_checkpoint(args.checkpoint)
    except FileNotFoundError as exc:
        print(f"promptsep info: error: {exc}", file=sys.stderr)
        return 2
    meta = json.loads((root / "config.json").read_text())
    from safetensors import safe_open

    counts: dict[str, int] = {}
    with safe_open(str(root / "model.safetensors"), framework="pt") as f:
        for key in f.keys():
            part = key.split(".")[0]
            counts[part] = counts.get(part, 0) + _numel(f.get_slice(key).get_shape())
    print(json.dumps({"path": str(root), "kind": meta.get("kind"), "format_version": meta.get("format_version"),
                      "parameters": counts, "total_parameters": sum(counts.values()), "config": meta.get("config")}, indent=2))
    return 0


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``promptsep`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__)
        return 0 if (not argv or argv[0] in ("-h", "--help")) else 2
    mod, fn = COMMANDS[argv[0]].split(":")
    rc = getattr(importlib.import_module(mod), fn)(argv[1:])
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
