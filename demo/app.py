"""The promptsep Gradio app: isolate a sound from a recording with a text, span or video prompt.

``build_demo(separator, judge)`` returns a ``gr.Blocks`` (nothing is loaded at import; no
module globals hold models); ``main(argv)`` is the ``promptsep demo`` launcher::

    promptsep demo                                   # the shipped models on 127.0.0.1:7860
    promptsep demo --checkpoint DIR --judge DIR --host 0.0.0.0 --port 8080 --share

The UI is a thin layer over :mod:`demo.core` (checks, separation, scoring, files) and
:mod:`demo.plots` (pictures). Every user mistake raises
:class:`promptsep.errors.InputError`, shown as a ``gr.Error`` pop-up; the app keeps serving.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from demo.core import SCORE_FIELDS, DemoConfig, Workspace
from promptsep.cli import DEFAULT_CHECKPOINT, DEFAULT_JUDGE, default_checkpoint
from promptsep.release import examples_dir

if TYPE_CHECKING:  # pragma: no cover
    import gradio as gr

logger = logging.getLogger(__name__)

#: Bundled examples, found through the installed package (the default models are promptsep.cli's).
DEFAULT_EXAMPLES = examples_dir()

SPAN_HEADERS = ["sign (+/-)", "start (s)", "end (s)"]

INTRO = """\
# promptsep: isolate a sound with a prompt
Give a recording and say which sound you want: **describe it** in words (the model knows the labels listed
in the *About* tab, e.g. "woman speaking", "trumpet", "door"), **mark time spans** where it is audible (+)
or silent (-), or **upload a video** and draw a box around the object that makes it (without an audio file the
video's own sound is separated; the Video prompt section says what the loaded model can do with video). You get the isolated
*target*, the *residual* (everything else; target + residual = your recording), spectrograms, and, when a
judge model is loaded, its scores of the result (1 = poor, 5 = excellent).
"""

CSS = """
#ps-run {min-height: 3em; font-size: 1.1em}
.ps-hint {opacity: 0.75; font-size: 0.9em}
#ps-status {border: 1px solid #d04040; background: #fff1f0; color: #7a1010; padding: 0.4em 0.9em; border-radius: 6px}
"""


# ----------------------------------------------------------------- error mapping
_DIRS = re.compile(r"(?<![\w.])/(?:[^/\s'\"]+/)+")


def _hide_paths(message: str) -> str:
    """Drop server folders from a message (``/tmp/gradio/<hash>/a.wav`` -> ``a.wav``)."""
    return _DIRS.sub("", message)


def user_message(exc: BaseException) -> str:
    """What to tell the user about a failed request (no tracebacks, no server paths)."""
    from promptsep.errors import InputError

    if isinstance(exc, InputError):
        return _hide_paths(str(exc))
    if isinstance(exc, FileNotFoundError):
        return _hide_paths(f"file not found: {exc}")
    return _hide_paths(f"separation failed ({type(exc).__name__}): {exc}")


def _user_errors(fn: Callable) -> Callable:
    """For API endpoints: show :class:`InputError` messages as ``gr.Error`` and hide tracebacks of anything else."""
    import gradio as gr

    from promptsep.errors import InputError

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            if not isinstance(exc, (InputError, FileNotFoundError)):  # keep serving; log it for the operator
                logger.exception("demo request failed")
            raise gr.Error(user_message(exc), print_exception=False) from None

    return wrapper


def _keep_results(n_outputs: int) -> Callable[[Callable], Callable]:
    """For the UI: on failure leave the ``n_outputs`` result panels as they were (no "Error" badge on
    each of them) and put the message in the status line, the last output."""
    import gradio as gr

    from promptsep.errors import InputError

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return (*fn(*args, **kwargs), gr.update(value="", visible=False))
            except Exception as exc:
                if not isinstance(exc, (InputError, FileNotFoundError)):
                    logger.exception("demo request failed")
                msg = user_message(exc).replace("\n", " ")
                status = f"**Error:** {msg}\n\nThe results shown are from your last successful run (if any)."
                return (*(gr.skip() for _ in range(n_outputs)), gr.update(value=status, visible=True))

        return wrapper

    return deco


def _none_means_empty(table) -> None:
    """Let a Dataframe input take no value at all (``span_table=None`` through the API) as an empty
    table; Gradio's own preprocessing fails on None. (An instance attribute, not a subclass: Gradio
    writes a ``.pyi`` file next to the module of every Component subclass.)"""
    orig = table.preprocess

    def preprocess(payload):
        return [] if payload is None else orig(payload)

    table.preprocess = preprocess


def _pictures(out_dir: Path, pictures: dict[str, Any]) -> list[str]:
    """Write each ``[H, W, 3]`` picture as ``<name>.png`` in the request folder; their paths.

    Each PNG carries the request id, so no two responses hand Gradio byte-identical files.
    """
    from demo import plots

    meta = {"Software": "promptsep", "Comment": f"promptsep request {Path(out_dir).name}"}
    return [plots.save_png(pic, Path(out_dir) / f"{name}.png", meta) for name, pic in pictures.items()]


def _quiet(n_outputs: int = 1) -> Callable[[Callable], Callable]:
    """For live previews: never raise; show a warning and leave the ``n_outputs`` outputs as they are."""
    import gradio as gr

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                logger.debug("preview failed: %s", exc)
                gr.Warning(_hide_paths(str(exc)))
                return gr.skip() if n_outputs == 1 else tuple(gr.skip() for _ in range(n_outputs))

        return wrapper

    return deco


# ----------------------------------------------------------------- examples
def load_examples(examples_dir: str | Path | None) -> list[dict[str, Any]]:
    """Bundled examples from ``examples.json`` (``file``, ``text``, optional ``spans``) whose files exist."""
    if examples_dir is None:
        return []
    d = Path(examples_dir)
    index = d / "examples.json"
    if not index.is_file():
        return []
    try:
        items = json.loads(index.read_text())
    except (OSError, ValueError) as exc:
        logger.warning("cannot read %s: %s", index, exc)
        return []
    out = []
    for it in items:
        p = d / it.get("file", "")
        if p.is_file() and it.get("text"):
            out.append({**it, "path": str(p)})
    return out


def _release(path: str | None) -> dict | None:
    """``promptsep info``'s view of a release folder, or None (in-memory model, unreadable folder)."""
    if not path:
        return None
    from promptsep.cli import CliError, release_info

    try:
        return release_info(path)
    except (CliError, OSError, ValueError):
        return None


