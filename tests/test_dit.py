"""DiT backbone: shapes, padding masks, zero-initialised gates and output."""

import torch

from separation.dit import DiT, DiTConfig, dit_config


def tiny(video_dim=6):
    torch.manual_seed(0)
    return DiT(DiTConfig(latent_dim=4, width=32, depth=2, heads=2, text_dim=10, video_dim=video_dim))


def inputs(b=2, t=9, length=5, video_dim=6):
    g = torch.Generator().manual_seed(1)
    return dict(
        x=torch.randn(b, t, 8, generator=g), t=torch.rand(b, generator=g), mixture=torch.randn(b, t, 4, generator=g),
        text=torch.randn(b, length, 10, generator=g), text_mask=torch.ones(b, length, dtype=torch.bool),
        anchors=torch.zeros(b, t, dtype=torch.long), video=torch.randn(b, t, video_dim, generator=g),
    )


def perturb_output(m):
    torch.nn.init.normal_(m.out_proj.weight, std=0.1)
    return m


def test_shapes_and_zero_output_at_init():
    m = tiny()
    out = m(**inputs())
    assert out.shape == (2, 9, 8)
    assert torch.count_nonzero(out) == 0  # zero-initialised output projection


def test_text_padding_mask_ignores_padded_tokens():
    m = perturb_output(tiny()).eval()
    kw = inputs()
    kw["text_mask"][:, 3:] = False
    out1 = m(**kw)
    kw["text"][:, 3:] = 1e3 * torch.randn_like(kw["text"][:, 3:])
    torch.testing.assert_close(m(**kw), out1)
    kw["text_mask"][1] = False  # a row with no valid token does not produce NaN
    assert torch.isfinite(m(**kw)).all()


def test_audio_padding_mask_isolates_padded_frames():
    m = perturb_output(tiny()).eval()
    kw = inputs()
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[:, 6:] = False
    out1 = m(**kw, audio_mask=mask)
    kw["x"][:, 6:] += 100.0
    kw["mixture"][:, 6:] -= 50.0
    out2 = m(**kw, audio_mask=mask)
    torch.testing.assert_close(out1[:, :6], out2[:, :6], atol=1e-5, rtol=1e-5)


def test_gates_start_closed_so_spans_and_video_have_no_effect_at_init():
    m = perturb_output(tiny()).eval()
    kw = inputs()
    base = m(**kw)
    kw2 = dict(kw, anchors=torch.randint(0, 4, (2, 9)), video=torch.randn(2, 9, 6))
    torch.testing.assert_close(m(**kw2), base)
    with torch.no_grad():
        m.anchor_gate.fill_(1.0)
    assert not torch.allclose(m(**kw2), base)


def test_rotary_positions_make_the_model_order_aware():
    m = perturb_output(tiny()).eval()
    kw = inputs(b=1)
    out = m(**kw)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(3))
    kw_p = dict(kw, x=kw["x"][:, perm], mixture=kw["mixture"][:, perm], anchors=kw["anchors"][:, perm],
                video=kw["video"][:, perm])
    assert not torch.allclose(m(**kw_p), out[:, perm], atol=1e-4)


def test_named_sizes_and_no_video_path():
    assert dit_config("small").width == 384
    m = tiny(video_dim=0)
    kw = inputs()
    kw["video"] = None
    assert m(**kw).shape == (2, 9, 8)
