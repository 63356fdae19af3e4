"""Flow matching: samplers integrate known fields, guidance, timestep samplers, loss."""

import pytest
import torch

from separation.flow import (
    FlowConfig,
    flow_loss,
    guided_velocity,
    interpolate,
    sample,
    sample_timesteps,
    velocity_target,
)


@pytest.mark.parametrize("method", ["euler", "midpoint", "diffusers"])
def test_samplers_integrate_constant_velocity_exactly(method):
    x0 = torch.randn(3, 5, 4)
    x1 = torch.randn(3, 5, 4)
    out = sample(lambda x, t: x1 - x0, x0, nfe=4, method=method)
    torch.testing.assert_close(out, x1, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", ["euler", "midpoint"])
def test_samplers_follow_the_straight_path_of_a_linear_field(method):
    # the conditional flow towards x1: v(x, t) = (x1 - x) / (1 - t) is linear in x; its solution is the
    # straight line from x0 to x1, so both samplers land on x1 exactly.
    x0 = torch.randn(2, 7, 3)
    x1 = torch.randn(2, 7, 3)
    out = sample(lambda x, t: (x1 - x) / (1 - t.view(-1, 1, 1)), x0, nfe=8, method=method)
    torch.testing.assert_close(out, x1, atol=1e-5, rtol=1e-5)


def test_midpoint_is_second_order_on_a_time_dependent_field():
    # dx/dt = 2t: x(1) = x0 + 1; Euler is off by 1/nfe, midpoint exact.
    x0 = torch.zeros(1, 1, 1)
    fn = lambda x, t: (2 * t).view(-1, 1, 1).expand_as(x)  # noqa: E731
    assert abs(float(sample(fn, x0, 4, "midpoint")) - 1.0) < 1e-6
    assert abs(float(sample(fn, x0, 4, "euler")) - 0.75) < 1e-6


def test_guidance_at_scale_one_equals_the_conditional_pass():
    calls = []

    def vel(x, t, dropped):
        calls.append(dropped)
        return x * (2.0 if not dropped else 0.5)

    x, t = torch.randn(2, 3, 4), torch.rand(2)
    out = guided_velocity(vel, x, t, {"text": 1.0, "span": 1.0})
    torch.testing.assert_close(out, x * 2.0)
    assert calls == [frozenset()]
    calls.clear()
    out = guided_velocity(vel, x, t, {"text": 3.0})
    torch.testing.assert_close(out, 2 * x + 2.0 * (2 * x - 0.5 * x))
    assert calls == [frozenset(), frozenset({"text"})]
    with pytest.raises(ValueError, match="unknown guidance kind"):
        guided_velocity(vel, x, t, {"colour": 2.0})


def test_timestep_samplers_and_objective():
    g = torch.Generator().manual_seed(0)
    for name in ("uniform", "logit_normal"):
        t = sample_timesteps(FlowConfig(timestep_sampler=name), 4096, generator=g)
        assert t.min() > 0 and t.max() < 1
        assert abs(float(t.mean()) - 0.5) < 0.03
    t = sample_timesteps(FlowConfig(timestep_sampler="logit_normal", logit_std=1.0), 4096, generator=g)
    assert float(((t > 0.25) & (t < 0.75)).float().mean()) > 0.55  # mass concentrated mid-way
    with pytest.raises(ValueError):
        sample_timesteps(FlowConfig(timestep_sampler="cosine"), 2)
    x0, x1 = torch.zeros(2, 3, 1), torch.ones(2, 3, 1)
    torch.testing.assert_close(interpolate(x0, x1, torch.tensor([0.0, 0.25])),
                               torch.tensor([0.0, 0.25]).view(2, 1, 1).expand(2, 3, 1))
    torch.testing.assert_close(velocity_target(x0, x1), x1)
    pred, tgt = torch.zeros(2, 3, 1), torch.ones(2, 3, 1)
    mask = torch.tensor([[True, False, False], [True, True, False]])
    assert float(flow_loss(pred, tgt, mask)) == 1.0
    assert float(flow_loss(pred, tgt)) == 1.0


def test_sample_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown sampler"):
        sample(lambda x, t: x, torch.zeros(1, 1, 1), 2, "rk45")
    with pytest.raises(ValueError, match=">= 1"):
        sample(lambda x, t: x, torch.zeros(1, 1, 1), 0)


def test_prior_sample_noise_and_mixture():
    from separation.flow import FlowConfig, prior_sample

    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 5, 3, generator=g)
    eps = torch.randn(2, 5, 6, generator=g)
    torch.testing.assert_close(prior_sample(FlowConfig(), z, eps), eps)
    x0 = prior_sample(FlowConfig(prior="mixture", prior_std=0.5), z, eps)
    rms = z.pow(2).mean(dim=(1, 2), keepdim=True).sqrt()
    torch.testing.assert_close(x0, torch.cat([z / 2, z / 2], -1) + 0.5 * rms * eps)
    # the two halves sum to the mixture plus noise: mixture consistency at the start of the flow
    torch.testing.assert_close(x0[..., :3] + x0[..., 3:], z + 0.5 * rms * (eps[..., :3] + eps[..., 3:]))
    # the noise follows the mixture's level: a 20 dB quieter mixture gets 20 dB less noise
    torch.testing.assert_close(prior_sample(FlowConfig(prior="mixture", prior_std=0.5), 0.1 * z, eps), 0.1 * x0)
    with pytest.raises(ValueError, match="prior"):
        FlowConfig(prior="zeros")
    with pytest.raises(ValueError, match="prior_std"):
        FlowConfig(prior_std=0.0)
    with pytest.raises(ValueError, match="does not fit"):
        prior_sample(FlowConfig(), z, eps[..., :4])


