"""The demo's video section: real video files through the CLI's path, and the note on the page.

The clips are real mp4 files written by :func:`tests.test_video_files.write_clip` (a moving
square and a noisy tone, sound muxed by ``examples/make_example_video.py``). No server is
started: :mod:`demo.core` is driven directly, and the page is built but not launched.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from tests.conftest import random_tiny_separation_model
from tests.test_video_files import _available, write_clip, write_mask

pytest.importorskip("av")
pytest.importorskip("gradio")

#: The mp4 kind of tests/test_video_files.py is 94x70 px; decoded at 47 px it is halved.
MAX_SIDE = 47
BOX = (10, 20, 50, 60)  # in the file's pixels, as `promptsep separate --box` takes it


@pytest.fixture(scope="module")
def separator():
    from separation.separator import Separator

    return Separator(random_tiny_separation_model())


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    if not _available("mp4"):
        pytest.skip("PyAV here has no H.264/AAC encoder")
    d = tmp_path_factory.mktemp("demo_video")
    write_clip(d / "clip.mp4", "mp4", video_s=1.2, audio_s=1.0)
    write_clip(d / "silent.mp4", "mp4", video_s=1.2, audio_s=None)
    write_mask(d / "mask.png", (94, 70), BOX)
    write_mask(d / "black.png", (94, 70), (0, 0, 0, 0))
    return d


def _cfg(**kw):
    from demo.core import DemoConfig

    return DemoConfig(**{"max_file_mb": 2.0, "max_video_duration_s": 5.0, "video_max_side": MAX_SIDE, **kw})


def test_a_video_without_audio_is_separated_through_the_cli_path(separator, clips, tmp_path, monkeypatch):
    """No audio file: the video's sound track is the input (as `promptsep separate clip.mp4 --box`), and the
    prompt is `prompts.video.load_video_prompt`'s, with the box in the file's pixels and the demo's size."""
    import prompts.video
    from demo.core import run_separation
    from promptsep.audio import load_audio_track

    shared = prompts.video.load_video_prompt
    made = []

    def spy(*args, **kwargs):  # the real function, recorded
        made.append((args, kwargs, shared(*args, **kwargs)))
        return made[-1][2]

    monkeypatch.setattr(prompts.video, "load_video_prompt", spy)
    out = run_separation(separator, None, _cfg(), tmp_path, None, video={"path": str(clips / "clip.mp4")},
                         box=BOX, steps=1, method="euler")
    wav, sr = load_audio_track(clips / "clip.mp4")
    assert out.sample_rate == sr and torch.equal(out.mixture, wav)  # the container's sound, untouched
    assert len(made) == 1, "the demo decodes its video prompt with prompts.video.load_video_prompt"
    (path, duration), kwargs, video = made[0]
    assert kwargs["box"] == BOX and kwargs["max_side"] == MAX_SIDE and duration == pytest.approx(wav.shape[-1] / sr)
    assert tuple(video.frames.shape[-2:]) == (35, 47) and video.box == (5, 10, 25, 30)
    assert out.target_path.name == "target.wav" and out.target_path.is_file() and out.residual_path.is_file()
    assert torch.isfinite(out.target).all()


def test_mask_image_and_video_errors_are_the_shared_ones(clips):
    from demo.core import load_video_prompt, read_audio
    from promptsep.errors import AudioError, VideoError

    cfg = _cfg()
    v = load_video_prompt(str(clips / "clip.mp4"), BOX, str(clips / "mask.png"), 1.0, cfg)  # the mask wins
    assert v.box is None and tuple(v.masks.shape[-2:]) == (35, 47)
    assert float(v.masks[0, 10:30, 5:25].mean()) == 1.0 and float(v.masks[0, :, 30:].sum()) == 0.0
    with pytest.raises(VideoError, match="no white pixel"):
        load_video_prompt(str(clips / "clip.mp4"), None, str(clips / "black.png"), 1.0, cfg)
    with pytest.raises(VideoError, match="outside the 94x70"):  # the box is checked in the file's pixels
        load_video_prompt(str(clips / "clip.mp4"), (10, 20, 95, 60), None, 1.0, cfg)
    with pytest.raises(VideoError, match="shorter than"):
        load_video_prompt(str(clips / "clip.mp4"), BOX, None, 2.0, cfg)
    with pytest.raises(VideoError, match="needs a box"):
        load_video_prompt(str(clips / "clip.mp4"), None, None, 1.0, cfg)
    with pytest.raises(VideoError, match="at most 0.5 s"):
        load_video_prompt(str(clips / "clip.mp4"), BOX, None, 1.0, _cfg(max_video_duration_s=0.5))
    with pytest.raises(AudioError, match="silent.mp4 has no sound track: upload the audio"):
        read_audio(None, cfg, video=str(clips / "silent.mp4"))
    with pytest.raises(AudioError, match="or upload a video with a sound track"):
        read_audio(None, cfg)


