"""Diffusion transformer backbone (the SAM Audio family).

The backbone maps a noisy latent pair, a timestep, the mixture latents and the
prompt features to a velocity. It knows nothing of the training objective, the
prompt dropout or the sampler: those live in :mod:`separation.flow` and
:mod:`separation.model`.

Blocks: RMSNorm, self-attention with qk-norm and rotary position embeddings,
cross-attention to the text memory (with a padding mask), SwiGLU feed-forward,
adaLN-single modulation (one shared MLP of the timestep plus a learned table per
block gives shift/scale/gate for attention and feed-forward; a final
shift/scale before the output projection).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: Number of span anchor ids (null, '+', '-', pad), see :mod:`prompts.span`.
NUM_ANCHOR_IDS = 4


@dataclass
class DiTConfig:
    """Backbone hyper-parameters.

    Attributes:
        latent_dim: codec latent channels ``C``; the backbone reads ``[x_t (2C) | mixture (C)]``
            and writes ``2C`` (target and residual velocities).
        width: model width.
        depth: number of transformer blocks.
        heads: attention heads (``width`` must be divisible by it).
        mlp_ratio: SwiGLU hidden size as a multiple of ``width`` (before the 2/3 factor).
        text_dim: size of the text memory features ``Dt``.
        video_dim: size of the per-frame video features ``Dv`` (0 disables the video path).
        rope_base: rotary embedding base.
        dropout: attention/residual dropout during training.
        pooled_text: also add the masked mean of the text memory, projected, to the timestep
            embedding that drives every block's adaLN modulation (beside cross-attention), so the
            prompt scales and gates whole blocks.
        log_power_input: also read ``log(mixture^2 + 1e-3)`` (per frame and channel), a level view
            of the mixture that a linear input projection of signed coefficients cannot form.
    """

    latent_dim: int = 64
    width: int = 192
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    text_dim: int = 384
    video_dim: int = 64
    rope_base: float = 10000.0
    dropout: float = 0.0
    pooled_text: bool = False
    log_power_input: bool = False


def dit_config(size: str, **overrides) -> DiTConfig:
    """The :class:`DiTConfig` of a named size: the ``dit`` node of ``conf/model/<size>.yaml``, the one
    table of model sizes (``latent_dim``, ``text_dim`` and ``video_dim`` come from the codec and encoders)."""
    from promptsep.release import conf_node, config_from_dict

    return config_from_dict(DiTConfig, {**conf_node("model", size)["dit"], **overrides}, f"model/{size}.yaml dit")


def RMSNorm(dim: int, eps: float = 1e-6, affine: bool = True) -> nn.RMSNorm:
    """Root-mean-square norm over the last dimension (``torch.nn.RMSNorm``), learned scale if ``affine``."""
    return nn.RMSNorm(dim, eps=eps, elementwise_affine=affine)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of ``t`` in [0, 1] (scaled by 1000), ``[B] -> [B, dim]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * 1000.0)[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def rope_cos_sin(length: int, head_dim: int, base: float, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary tables ``[T, head_dim/2]`` (cos, sin) for positions ``0..T-1``."""
    inv = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    pos = torch.arange(length, device=device, dtype=torch.float32)
    ang = pos[:, None] * inv[None]
    return ang.cos().to(dtype), ang.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x [B, H, T, Dh]`` by position (pairs of adjacent features)."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.flatten(-2)


class SelfAttention(nn.Module):
    """Multi-head self-attention with qk-RMSNorm and rotary positions."""

    def __init__(self, width: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.head_dim = width // heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.q_norm = RMSNorm(self.head_dim)
        self.k_norm = RMSNorm(self.head_dim)
        self.out = nn.Linear(width, width)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], key_mask: torch.Tensor | None):
        """``x [B, T, W]``, ``key_mask [B, T]`` (True = valid) -> ``[B, T, W]``."""
        b, t, w = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        mask = key_mask[:, None, None, :] if key_mask is not None else None
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, t, w))


