"""The ``promptsep`` command: a thin dispatcher over each package's ``main(argv)``.

``promptsep separate`` checks every input, prompt, option and destination before it loads a
model, loads the model once for all inputs, and writes ``OUT/<input stem>/target.wav`` and
``residual.wav`` per input (never over an existing file without ``--overwrite``, never a stem
with NaN/Inf samples). Each file is streamed (:meth:`Separator.separate_file`: read, separated and
written in blocks, so memory does not grow with its length); only ``--candidates K > 1`` reads a
file whole (capped by ``--max-input-mb``). A progress bar over chunks (and files) shows on a
terminal or with ``-v``. ``promptsep info`` prints what a release is, what it knows and how to
sample it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from promptsep.errors import InputError
from promptsep.release import packaged_checkpoint

logger = logging.getLogger(__name__)

#: The shipped default models (found through the installed package).
#: ``promptsep-v2`` serves every prompt kind (text, span, video): chosen on the source-disjoint valid
#: split over ``promptsep-tiny`` (text and span) and ``promptsep-v2-video`` (video).
DEFAULT_CHECKPOINT = packaged_checkpoint("promptsep-v2")
DEFAULT_JUDGE = packaged_checkpoint("promptsep-judge-tiny")
#: The release for video prompts when no ``--checkpoint`` is given: the default itself, whose visual
#: path is trained (``default_checkpoint`` and the demo route to it only when it is another release).
DEFAULT_VIDEO_CHECKPOINT = DEFAULT_CHECKPOINT


def default_checkpoint(video: bool) -> Path:
    """The shipped separator a command uses when no ``--checkpoint`` is given.

    Args:
        video: whether the request has a video prompt (``--box``/``--mask``).

    Returns:
        :data:`DEFAULT_VIDEO_CHECKPOINT` for a video prompt when it is shipped, else
        :data:`DEFAULT_CHECKPOINT` (both ``promptsep-v2``, whose visual path is trained).
    """
    if video and (DEFAULT_VIDEO_CHECKPOINT / "config.json").is_file():
        return DEFAULT_VIDEO_CHECKPOINT
    return DEFAULT_CHECKPOINT

#: sub-command -> "module:function" taking argv.
COMMANDS = {
    "separate": "promptsep.cli:separate_main",
    "info": "promptsep.cli:info_main",
    "data": "corpus_build.build:cli_main",
    "train": "separation.train:main",
    "train-codec": "separation.train_codec:main",
    "judge": "promptsep.judge_cli:main",
    "bench": "bench.cli:main",
    "demo": "demo.app:main",
}

#: Sub-commands that are long jobs: they log at INFO by default.
_LONG_JOBS = {"data", "train", "train-codec", "bench", "demo"}

HELP = """\
usage: promptsep [-h] [--version] [-v] COMMAND [ARGS]

Isolate a prompted sound from a recording (text, time-span and video prompts).

commands:
  separate IN [IN ...] --text "woman speaking" [--span +1.0:2.5] -o OUT
                        separate one or more files; writes OUT/<input stem>/target.wav and residual.wav
  separate clip.mp4 --box X0,Y0,X1,Y1 (or --mask MASK.png) -o OUT
                        separate a video file's sound track, its picture (boxed or masked) as the prompt
  info [CHECKPOINT]     what a release is: summary, labels it knows, recommended sampling
  judge MIX EST --text T
                        score a separated stem without a reference (1..5)
  demo                  open the Gradio app
  bench {manifest,separation,speed,embedding} ...
                        benchmarks
  data build --out DIR  build the offline corpus
  train, train-codec    train a separator / the codec (Hydra overrides)

options:
  -h, --help            show this help and exit
  --version             print the version and exit
  -v, --verbose         log at INFO level (default: warnings and errors only)