def test_mask_split_is_mixture_consistent_and_starts_at_half():
    from separation.flow import mask_split

    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 5, 3, generator=g)
    off = torch.tensor([0.1, -0.2, 0.05])
    half = mask_split(torch.zeros(2, 5, 6), z, off)
    torch.testing.assert_close(half[..., :3], 0.5 * (z + off) - off)
    torch.testing.assert_close(half[..., :3], half[..., 3:])
    logits = 3 * torch.randn(2, 5, 6, generator=g)
    x = mask_split(logits, z, off)
    # raw (unnormalised) stems add up to the raw mixture exactly
    torch.testing.assert_close((x[..., :3] + off) + (x[..., 3:] + off), z + off)
    big = mask_split(torch.cat([torch.full((2, 5, 3), 30.0), torch.full((2, 5, 3), -30.0)], -1), z, off)
    torch.testing.assert_close(big[..., :3], z)  # all of the mixture to the target
    with pytest.raises(ValueError, match="do not fit"):
        mask_split(logits[..., :4], z, off)


def test_velocity_from_data_lands_on_the_estimate():
    from separation.flow import euler, velocity_from_data

    g = torch.Generator().manual_seed(1)
    x1_hat = torch.randn(2, 4, 6, generator=g)
    x0 = torch.randn(2, 4, 6, generator=g)
    # a model that always predicts x1_hat: every sampler ends exactly there
    for nfe in (1, 3, 8):
        out = euler(lambda x, t: velocity_from_data(x1_hat, x, t), x0, nfe)
        torch.testing.assert_close(out, x1_hat)
    t = torch.tensor([0.25, 1.0])
    v = velocity_from_data(x1_hat, x0, t)
    torch.testing.assert_close(v[0], (x1_hat[0] - x0[0]) / 0.75)
    assert torch.isfinite(v).all()  # t = 1 is clamped


def test_data_loss_relative_is_scale_free_and_energy_weighted():
    from separation.flow import FlowConfig, data_loss

    g = torch.Generator().manual_seed(2)
    z = torch.randn(3, 4, 2, generator=g)
    x1 = torch.randn(3, 4, 4, generator=g)
    x1_hat = x1 + 0.1 * torch.randn(3, 4, 4, generator=g)
    std = torch.tensor([1.0, 0.1])
    rel = data_loss("relative", x1_hat, x1, z, std)
    # scaling every latent (a louder recording) leaves the relative loss unchanged
    torch.testing.assert_close(data_loss("relative", 10 * x1_hat, 10 * x1, 10 * z, std), rel)
    # an error in the low-energy channel costs 100x less than the same error in the loud one
    e_loud, e_quiet = x1.clone(), x1.clone()
    e_loud[..., 0] += 1.0
    e_quiet[..., 1] += 1.0
    ratio = data_loss("relative", e_loud, x1, z, std) / data_loss("relative", e_quiet, x1, z, std)
    assert float(ratio) == pytest.approx(100.0, rel=1e-4)
    torch.testing.assert_close(data_loss("normalised", x1_hat, x1, z, std), (x1_hat - x1).pow(2).mean())
    with pytest.raises(ValueError, match="data_loss"):
        FlowConfig(data_loss="l1")


def test_t0_prob_puts_a_share_of_training_times_at_zero():
    g = torch.Generator().manual_seed(3)
    t = sample_timesteps(FlowConfig(t0_prob=0.5), 8000, generator=g)
    assert abs(float((t == 0).float().mean()) - 0.5) < 0.03 and bool((t < 1).all())
    with pytest.raises(ValueError, match="t0_prob"):
        FlowConfig(t0_prob=1.0)


def test_objective_and_prompt_dropout_live_in_flow():
    from separation.flow import FlowConfig, drop_prompts, objective

    cfg = FlowConfig(timestep_sampler="uniform")
    x1 = torch.randn(4, 6, 8)
    z_mix = torch.randn(4, 6, 4)
    gen = torch.Generator().manual_seed(0)

    def exact(xt, t):  # the true velocity x1 - x0, recovered from x_t = (1 - t) x0 + t x1
        tt = t.view(-1, 1, 1)
        return (x1 - xt) / (1 - tt)

    loss, t, _ = objective(cfg, x1, z_mix, exact, generator=gen)
    assert t.shape == (4,) and float(loss) < 1e-8
    bad, _, _ = objective(cfg, x1, z_mix, lambda xt, t: torch.zeros_like(xt), generator=gen)
    assert float(bad) > 0.5
    calls = []
    cond = drop_prompts(FlowConfig(p_drop_text=1.0, p_drop_span=0.0, p_drop_video=1.0), "cond",
                        lambda c, kind, rows: calls.append((kind, rows.tolist())) or c, 3)
    assert cond == "cond"
    assert calls == [("text", [True] * 3), ("span", [False] * 3), ("video", [True] * 3)]
