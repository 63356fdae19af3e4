"""``promptsep judge``: score a separated stem, train a judge, evaluate one.

Usage::

    promptsep judge MIX.wav EST.wav --text "dog barking" [--checkpoint DIR] [--device cpu]
    promptsep judge train [hydra overrides]          # python -m judge.train
    promptsep judge evaluate [--checkpoint DIR] ...  # python -m judge.evaluate

Scoring prints one JSON object: ``{"precision", "recall", "faithfulness", "overall"}`` (1..5)
plus the inputs. Bad input (unreadable or empty files, NaN samples, lengths that differ by
more than 1 % after resampling, an empty prompt, a missing checkpoint) prints
``promptsep judge: error: ...`` on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from promptsep.release import packaged_checkpoint

DEFAULT_JUDGE = packaged_checkpoint("promptsep-judge-tiny")


def score_main(argv: Sequence[str] | None = None) -> int:
    """Score ``EST.wav`` as the prompted stem of ``MIX.wav``."""
    p = argparse.ArgumentParser(prog="promptsep judge",
                                description="Score a separated stem without a reference (1..5 per axis). "
                                            "Sub-commands: 'train' and 'evaluate'.")
    p.add_argument("mixture", help="the original recording (wav, flac, ...)")
    p.add_argument("estimate", help="the separated stem to score")
    p.add_argument("--text", required=True, help='the prompt naming the target sound, e.g. "dog barking"')
    p.add_argument("--checkpoint", default=str(DEFAULT_JUDGE), help="judge release folder (default: the shipped one)")
    p.add_argument("--codec", default=None, help="codec release folder, if not where the judge expects it")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    from promptsep.audio import load_audio
    from promptsep.cli import CliError, _check_device, _load_error, _quiet_libraries
    from promptsep.errors import InputError

    if not logging.getLogger().isEnabledFor(logging.INFO):
        _quiet_libraries()  # no weight-loading progress bars unless -v
    try:
        if not args.text or not args.text.strip():
            raise InputError("--text is empty: give the prompt that names the target sound")
        mix, sr_m = load_audio(args.mixture)
        est, sr_e = load_audio(args.estimate)
        _check_device(args.device)
        from judge.model import Judge

        try:
            judge = Judge.from_pretrained(args.checkpoint, map_location=args.device, codec_path=args.codec)
        except Exception as exc:  # missing folder, broken config.json or safetensors, not a judge
            raise _load_error("judge", args.checkpoint, exc) from None
        scores = judge.score(mix, est, args.text, sr_m, estimate_sample_rate=sr_e)
    except (InputError, FileNotFoundError, CliError) as exc:
        print(f"promptsep judge: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a checkpoint that is not a judge, or mismatched weights
        print(f"promptsep judge: error: {exc}", file=sys.stderr)
        return 2
    out = {k: round(v, 4) for k, v in scores.to_dict().items()}
    out.update(mixture=args.mixture, estimate=args.estimate, text=args.text)
    print(json.dumps(out))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``train`` / ``evaluate`` sub-commands, else score a pair of files."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        from judge.train import main as train_main

        return int(train_main(argv[1:]) or 0)
    if argv and argv[0] == "evaluate":
        from judge.evaluate import main as eval_main

        return int(eval_main(argv[1:]) or 0)
    return score_main(argv)


if __name__ == "__main__":
    sys.exit(main())
