"""The demo's logic without any Gradio: input checks, prompts, separation, scoring, files.

:mod:`demo.app` is a thin UI over these functions; tests can call them directly. Every
problem a user can cause raises :class:`promptsep.errors.InputError` (or a subclass)
with a message that names it; the UI turns those into ``gr.Error`` pop-ups.
"""

from __future__ import annotations

import csv
import logging
import math
import shutil
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptsep.errors import AudioError, InputError, PromptError, VideoError

logger = logging.getLogger(__name__)

#: Judge score fields, in display order.
SCORE_FIELDS = ("precision", "recall", "faithfulness", "overall")
#: Columns of the batch tab's table and CSV.
BATCH_HEADERS = ["file", "duration_s", "seconds", *SCORE_FIELDS, "error"]
#: What each judge score says, one line each.
SCORE_MEANING = {
    "precision": "only the prompted sound is in the target (no other sounds leak in)",
    "recall": "all of the prompted sound is in the target (none left in the residual)",
    "faithfulness": "the target sounds natural (no artefacts or distortion)",
    "overall": "the judge's overall rating of the separation",
}
#: Sampler choices offered by the UI.
METHODS = ("midpoint", "euler", "diffusers")


@dataclass
class DemoConfig:
    """Limits and defaults of the demo.

    Attributes:
        max_file_mb: largest accepted upload (audio, video, mask), in megabytes.
        max_duration_s: longest accepted audio, in seconds.
        max_video_duration_s: longest audio accepted together with a video prompt (the
            decoded frames are held in memory).
        video_max_side: videos are decoded with their longer side scaled down to this many
            pixels; the box is given in these pixels (the preview picture has this size).
        max_batch_files: most files in one batch request.
        concurrency_limit: separations running at once (the rest wait in the queue).
        queue_max_size: requests allowed to wait in the queue.
        default_steps / max_steps: ODE function evaluations (default None: the separator
            release's recommended ``sampling.steps``).
        default_guidance: classifier-free guidance scale (1 = none).
        max_candidates: largest number of candidates a user may ask for.
        keep_outputs_s: request folders older than this are deleted on the next request.
        delete_cache: Gradio's ``delete_cache`` (frequency s, age s) for its upload cache.
    """

    max_file_mb: float = 50.0
    max_duration_s: float = 120.0
    max_video_duration_s: float = 30.0
    video_max_side: int = 320
    max_batch_files: int = 16
    concurrency_limit: int = 2
    queue_max_size: int = 32
    default_steps: int | None = None
    max_steps: int = 64
    default_guidance: float = 1.0
    max_candidates: int = 8
    keep_outputs_s: float = 600.0
    delete_cache: tuple[int, int] = (600, 3600)
    title: str = "promptsep"
    examples: list[tuple[str, str]] = field(default_factory=list)

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 1024 * 1024)


# --------------------------------------------------------------------------- files
class Workspace:
    """A private temporary folder with one sub-folder per request.

    Folders of finished requests are removed once older than ``keep_s`` (Gradio has copied
    the returned files into its own cache by then), and the whole folder is removed by
    :meth:`close` (also registered to run at interpreter exit).
    """

    def __init__(self, keep_s: float = 600.0, root: str | Path | None = None):
        self.root = Path(tempfile.mkdtemp(prefix="promptsep-demo-", dir=root))
        self.keep_s = float(keep_s)
        self._lock = threading.Lock()
        import atexit

        atexit.register(self.close)

    def request_dir(self) -> Path:
        """A new empty folder for one request (and prune old ones)."""
        self.prune()
        d = self.root / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        d.mkdir(parents=True)
        return d

    def prune(self, now: float | None = None) -> int:
        """Delete request folders older than ``keep_s``; returns how many were removed."""
        now = time.time() if now is None else now
        removed = 0
        with self._lock:
            if not self.root.is_dir():
                self.root.mkdir(parents=True, exist_ok=True)
            for d in self.root.iterdir():
                try:
                    if now - d.stat().st_mtime > self.keep_s:
                        shutil.rmtree(d, ignore_errors=True)
                        removed += 1
                except FileNotFoundError:
                    pass
        return removed

    def close(self) -> None:
        """Remove every file the demo wrote."""
        shutil.rmtree(self.root, ignore_errors=True)