class CrossAttention(nn.Module):
    """Multi-head cross-attention from audio tokens to the prompt memory."""

    def __init__(self, width: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.head_dim = width // heads
        self.q = nn.Linear(width, width, bias=False)
        self.kv = nn.Linear(width, 2 * width, bias=False)
        self.q_norm = RMSNorm(self.head_dim)
        self.k_norm = RMSNorm(self.head_dim)
        self.out = nn.Linear(width, width)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None) -> torch.Tensor:
        """``x [B, T, W]``, ``memory [B, L, W]``, ``memory_mask [B, L]`` (True = valid) -> ``[B, T, W]``."""
        b, t, w = x.shape
        length = memory.shape[1]
        q = self.q_norm(self.q(x).view(b, t, self.heads, self.head_dim).transpose(1, 2))
        k, v = self.kv(memory).view(b, length, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        k = self.k_norm(k)
        mask = None
        if memory_mask is not None:
            # a row with no valid key would give NaN: let it attend to everything (its memory is a null token).
            safe = memory_mask | ~memory_mask.any(dim=1, keepdim=True)
            mask = safe[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, t, w))


class SwiGLU(nn.Module):
    """SwiGLU feed-forward ``W -> hidden -> W``."""

    def __init__(self, width: int, mlp_ratio: float):
        super().__init__()
        hidden = int(2 * width * mlp_ratio / 3)
        hidden = 64 * ((hidden + 63) // 64)
        self.w12 = nn.Linear(width, 2 * hidden, bias=False)
        self.w3 = nn.Linear(hidden, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(a) * b)


class DiTBlock(nn.Module):
    """Self-attention, cross-attention and feed-forward with adaLN-single modulation."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        w = cfg.width
        self.norm1 = RMSNorm(w, affine=False)
        self.attn = SelfAttention(w, cfg.heads, cfg.dropout)
        self.norm_x = RMSNorm(w)
        self.cross = CrossAttention(w, cfg.heads, cfg.dropout)
        self.norm2 = RMSNorm(w, affine=False)
        self.ff = SwiGLU(w, cfg.mlp_ratio)
        # adaLN-single: a per-block learned table added to the shared timestep modulation.
        self.mod_table = nn.Parameter(torch.randn(6, w) / w**0.5)

    def forward(self, x, mod, rope, audio_mask, memory, memory_mask):
        """``x [B, T, W]``, ``mod [B, 6, W]`` -> ``[B, T, W]``."""
        shift1, scale1, gate1, shift2, scale2, gate2 = (mod + self.mod_table[None]).unbind(1)
        h = self.norm1(x) * (1 + scale1[:, None]) + shift1[:, None]
        x = x + gate1[:, None] * self.attn(h, rope, audio_mask)
        x = x + self.cross(self.norm_x(x), memory, memory_mask)
        h = self.norm2(x) * (1 + scale2[:, None]) + shift2[:, None]
        x = x + gate2[:, None] * self.ff(h)
        return x


class DiT(nn.Module):
    """The separation backbone: ``(x_t, t, mixture, prompts) -> velocity``.

    Input packing follows SAM Audio: the noisy target and residual latents and the
    mixture latents are concatenated on channels and projected to the width.
    Span anchors and video features are added to the tokens through ``tanh(gate)``
    with gates starting at zero, so a model starts as if those prompts were absent.
    """

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        if cfg.width % cfg.heads:
            raise ValueError(f"width {cfg.width} is not divisible by heads {cfg.heads}")
        self.cfg = cfg
        w, c = cfg.width, cfg.latent_dim
        self.in_proj = nn.Linear((4 if cfg.log_power_input else 3) * c, w)
        self.t_embed = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        self.t_mod = nn.Sequential(nn.SiLU(), nn.Linear(w, 6 * w))
        self.text_proj = nn.Linear(cfg.text_dim, w)
        self.text_time = nn.Linear(w, w)
        if cfg.pooled_text:
            self.text_pool = nn.Linear(cfg.text_dim, w)
        self.anchor_embed = nn.Embedding(NUM_ANCHOR_IDS, w)
        self.anchor_proj = nn.Linear(w, w)
        self.anchor_gate = nn.Parameter(torch.zeros(1))
        if cfg.video_dim > 0:
            self.video_proj = nn.Conv1d(cfg.video_dim, w, kernel_size=1)
            self.video_norm = nn.LayerNorm(w)
            self.video_gate = nn.Parameter(torch.zeros(1))
        self.blocks = nn.ModuleList([DiTBlock(cfg) for _ in range(cfg.depth)])
        self.final_norm = RMSNorm(w, affine=False)
        self.final_mod = nn.Sequential(nn.SiLU(), nn.Linear(w, 2 * w))
        self.out_proj = nn.Linear(w, 2 * c)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.anchor_embed.weight, std=0.02)
        # modulation starts at identity with closed gates except the residual path, output at zero.
        nn.init.zeros_(self.t_mod[-1].weight)
        nn.init.zeros_(self.t_mod[-1].bias)
        nn.init.zeros_(self.final_mod[-1].weight)
        nn.init.zeros_(self.final_mod[-1].bias)
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def param_count(self) -> int:
        """Number of parameters."""
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        mixture: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor | None = None,
        anchors: torch.Tensor | None = None,
        video: torch.Tensor | None = None,
        audio_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the velocity.

        Args:
            x: noisy ``[target | residual]`` latents ``[B, T, 2C]``.
            t: flow time in [0, 1], ``[B]``.
            mixture: mixture latents ``[B, T, C]``.
            text: text memory ``[B, L, Dt]``.
            text_mask: ``[B, L]`` bool, True for real tokens.
            anchors: span anchor ids ``[B, T]`` (0 null, 1 '+', 2 '-', 3 pad) or None.
            video: video features aligned to latent frames ``[B, T, Dv]`` or None.
            audio_mask: ``[B, T]`` bool, True for real (not padded) frames.

        Returns:
            Velocity ``[B, T, 2C]``.
        """
        b, length, _ = x.shape
        if mixture.shape[:2] != (b, length):
            raise ValueError(f"mixture latents {tuple(mixture.shape)} do not match x {tuple(x.shape)}")
        feats = [x, mixture]
        if self.cfg.log_power_input:
            feats.append(torch.log(mixture.pow(2) + 1e-3))
        h = self.in_proj(torch.cat(feats, dim=-1))
        temb = self.t_embed(timestep_embedding(t, self.cfg.width).to(h.dtype))
        if self.cfg.pooled_text:
            m = (text_mask if text_mask is not None else torch.ones(text.shape[:2], dtype=torch.bool,
                                                                     device=text.device)).to(text.dtype)
            pooled = (text * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp_min(1.0)
            temb = temb + self.text_pool(pooled)
        if anchors is not None:
            h = h + torch.tanh(self.anchor_gate) * self.anchor_proj(self.anchor_embed(anchors))
        if video is not None:
            if self.cfg.video_dim <= 0:
                raise ValueError("this backbone was built without a video path (video_dim=0)")
            v = self.video_norm(self.video_proj(video.transpose(1, 2)).transpose(1, 2))
            h = h + torch.tanh(self.video_gate) * v
        memory = self.text_proj(text) + self.text_time(temb)[:, None]
        mod = self.t_mod(temb).view(b, 6, -1)
        rope = rope_cos_sin(length, self.cfg.width // self.cfg.heads, self.cfg.rope_base, h.device, h.dtype)
        for block in self.blocks:
            h = block(h, mod, rope, audio_mask, memory, text_mask)
        shift, scale = self.final_mod(temb).chunk(2, dim=-1)
        h = self.final_norm(h) * (1 + scale[:, None]) + shift[:, None]
        return self.out_proj(h)