def test_preview_boxes_are_in_the_files_pixels(clips):
    from demo.core import box_from_preview, box_to_preview, video_preview_frame

    frame, size = video_preview_frame(str(clips / "clip.mp4"), _cfg())
    assert frame.shape == (35, 47, 3) and frame.dtype == np.uint8 and size == (94, 70)
    assert box_from_preview((5, 10, 25, 30), (47, 35), size) == BOX
    assert box_to_preview(BOX, (47, 35), size) == (5, 10, 25, 30)
    assert video_preview_frame(None, _cfg()) is None


def _page_note(demo) -> str:
    return next(b.value for b in demo.blocks.values() if getattr(b, "elem_id", None) == "ps-video-note")


def test_the_page_says_what_the_shipped_model_does_with_video(separator, tmp_path):
    """The video section's note shows a release card's measured video figure and its words on video
    (promptsep-tiny, whose figure is below zero, gets the advice to use words or spans); a release whose
    card has no video figure says video was not measured."""
    from demo.app import build_demo, close_demo
    from promptsep.cli import format_figure
    from promptsep.release import packaged_checkpoint

    tiny = packaged_checkpoint("promptsep-tiny")
    card = json.loads((tiny / "bench_card_test.json").read_text())
    video = card["per_prompt_kind"]["video"]["separator_si_sdri"]
    demo = build_demo(separator, None, _cfg(), examples_dir=None, checkpoint=str(tiny))
    try:
        note = _page_note(demo)
    finally:
        close_demo(demo)
    assert f"{video['mean']:+.1f} dB [{video['lo']:+.1f}, {video['hi']:+.1f}], n={video['n']}" in note
    assert format_figure(video) in note and "This model's video prompts" in note
    assert "the video tower is random and frozen" in note  # the card's own words
    assert "promptsep-tiny-vit, random initialisation, frozen" in note  # from the release's config
    assert "describe the sound in words or mark time spans" in note  # its figure is below zero

    bare = tmp_path / "release"
    bare.mkdir()
    for name in ("config.json", "MODEL_CARD.md", "model.safetensors"):
        (bare / name).symlink_to(tiny / name)
    del card["per_prompt_kind"]["video"]
    (bare / "bench_card_test.json").write_text(json.dumps(card))
    demo = build_demo(separator, None, _cfg(), examples_dir=None, checkpoint=str(bare))
    try:
        note = _page_note(demo)
    finally:
        close_demo(demo)
        shutil.rmtree(bare)
    assert "Video prompts were not measured for this model" in note and "dB" not in note