def _path_of(value: Any) -> str | None:
    """A file path from what Gradio or its client hands in (str, dict with ``path``, file object)."""
    if value is None or value == "":
        return None
    if isinstance(value, (str, Path)):
        return str(value)
    if isinstance(value, dict):
        for key in ("path", "name", "video"):
            if value.get(key):
                return _path_of(value[key])
        return None
    name = getattr(value, "path", None) or getattr(value, "name", None)
    return str(name) if name else None


def check_file_size(path: str | Path, cfg: DemoConfig, what: str = "file") -> None:
    """Raise :class:`AudioError` (:class:`VideoError` for a video or mask image) if the file is missing or too big."""
    p = Path(path)
    err = VideoError if what in ("video", "mask image") else AudioError
    if not p.is_file():
        raise err(f"the {what} {p.name} was not found (upload it again)")
    size = p.stat().st_size
    if size > cfg.max_file_bytes:
        raise err(f"the {what} {p.name} is {size / 2**20:.1f} MB, over the {cfg.max_file_mb:g} MB limit of this demo")


def read_audio(value: Any, cfg: DemoConfig, name: str = "input audio", video: Any = None):
    """Load an uploaded/recorded audio file with the demo's size and duration limits.

    Without an audio file the sound track of ``video`` is the input, as ``promptsep separate
    clip.mp4`` takes it (:func:`promptsep.audio.load_audio_track`).

    Returns:
        ``(wav [C, N] float32, sample_rate)``.

    Raises:
        AudioError: no file, too large, unreadable, empty, non-finite, silent or too long; a
            video without a sound track and no audio file.
    """
    from promptsep.audio import load_audio, load_audio_track

    path = _path_of(value)
    video_path = _path_of(video)
    if path is None and video_path is not None:
        check_file_size(video_path, cfg, "video")
        if not _has_sound(video_path):
            raise AudioError(f"the video {Path(video_path).name} has no sound track: upload the audio to separate "
                             "as the input audio")
        name = f"the sound track of {Path(video_path).name}"
        wav, sr = load_audio_track(video_path, max_bytes=cfg.max_file_bytes)
    elif path is None:
        raise AudioError("no input audio: upload a file, record with the microphone, pick an example, or upload "
                         "a video with a sound track")
    else:
        check_file_size(path, cfg, "audio file")
        wav, sr = load_audio(path, max_bytes=cfg.max_file_bytes)
    dur = wav.shape[-1] / sr
    if dur > cfg.max_duration_s:
        raise AudioError(f"{name} is {dur:.1f} s long, over the {cfg.max_duration_s:g} s limit of this demo")
    if float(wav.abs().max()) == 0.0:
        raise AudioError(f"{name} is silent (all samples are zero): there is nothing to separate")
    return wav, sr


def _has_sound(path: str) -> bool:
    """Whether a media file has an audio stream (an unreadable file says True: the decoder reports it)."""
    import av

    try:
        with av.open(path) as container:
            return bool(container.streams.audio)
    except (av.error.FFmpegError, OSError, ValueError):
        return True


# --------------------------------------------------------------------------- prompts
def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and math.isnan(v):
        return ""
    return str(v).strip()


def table_rows(value: Any) -> list[list[Any]]:
    """Rows of a Gradio Dataframe value (list of lists, dict with ``data``, or a pandas frame)."""
    if value is None:
        return []
    if isinstance(value, dict):
        value = value.get("data") or []
    if hasattr(value, "values") and hasattr(value, "columns"):  # pandas
        value = value.values.tolist()
    return [list(r) for r in value]