Run 'promptsep COMMAND --help' for the options of a command.
"""

#: Output sample formats: CLI flag -> libsndfile subtype per container.
SUBTYPES = {"int16": {"wav": "PCM_16", "flac": "PCM_16"}, "int24": {"wav": "PCM_24", "flac": "PCM_24"},
            "float32": {"wav": "FLOAT"}}
DEFAULT_FILENAME = "{stem}/{kind}.{ext}"
_TEMPLATE_KEYS = ("stem", "name", "kind", "ext")


def version() -> str:
    """The installed promptsep version."""
    try:
        from promptsep import __version__  # type: ignore[import-not-found]

        return str(__version__)
    except ImportError:
        pass
    try:
        from importlib.metadata import version as _v

        return _v("promptsep")
    except Exception:  # not installed: a source checkout
        return "unknown"


class CliError(Exception):
    """A problem with the command line, reported as one line (exit status 2)."""


# ------------------------------------------------------------------ option types
def _parse_box(s: str) -> tuple[int, int, int, int]:
    try:
        vals = [float(v) for v in s.split(",")]
        if len(vals) != 4 or not all(math.isfinite(v) for v in vals):
            raise ValueError
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"box must be x0,y0,x1,y1 in pixels, got {s!r}") from exc
    x0, y0, x1, y1 = (int(v) for v in vals)
    return x0, y0, x1, y1


def _int_in(lo: int, hi: int | None = None):
    """An argparse type: a whole number in ``[lo, hi]`` (no upper bound when hi is None)."""

    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {s!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be at least {lo}, got {v}")
        if hi is not None and v > hi:
            raise argparse.ArgumentTypeError(f"must be at most {hi}, got {v}")
        return v

    return parse


_positive_int = _int_in(1)
_seed = _int_in(0, 2**63 - 1)


def _positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {s!r}")
    return v


def _join_negative_spans(argv: Sequence[str]) -> list[str]:
    """``--span -4:5`` -> ``--span=-4:5`` (argparse would read ``-4:5`` as an option)."""
    out: list[str] = []
    it = iter(argv)
    for tok in it:
        if tok == "--span":
            nxt = next(it, None)
            if nxt is None:
                out.append(tok)
            elif re.match(r"^-\s*[0-9.]", nxt):
                out.append(f"--span={nxt}")
            else:
                out += [tok, nxt]
        else:
            out.append(tok)
    return out


def _check_device(name: str) -> str:
    """``name`` if it is a usable device (:func:`separation.separator.check_device`), else :class:`CliError`."""
    from promptsep.errors import OptionError
    from separation.separator import check_device

    try:
        check_device(name)
    except OptionError as exc:
        raise CliError(str(exc)) from None
    return name


# ------------------------------------------------------------------ separate
@dataclass
class _Job:
    """One input and where its stems go."""

    path: Path
    duration_s: float
    target: Path
    residual: Path
    #: ``(wav [C, N], sample_rate)`` decoded from a video container's audio track (None: an audio file,
    #: streamed by the separator).
    audio: tuple | None = None


def _separate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="promptsep separate",
        description="Isolate a prompted sound from one or more recordings. Each input gives "
                    "OUT/<input stem>/target.wav (the prompted sound) and residual.wav (everything else); "
                    "target + residual equals the input. The model is loaded once for all inputs.",
        epilog='example: promptsep separate a.wav b.flac --text "woman speaking" --span +0:1.5 -o separated')
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="audio files (wav, flac, ogg, mp3, ...) or video files with a sound track (mp4, webm, mkv, "
                        "mov, ...: the sound is their audio track; with --box or --mask the picture is the video "
                        "prompt)")
    g = p.add_argument_group("prompts (at least one)")
    g.add_argument("--text", help='what to isolate, e.g. "woman speaking" (run "promptsep info" for the labels the model knows)')
    g.add_argument("--span", action="append", default=[],
                   help="+START:END where the target sounds, -START:END where it is silent (seconds); repeatable")
    g.add_argument("--video", help="video file showing the sound source, for a separate audio input (one input "
                                   "only; give --box or --mask too)")
    sel = g.add_mutually_exclusive_group()
    sel.add_argument("--box", type=_parse_box,
                     help="x0,y0,x1,y1 box around the target object in the video (the file's pixels, every frame)")
    sel.add_argument("--mask", help="image file marking the target object in white (on black), applied to every "
                                    "frame and resized to the frame size; instead of --box")
    o = p.add_argument_group("output")
    o.add_argument("-o", "--out-dir", default="separated", help="output folder (default: separated)")
    o.add_argument("--filename", default=DEFAULT_FILENAME,
                   help="output path under OUT, with {stem} (input name without extension), {name} (input file "
                        "name), {kind} (target or residual) and {ext}; default: " + DEFAULT_FILENAME)
    o.add_argument("--format", choices=["wav", "flac"], default="wav", help="container (default: wav)")
    bits = o.add_mutually_exclusive_group()
    bits.add_argument("--int24", dest="sample_format", action="store_const", const="int24",
                      help="24-bit integer samples (default: 16-bit)")
    bits.add_argument("--float32", dest="sample_format", action="store_const", const="float32",
                      help="32-bit float samples (wav only; keeps levels above full scale)")
    o.add_argument("--overwrite", action="store_true", help="replace existing output files (default: refuse)")
    o.add_argument("--json", action="store_true", help="print one JSON object per input instead of a line")
    m = p.add_argument_group("model and sampling")
    m.add_argument("--checkpoint", default=None,
                   help="release folder or hub id (default: the shipped promptsep-v2, which serves text, "
                        "span and video prompts)")
    m.add_argument("--steps", type=_positive_int, default=None,
                   help="ODE function evaluations (default: the release's recommended, chosen on valid; "
                        "1 for promptsep-v2)")
    m.add_argument("--method", default=None, choices=["midpoint", "euler", "diffusers"],
                   help="ODE sampler (default: the release's recommended)")
    m.add_argument("--candidates", type=_positive_int, default=1,
                   help="draw K results and keep the best by --ranker (default ranker: the judge with --text, "
                        "span activity with --span only)")
    m.add_argument("--variants", action="store_true",
                   help="with --candidates K > 1: prompt the candidates after the first with other wordings of a "
                        "known label's prompt (separation/prompt_variants.py); default: every candidate gets the "
                        "text as given and differs by its noise seed only")
    m.add_argument("--ranker", choices=["judge", "activity"], default=None,
                   help="judge: the learned judge's overall score (needs --text); activity: agreement with --span")
    m.add_argument("--judge", default=None, help="judge release folder for --ranker judge (default: the shipped one)")
    m.add_argument("--guidance", type=_positive_float, default=1.0, help="guidance scale for the text prompt (1 = none)")
    m.add_argument("--seed", type=_seed, default=0, help="noise seed; the same seed gives the same result (default: 0)")
    m.add_argument("--refine", choices=["wiener", "none"], default="wiener",
                   help="wiener: soft-mask the mixture with the generated stems (default); none: raw generated stems")
    m.add_argument("--mono", action="store_true", help="average channels instead of separating each")
    m.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default: cpu)")
    m.add_argument("--max-input-mb", type=_positive_float, default=200.0,
                   help="largest input file (MiB) read whole into memory, which only --candidates K > 1 and the "
                        "sound of a video file (its decoded samples) do; with one candidate audio files are "
                        "streamed in blocks and any length fits (default: %(default)g)")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    return p


def _plan(args: argparse.Namespace) -> tuple[list[_Job], str | None, list | None, Path | None]:
    """Check everything that can be checked without a model.

    Returns:
        ``(jobs, ranker, spans, video)``: ``video`` is the file whose picture is the video prompt
        (``--video``, or the one input when it is a video file and ``--box``/``--mask`` is given), or None.

    Raises:
        CliError / InputError: with a message for the user.
    """
    import soundfile as sf

    from prompts.span import parse_span
    from prompts.video import has_video_stream
    from promptsep.audio import load_audio_track

    text = args.text
    if text is not None and not text.strip():
        raise CliError("--text is empty: say which sound to isolate, e.g. --text \"woman speaking\"")
    spans = [parse_span(s) for s in args.span] or None
    select = args.box is not None or args.mask is not None
    if args.video and not select:
        raise CliError("--video needs --box x0,y0,x1,y1 (or --mask MASK.png) to select the target object")
    if not text and not spans and not select:
        raise CliError("give at least one prompt: --text, --span, or --box/--mask with a video")
    if args.mask is not None and not Path(args.mask).is_file():
        raise CliError(f"mask image not found: {args.mask}")
    if args.video and len(args.inputs) > 1:
        raise CliError("--video describes one recording: give one input with it")
    if args.video and not Path(args.video).is_file():
        raise CliError(f"video file not found: {args.video}")
    sample_format = args.sample_format or "int16"
    if args.format not in SUBTYPES[sample_format]:
        raise CliError(f"--{sample_format} cannot be stored as {args.format}: use --format wav or --int24")
    # ranker for several candidates
    ranker = args.ranker
    if ranker == "judge" and not text:
        raise CliError("--ranker judge needs --text (the judge scores the stem against the text prompt)")
    if ranker == "activity" and not spans:
        raise CliError("--ranker activity needs --span (it ranks by agreement with the spans)")
    if args.candidates > 1 and ranker is None:
        if text and (args.judge or DEFAULT_JUDGE.is_dir()):
            ranker = "judge"
        elif spans:
            ranker = "activity"
        else:
            raise CliError(f"--candidates {args.candidates} needs a way to rank them: give --text (ranked by the "
                           "judge) or --span (ranked by span activity), or use --candidates 1")
    if args.variants and args.candidates == 1:
        print("promptsep separate: warning: --variants only changes anything with --candidates K > 1", file=sys.stderr)
    if args.judge and ranker != "judge":
        raise CliError("--judge is only used with --ranker judge (or --candidates K with --text)")
    # destination and template
    template = args.filename
    if os.path.isabs(template) or ".." in Path(template).parts:
        raise CliError(f"--filename must be a relative path under --out-dir, got {template!r}")
    try:
        probe = {k: template.format(stem="a", name="a.wav", kind=k, ext="wav") for k in ("target", "residual")}
    except (KeyError, IndexError, ValueError) as exc:
        raise CliError(f"--filename {template!r}: unknown field {exc}; use {', '.join('{' + k + '}' for k in _TEMPLATE_KEYS)}") from None
    if probe["target"] == probe["residual"]:
        raise CliError(f"--filename {template!r} must contain {{kind}} (target and residual would share one file)")
    out = Path(args.out_dir)
    _check_writable(out)
    jobs: list[_Job] = []
    seen: dict[Path, Path] = {}
    for name in args.inputs:
        p = Path(name)
        if not p.is_file():
            raise CliError(f"input not found: {name}" if not p.exists() else f"input is not a file: {name}")
        audio = None
        if has_video_stream(p):  # a video file: its sound is its audio track, decoded now
            audio = load_audio_track(p, max_bytes=int(args.max_input_mb * 2**20))
            dur = audio[0].shape[-1] / audio[1]
        else:
            try:
                info = sf.info(str(p))
            except Exception as exc:  # libsndfile raises several types
                raise CliError(f"cannot read audio file {name}: {exc}") from None
            if info.frames == 0:
                raise CliError(f"input {name} is empty (0 samples)")
            dur = info.frames / info.samplerate
        for sign, a, b in spans or ():
            if b > dur + 1e-6:
                raise CliError(f"span {sign}{a:g}:{b:g} is outside {p.name} (0 to {dur:.3f} s)")
        paths = [out / template.format(stem=p.stem, name=p.name, kind=k, ext=args.format) for k in ("target", "residual")]
        for q in paths:
            if q.resolve() in seen:
                raise CliError(f"{seen[q.resolve()]} and {name} would both write {q}: use a --filename with "
                               "{name} (the file name with its extension), or separate them one at a time")
            seen[q.resolve()] = p
            if q.resolve() == p.resolve():
                raise CliError(f"output {q} would replace its own input")
        jobs.append(_Job(p, dur, *paths, audio=audio))
    existing = [str(q) for j in jobs for q in (j.target, j.residual) if q.exists() or q.is_symlink()]
    if existing and not args.overwrite:
        shown = ", ".join(existing[:4]) + (f" and {len(existing) - 4} more" if len(existing) > 4 else "")
        raise CliError(f"output exists: {shown} (use --overwrite to replace, or another --out-dir)")
    dirs = [q for j in jobs for q in (j.target, j.residual) if q.exists() and not q.is_file()]
    if dirs:
        raise CliError(f"output path is a folder: {dirs[0]}")
    video = Path(args.video) if args.video else None
    if select and video is None:
        if len(jobs) != 1 or jobs[0].audio is None:
            raise CliError("--box/--mask select an object in a video: give --video FILE, or one video file "
                           "(mp4, webm, ...) as the input")
        video = jobs[0].path
    _check_device(args.device)
    if args.checkpoint is None:
        args.checkpoint = str(default_checkpoint(video is not None))
        logger.info("separator: %s (default for %s prompts)", args.checkpoint, "video" if video is not None else "text/span")
    return jobs, ranker, spans, video


def _check_writable(out: Path) -> None:
    """Raise :class:`CliError` unless ``out`` is (or can be created as) a writable folder."""
    if out.exists() and not out.is_dir():
        raise CliError(f"--out-dir {out} is a file, not a folder")
    anc = out
    while not anc.exists():
        if anc.parent == anc:
            break
        anc = anc.parent
    if not anc.is_dir():
        raise CliError(f"cannot create --out-dir {out}: {anc} is a file")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise CliError(f"cannot write to {anc} (permission denied): choose another --out-dir")


def _quiet_libraries() -> None:
    """No progress bars or INFO chatter from the libraries the models use."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as tlog

        tlog.disable_progress_bar()
        tlog.set_verbosity_error()
    except Exception:  # transformers missing or older
        pass


