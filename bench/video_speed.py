"""Speed of the real-video-file path: decode a video file, separate its sound with the box prompt, write stems.

``python -m bench.video_speed [--checkpoint DIR] [--seconds 10] [--fps 25] [--size 640x360] [--runs 3]``
writes one clip (H.264 + AAC, the bundled example mixture looped under the moving discs of
``examples/make_example_video.py``) to a temporary folder, loads the separator once (its video
tower included) and then times ``--runs`` passes of the path ``promptsep separate clip.mp4 --box``
takes, split into

- ``decode``: the audio track (:func:`promptsep.audio.load_audio_track`) and the frames that
  cover it, downscaled, with the box (:func:`prompts.video.load_video_prompt`);
- ``separate``: :meth:`Separator.separate` with the video prompt (video tower, prompts, generation,
  Wiener refinement);
- ``write``: the two stems as 16-bit WAV;
- ``tower``: the video tower alone on the same frames and box (part of ``separate``, timed apart
  after it to show its share; not in ``total``).

It prints the median seconds of each part and of their sum, and the real-time factor. The clip's
own encoding (a one-off) and the model load are printed apart. Nothing is kept.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from promptsep.release import examples_dir


def _example_video_writer():
    """``examples/make_example_video.py`` as a module (the examples folder is not a package)."""
    spec = importlib.util.spec_from_file_location("make_example_video", examples_dir() / "make_example_video.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_clip(folder: Path, seconds: float, fps: int, width: int, height: int) -> Path:
    """A ``seconds`` long mp4 in ``folder``: the bundled trumpet + door mixture looped, with moving discs."""
    import numpy as np
    import soundfile as sf

    wav, sr = sf.read(str(examples_dir() / "trumpet_with_door.wav"), dtype="float32", always_2d=True)
    n = int(seconds * sr)
    looped = np.tile(wav, (n // wav.shape[0] + 1, 1))[:n]
    audio = folder / "sound.wav"
    sf.write(audio, looped, sr)
    return _example_video_writer().write_video(audio, folder / "clip.mp4", fps=fps, width=width, height=height)


def main(argv: Sequence[str] | None = None) -> int:
    """Time the video-file path and print the medians; returns 0."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    from promptsep.cli import DEFAULT_VIDEO_CHECKPOINT

    p.add_argument("--checkpoint", default=str(DEFAULT_VIDEO_CHECKPOINT),
                   help="separator release (default: the shipped one for video prompts)")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--size", default="640x360", help="WIDTHxHEIGHT of the clip (even numbers)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    import torch

    from prompts.video import box_to_masks, load_video_prompt
    from promptsep.audio import load_audio_track, save_audio
    from separation.separator import Separator

    box = (width // 32, height // 12, (60 * width) // 128, (88 * height) // 96)  # the example's target box, scaled
    with tempfile.TemporaryDirectory(prefix="promptsep-video-speed-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        clip = make_clip(folder, args.seconds, args.fps, width, height)
        t_make = time.perf_counter() - t0
        t0 = time.perf_counter()
        sep = Separator.from_pretrained(args.checkpoint, device=args.device)
        sep.model.video_tower()  # built on the first video prompt: counted with the load, not the runs
        t_load = time.perf_counter() - t0
        parts: dict[str, list[float]] = {"decode": [], "separate": [], "write": [], "total": [], "tower": []}
        for i in range(args.runs):
            t0 = time.perf_counter()
            wav, sr = load_audio_track(clip)
            video = load_video_prompt(clip, wav.shape[-1] / sr, box=box)
            t1 = time.perf_counter()
            res = sep.separate(wav, sr, video=video, seed=i)
            t2 = time.perf_counter()
            for kind in ("target", "residual"):
                save_audio(folder / f"{kind}.wav", getattr(res, kind), res.sample_rate, overwrite=True)
            t3 = time.perf_counter()
            f, _, h, w = video.frames.shape
            t4 = time.perf_counter()
            with torch.inference_mode():
                sep.model.video_tower()(video.frames[None], box_to_masks(video.box, f, h, w)[None])
            t5 = time.perf_counter()
            for key, v in (("decode", t1 - t0), ("separate", t2 - t1), ("write", t3 - t2), ("total", t3 - t0),
                           ("tower", t5 - t4)):
                parts[key].append(v)
        audio_s = wav.shape[-1] / sr
        print(f"clip: {args.seconds:g} s, {args.fps} fps, {width}x{height} H.264 + AAC "
              f"({clip.stat().st_size / 1024:.0f} KiB, made in {t_make:.2f} s); {video.num_frames} frames decoded "
              f"at {video.frames.shape[-1]}x{video.frames.shape[-2]}")
        print(f"model load (with the video tower): {t_load:.2f} s; device {args.device}; "
              f"torch threads {torch.get_num_threads()}")
        for key, vals in parts.items():
            med = statistics.median(vals)
            print(f"{key:>8}: median {med:.3f} s of {len(vals)} runs ({', '.join(f'{v:.3f}' for v in vals)})"
                  + (f"; RTF {med / audio_s:.3f}" if key == "total" else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