def parse_span_table(value: Any, duration_s: float | None = None) -> list[tuple[str, float, float]]:
    """Read the span table (columns sign, start s, end s) into ``[(sign, start_s, end_s)]``.

    Blank rows are skipped. Signs ``+``/``-`` (also ``plus``/``minus``, ``target``/``silent``).

    Raises:
        PromptError: a row with a bad sign or times, start >= end, or a span past the end.
    """
    from prompts.types import validate_span

    aliases = {"+": "+", "plus": "+", "target": "+", "audible": "+", "-": "-", "minus": "-", "silent": "-"}
    spans = []
    for i, row in enumerate(table_rows(value), start=1):
        cells = [_cell(c) for c in list(row) + ["", "", ""]][:3]
        if not any(cells):
            continue
        sign = aliases.get(cells[0].lower())
        if sign is None:
            raise PromptError(f"span row {i}: the sign must be '+' (target audible) or '-' (target silent), got {cells[0]!r}")
        try:
            start, end = float(cells[1]), float(cells[2])
        except ValueError as exc:
            raise PromptError(f"span row {i}: start and end must be numbers of seconds, got {cells[1]!r} and {cells[2]!r}") from exc
        try:
            spans.append(validate_span((sign, start, end), duration_s))
        except PromptError as exc:
            raise PromptError(f"span row {i}: {exc}") from exc
    return spans


def parse_box(x0: Any, y0: Any, x1: Any, y1: Any) -> tuple[int, int, int, int] | None:
    """The box from its four number fields; None when all are empty.

    Raises:
        VideoError: some but not all fields filled, or non-numbers.
    """
    vals = [_cell(v) for v in (x0, y0, x1, y1)]
    if not any(vals):
        return None
    if not all(vals):
        raise VideoError("the box needs all four numbers x0, y0, x1, y1 (pixels of the video)")
    try:
        return tuple(int(round(float(v))) for v in vals)  # type: ignore[return-value]
    except ValueError as exc:
        raise VideoError(f"the box must be four pixel numbers, got {vals}") from exc


def order_box(p: Sequence[float], q: Sequence[float]) -> tuple[int, int, int, int]:
    """Box ``(x0, y0, x1, y1)`` with exclusive ``x1``/``y1`` from two clicked corners."""
    x0, x1 = sorted((int(p[0]), int(q[0])))
    y0, y1 = sorted((int(p[1]), int(q[1])))
    return x0, y0, x1 + 1, y1 + 1


def video_preview_frame(value: Any, cfg: DemoConfig):
    """The first frame of an uploaded video, as the box is drawn on it.

    The picture is decoded as the prompt's frames are (longer side at most
    ``cfg.video_max_side``); boxes are given in the file's own pixels, as ``promptsep separate
    --box`` takes them (:func:`box_from_preview` / :func:`box_to_preview` map between the two).

    Returns:
        ``(picture [h, w, 3] uint8, (W, H) of the file)``, or None without a video.

    Raises:
        VideoError: too large or unreadable video.
    """
    from demo.plots import box_picture
    from prompts.video import load_video, video_geometry

    path = _path_of(value)
    if path is None:
        return None
    check_file_size(path, cfg, "video")
    width, height, _ = video_geometry(path)
    frame = box_picture(load_video(path, max_frames=1, max_side=cfg.video_max_side).frames[0])
    return frame, (width or frame.shape[1], height or frame.shape[0])


def box_from_preview(box: Sequence[int], picture_size: tuple[int, int], file_size: tuple[int, int]):
    """A box drawn on the preview picture (``picture_size = (w, h)``) in the file's pixels."""
    from prompts.video import scale_box

    return scale_box(tuple(box), picture_size, file_size)


def box_to_preview(box: Sequence[int], picture_size: tuple[int, int], file_size: tuple[int, int]):
    """A box in the file's pixels as drawn on the preview picture (``picture_size = (w, h)``)."""
    from prompts.video import scale_box

    return scale_box(tuple(box), file_size, picture_size)