def _params(info: dict | None, module) -> str:
    if info is not None:
        parts = ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in info["parameters"].items() if v >= 5000)
        return f"{info['total_parameters'] / 1e6:.2f} M parameters in the release ({parts})"
    try:
        n = sum(p.numel() for p in module.parameters())
    except Exception:
        return "size unknown"
    return f"{n / 1e6:.2f} M parameters"


def model_summary(separator, judge, cfg: DemoConfig, checkpoint: str | None, judge_path: str | None) -> str:
    """Markdown for the About tab: what the models are and what they measured (from their model
    cards), the labels the separator knows, and this server's limits. No server paths."""
    sep = _release(checkpoint)
    jdg = _release(judge_path) if judge is not None else None
    name = Path(sep["path"]).name if sep else "a separator loaded in memory"
    lines = ["### Separator", f"**{name}**: {_params(sep, getattr(separator, 'model', None))}, "
             f"{getattr(separator, 'sample_rate', '?')} Hz."]
    if sep and sep["summary"]:
        lines += ["", sep["summary"]]
    if hasattr(separator, "sampling"):
        steps, method = separator.sampling()
        lines += ["", f"Recommended sampling: {method}, {steps} step(s) (the default of the Settings)."]
    if sep and sep["quality_si_sdri"]:
        lines += ["", "Measured on held-out test mixtures (SI-SDR improvement over the mixture, mean [95 % CI]):", ""]
        lines += [f"- {q}" for q in sep["quality_si_sdri"]]
    if sep and sep["labels"]:
        labels = sep["labels"]
        lines += ["", f"It was trained on {len(labels)} labels; other prompts are outside what it knows:", ""]
        for cat in sorted(set(labels.values())):
            names = sorted(k for k, v in labels.items() if v == cat)
            lines.append(f"- {cat}: {', '.join(names)}")
    if sep and sep["limits"]:
        lines += ["", "Limits:", ""] + [f"- {item}" for item in sep["limits"]]
    lines += ["", "### Judge"]
    if judge is None:
        lines.append("Not loaded (start the demo with `--judge DIR` to get scores and judge re-ranking).")
    else:
        jname = Path(jdg["path"]).name if jdg else "a judge loaded in memory"
        lines.append(f"**{jname}**: {_params(jdg, judge)}.")
        if jdg and jdg["summary"]:
            lines += ["", jdg["summary"]]
    lines += ["", "### Limits of this demo",
              f"- uploads up to {cfg.max_file_mb:g} MB; audio up to {cfg.max_duration_s:g} s "
              f"({cfg.max_video_duration_s:g} s with a video prompt); batches up to {cfg.max_batch_files} files",
              f"- {cfg.concurrency_limit} separation(s) run at once, up to {cfg.queue_max_size} wait in the queue",
              "- results and uploads are deleted from the server after a while; download what you want to keep"]
    return "\n".join(lines)