def _load_error(what: str, path: str, exc: Exception) -> CliError:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, json.JSONDecodeError):
        msg = f"config.json is not valid JSON ({exc})"
    return CliError(f"cannot load the {what} from {path}: {msg}")


def separate_main(argv: Sequence[str] | None = None) -> int:
    """``promptsep separate``: write the target and residual stems of each input.

    Returns:
        0 when every input was separated; 1 when some input failed (the others are written);
        2 for a usage problem found before any model was loaded.
    """
    p = _separate_parser()
    try:
        args = p.parse_args(_join_negative_spans(list(sys.argv[1:] if argv is None else argv)))
    except SystemExit as exc:  # --help, or a usage error argparse has printed
        return int(exc.code or 0)
    if args.verbose:
        logging.getLogger().setLevel(logging.INFO)
    else:
        _quiet_libraries()
    try:
        jobs, ranker, spans, video_file = _plan(args)
    except (CliError, InputError) as exc:
        print(f"promptsep separate: error: {exc}", file=sys.stderr)
        return 2

    import torch
    from tqdm.auto import tqdm

    from promptsep.audio import load_audio, provenance, save_audio, stem_subtype
    from separation.separator import Separator

    try:
        video = None
        if video_file is not None:  # a bad video or mask is a prompt error: reported before the models load
            from prompts.video import load_video_prompt

            video = load_video_prompt(video_file, jobs[0].duration_s, box=args.box, mask=args.mask)
        judge = None
        if ranker == "judge":
            from judge.model import Judge

            jpath = args.judge or str(DEFAULT_JUDGE)
            try:
                judge = Judge.from_pretrained(jpath, map_location=args.device)
            except Exception as exc:
                raise _load_error("judge", jpath, exc) from None
        try:
            sep = Separator.from_pretrained(args.checkpoint, device=args.device, judge=judge)
        except Exception as exc:
            raise _load_error("separator", args.checkpoint, exc) from None
    except (CliError, InputError) as exc:
        print(f"promptsep separate: error: {exc}", file=sys.stderr)
        return 2

    subtype = SUBTYPES[args.sample_format or "int16"][args.format]
    steps, method = sep.sampling(args.steps, args.method)
    show = args.verbose or sys.stderr.isatty()  # progress bars: on a terminal or with -v, quiet otherwise
    failed = 0
    bar = tqdm(jobs, unit="file", desc="separating", disable=not show or len(jobs) < 2, file=sys.stderr)
    for job in bar:
        bar.set_postfix_str(job.path.name)
        chunk_bar = tqdm(total=0, unit="chunk", desc=job.path.name, disable=not show, leave=False, file=sys.stderr)

        def on_chunk(done: int, total: int, chunk_bar=chunk_bar) -> None:
            chunk_bar.total = total
            chunk_bar.update(done - chunk_bar.n)

        try:
            made = provenance(job.path.name, args.text, args.span, video is not None,
                              checkpoint=Path(args.checkpoint).name, steps=steps, method=method, refine=args.refine)
            sub = subtype
            if args.sample_format is None and args.format == "wav":
                sub = stem_subtype(job.path) or subtype  # a float input keeps float stems (never clipped)
            options = dict(text=args.text, spans=spans, video=video, steps=steps, method=method, seed=args.seed,
                           guidance={"text": args.guidance} if args.guidance != 1.0 else None,
                           channels="mono" if args.mono else "per_channel", refine=args.refine)
            if args.candidates == 1 and job.audio is None:  # streamed: memory does not grow with its length
                info = sep.separate_file(job.path, job.target, job.residual, subtype=sub, overwrite=args.overwrite,
                                         comment=made, progress=on_chunk, **options)
            else:  # ranking K candidates, or a video's sound track: the whole recording in memory
                wav, sr = job.audio or load_audio(job.path, max_bytes=int(args.max_input_mb * 2**20))
                job.audio = None
                res = sep.separate(wav, sr, candidates=args.candidates, ranker=ranker, progress=on_chunk,
                                   variants=args.variants, **options)
                bad = [k for k, x in (("target", res.target), ("residual", res.residual))
                       if not bool(torch.isfinite(x).all())]
                if bad:
                    raise InputError(f"the {' and '.join(bad)} of {job.path.name} has NaN/Inf samples; nothing was "
                                     "written (check --guidance and the checkpoint)")
                if not args.overwrite and (job.target.exists() or job.residual.exists()):
                    raise InputError(f"{job.target} appeared while separating; not replaced (use --overwrite)")
                save_audio(job.target, res.target, res.sample_rate, comment=f"target; {made}", subtype=sub,
                           overwrite=args.overwrite)
                save_audio(job.residual, res.residual, res.sample_rate, comment=f"residual; {made}", subtype=sub,
                           overwrite=args.overwrite)
                info = res.info
        except (InputError, OSError) as exc:
            failed += 1
            chunk_bar.close()
            bar.clear()
            print(f"promptsep separate: error: {job.path}: {exc}", file=sys.stderr)
            continue
        chunk_bar.close()
        if args.json:
            print(json.dumps({"input": str(job.path), "target": str(job.target), "residual": str(job.residual),
                              "seconds": round(info["seconds"], 3), "audio_seconds": round(info["audio_seconds"], 3),
                              "steps": info["steps"], "method": info["method"], "checkpoint": args.checkpoint,
                              **({"candidate_texts": info["candidate_texts"]} if any(info.get("candidate_texts") or []) else {})}))
        else:
            bar.clear()
            print(f"{job.path} -> {job.target}, {job.residual}")
    bar.close()
    if failed:
        print(f"promptsep separate: {failed} of {len(jobs)} input(s) failed", file=sys.stderr)
        return 1
    return 0