def load_video_prompt(
    value: Any, box: tuple[int, int, int, int] | None, mask_value: Any, duration_s: float, cfg: DemoConfig
):
    """The uploaded video as the prompt for ``duration_s`` seconds of audio, with the box or mask.

    The CLI's path (:func:`prompts.video.load_video_prompt`) with this demo's limits: upload
    size, ``max_video_duration_s``, frames decoded at ``video_max_side``. The box is in the
    file's own pixels; a mask image, when given, is used instead of the box.

    Returns:
        The validated :class:`prompts.types.VideoPrompt`, or None without a video.

    Raises:
        VideoError: no box and no mask, unreadable video or mask, too large, video shorter than
            the audio, a box outside the frame, or a mask with no white pixel.
    """
    from prompts.video import load_video_prompt as load_prompt

    path = _path_of(value)
    if path is None:
        return None
    check_file_size(path, cfg, "video")
    if duration_s > cfg.max_video_duration_s:
        raise VideoError(
            f"with a video prompt the audio may be at most {cfg.max_video_duration_s:g} s long, it is {duration_s:.1f} s"
        )
    mask = _path_of(mask_value)
    if mask is not None:
        check_file_size(mask, cfg, "mask image")
    elif box is None:
        raise VideoError(
            "the video prompt needs a box around the target object: click two corners on the first frame "
            "or type x0, y0, x1, y1 (or upload a mask image)"
        )
    return load_prompt(path, duration_s, box=None if mask is not None else box, mask=mask,
                       max_side=cfg.video_max_side)


def guidance_map(scale: float, text: str | None, spans, video) -> dict[str, float] | None:
    """One guidance scale applied to every prompt kind that is given (None at scale 1)."""
    scale = float(scale)
    if not math.isfinite(scale) or scale <= 0:
        raise PromptError(f"guidance must be a positive number, got {scale}")
    if scale == 1.0:
        return None
    kinds = [k for k, on in (("text", bool(text)), ("span", bool(spans)), ("video", video is not None)) if on]
    return {k: scale for k in kinds} or None


def clamp_int(value: Any, lo: int, hi: int, name: str) -> int:
    """An integer setting within ``[lo, hi]`` (a clear error otherwise)."""
    try:
        v = int(round(float(value)))
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be a whole number, got {value!r}") from exc
    if not lo <= v <= hi:
        raise InputError(f"{name} must be between {lo} and {hi}, got {v}")
    return v


# --------------------------------------------------------------------------- scores
def judge_scores(judge, mixture, estimate, text: str | None, sample_rate: int) -> dict[str, float] | None:
    """The judge's four scores (1-5) for a mono downmix, or None without a judge or text prompt."""
    if judge is None or not text:
        return None
    mix = mixture.mean(0) if mixture.dim() == 2 else mixture
    est = estimate.mean(0) if estimate.dim() == 2 else estimate
    s = judge.score(mix, est, text, sample_rate)
    return {k: round(float(getattr(s, k)), 3) for k in SCORE_FIELDS}


# --------------------------------------------------------------------------- separation
@dataclass
class SeparationOutput:
    """One demo separation: files written in the request folder plus the tensors and info."""

    target_path: Path
    residual_path: Path
    mixture: Any  # [C, N]
    target: Any
    residual: Any
    sample_rate: int
    spans: list[tuple[str, float, float]]
    scores: dict[str, float] | None
    seconds: float
    audio_seconds: float
    info: dict[str, Any]