def video_note(checkpoint: str | None, separate_release: bool = False) -> str:
    """What the separator that serves video prompts can do with them, from its release (Markdown).

    The measured figure is the one ``promptsep info`` shows (the model card's ``per_prompt_kind``
    ``video`` row, :func:`promptsep.cli.video_figure`), followed by what the card's *Where it
    fails* section says of video and the video tower in the release's config. A release without
    a video figure (or a separator loaded in memory) gets a note that video was not measured.

    Args:
        checkpoint: the release folder that serves video prompts.
        separate_release: True when it is not the page's main separator (the note names it).
    """
    from promptsep.cli import card_section, format_figure

    sep = _release(checkpoint)
    intro = []
    if separate_release and checkpoint:
        intro = [f"Requests with a video prompt (a box or a mask) are separated by **{Path(checkpoint).name}**, "
                 "the release whose visual path was trained, at its own recommended sampling (unless you change "
                 "the steps or the sampler); requests without one use the page's main separator."]
    figure = (sep or {}).get("video_si_sdri")
    if figure is None:
        return "\n\n".join(intro + [
            "**Video prompts were not measured for this model** (its release has no video figure): the "
            "controls below run, but how much the video helps is unknown. Text and span prompts are the "
            "measured ones (About tab)."])
    lines = intro + [f"**This model's video prompts:** SI-SDR improvement {format_figure(figure)} (mean [95 % CI]) on "
             "the test mixtures of its model card that have a video prompt."]
    lines += [f"The card says: {r}" for r in card_section(Path(sep["path"]), "Where it fails") if "video" in r.lower()]
    tower = (sep.get("config") or {}).get("video") or {}
    if tower.get("model_name"):
        start = f"pretrained ({tower['pretrained']})" if tower.get("pretrained") else "random initialisation"
        state = (f"trained with the separator from {start}" if tower.get("trainable") else f"{start}, frozen")
        lines.append(f"Its video tower: {tower['model_name']}, {state}.")
    if figure["mean"] <= 0:
        lines.append("That is no better than the mixture: the controls below run, but for a useful result "
                     "describe the sound in words or mark time spans.")
    return "\n\n".join(lines)