# ------------------------------------------------------------------ info
def card_summary(root: Path) -> str:
    """The first paragraph of a release's ``MODEL_CARD.md`` (plain text), or ''."""
    card = root / "MODEL_CARD.md"
    if not card.is_file():
        return ""
    paras, cur = [], []
    for line in card.read_text(errors="replace").splitlines():
        if line.startswith("#"):
            if cur:
                break
            continue
        if not line.strip():
            if cur:
                paras.append(" ".join(cur))
                break
            continue
        cur.append(line.strip())
    if cur and not paras:
        paras.append(" ".join(cur))
    return re.sub(r"\*\*|`", "", paras[0]) if paras else ""


def release_labels(root: Path) -> dict[str, str]:
    """``{label: category}`` the release was trained on (its ``labels.json``), or {} if unknown."""
    f = root / "labels.json"
    if not f.is_file():
        return {}
    try:
        data = json.loads(f.read_text())
    except ValueError:
        return {}
    labels = data.get("labels", data) if isinstance(data, dict) else {}
    return {str(k): str(v.get("category", v) if isinstance(v, dict) else v) for k, v in labels.items()}


def card_section(root: Path, title: str) -> list[str]:
    """The bullet points of the ``## <title>`` (or ``### <title>``, ...) section of a release's model
    card (plain text); the section ends at the next heading."""
    card = root / "MODEL_CARD.md"
    if not card.is_file():
        return []
    items: list[str] = []
    inside = False
    for line in card.read_text(errors="replace").splitlines():
        heading = re.match(r"#{2,6} (.*)", line)
        if heading:
            inside = heading.group(1).strip().lower() == title.lower()
            continue
        if inside and line.startswith("- "):
            items.append(line[2:].strip())
        elif inside and line.startswith("  ") and items:
            items[-1] += " " + line.strip()
    return [re.sub(r"\*\*|`", "", i) for i in items]


