"""Real video files as inputs: ``promptsep separate clip.mp4 --box ...`` / ``--mask mask.png``.

Small mp4 (H.264 + AAC) and webm (VP8 + Opus) files are written with PyAV at odd frame rates and
frame sizes, then the real CLI (``promptsep.cli.main``) separates them with a tiny saved release:
the sound comes from the container's audio track, the picture is the video prompt, and bad
inputs (no audio track, a video shorter than its sound, both --box and --mask, an unreadable mask)
are one-line errors before any model loads.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import random_tiny_separation_model, save_random_release
from tests.test_cli import loads  # noqa: F401 - fixture: counts real model loads

av = pytest.importorskip("av")

model = pytest.fixture(scope="module", name="model")(random_tiny_separation_model)
ckpt = pytest.fixture(scope="module", name="ckpt")(save_random_release)

#: (suffix, container format, video codec, audio codec, audio rate, channels, fps, width, height)
KINDS = {
    "mp4": (".mp4", "mp4", "libx264", "aac", 22050, 2, Fraction(30000, 1001), 94, 70),
    "webm": (".webm", "webm", "libvpx", "libopus", 48000, 1, Fraction(25, 2), 71, 53),
}


def _example_video_script():
    """``examples/make_example_video.py`` as a module (its ``mux_audio`` writes the test clips' sound too)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / "make_example_video.py"
    spec = importlib.util.spec_from_file_location("make_example_video", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _available(kind: str) -> bool:
    _, _, vc, ac, *_ = KINDS[kind]
    return vc in av.codecs_available and ac in av.codecs_available


def write_clip(path: Path, kind: str, video_s: float | None, audio_s: float | None, seed: int = 0) -> np.ndarray | None:
    """Write a clip with a moving bright square (video) and a noisy tone (audio); either may be left out.

    Returns:
        The audio samples written, ``[C, N]`` float32 (None without audio).
    """
    _, fmt, vc, ac, sr, ch, fps, w, h = KINDS[kind]
    rng = np.random.default_rng(seed)
    audio = None
    with av.open(str(path), "w", format=fmt) as c:
        vs = c.add_stream(vc, rate=fps) if video_s else None
        if vs is not None:
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        aus = c.add_stream(ac, rate=sr, layout="stereo" if ch == 2 else "mono") if audio_s else None
        if vs is not None:
            for j in range(int(round(video_s * fps))):
                img = np.full((h, w, 3), 30, np.uint8)
                x = (2 * j) % (w - 12)
                img[10:30, x:x + 12] = (250, 220, 40)
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts, frame.time_base = j, 1 / fps
                for pkt in vs.encode(frame):
                    c.mux(pkt)
            for pkt in vs.encode():
                c.mux(pkt)
        if aus is not None:
            n = int(audio_s * sr)
            t = np.arange(n) / sr
            audio = np.stack([0.3 * np.sin(2 * np.pi * (330 + 110 * k) * t) + 0.05 * rng.standard_normal(n)
                              for k in range(ch)]).astype(np.float32)
            _example_video_script().mux_audio(c, aus, audio, sr, block=960)
    return audio


def write_mask(path: Path, size: tuple[int, int], box: tuple[int, int, int, int]) -> Path:
    """A black PNG of ``size`` (W, H) with the ``box`` white."""
    from PIL import Image

    img = np.zeros((size[1], size[0]), np.uint8)
    x0, y0, x1, y1 = box
    img[y0:y1, x0:x1] = 255
    Image.fromarray(img).save(path)
    return path


def run(*argv) -> int:
    from promptsep.cli import main

    return main([str(a) for a in argv])


@pytest.mark.parametrize("kind", ["mp4", "webm"])
def test_sound_comes_from_the_container_and_the_picture_is_the_prompt(kind, ckpt, tmp_path, capsys):
    if not _available(kind):
        pytest.skip(f"PyAV cannot encode {kind} here")
    from promptsep.audio import load_audio_track

    suffix, *_, sr, ch, fps, w, h = KINDS[kind]
    clip = tmp_path / f"clip{suffix}"
    written = write_clip(clip, kind, video_s=1.6, audio_s=1.5)
    track, track_sr = load_audio_track(clip)
    assert track_sr == sr and track.shape[0] == ch
    assert abs(track.shape[1] - written.shape[1]) <= 1024  # the codec's padding at most
    box = (30, 6, 64, 44)
    outs = {}
    for name, prompt in (("box", ["--box", ",".join(map(str, box))]),
                         ("mask", ["--mask", write_mask(tmp_path / "m.png", (w, h), box)]),
                         ("other", ["--mask", write_mask(tmp_path / "o.png", (w, h), (0, 0, 20, 20))])):
        assert run("separate", clip, *prompt, "--checkpoint", ckpt, "-o", tmp_path / name) == 0, capsys.readouterr().err
        tgt, tsr = sf.read(tmp_path / name / "clip" / "target.wav", always_2d=True, dtype="float32")
        res, _ = sf.read(tmp_path / name / "clip" / "residual.wav", always_2d=True, dtype="float32")
        assert tsr == sr and tgt.shape == (track.shape[1], ch)  # the audio track's rate, length and channels
        assert np.abs(tgt + res - track.numpy().T).max() < 2e-3  # the stems add up to the sound track
        outs[name] = tgt
    assert np.array_equal(outs["box"], outs["mask"])  # a mask of the box's pixels is that box
    assert not np.allclose(outs["box"], outs["other"], atol=1e-4)  # the picture is read: another mask, another result


def test_separate_video_for_an_audio_input_with_a_mask(ckpt, tmp_path, capsys):
    *_, w, h = KINDS["mp4"]
    clip = tmp_path / "picture.mp4"
    write_clip(clip, "mp4", video_s=1.2, audio_s=None)
    audio = tmp_path / "sound.wav"
    sf.write(audio, (0.3 * np.random.default_rng(1).standard_normal(16000)).astype(np.float32), 16000)
    mask = write_mask(tmp_path / "m.png", (2 * w, 2 * h), (80, 12, 160, 100))  # another size: resized to the frames
    assert run("separate", audio, "--video", clip, "--mask", mask, "--checkpoint", ckpt, "-o", tmp_path / "o") == 0, \
        capsys.readouterr().err
    assert sf.info(tmp_path / "o" / "sound" / "target.wav").frames == 16000


def test_a_video_prompt_uses_the_shipped_video_release_by_default(tmp_path, capsys):
    """Without --checkpoint, a --box request and a text request are both separated by the shipped
    promptsep-v2 (one release, visual path trained)."""
    import json

    from promptsep.cli import DEFAULT_CHECKPOINT, DEFAULT_VIDEO_CHECKPOINT

    assert (DEFAULT_VIDEO_CHECKPOINT / "model.safetensors").is_file(), "the video release is shipped"
    assert DEFAULT_VIDEO_CHECKPOINT.name == DEFAULT_CHECKPOINT.name == "promptsep-v2"
    clip = tmp_path / "clip.mp4"
    write_clip(clip, "mp4", video_s=1.2, audio_s=1.0)
    assert run("separate", clip, "--box", "0,0,40,40", "--json", "-o", tmp_path / "v") == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["checkpoint"] == str(DEFAULT_VIDEO_CHECKPOINT)
    assert run("separate", clip, "--text", "tone", "--json", "-o", tmp_path / "t") == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["checkpoint"] == str(DEFAULT_CHECKPOINT)


def test_a_video_longer_than_its_sound_is_cut_to_it(ckpt, tmp_path):
    clip = tmp_path / "long.mp4"
    write_clip(clip, "mp4", video_s=3.0, audio_s=1.0)
    assert run("separate", clip, "--box", "0,0,40,40", "--checkpoint", ckpt, "-o", tmp_path / "o") == 0
    from promptsep.audio import load_audio_track

    assert sf.info(tmp_path / "o" / "long" / "target.wav").frames == load_audio_track(clip)[0].shape[1]


def test_video_file_problems_are_one_line_errors_before_loading(ckpt, tmp_path, capsys, loads):  # noqa: F811
    *_, w, h = KINDS["mp4"]
    short = tmp_path / "short.mp4"
    write_clip(short, "mp4", video_s=0.5, audio_s=1.5)
    silent_film = tmp_path / "mute.mp4"
    write_clip(silent_film, "mp4", video_s=1.0, audio_s=None)
    good = tmp_path / "good.mp4"
    write_clip(good, "mp4", video_s=1.0, audio_s=1.0)
    twin = tmp_path / "twin.mp4"
    twin.write_bytes(good.read_bytes())
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    black = write_mask(tmp_path / "black.png", (w, h), (0, 0, 0, 0))
    out = tmp_path / "o"
    cases = [
        ([short, "--box", "0,0,20,20"], "shorter than the 1.50 s audio"),
        ([silent_film, "--box", "0,0,20,20"], f"{silent_film} has a video without an audio track"),
        ([good, "--box", "0,0,20,20", "--mask", black], "not allowed with argument --box"),
        ([good, "--mask", junk], "cannot read the mask image"),
        ([good, "--mask", tmp_path / "nope.png"], "mask image not found"),
        ([good, "--mask", black], "has no white pixel"),
        ([good, "--box", f"0,0,{w + 5},20"], f"outside the {w}x{h}"),
        ([good], "give at least one prompt"),
        ([good, twin, "--box", "0,0,20,20"], "one video file"),
    ]
    for argv, message in cases:
        rc = run("separate", *argv, "--checkpoint", ckpt, "-o", out)
        err = capsys.readouterr().err
        assert rc == 2 and message in err and "Traceback" not in err, (argv, err)
    assert loads["n"] == 0 and not out.exists()  # nothing loaded, nothing written
    # an existing output is never replaced without --overwrite
    (out / "good").mkdir(parents=True)
    (out / "good" / "target.wav").write_bytes(b"keep")
    assert run("separate", good, "--box", "0,0,20,20", "--checkpoint", ckpt, "-o", out) == 2
    assert "output exists" in capsys.readouterr().err and (out / "good" / "target.wav").read_bytes() == b"keep"


def test_a_video_file_with_text_only_separates_its_sound(ckpt, tmp_path, capsys):
    clip = tmp_path / "talk.webm" if _available("webm") else tmp_path / "talk.mp4"
    write_clip(clip, "webm" if _available("webm") else "mp4", video_s=1.0, audio_s=1.0)
    assert run("separate", clip, "--text", "tone", "--checkpoint", ckpt, "-o", tmp_path / "o") == 0, \
        capsys.readouterr().err
    assert (tmp_path / "o" / "talk" / "residual.wav").is_file()


def test_load_video_prompt_scales_box_and_mask_with_the_frames(tmp_path):
    from prompts.video import load_video_prompt

    clip = tmp_path / "big.mp4"
    write_clip(clip, "mp4", video_s=1.0, audio_s=None)
    *_, w, h = KINDS["mp4"]
    v = load_video_prompt(clip, 0.5, box=(10, 20, 50, 60), max_side=47)
    assert v.frames.shape[-1] == 47 and v.frames.shape[-2] == 35  # 94x70 halved
    assert v.box == (5, 10, 25, 30)
    assert v.num_frames == int(np.ceil(0.5 * 30000 / 1001)) + 1  # frames past the audio are not decoded
    m = load_video_prompt(clip, 0.5, mask=write_mask(tmp_path / "m.png", (w, h), (10, 20, 50, 60)), max_side=47)
    assert m.masks.shape == (v.num_frames, 35, 47) and int(m.masks[0].sum()) == 20 * 20