# ----------------------------------------------------------------- the app
def build_demo(
    separator,
    judge=None,
    config: DemoConfig | None = None,
    examples_dir: str | Path | None = DEFAULT_EXAMPLES,
    checkpoint: str | None = None,
    judge_path: str | None = None,
    video_separator=None,
    video_checkpoint: str | None = None,
) -> gr.Blocks:
    """Build the Gradio app over a loaded separator (and optional judge).

    Args:
        separator: a :class:`separation.separator.Separator` (anything with its ``separate``).
        judge: optional judge with ``score(mixture, estimate, text, sample_rate)`` -> four scores.
        config: limits and defaults (:class:`demo.core.DemoConfig`).
        examples_dir: folder with ``examples.json`` and the bundled example audio (None: no examples).
        checkpoint / judge_path: shown in the About tab.
        video_separator: optional second separator for requests with a video prompt (box or mask),
            e.g. ``promptsep-v2-video``; None: ``separator`` serves them too.
        video_checkpoint: its release folder (the video section's note reads its model card).

    Returns:
        The ``gr.Blocks`` app with its queue configured. Launch it with :func:`launch_demo`
        (which applies the upload size cap) or ``demo.launch(max_file_size=...)``.
    """
    import gradio as gr

    from demo import core, plots

    cfg = config or DemoConfig()
    rec_steps, rec_method = (separator.sampling() if hasattr(separator, "sampling") else (16, "midpoint"))
    steps_from_release = cfg.default_steps is None  # the slider's default is the main release's recommendation
    if cfg.default_steps is None:
        cfg = dataclasses.replace(cfg, default_steps=min(int(rec_steps), cfg.max_steps))
    ws = Workspace(keep_s=cfg.keep_outputs_s)
    examples = load_examples(examples_dir)
    steps_label = f"steps (ODE evaluations): this release recommends {int(rec_steps)}, with the {rec_method} sampler"

    # ------------------------------------------------------------- handlers
    def _separate(audio, text, span_table, video, x0, y0, x1, y1, mask, steps, guidance, candidates, method, seed,
                  progress):
        progress(0.05, desc="checking the input")
        box = core.parse_box(x0, y0, x1, y1)
        out_dir = ws.request_dir()
        name = core._path_of(audio) or core._path_of(video)  # no audio: the video's sound track
        stem = core.safe_stem(Path(name).name, set()) if name else ""
        progress(0.2, desc="separating")
        sep = separator
        if video_separator is not None and core._path_of(video) is not None and (box is not None or mask is not None):
            sep = video_separator  # the release with a trained visual path
            # settings left at the main release's recommendation: the video release's own recommended ones
            if steps_from_release and steps not in (None, "") and int(steps) == cfg.default_steps:
                steps = None
            if method in (None, "", rec_method):
                method = None
        out = core.run_separation(sep, judge, cfg, out_dir, audio, text=text, span_table=span_table,
                                  video=video, box=box, mask=mask, steps=steps, guidance=guidance,
                                  candidates=candidates, method=method, seed=seed, stem=stem)
        progress(0.85, desc="drawing")
        sr = out.sample_rate
        pictures = _pictures(out_dir, {
            "mixture_spectrogram": plots.spectrogram_picture(out.mixture, sr, "mixture"),
            "target_spectrogram": plots.spectrogram_picture(out.target, sr, "target"),
            "residual_spectrogram": plots.spectrogram_picture(out.residual, sr, "residual"),
            "waveform": plots.waveform_picture(out.mixture, sr, out.spans),
        })
        has_text = bool((text or "").strip())
        return out, pictures, core.score_markdown(out.scores, judge is not None, has_text)

    @_user_errors
    def separate(audio, text, span_table, video, x0, y0, x1, y1, mask, steps, guidance, candidates, method, seed,
                 progress=gr.Progress()):  # noqa: B008
        """API endpoint: scores as a JSON object; errors raise."""
        out, pictures, _ = _separate(audio, text, span_table, video, x0, y0, x1, y1, mask, steps, guidance,
                                     candidates, method, seed, progress)
        if out.scores is not None:
            scores = out.scores
        elif judge is None:
            scores = {"judge": "not loaded"}
        else:
            scores = {"judge": "needs a text prompt to score the result"}
        return (str(out.target_path), str(out.residual_path), [str(out.target_path), str(out.residual_path)],
                scores, core.timing_text(out), *pictures)

    @_keep_results(9)
    def separate_ui(audio, text, span_table, video, x0, y0, x1, y1, mask, steps, guidance, candidates, method, seed,
                    progress=gr.Progress()):  # noqa: B008
        """The page: scores as labelled numbers; an error keeps the last results and shows the message."""
        out, pictures, score_md = _separate(audio, text, span_table, video, x0, y0, x1, y1, mask, steps, guidance,
                                            candidates, method, seed, progress)
        return (str(out.target_path), str(out.residual_path), [str(out.target_path), str(out.residual_path)],
                score_md, core.timing_text(out), *pictures)

    def _batch(files, text, steps, candidates, progress):
        out_dir = ws.request_dir()
        zip_path, csv_path, table = core.run_batch(separator, judge, cfg, out_dir, files, text, steps=steps,
                                                   candidates=candidates, progress=progress)
        errors = [r for r in table[1:] if r[-1]]
        if errors:
            gr.Warning(f"{len(errors)} file(s) skipped, see the error column")
        return str(zip_path), str(csv_path), {"headers": table[0], "data": table[1:]}

    @_user_errors
    def batch(files, text, steps, candidates, progress=gr.Progress()):  # noqa: B008
        return _batch(files, text, steps, candidates, progress)

    @_keep_results(3)
    def batch_ui(files, text, steps, candidates, progress=gr.Progress()):  # noqa: B008
        return _batch(files, text, steps, candidates, progress)

    @_quiet(1)
    def draw_waveform(audio, span_table):
        if core._path_of(audio) is None:
            return None
        wav, sr = core.read_audio(audio, cfg)
        try:
            spans = core.parse_span_table(span_table, None)
        except Exception:
            spans = []
        return plots.waveform_picture(wav, sr, spans)

    def add_span(table, sign, start, end):
        rows = [r for r in core.table_rows(table) if any(core._cell(c) for c in r)]
        if start is None or end is None:
            gr.Warning("set the start and end of the span first")
            return gr.skip()
        if not float(start) < float(end):
            gr.Warning(f"a span needs start < end, got {float(start):g} and {float(end):g}")
            return gr.skip()
        rows.append([sign, float(start), float(end)])
        return {"headers": SPAN_HEADERS, "data": rows}

    def clear_spans():
        return {"headers": SPAN_HEADERS, "data": [["", None, None]]}

    @_quiet(3)
    def video_preview(video):
        preview = core.video_preview_frame(video, cfg)
        if preview is None:
            return None, None, ""
        frame, (width, height) = preview
        h, w = frame.shape[:2]
        shown = "" if (w, h) == (width, height) else f", shown at {w}x{h}"
        return frame, preview, (f"first frame, {width}x{height} px{shown}: click two opposite corners of the target, "
                                "or type the box in the video's own pixels")

    def draw_box(state, x0, y0, x1, y1):
        if state is None:
            return gr.skip()
        frame, size = state
        try:
            box = core.parse_box(x0, y0, x1, y1)
        except Exception:
            box = None
        picture = (frame.shape[1], frame.shape[0])
        return plots.box_picture(frame, None if box is None else core.box_to_preview(box, picture, size))

    def click_corner(state, corner, evt: gr.SelectData):
        if state is None or evt is None or evt.index is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        frame, size = state
        x, y = int(evt.index[0]), int(evt.index[1])
        if corner is None:
            return plots.point_picture(frame, (x, y)), (x, y), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        x0, y0, x1, y1 = core.order_box(corner, (x, y))
        h, w = frame.shape[:2]
        box = (x0, y0, min(x1, w), min(y1, h))
        return (plots.box_picture(frame, box), None, *core.box_from_preview(box, (w, h), size))

    # Gradio finds the event-data argument by its annotation; with postponed annotations the
    # string "gr.SelectData" cannot be resolved (gr is imported locally), so set the class itself.
    click_corner.__annotations__["evt"] = gr.SelectData

    # ------------------------------------------------------------- layout
    with gr.Blocks(title=cfg.title, delete_cache=cfg.delete_cache, analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        with gr.Tab("Separate"):
            with gr.Row(equal_height=False):
                with gr.Column(scale=1):
                    audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Input audio",
                                     elem_id="ps-audio")
                    text = gr.Textbox(label="Text prompt: the sound to isolate", placeholder="e.g. woman speaking, piano, door",
                                      elem_id="ps-text", max_lines=1)
                    if examples:
                        gr.Examples(
                            examples=[[e["path"], e["text"]] for e in examples], inputs=[audio, text],
                            label="Examples (mixtures of two training-corpus clips: telephone speech, game sound "
                                  "effects, instruments rendered from MIDI; licences in examples/README.md)",
                            example_labels=[e.get("title") or Path(e["path"]).stem for e in examples],
                        )
                    with gr.Accordion("Time spans: where the target sounds (+) or is silent (-)", open=True):
                        spans = gr.Dataframe(
                            value=[["", None, None]], headers=SPAN_HEADERS, datatype=["str", "number", "number"],
                            type="array", interactive=True, label="Spans (edit the table or use the row below)",
                            elem_id="ps-spans",
                        )
                        _none_means_empty(spans)
                        with gr.Row():
                            span_sign = gr.Radio(["+", "-"], value="+", label="sign", min_width=80, scale=1)
                            span_start = gr.Number(label="start (s)", value=None, minimum=0, scale=1, min_width=80)
                            span_end = gr.Number(label="end (s)", value=None, minimum=0, scale=1, min_width=80)
                            with gr.Column(scale=1, min_width=100):
                                add_btn = gr.Button("Add span", size="sm")
                                clear_btn = gr.Button("Clear spans", size="sm")
                        waveform = gr.Image(label="Waveform with spans", type="numpy", format="png",
                                            interactive=False, elem_id="ps-waveform")
                    with gr.Accordion("Video prompt: the object that makes the sound", open=False):
                        gr.Markdown(video_note(video_checkpoint if video_separator is not None else checkpoint,
                                               separate_release=video_separator is not None),
                                    elem_id="ps-video-note")
                        video = gr.Video(sources=["upload"], include_audio=True, label="Video (covering the audio; its sound is used when no audio is given)", elem_id="ps-video")
                        frame_hint = gr.Markdown("", elem_classes=["ps-hint"])
                        frame_img = gr.Image(label="First frame: click two corners to draw the box", type="numpy",
                                             format="png", interactive=False, elem_id="ps-frame")
                        with gr.Row():
                            bx0 = gr.Number(label="x0", precision=0, minimum=0, min_width=60)
                            by0 = gr.Number(label="y0", precision=0, minimum=0, min_width=60)
                            bx1 = gr.Number(label="x1", precision=0, minimum=0, min_width=60)
                            by1 = gr.Number(label="y1", precision=0, minimum=0, min_width=60)
                        mask = gr.Image(label="or a mask image (white = target), used instead of the box", type="filepath",
                                        sources=["upload"], height=160)
                        frame_state = gr.State(None)
                        corner_state = gr.State(None)
                    with gr.Accordion("Settings", open=False):
                        steps = gr.Slider(1, cfg.max_steps, value=cfg.default_steps, step=1, label=steps_label,
                                          elem_id="ps-steps")
                        guidance = gr.Slider(1.0, 5.0, value=cfg.default_guidance, step=0.25,
                                             label="guidance (1 = none; >1 follows the prompt more, costs an extra pass)")
                        candidates = gr.Slider(1, cfg.max_candidates, value=1, step=1,
                                               label="candidates (draw K results, keep the best by the judge)")
                        with gr.Row():
                            method = gr.Dropdown(list(core.METHODS), value=rec_method, label="sampler")
                            seed = gr.Number(value=0, precision=0, minimum=0, label="seed")
                    run = gr.Button("Separate", variant="primary", elem_id="ps-run")
                    api_run = gr.Button("separate (API)", visible=False)
                with gr.Column(scale=1):
                    status = gr.Markdown("", visible=False, elem_id="ps-status")
                    target_audio = gr.Audio(label="Target (the prompted sound)", type="filepath", interactive=False,
                                            elem_id="ps-target")
                    residual_audio = gr.Audio(label="Residual (everything else)", type="filepath", interactive=False,
                                              elem_id="ps-residual")
                    timing = gr.Markdown("", label="time", elem_id="ps-timing")
                    scores = gr.Markdown("", elem_id="ps-scores")
                    scores_json = gr.JSON(visible=False)  # the API's scores
                    downloads = gr.File(label="Download stems", file_count="multiple", interactive=False,
                                        elem_id="ps-downloads")
                    spec_mix = gr.Image(label="Mixture spectrogram", type="numpy", format="png", interactive=False)
                    spec_tgt = gr.Image(label="Target spectrogram", type="numpy", format="png", interactive=False)
                    spec_res = gr.Image(label="Residual spectrogram", type="numpy", format="png", interactive=False)

        with gr.Tab("Batch"):
            gr.Markdown("Separate several files with one text prompt; get a zip of the stems and a CSV of judge scores.")
            with gr.Row(equal_height=False):
                with gr.Column():
                    b_files = gr.File(label="Audio files", file_count="multiple", type="filepath", file_types=["audio"])
                    b_text = gr.Textbox(label="Text prompt", placeholder="e.g. woman speaking", max_lines=1)
                    with gr.Row():
                        b_steps = gr.Slider(1, cfg.max_steps, value=cfg.default_steps, step=1, label=steps_label)
                        b_cands = gr.Slider(1, cfg.max_candidates, value=1, step=1, label="candidates")
                    b_run = gr.Button("Separate all", variant="primary")
                with gr.Column():
                    b_zip = gr.File(label="Stems (zip)", interactive=False)
                    b_csv = gr.File(label="Scores (CSV)", interactive=False)
                    b_status = gr.Markdown("", visible=False)
                    b_table = gr.Dataframe(value=[["", None, None, *([None] * len(core.SCORE_FIELDS)), ""]],
                                           headers=core.BATCH_HEADERS, label="Results", interactive=False,
                                           elem_id="ps-batch-table")

        with gr.Tab("About"):
            gr.Markdown(model_summary(separator, judge, cfg, checkpoint, judge_path))

        # --------------------------------------------------------- events
        ui = {"api_visibility": "private", "concurrency_limit": None, "show_progress": "hidden"}
        sep_inputs = [audio, text, spans, video, bx0, by0, bx1, by1, mask, steps, guidance, candidates, method, seed]
        ui_outputs = [target_audio, residual_audio, downloads, scores, timing, spec_mix, spec_tgt, spec_res, waveform,
                      status]
        for trigger in (run.click, text.submit):
            trigger(separate_ui, sep_inputs, ui_outputs, api_visibility="private", concurrency_id="separation",
                    concurrency_limit=cfg.concurrency_limit)
        api_run.click(
            separate, sep_inputs,
            [target_audio, residual_audio, downloads, scores_json, timing, spec_mix, spec_tgt, spec_res, waveform],
            api_name="separate", concurrency_id="separation", concurrency_limit=cfg.concurrency_limit,
        )
        b_run.click(batch_ui, [b_files, b_text, b_steps, b_cands], [b_zip, b_csv, b_table, b_status],
                    api_visibility="private", concurrency_id="separation", concurrency_limit=cfg.concurrency_limit)
        b_api = gr.Button("batch (API)", visible=False)
        b_api.click(batch, [b_files, b_text, b_steps, b_cands], [b_zip, b_csv, b_table], api_name="batch",
                    concurrency_id="separation", concurrency_limit=cfg.concurrency_limit)
        audio.change(draw_waveform, [audio, spans], waveform, **ui)
        spans.input(draw_waveform, [audio, spans], waveform, **ui)
        add_btn.click(add_span, [spans, span_sign, span_start, span_end], spans, **ui).then(
            draw_waveform, [audio, spans], waveform, **ui)
        clear_btn.click(clear_spans, None, spans, **ui).then(draw_waveform, [audio, spans], waveform, **ui)
        video.change(video_preview, video, [frame_img, frame_state, frame_hint], **ui).then(
            lambda: None, None, corner_state, **ui)
        for box_field in (bx0, by0, bx1, by1):
            box_field.input(draw_box, [frame_state, bx0, by0, bx1, by1], frame_img, **ui)
        frame_img.select(click_corner, [frame_state, corner_state], [frame_img, corner_state, bx0, by0, bx1, by1], **ui)

    demo.queue(default_concurrency_limit=cfg.concurrency_limit, max_size=cfg.queue_max_size)
    demo.promptsep_config = cfg  # read by launch_demo
    demo.promptsep_workspace = ws
    return demo