def run_separation(
    separator,
    judge,
    cfg: DemoConfig,
    out_dir: Path,
    audio: Any,
    text: str | None = None,
    span_table: Any = None,
    video: Any = None,
    box: tuple[int, int, int, int] | None = None,
    mask: Any = None,
    steps: Any = None,
    guidance: Any = 1.0,
    candidates: Any = 1,
    method: str | None = None,
    seed: Any = 0,
    stem: str = "",
) -> SeparationOutput:
    """Check the inputs, separate, score and write ``target.wav``/``residual.wav`` to ``out_dir``.

    ``steps`` / ``method`` None (or empty) use the separator release's recommended sampling.

    Raises:
        InputError: anything wrong with the audio, prompts or settings (message names it).
    """
    from promptsep.audio import provenance, save_audio

    t0 = time.perf_counter()
    wav, sr = read_audio(audio, cfg, video=video)
    dur = wav.shape[-1] / sr
    text = (text or "").strip() or None
    spans = parse_span_table(span_table, dur)
    vid = load_video_prompt(video, box, mask, dur, cfg) if _path_of(video) else None
    if box is not None and vid is None:
        raise VideoError("a box was given but no video: upload the video that shows the target")
    if text is None and not spans and vid is None:
        raise PromptError("give a prompt: describe the sound in the text box, add a time span, or upload a video with a box")
    steps_i = None if steps in (None, "") else clamp_int(steps, 1, cfg.max_steps, "steps")
    cand_i = clamp_int(candidates, 1, cfg.max_candidates, "candidates")
    seed_i = clamp_int(seed if seed not in (None, "") else 0, 0, 2**31 - 1, "seed")
    method = method or None
    if method is not None and method not in METHODS:
        raise InputError(f"sampler must be one of {', '.join(METHODS)}, got {method!r}")
    # Candidates are ranked by the judge (which needs text) or by span activity; with neither
    # there is nothing to rank them by, so one candidate is drawn.
    ranker = None if text else ("activity" if spans else None)
    if ranker is None and text is None:
        cand_i = 1
    res = separator.separate(
        wav, sr, text=text, spans=spans or None, video=vid, steps=steps_i, method=method, candidates=cand_i,
        guidance=guidance_map(guidance, text, spans, vid), seed=seed_i, ranker=ranker,
    )
    _check_finite(res)
    scores = judge_scores(judge, wav, res.target, text, sr)
    prefix = f"{stem}_" if stem else ""
    # The comment names the prompt and the request folder: it documents the file, and it keeps
    # the bytes of every request's stems distinct for Gradio's content-addressed output cache.
    note = provenance(f"request {Path(out_dir).name}", text, spans, vid is not None)
    tpath = save_audio(out_dir / f"{prefix}target.wav", res.target, res.sample_rate, comment=f"target; {note}")
    rpath = save_audio(out_dir / f"{prefix}residual.wav", res.residual, res.sample_rate,
                       comment=f"residual; {note}")
    return SeparationOutput(tpath, rpath, wav, res.target, res.residual, res.sample_rate, spans, scores,
                            time.perf_counter() - t0, dur, dict(res.info))


def _check_finite(res) -> None:
    """Refuse stems with NaN/Inf samples (a damaged model or settings): nothing is written."""
    import torch

    bad = [k for k in ("target", "residual") if not bool(torch.isfinite(getattr(res, k)).all())]
    if bad:
        raise InputError(f"the separated {' and '.join(bad)} came out with NaN/Inf samples; nothing was written "
                         "(try guidance 1 and the recommended steps, or another checkpoint)")


def score_markdown(scores: dict[str, float] | None, judge_loaded: bool, has_text: bool) -> str:
    """The judge's scores as labelled numbers with what each means (Markdown)."""
    if scores is None:
        if not judge_loaded:
            return "**Judge scores:** no judge loaded (start the demo with `--judge DIR`)."
        return "**Judge scores:** the judge needs a text prompt to score the result." if not has_text else ""
    rows = "\n".join(f"- **{k}: {scores[k]:.2f}**, {SCORE_MEANING[k]}" for k in SCORE_FIELDS if k in scores)
    return ("**Judge scores** (1 = poor, 5 = excellent; a small learned judge's estimate, no reference needed)\n\n"
            + rows)


