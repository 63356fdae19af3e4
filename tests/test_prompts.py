"""Tests of the prompts package: spans, text and video encoders (CPU, offline, seconds)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import subprocess
import sys

import numpy as np
import pytest
import torch

from prompts.span import NEG, NULL, PAD, POS, activity_to_spans, anchors_batch, parse_span, spans_to_anchors
from prompts.types import SpanPrompt, TextPrompt, VideoPrompt
from promptsep.errors import PromptError, VideoError

# --------------------------------------------------------------------- spans


def test_parse_span():
    assert parse_span("+1.0:2.5") == ("+", 1.0, 2.5)
    assert parse_span("-4:5") == ("-", 4.0, 5.0)
    assert parse_span(" + .5 : 1e1 ") == ("+", 0.5, 10.0)
    for bad in ["1.0:2.5", "+1.0-2.5", "+a:b", "", "*1:2", "+1:2:3"]:
        with pytest.raises(PromptError, match="cannot parse span"):
            parse_span(bad)
    with pytest.raises(PromptError, match="before end"):
        parse_span("+3:2")
    assert SpanPrompt.parse(["+1:2", "-3:4"]).spans == [("+", 1.0, 2.0), ("-", 3.0, 4.0)]


def test_spans_to_anchors_exact_boundaries():
    a = spans_to_anchors([("+", 1.0, 2.0)], 200, 50.0, 4.0)
    assert a.dtype == torch.long and a.shape == (200,)
    assert torch.nonzero(a == POS).flatten().tolist() == list(range(50, 100))
    assert bool((a[:50] == NULL).all()) and bool((a[100:] == NULL).all())
    # a span starting exactly on a frame centre includes that frame; ending on one excludes it
    a = spans_to_anchors(["+0.07:0.13"], 10, 50.0, 0.2)
    assert torch.nonzero(a == POS).flatten().tolist() == [3, 4, 5]
    # non-integer frame rates (16 kHz / 320 hop = 50; 48 kHz / 1920 = 25)
    a = spans_to_anchors([("-", 0.4, 0.8)], 25, 25.0, 1.0)
    assert torch.nonzero(a == NEG).flatten().tolist() == list(range(10, 20))


def test_spans_to_anchors_overrides_and_pad():
    a = spans_to_anchors([("+", 0.0, 2.0), ("-", 0.5, 1.0)], 60, 20.0, 2.0)
    assert bool((a[:10] == POS).all()) and bool((a[10:20] == NEG).all()) and bool((a[20:40] == POS).all())
    assert bool((a[40:] == PAD).all())
    # partial last frame: 2.01 s at 50 fps -> 101 real frames; a span to the end covers frame 100
    a = spans_to_anchors([("+", 1.0, 2.01)], 120, 50.0, 2.01)
    assert a[100] == POS and a[99] == POS and bool((a[101:] == PAD).all())
    # padding beats spans, half a frame past the end is tolerated
    a = spans_to_anchors([("+", 0.0, 1.005)], 60, 50.0, 1.0)
    assert bool((a[:50] == POS).all()) and bool((a[50:] == PAD).all())
    # no spans: all NULL, PAD past the duration
    a = spans_to_anchors([], 10, 10.0, 0.55)
    assert a.tolist() == [NULL] * 6 + [PAD] * 4
    b = anchors_batch([[("+", 0.0, 0.5)], None], 10, 10.0, [1.0, 0.3])
    assert b.shape == (2, 10)
    assert b[0].tolist() == [POS] * 5 + [NULL] * 5
    assert b[1].tolist() == [NULL] * 3 + [PAD] * 7


@pytest.mark.parametrize(
    ("spans", "match"),
    [
        ([("+", 2.0, 1.0)], "must be before end"),
        ([("+", 1.0, 1.0)], "must be before end"),
        ([("+", 1.0, 5.0)], r"past the end of the 4\.000 s audio"),
        ([("-", -0.5, 1.0)], "negative"),
        ([("?", 0.0, 1.0)], "unknown span sign"),
        ([("+", float("nan"), 1.0)], "non-finite"),
    ],
)
def test_span_validation_errors(spans, match):
    with pytest.raises(PromptError, match=match):
        spans_to_anchors(spans, 200, 50.0, 4.0)


def test_span_prompt_and_text_prompt_validate():
    with pytest.raises(PromptError, match="past the end"):
        SpanPrompt([("+", 1.0, 3.0)]).validate(duration_s=2.0)
    with pytest.raises(PromptError, match="no spans"):
        SpanPrompt([]).validate()
    assert SpanPrompt([("+", 1, 2)]).validate(2.0).spans == [("+", 1.0, 2.0)]
    with pytest.raises(PromptError, match="empty"):
        TextPrompt("   ").validate()
    assert TextPrompt("dog barking").validate().text == "dog barking"


def test_activity_to_spans_roundtrip():
    g = torch.Generator().manual_seed(0)
    act = torch.rand(80, generator=g) > 0.5
    spans = activity_to_spans(act, 50.0)
    a = spans_to_anchors(spans, 80, 50.0, 80 / 50.0)
    assert torch.equal(a, torch.where(act, POS, NEG))
    act = torch.tensor([0] * 10 + [1] * 2 + [0] * 3 + [1] * 20, dtype=torch.bool)
    spans = activity_to_spans(act, 10.0, min_len_s=0.35)
    assert spans == [("-", 0.0, 1.0), ("+", 1.5, 3.5)]
    assert activity_to_spans(act, 10.0, min_len_s=0.35, include_negative=False) == [("+", 1.5, 3.5)]


# ---------------------------------------------------------------------- text


@pytest.fixture(scope="module")
def tiny_t5():
    from prompts.text import TextEncoderConfig, build_text_encoder

    return build_text_encoder(TextEncoderConfig(kind="tiny_t5", max_length=16))


def test_tiny_t5_shapes_masks_determinism(tiny_t5, tmp_path):
    from prompts.text import TextEncoderConfig, build_text_encoder

    texts = ["dog", "a dog barking loudly far away in the night"]
    mem, mask = tiny_t5(texts)
    assert tiny_t5.dim == 32
    assert mem.shape == (2, 16, 32) and mem.dtype == torch.float32  # truncated to max_length
    assert mask.dtype == torch.bool and mask.shape == (2, 16)
    assert mask[0].sum() == 4 and bool(mask[1].all())  # "dog" + </s>
    assert bool((mem[0, 4:] == 0).all())
    assert not mem.requires_grad and not tiny_t5.training
    assert all(not p.requires_grad for p in tiny_t5.parameters())
    tiny_t5.train()
    assert not tiny_t5.training
    other = build_text_encoder(TextEncoderConfig(kind="tiny_t5", max_length=16, cache_size=0))
    mem2, mask2 = other(texts)
    assert torch.equal(mask, mask2) and torch.allclose(mem, mem2, atol=1e-6)
    # the cache gives the same outputs, in any batch composition
    mem3, _ = tiny_t5(["a dog barking loudly far away in the night"])
    assert torch.allclose(mem3[0], mem[1], atol=1e-6)
    # its weights (saved with a separator release) can be written to safetensors and loaded back
    from safetensors.torch import load_file, save_file

    path = tmp_path / "tiny_t5.safetensors"
    save_file({k: v.detach().cpu().contiguous() for k, v in tiny_t5.state_dict().items()}, str(path))
    other.load_state_dict(load_file(str(path)), strict=True)
    assert torch.allclose(other(texts)[0], mem, atol=1e-6)
    emb = tiny_t5.sentence_embedding(texts)
    assert emb.shape == (2, 32) and torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_minilm_offline_and_similarity():
    from prompts.text import TextEncoderConfig, build_text_encoder, minilm_path

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    assert (minilm_path() / "model.safetensors").is_file()
    enc = build_text_encoder(TextEncoderConfig())
    mem, mask = enc(["dog barking", "piano music played softly"])
    assert enc.dim == 384 and mem.shape[0] == 2 and mem.shape[2] == 384
    assert mask[0].sum() < mask[1].sum()
    e = enc.sentence_embedding(["dog barking", "a dog barks", "piano music"])
    sim = e @ e.T
    assert sim[0, 1] > sim[0, 2] + 0.1


def test_text_encoder_bad_kind():
    from prompts.text import TextEncoderConfig, build_text_encoder

    with pytest.raises(ValueError, match="unknown text encoder kind"):
        build_text_encoder(TextEncoderConfig(kind="clip"))


def test_import_is_light():
    code = "import sys, prompts; print(any(m in sys.modules for m in ('transformers', 'open_clip', 'av')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------- video


def test_video_encoder_tiny_shapes():
    from prompts.video import VideoEncoder, VideoEncoderConfig

    enc = VideoEncoder(VideoEncoderConfig(image_size=32, chunk_frames=3))
    assert enc.dim == 64 and not enc.training
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(2, 5, 3, 40, 48, generator=g)
    masks = torch.zeros(2, 5, 40, 48)
    masks[..., 10:30, 10:30] = 1
    out = enc(frames, masks)
    assert out.shape == (2, 5, 64) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert not torch.allclose(out, enc(frames, None))
    # background is ignored: changing pixels outside the mask changes nothing
    frames2 = frames.clone()
    frames2[..., :5, :5] = 0.0
    assert torch.allclose(enc(frames2, masks), out, atol=1e-5)
    # seeded: a second tiny tower is identical
    enc2 = VideoEncoder(VideoEncoderConfig(image_size=32))
    assert torch.allclose(enc2(frames, masks), out, atol=1e-5)
    with pytest.raises(VideoError, match="masks"):
        enc(frames, masks[:, :4])


def test_box_to_masks():
    from prompts.video import box_to_masks

    m = box_to_masks((2, 1, 5, 3), 4, 6, 8)
    assert m.shape == (4, 6, 8) and m.sum() == 4 * 3 * 2
    assert bool((m[:, 1:3, 2:5] == 1).all())
    with pytest.raises(VideoError, match="outside"):
        box_to_masks((0, 0, 9, 3), 1, 6, 8)
    with pytest.raises(VideoError, match="empty"):
        box_to_masks((4, 1, 4, 3), 1, 6, 8)


def test_video_prompt_validate():
    v = VideoPrompt(torch.rand(3, 3, 8, 10), fps=10.0, box=(0, 0, 10, 8))
    assert v.validate(require_selection=True) is v
    with pytest.raises(VideoError, match=r"\[F, 3, H, W\]"):
        VideoPrompt(torch.rand(3, 8, 10), fps=10.0).validate()
    with pytest.raises(VideoError, match="masks"):
        VideoPrompt(torch.rand(3, 3, 8, 10), fps=10.0, masks=torch.ones(3, 8, 9)).validate()
    with pytest.raises(VideoError, match="outside"):
        VideoPrompt(torch.rand(3, 3, 8, 10), fps=10.0, box=(0, 0, 11, 8)).validate()
    with pytest.raises(VideoError, match="box or per-frame masks"):
        VideoPrompt(torch.rand(3, 3, 8, 10), fps=10.0).validate(require_selection=True)


def test_resample_to_latent_linear_ramp():
    from prompts.video import resample_to_latent

    f, d = 10, 3
    feats = torch.arange(f, dtype=torch.float32).view(1, f, 1).expand(2, f, d)
    # same rate and length: unchanged
    assert torch.equal(resample_to_latent(feats, 10.0, f, 10.0), feats)
    # 10 fps -> 50 frames/s: latent frame k at (k + 0.5) / 50 s = frame index (k + 0.5) / 5 - 0.5
    out = resample_to_latent(feats, 10.0, 50, 50.0)
    assert out.shape == (2, 50, d)
    k = torch.arange(50, dtype=torch.float32)
    expected = ((k + 0.5) / 5 - 0.5).clamp(0, f - 1)
    assert torch.allclose(out[0, :, 0], expected, atol=1e-6)
    # past the last frame: held
    out = resample_to_latent(feats, 10.0, 60, 50.0)
    assert torch.allclose(out[0, 50:, 0], torch.full((10,), 9.0))


def _write_mp4(path, num_frames, fps, w=32, h=24):
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(num_frames):
            img = np.full((h, w, 3), min(255, 20 * i), dtype=np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def test_load_video_and_too_short(tmp_path):
    from prompts.video import check_video_covers_audio, load_video

    path = tmp_path / "clip.mp4"
    _write_mp4(path, 12, 10)
    v = load_video(path)
    assert isinstance(v, VideoPrompt)
    assert v.frames.shape == (12, 3, 24, 32) and v.frames.dtype == torch.float32
    assert float(v.fps) == 10.0 and 0.0 <= float(v.frames.min()) and float(v.frames.max()) <= 1.0
    assert float(v.frames[5].mean()) > float(v.frames[1].mean())
    v.validate()
    assert load_video(path, max_frames=4).frames.shape[0] == 4
    assert load_video(path, max_side=16).frames.shape[-2:] == (12, 16)
    check_video_covers_audio(v, 1.2)
    check_video_covers_audio(v, 1.29)  # within one frame
    with pytest.raises(VideoError, match=r"video is 1\.20 s, shorter than the 2\.00 s audio"):
        check_video_covers_audio(v, 2.0)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(VideoError, match="cannot read video"):
        load_video(bad)
    with pytest.raises(VideoError, match="not found"):
        load_video(tmp_path / "missing.mp4")


def test_a_pretrained_video_tower_that_cannot_be_fetched_is_a_clear_error(monkeypatch):
    """Loading an open_clip tower by name works for users with internet; when its weights cannot be fetched
    (open_clip raises, as it does offline) the error names the tower and the tag and says what to do."""
    import open_clip

    from prompts.video import VideoEncoderConfig, build_video_encoder

    def unreachable(name, pretrained=None, **kwargs):
        assert (name, pretrained) == ("ViT-B-32", "laion2b_s34b_b79k")
        raise RuntimeError(f"Failed to download weights for tag '{pretrained}': no connection")

    monkeypatch.setattr(open_clip, "create_model", unreachable)
    with pytest.raises(RuntimeError) as err:
        build_video_encoder(VideoEncoderConfig(model_name="ViT-B-32", pretrained="laion2b_s34b_b79k", image_size=224,
                                               dim=512))
    msg = str(err.value)
    assert "'ViT-B-32'" in msg and "laion2b_s34b_b79k" in msg and "set video.pretrained to a local checkpoint" in msg