def launch_demo(
    demo: gr.Blocks,
    host: str = "127.0.0.1",
    port: int | None = None,
    share: bool = False,
    prevent_thread_lock: bool = False,
    quiet: bool = False,
    **kwargs,
):
    """Launch with the demo's upload cap (``max_file_size``), theme and CSS; returns ``demo.launch``'s value."""
    import gradio as gr

    cfg: DemoConfig = getattr(demo, "promptsep_config", DemoConfig())
    return demo.launch(
        server_name=host, server_port=port, share=share, prevent_thread_lock=prevent_thread_lock, quiet=quiet,
        max_file_size=cfg.max_file_bytes, theme=gr.themes.Soft(), css=CSS, footer_links=["api", "gradio"],
        **kwargs,
    )


def close_demo(demo: gr.Blocks) -> None:
    """Stop the server and delete the demo's files."""
    try:
        demo.close()
    finally:
        ws = getattr(demo, "promptsep_workspace", None)
        if ws is not None:
            ws.close()


# ----------------------------------------------------------------- launcher
def _parser() -> argparse.ArgumentParser:
    d = DemoConfig()
    p = argparse.ArgumentParser(prog="promptsep demo", description="Open the promptsep Gradio app.")
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT),
                   help="separator release folder or hub id (default: the shipped promptsep-v2)")
    p.add_argument("--judge", default=str(DEFAULT_JUDGE) if DEFAULT_JUDGE.is_dir() else None,
                   help="judge checkpoint folder (default: the shipped promptsep-judge-tiny when present)")
    p.add_argument("--no-judge", action="store_true", help="run without a judge (no scores)")
    p.add_argument("--video-checkpoint", default=None,
                   help="separator release for requests with a video prompt (default: --checkpoint serves them; "
                        "the shipped promptsep-v2 serves every prompt kind); 'none': --checkpoint serves them")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    p.add_argument("--examples-dir", default=str(DEFAULT_EXAMPLES), help="folder with examples.json")
    p.add_argument("--max-file-mb", type=float, default=d.max_file_mb, help="largest upload in MB")
    p.add_argument("--max-duration", type=float, default=d.max_duration_s, help="longest audio in seconds")
    p.add_argument("--concurrency", type=int, default=d.concurrency_limit, help="separations running at once")
    p.add_argument("--queue-size", type=int, default=d.queue_max_size, help="requests allowed to wait")
    p.add_argument("--steps", type=int, default=d.default_steps,
                   help="default ODE evaluations (default: the separator release's recommended)")
    return p