def _bench_card(root: Path) -> dict:
    """The release's measured test-split figures (``bench_card_test.json``), or {}."""
    try:
        card = json.loads((root / "bench_card_test.json").read_text())
    except (OSError, ValueError):
        return {}
    return card if isinstance(card, dict) else {}


def card_figure(row: dict | None, key: str = "separator_si_sdri") -> dict | None:
    """One figure ``{"mean", "lo", "hi", "n"}`` of a bench card row, or None if it is not there."""
    v = (row or {}).get(key)
    return v if isinstance(v, dict) and v.get("mean") is not None else None


def format_figure(v: dict | None) -> str | None:
    """A bench card figure as ``+1.2 dB [+0.3, +2.0], n=40`` (mean [95 % CI], n), or None."""
    return None if v is None else f"{v['mean']:+.1f} dB [{v['lo']:+.1f}, {v['hi']:+.1f}], n={v.get('n')}"


def video_figure(root: Path) -> dict | None:
    """The release's measured SI-SDR improvement with video prompts (its bench card's
    ``per_prompt_kind`` ``video`` row), or None when the release did not measure it."""
    return card_figure((_bench_card(root).get("per_prompt_kind") or {}).get("video"))


def measured_quality(root: Path) -> list[str]:
    """Lines of the release's measured test-split quality (``bench_card_test.json``), or []."""
    card = _bench_card(root)

    def fmt(row: dict | None, key: str = "separator_si_sdri") -> str | None:
        return format_figure(card_figure(row, key))

    lines = []
    if fmt(card.get("main_all")):
        lines.append(f"all test mixtures (2-4 sources): {fmt(card['main_all'])}")
    for kind, row in (card.get("pair_cross") or {}).items():
        if fmt(row):
            lines.append(f"2 sources of different kinds, {kind} prompt: {fmt(row)}")
    video = format_figure(video_figure(root))
    if video:
        lines.append(f"video prompt: {video}")
    if fmt(card.get("main_all"), "oracle_codec_wiener_si_sdri"):
        lines.append(f"(ceiling, oracle codec + Wiener: {fmt(card['main_all'], 'oracle_codec_wiener_si_sdri')})")
    return lines