def timing_text(out: SeparationOutput) -> str:
    """One line: how long it took, relative to the audio length."""
    rtf = out.seconds / max(out.audio_seconds, 1e-9)
    info = out.info
    steps, cands = info.get("steps"), info.get("candidates")
    extra = (f" · {steps} step{'' if steps == 1 else 's'} · {cands} candidate{'' if cands == 1 else 's'}"
             f" · {info.get('method')}")
    return f"Separated {out.audio_seconds:.2f} s of audio in {out.seconds:.2f} s ({rtf:.2f}x real time){extra}"


# --------------------------------------------------------------------------- batch
def safe_stem(name: str, taken: set[str]) -> str:
    """A file-system-safe, unique stem for an uploaded file name."""
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(name).stem)[:60] or "audio"
    out, k = stem, 1
    while out in taken:
        k += 1
        out = f"{stem}_{k}"
    taken.add(out)
    return out


def run_batch(
    separator,
    judge,
    cfg: DemoConfig,
    out_dir: Path,
    files: Sequence[Any],
    text: str | None,
    steps: Any = None,
    candidates: Any = 1,
    progress=None,
) -> tuple[Path, Path, list[list[Any]]]:
    """Separate several files with one text prompt.

    Returns:
        ``(zip of stems, CSV of scores, table rows)``. Per-file problems are recorded in the
        CSV's ``error`` column; the batch fails only if no file could be separated.

    Raises:
        InputError: no files, too many, no prompt, or every file failed.
    """
    paths = [p for p in (_path_of(f) for f in (files or [])) if p]
    if not paths:
        raise AudioError("no files: upload one or more audio files for the batch")
    if len(paths) > cfg.max_batch_files:
        raise AudioError(f"{len(paths)} files is over the batch limit of {cfg.max_batch_files}")
    text = (text or "").strip()
    if not text:
        raise PromptError("the batch needs a text prompt that describes the sound to isolate")
    steps_i = None if steps in (None, "") else clamp_int(steps, 1, cfg.max_steps, "steps")
    cand_i = clamp_int(candidates, 1, cfg.max_candidates, "candidates")
    stems_dir = out_dir / "stems"
    header = BATCH_HEADERS
    rows: list[list[Any]] = []
    taken: set[str] = set()
    n_ok = 0
    for i, path in enumerate(paths):
        name = Path(path).name
        if progress is not None:
            progress((i, len(paths)), desc=f"separating {name} ({i + 1}/{len(paths)})")
        stem = safe_stem(name, taken)
        try:
            out = run_separation(separator, judge, cfg, stems_dir / stem, path, text=text, steps=steps_i,
                                 candidates=cand_i)
        except InputError as exc:
            logger.info("batch: %s skipped: %s", name, exc)
            rows.append([name, None, None, *([None] * len(SCORE_FIELDS)), str(exc)])
            continue
        n_ok += 1
        sc = out.scores or {}
        rows.append([name, round(out.audio_seconds, 3), round(out.seconds, 3), *(sc.get(k) for k in SCORE_FIELDS), ""])
    if progress is not None:
        progress((len(paths), len(paths)), desc="writing the zip")
    if n_ok == 0:
        raise AudioError("no file of the batch could be separated: " + "; ".join(f"{r[0]}: {r[-1]}" for r in rows))
    csv_path = out_dir / "scores.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows([["" if v is None else v for v in r] for r in rows])
    zip_path = out_dir / "stems.zip"
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for p in sorted(stems_dir.rglob("*.wav")):
            z.write(p, p.relative_to(stems_dir).as_posix())
        z.write(csv_path, "scores.csv")
    return zip_path, csv_path, [header, *rows]


__all__ = [
    "DemoConfig", "Workspace", "SeparationOutput", "run_separation", "run_batch", "parse_span_table", "parse_box",
    "order_box", "read_audio", "load_video_prompt", "video_preview_frame", "box_from_preview", "box_to_preview", "judge_scores", "guidance_map", "timing_text", "SCORE_FIELDS",
    "score_markdown", "BATCH_HEADERS",
]