def video_release(checkpoint: str, video_checkpoint: str | None) -> str | None:
    """The separator release that serves video prompts, or None (``checkpoint`` serves them).

    Args:
        checkpoint: the page's main separator (``--checkpoint``).
        video_checkpoint: ``--video-checkpoint``: a release folder, ``"none"``, or None (the default:
            ``promptsep.cli.DEFAULT_VIDEO_CHECKPOINT`` when ``checkpoint`` is the shipped default and
            that release is another one, as ``promptsep separate`` does; a user's own ``--checkpoint``
            serves everything). Paths are compared resolved; the main release named again is None.
    """
    def same(x: str | Path, y: str | Path) -> bool:
        return Path(x).resolve() == Path(y).resolve()

    if video_checkpoint is not None:
        # "none", or the main release again: one separator serves every request
        return None if video_checkpoint.lower() == "none" or same(video_checkpoint, checkpoint) else video_checkpoint
    if not same(checkpoint, DEFAULT_CHECKPOINT):
        return None
    chosen = default_checkpoint(video=True)  # the CLI's choice for a video prompt
    return None if same(chosen, DEFAULT_CHECKPOINT) else str(chosen)


def main(argv: Sequence[str] | None = None) -> int:
    """``promptsep demo``: load the models and serve the app until interrupted."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from separation.separator import Separator

    judge = None
    judge_path = None if args.no_judge else args.judge
    try:
        if judge_path:
            from judge.model import Judge

            judge = Judge.from_pretrained(judge_path).eval().to(args.device)
        separator = Separator.from_pretrained(args.checkpoint, device=args.device, judge=judge)
        video_path = video_release(args.checkpoint, args.video_checkpoint)
        video_separator = (Separator.from_pretrained(video_path, device=args.device, judge=judge)
                           if video_path else None)
    except Exception as exc:  # missing folder, broken config.json / safetensors, not a separator, bad device
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"promptsep demo: error: cannot load the models: {msg}", file=sys.stderr)
        return 2
    cfg = DemoConfig(max_file_mb=args.max_file_mb, max_duration_s=args.max_duration, concurrency_limit=args.concurrency,
                     queue_max_size=args.queue_size, default_steps=args.steps)
    demo = build_demo(separator, judge, cfg, examples_dir=args.examples_dir, checkpoint=args.checkpoint,
                      judge_path=judge_path, video_separator=video_separator, video_checkpoint=video_path)
    import signal

    # SIGTERM (docker stop, systemd) unwinds like Ctrl-C so that the temporary files are removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        launch_demo(demo, host=args.host, port=args.port, share=args.share)
    finally:
        close_demo(demo)
    return 0


__all__ = ["build_demo", "launch_demo", "close_demo", "main", "load_examples", "DemoConfig", "SCORE_FIELDS"]


if __name__ == "__main__":
    sys.exit(main())