def release_info(path: str | Path) -> dict:
    """What ``promptsep info`` shows, as a dict.

    Raises:
        CliError: missing folder, unreadable ``config.json`` or ``model.safetensors``.
    """
    from promptsep.release import resolve_checkpoint

    try:
        root = resolve_checkpoint(path)
    except Exception as exc:
        raise _load_error("release", str(path), exc) from None
    try:
        meta = json.loads((root / "config.json").read_text())
        if not isinstance(meta, dict):
            raise ValueError("config.json does not hold a JSON object")
    except (OSError, ValueError) as exc:
        raise _load_error("release", str(path), exc) from None
    try:
        from safetensors import safe_open

        counts: dict[str, int] = {}
        with safe_open(str(root / "model.safetensors"), framework="pt") as f:
            for key in f.keys():
                part = key.split(".")[0]
                counts[part] = counts.get(part, 0) + _numel(f.get_slice(key).get_shape())
    except Exception as exc:  # safetensors raises its own error type for a damaged file
        raise CliError(f"cannot read {root / 'model.safetensors'}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    cfg = meta.get("config") or {}
    quality = measured_quality(root)
    video = video_figure(root)
    limits = card_section(root, "Limits")
    if video is not None and video["mean"] < 0:
        limits.append("Video prompts do not help yet: measured below the mixture (see the figures).")
    rate = (cfg.get("codec") or {}).get("sample_rate")
    if meta.get("kind") == "promptsep_separator" and rate:
        limits.append(f"It separates up to {int(rate) // 2} Hz; anything above that goes to the residual.")
    return {"path": str(root), "kind": meta.get("kind"), "format_version": meta.get("format_version"),
            "summary": card_summary(root), "sample_rate": (cfg.get("codec") or {}).get("sample_rate"),
            "sampling": cfg.get("sampling"), "labels": release_labels(root),
            "quality_si_sdri": quality, "video_si_sdri": video, "limits": limits,
            "parameters": counts, "total_parameters": sum(counts.values()), "config": cfg}


def info_main(argv: Sequence[str] | None = None) -> int:
    """``promptsep info [CHECKPOINT]``: summary, labels, recommended sampling, sizes."""
    p = argparse.ArgumentParser(prog="promptsep info", description="Show what a release is, the labels it was "
                                "trained on and how to sample it.")
    p.add_argument("checkpoint", nargs="?", default=str(DEFAULT_CHECKPOINT), help="release folder (default: the shipped promptsep-v2)")
    p.add_argument("--json", action="store_true", help="print everything, config included, as JSON")
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        info = release_info(args.checkpoint)
    except CliError as exc:
        print(f"promptsep info: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    lines = [f"{Path(info['path']).name} ({info['kind']}, {info['total_parameters'] / 1e6:.2f} M parameters"
             + (f", {info['sample_rate']} Hz" if info["sample_rate"] else "") + ")", f"  folder: {info['path']}"]
    if info["summary"]:
        lines += ["", *_wrap(info["summary"], hang="")]
    s = info["sampling"]
    if s:
        lines += ["", f"recommended sampling: {s.get('method')}, {s.get('steps')} step(s)"
                  + (f", Wiener refinement (power {s.get('refine_power')}, {s.get('refine_n_fft')}-point STFT)"
                     if s.get("refine_n_fft") else "") + " (what `promptsep separate` uses by default)"]
    labels = info["labels"]
    if labels:
        lines += ["", f"labels it was trained on ({len(labels)}; other prompts are out of its range):"]
        for cat in sorted(set(labels.values())):
            names = sorted(k for k, v in labels.items() if v == cat)
            lines += _wrap(f"{cat} ({len(names)}): " + ", ".join(names), indent="  ")
    elif info["kind"] == "promptsep_separator":
        lines += ["", "labels: not recorded in this release (no labels.json)"]
    if info["quality_si_sdri"]:
        lines += ["", "measured on held-out test mixtures (SI-SDR improvement, mean [95 % CI]):"]
        for q in info["quality_si_sdri"]:
            lines += _wrap(q, indent="  ")
    limits = info["limits"]
    if limits:
        lines += ["", "limits:"]
        for item in limits:
            lines += _wrap("- " + item, indent="  ")
    lines += ["", "parameters: " + ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in info["parameters"].items() if v >= 5000)]
    print("\n".join(lines))
    return 0


def _wrap(text: str, indent: str = "", hang: str = "  ") -> list[str]:
    import textwrap

    return textwrap.wrap(text, width=100, initial_indent=indent, subsequent_indent=indent + hang)


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


# ------------------------------------------------------------------ dispatcher
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``promptsep`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = False
    while argv and argv[0] in ("-v", "--verbose"):
        verbose = True
        argv = argv[1:]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(HELP, end="")
        return 0
    if argv[0] == "--version":
        print(f"promptsep {version()}")
        return 0
    cmd = argv[0]
    if cmd not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(cmd, COMMANDS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        print(f"promptsep: error: unknown command '{cmd}'{hint}; commands: {', '.join(COMMANDS)}\n"
              "Run 'promptsep --help' for usage.", file=sys.stderr)
        return 2
    if verbose and cmd == "separate" and "-v" not in argv and "--verbose" not in argv:
        argv.append("--verbose")
    level = logging.INFO if (verbose or cmd in _LONG_JOBS) else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    mod, fn = COMMANDS[cmd].split(":")
    rc = getattr(importlib.import_module(mod), fn)(argv[1:])
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