def test_the_video_section_describes_the_shipped_video_release(separator):
    """`promptsep demo` serves video prompts with its default release (promptsep-v2, whose visual path is
    trained) and shows that card's video figure; ``--video-checkpoint`` routes them to a second release,
    which the section then names with its own figure."""
    from demo.app import DEFAULT_CHECKPOINT, _parser, build_demo, close_demo, video_release
    from promptsep.cli import DEFAULT_VIDEO_CHECKPOINT, format_figure, video_figure
    from promptsep.release import packaged_checkpoint

    args = _parser().parse_args([])
    assert DEFAULT_VIDEO_CHECKPOINT == DEFAULT_CHECKPOINT
    assert video_release(args.checkpoint, args.video_checkpoint) is None  # the default serves video prompts
    assert video_release(str(DEFAULT_CHECKPOINT), "none") is None  # turned off
    assert video_release("my/own/release", None) is None  # a user's --checkpoint serves video prompts too
    assert video_release("my/own/release", "other/video") == "other/video"
    figure = video_figure(DEFAULT_CHECKPOINT)
    assert figure is not None and figure["mean"] > 0, "the default release's card measures video prompts"
    demo = build_demo(separator, None, _cfg(), examples_dir=None, checkpoint=str(DEFAULT_CHECKPOINT))
    try:
        note = _page_note(demo)
    finally:
        close_demo(demo)
    assert "This model's video prompts" in note and format_figure(figure) in note
    assert "promptsep-conv-tower, trained with the separator from random initialisation" in note
    assert "describe the sound in words" not in note

    other = packaged_checkpoint("promptsep-v2-video")
    demo = build_demo(separator, None, _cfg(), examples_dir=None, checkpoint="main",
                      video_separator=separator, video_checkpoint=str(other))
    try:
        note = _page_note(demo)
    finally:
        close_demo(demo)
    assert "separated by **promptsep-v2-video**" in note and format_figure(video_figure(other)) in note


def test_a_separate_default_video_release_is_routed_to_by_the_cli_and_the_demo(monkeypatch, tmp_path):
    """When the shipped video default is another release than the main default, `promptsep separate` and the
    demo both send video prompts there (and only video prompts); naming the main release again routes nothing."""
    import promptsep.cli as cli
    from demo.app import DEFAULT_CHECKPOINT, video_release
    from promptsep.release import packaged_checkpoint

    other = packaged_checkpoint("promptsep-v2-video")
    monkeypatch.setattr(cli, "DEFAULT_VIDEO_CHECKPOINT", other)
    assert cli.default_checkpoint(video=True) == other and cli.default_checkpoint(video=False) == DEFAULT_CHECKPOINT
    assert video_release(str(DEFAULT_CHECKPOINT), None) == str(other)
    assert video_release(str(DEFAULT_CHECKPOINT), str(DEFAULT_CHECKPOINT)) is None
    monkeypatch.chdir(DEFAULT_CHECKPOINT.parent)
    assert video_release(DEFAULT_CHECKPOINT.name, None) == str(other)  # a relative path to the default is the default
    monkeypatch.setattr(cli, "DEFAULT_VIDEO_CHECKPOINT", tmp_path / "missing")
    assert cli.default_checkpoint(video=True) == DEFAULT_CHECKPOINT  # not shipped: the main release serves video


def test_video_requests_use_the_video_releases_own_sampling_unless_changed(separator, clips):
    """Routed to the video release, a request whose steps and sampler are still the page's defaults (the main
    release's recommendation) runs at the video release's own recommended sampling; changed settings are kept."""
    from demo.app import build_demo, close_demo

    class Spy:
        def __init__(self, inner):
            self.inner, self.seen = inner, []

        def separate(self, *args, **kwargs):
            self.seen.append((kwargs.get("steps"), kwargs.get("method")))
            return self.inner.separate(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    video_sep = Spy(separator)
    rec_steps, rec_method = separator.sampling()
    demo = build_demo(separator, None, _cfg(), examples_dir=None, checkpoint="main", video_separator=video_sep,
                      video_checkpoint="video")
    try:
        fns = {f.name: f.fn for f in demo.fns.values()}
        request = dict(audio=None, text="", span_table=None, video={"path": str(clips / "clip.mp4")}, x0=BOX[0],
                       y0=BOX[1], x1=BOX[2], y1=BOX[3], mask=None, guidance=1.0, candidates=1, seed=0)
        fns["separate"](**request, steps=rec_steps, method=rec_method)
        other = "euler" if rec_method != "euler" else "midpoint"
        fns["separate"](**request, steps=rec_steps + 1, method=other)
    finally:
        close_demo(demo)
    assert video_sep.seen == [(None, None), (rec_steps + 1, other)]
