#!/usr/bin/env python3
"""Builds full-size Stable Diffusion pipelines with seeded random weights, in optimum's ONNX layout.

The networks have the exact shapes of the released checkpoints, so the files are as large and as
slow as the real ones, but they hold ``torch.manual_seed`` noise instead of trained weights. They
exist to measure loading, memory and step time of the real architectures without downloading them.

Architectures (all written here from the published configs, no diffusers/transformers import):

* ``sd-turbo`` = SD 2.1 base: UNet2DConditionModel with block_out_channels [320, 640, 1280, 1280],
  heads [5, 10, 20, 20] (head dim 64), linear proj_in/proj_out, cross_attention_dim 1024; the
  OpenCLIP ViT-H/14 text tower as a CLIPTextModel cut to 23 layers (SD 2.x conditions on the
  penultimate layer), gelu; AutoencoderKL [128, 256, 512, 512].
* ``sd15``: the same UNet with 8 heads, conv proj_in/proj_out and cross_attention_dim 768; CLIP
  ViT-L/14 text (12 layers, quick_gelu); the same AutoencoderKL.

Output folder (``optimum-cli export onnx`` for stable-diffusion)::

    model_index.json  scheduler/scheduler_config.json  tokenizer/{vocab.json,merges.txt,...}
    text_encoder/{model.onnx[,model.onnx_data],config.json}
    unet/{model.onnx,model.onnx_data,config.json}
    vae_decoder/{model.onnx,config.json}  vae_encoder/{model.onnx,config.json}

Example::

    /usr/bin/python3 training/build_sd_random.py --arch sd-turbo --dtype fp32 \\
        --out /work/fullsize/sd-turbo-fp32

``--dtype fp16`` exports the fp32 graph and then converts it (torch 1.13 cannot run half
convolutions on the CPU, so it cannot trace a ``.half()`` model): weights, graph inputs and
outputs become float16, and only the sinusoidal timestep embedding stays float32, as diffusers
computes it (``get_timestep_embedding`` works in float32, then casts to the sample dtype).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN_TOKENIZER = os.path.normpath(
    os.path.join(HERE, '..', '..', 'shared', 'golden', 'pipeline', 'tiny-sd-optimum', 'tokenizer')
)
TOKENIZER_FILES = ('vocab.json', 'merges.txt', 'tokenizer_config.json', 'special_tokens_map.json')
COMPONENTS = ('text_encoder', 'unet', 'vae_decoder', 'vae_encoder')
# Published counts: vae_decoder includes post_quant_conv (20), vae_encoder quant_conv (72).
# Weights above this go to one `model.onnx_data` beside `model.onnx` (protobuf stops at 2 GiB;
# the ViT-H text encoder at 1.36 GB also goes external, as the brief asks).
EXTERNAL_DATA_BYTES = 1 << 30
FP16_MAX = 65504.0


# --------------------------------------------------------------------------------------------
# Architecture tables (one frozen dict per checkpoint; the config.json files are derived from them)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextSpec:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    act: str  # 'gelu' (erf) or 'quick_gelu'
    projection_dim: int
    vocab: int = 49408
    positions: int = 77
    eps: float = 1e-5


@dataclass(frozen=True)
class UNetSpec:
    cross_attention_dim: int
    heads: tuple  # diffusers' `attention_head_dim`, which is in fact the number of heads
    linear_projection: bool
    sample_size: int
    channels: tuple = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    groups: int = 32
    eps: float = 1e-5


@dataclass(frozen=True)
class VaeSpec:
    sample_size: int
    channels: tuple = (128, 256, 512, 512)
    layers_per_block: int = 2
    latent: int = 4
    groups: int = 32
    scaling_factor: float = 0.18215


@dataclass(frozen=True)
class Arch:
    name: str
    text: TextSpec
    unet: UNetSpec
    vae: VaeSpec
    scheduler: dict = field(hash=False)
    pad_token: str  # SD 2.x tokenizers pad with "!" (id 0), SD 1.x with <|endoftext|>
    expected_params: dict = field(hash=False)


ARCHS = {
    'sd-turbo': Arch(
        name='sd-turbo',
        text=TextSpec(hidden=1024, layers=23, heads=16, intermediate=4096, act='gelu', projection_dim=512),
        unet=UNetSpec(cross_attention_dim=1024, heads=(5, 10, 20, 20), linear_projection=True, sample_size=64),
        vae=VaeSpec(sample_size=768),
        scheduler={
            '_class_name': 'EulerDiscreteScheduler',
            '_diffusers_version': '0.24.0.dev0',
            'beta_end': 0.012,
            'beta_schedule': 'scaled_linear',
            'beta_start': 0.00085,
            'clip_sample': False,
            'interpolation_type': 'linear',
            'num_train_timesteps': 1000,
            'prediction_type': 'epsilon',
            'sample_max_value': 1.0,
            'set_alpha_to_one': False,
            'skip_prk_steps': True,
            'steps_offset': 1,
            'timestep_spacing': 'trailing',
            'trained_betas': None,
            'use_karras_sigmas': False,
        },
        pad_token='!',
        expected_params={'text_encoder': 340_387_840, 'unet': 865_910_724,
                         'vae_decoder': 49_490_199, 'vae_encoder': 34_163_664},
    ),
    'sd15': Arch(
        name='sd15',
        text=TextSpec(hidden=768, layers=12, heads=12, intermediate=3072, act='quick_gelu', projection_dim=768),
        unet=UNetSpec(cross_attention_dim=768, heads=(8, 8, 8, 8), linear_projection=False, sample_size=64),
        vae=VaeSpec(sample_size=512),
        scheduler={
            '_class_name': 'PNDMScheduler',
            '_diffusers_version': '0.6.0',
            'beta_end': 0.012,
            'beta_schedule': 'scaled_linear',
            'beta_start': 0.00085,
            'clip_sample': False,
            'num_train_timesteps': 1000,
            'prediction_type': 'epsilon',
            'set_alpha_to_one': False,
            'skip_prk_steps': True,
            'steps_offset': 1,
            'timestep_spacing': 'leading',
            'trained_betas': None,
        },
        pad_token='<|endoftext|>',
        expected_params={'text_encoder': 123_060_480, 'unet': 859_520_964,
                         'vae_decoder': 49_490_199, 'vae_encoder': 34_163_664},
    ),
}


# --------------------------------------------------------------------------------------------
# CLIP text transformer (pre-LayerNorm, causal self-attention)
# --------------------------------------------------------------------------------------------


class ClipAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        # [b, n, d] -> [b, heads, n, d/heads]
        q = (self.q_proj(x) * self.scale).reshape(b, n, self.heads, -1).transpose(1, 2)
        k = self.k_proj(x).reshape(b, n, self.heads, -1).transpose(1, 2)
        v = self.v_proj(x).reshape(b, n, self.heads, -1).transpose(1, 2)
        w = torch.softmax(q @ k.transpose(-1, -2) + mask, dim=-1)
        return self.out_proj((w @ v).transpose(1, 2).reshape(b, n, d))


class ClipLayer(nn.Module):
    def __init__(self, s: TextSpec):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(s.hidden, eps=s.eps)
        self.self_attn = ClipAttention(s.hidden, s.heads)
        self.layer_norm2 = nn.LayerNorm(s.hidden, eps=s.eps)
        self.fc1 = nn.Linear(s.hidden, s.intermediate)
        self.fc2 = nn.Linear(s.intermediate, s.hidden)
        self.quick = s.act == 'quick_gelu'

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x), mask)
        h = self.fc1(self.layer_norm2(x))
        # quick_gelu is OpenAI CLIP's sigmoid approximation; OpenCLIP ViT-H uses the erf GELU.
        h = h * torch.sigmoid(1.702 * h) if self.quick else F.gelu(h)
        return x + self.fc2(h)


class ClipTextModel(nn.Module):
    """CLIPTextModel: returns (last_hidden_state after final_layer_norm, pooler_output at the EOS)."""

    def __init__(self, s: TextSpec):
        super().__init__()
        self.token_embedding = nn.Embedding(s.vocab, s.hidden)
        self.position_embedding = nn.Embedding(s.positions, s.hidden)
        self.layers = nn.ModuleList(ClipLayer(s) for _ in range(s.layers))
        self.final_layer_norm = nn.LayerNorm(s.hidden, eps=s.eps)
        self.register_buffer('position_ids', torch.arange(s.positions)[None], persistent=False)
        # Additive causal mask; -1e9 becomes -65504 under the fp16 conversion, still a hard zero.
        causal = torch.full((s.positions, s.positions), -1e9).triu(1)
        self.register_buffer('causal_mask', causal, persistent=False)

    def forward(self, input_ids: torch.Tensor):
        n = input_ids.shape[1]
        ids = input_ids.long()
        x = self.token_embedding(ids) + self.position_embedding(self.position_ids[:, :n])
        mask = self.causal_mask[:n, :n]
        for layer in self.layers:
            x = layer(x, mask)
        x = self.final_layer_norm(x)
        # CLIP pools at the first highest id, the EOS token (49407) in every CLIP vocabulary.
        pooled = x[torch.arange(x.shape[0]), ids.argmax(dim=-1)]
        return x, pooled


# --------------------------------------------------------------------------------------------
# UNet2DConditionModel (SD 1.x / 2.x)
# --------------------------------------------------------------------------------------------


class ResnetBlock(nn.Module):
    """GroupNorm, SiLU, conv, (+ time embedding), GroupNorm, SiLU, conv, plus the (1x1) shortcut."""

    def __init__(self, cin: int, cout: int, temb: int | None, groups: int, eps: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout) if temb else None
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.time_emb_proj is not None:
            h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class Attention(nn.Module):
    """Multi-head attention with bias-free q/k/v (UNet) or biased (VAE), and a biased output."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None, bias: bool = False):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        kv = context_dim or dim
        self.to_q = nn.Linear(dim, dim, bias=bias)
        self.to_k = nn.Linear(kv, dim, bias=bias)
        self.to_v = nn.Linear(kv, dim, bias=bias)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        ctx = x if context is None else context
        b, n, d = x.shape
        m = ctx.shape[1]
        q = self.to_q(x).reshape(b, n, self.heads, -1).transpose(1, 2)
        k = self.to_k(ctx).reshape(b, m, self.heads, -1).transpose(1, 2)
        v = self.to_v(ctx).reshape(b, m, self.heads, -1).transpose(1, 2)
        w = torch.softmax((q @ k.transpose(-1, -2)) * self.scale, dim=-1)
        return self.to_out((w @ v).transpose(1, 2).reshape(b, n, d))


class TransformerBlock(nn.Module):
    """BasicTransformerBlock: self-attention, cross-attention, GEGLU feed-forward (4x), pre-LN."""

    def __init__(self, dim: int, heads: int, context_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, context_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff_in = nn.Linear(dim, dim * 8)  # GEGLU: value and gate, 4*dim each
        self.ff_out = nn.Linear(dim * 4, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        value, gate = self.ff_in(self.norm3(x)).chunk(2, dim=-1)
        return x + self.ff_out(value * F.gelu(gate))


class SpatialTransformer(nn.Module):
    """Transformer2DModel with one block; proj_in/proj_out are 1x1 convs (SD1) or linears (SD2)."""

    def __init__(self, dim: int, heads: int, context_dim: int, linear: bool, groups: int):
        super().__init__()
        self.linear = linear
        self.norm = nn.GroupNorm(groups, dim, eps=1e-6)
        self.proj_in = nn.Linear(dim, dim) if linear else nn.Conv2d(dim, dim, 1)
        self.block = TransformerBlock(dim, heads, context_dim)
        self.proj_out = nn.Linear(dim, dim) if linear else nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        if not self.linear:
            y = self.proj_in(y)
        y = y.reshape(b, c, h * w).transpose(1, 2)  # [b, h*w, c]
        if self.linear:
            y = self.proj_in(y)
        y = self.block(y, context)
        if self.linear:
            y = self.proj_out(y)
        y = y.transpose(1, 2).reshape(b, c, h, w)
        if not self.linear:
            y = self.proj_out(y)
        return x + y


class Downsample(nn.Module):
    def __init__(self, c: int, pad_right: bool = False):
        super().__init__()
        # The VAE pads (0, 1, 0, 1) and convolves unpadded; the UNet pads 1 on every side.
        self.pad_right = pad_right
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=0 if pad_right else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad_right:
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode='nearest'))


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding as diffusers computes it for SD (flip_sin_to_cos, freq_shift 0)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    arg = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(arg), torch.sin(arg)], dim=-1)


class UNet(nn.Module):
    def __init__(self, s: UNetSpec):
        super().__init__()
        ch, g, eps, L = s.channels, s.groups, s.eps, s.layers_per_block
        temb = ch[0] * 4
        self.s = s

        def st(c: int, i: int) -> SpatialTransformer:
            return SpatialTransformer(c, s.heads[i], s.cross_attention_dim, s.linear_projection, g)

        self.conv_in = nn.Conv2d(4, ch[0], 3, padding=1)
        self.time_linear_1 = nn.Linear(ch[0], temb)
        self.time_linear_2 = nn.Linear(temb, temb)

        # Down: CrossAttnDownBlock2D x3, DownBlock2D. Each level: L (resnet[, attention]), downsample.
        self.down = nn.ModuleList()
        cin = ch[0]
        for i, c in enumerate(ch):
            level = nn.Module()
            level.resnets = nn.ModuleList(ResnetBlock(cin if j == 0 else c, c, temb, g, eps) for j in range(L))
            level.attentions = nn.ModuleList(st(c, i) for _ in range(L)) if i < 3 else None
            level.downsample = Downsample(c) if i < len(ch) - 1 else None
            self.down.append(level)
            cin = c

        self.mid_resnet_1 = ResnetBlock(ch[-1], ch[-1], temb, g, eps)
        self.mid_attention = st(ch[-1], len(ch) - 1)
        self.mid_resnet_2 = ResnetBlock(ch[-1], ch[-1], temb, g, eps)

        # Up: UpBlock2D, CrossAttnUpBlock2D x3; L+1 resnets each, eating one skip each.
        skips = [ch[0]]
        for i, c in enumerate(ch):
            skips += [c] * L + ([c] if i < len(ch) - 1 else [])
        rch = list(reversed(ch))
        rheads = list(reversed(range(len(ch))))
        self.up = nn.ModuleList()
        prev = ch[-1]
        for i, c in enumerate(rch):
            level = nn.Module()
            resnets = []
            for j in range(L + 1):
                resnets.append(ResnetBlock((prev if j == 0 else c) + skips.pop(), c, temb, g, eps))
            level.resnets = nn.ModuleList(resnets)
            level.attentions = nn.ModuleList(st(c, rheads[i]) for _ in range(L + 1)) if i > 0 else None
            level.upsample = Upsample(c) if i < len(ch) - 1 else None
            self.up.append(level)
            prev = c
        assert not skips

        self.conv_norm_out = nn.GroupNorm(g, ch[0], eps=eps)
        self.conv_out = nn.Conv2d(ch[0], 4, 3, padding=1)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor):
        # A scalar (optimum), [1] or [batch] timestep, broadcast to the batch.
        t = timestep.reshape(-1).expand(sample.shape[0])
        emb = timestep_embedding(t, self.s.channels[0]).to(sample.dtype)
        emb = self.time_linear_2(F.silu(self.time_linear_1(emb)))
        ctx = encoder_hidden_states

        x = self.conv_in(sample)
        skips = [x]
        for level in self.down:
            for j, resnet in enumerate(level.resnets):
                x = resnet(x, emb)
                if level.attentions is not None:
                    x = level.attentions[j](x, ctx)
                skips.append(x)
            if level.downsample is not None:
                x = level.downsample(x)
                skips.append(x)

        x = self.mid_resnet_2(self.mid_attention(self.mid_resnet_1(x, emb), ctx), emb)

        for level in self.up:
            for j, resnet in enumerate(level.resnets):
                x = resnet(torch.cat([x, skips.pop()], dim=1), emb)
                if level.attentions is not None:
                    x = level.attentions[j](x, ctx)
            if level.upsample is not None:
                x = level.upsample(x)

        return self.conv_out(F.silu(self.conv_norm_out(x)))


# --------------------------------------------------------------------------------------------
# AutoencoderKL encoder / decoder
# --------------------------------------------------------------------------------------------


class VaeMid(nn.Module):
    """UNetMidBlock2D: resnet, single-head self-attention with its own GroupNorm, resnet."""

    def __init__(self, c: int, groups: int):
        super().__init__()
        self.resnet_1 = ResnetBlock(c, c, None, groups, 1e-6)
        self.attn_norm = nn.GroupNorm(groups, c, eps=1e-6)
        self.attn = Attention(c, 1, bias=True)
        self.resnet_2 = ResnetBlock(c, c, None, groups, 1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resnet_1(x)
        b, c, h, w = x.shape
        y = self.attn_norm(x).reshape(b, c, h * w).transpose(1, 2)
        x = x + self.attn(y).transpose(1, 2).reshape(b, c, h, w)
        return self.resnet_2(x)


class VaeEncoder(nn.Module):
    """Encoder + quant_conv: image [b,3,H,W] -> moments [b, 2*latent, H/8, W/8] (mean, logvar)."""

    def __init__(self, s: VaeSpec):
        super().__init__()
        ch, g = s.channels, s.groups
        self.conv_in = nn.Conv2d(3, ch[0], 3, padding=1)
        self.down = nn.ModuleList()
        cin = ch[0]
        for i, c in enumerate(ch):
            level = nn.Module()
            level.resnets = nn.ModuleList(
                ResnetBlock(cin if j == 0 else c, c, None, g, 1e-6) for j in range(s.layers_per_block)
            )
            level.downsample = Downsample(c, pad_right=True) if i < len(ch) - 1 else None
            self.down.append(level)
            cin = c
        self.mid = VaeMid(ch[-1], g)
        self.conv_norm_out = nn.GroupNorm(g, ch[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(ch[-1], 2 * s.latent, 3, padding=1)
        self.quant_conv = nn.Conv2d(2 * s.latent, 2 * s.latent, 1)

    def forward(self, sample: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(sample)
        for level in self.down:
            for resnet in level.resnets:
                x = resnet(x)
            if level.downsample is not None:
                x = level.downsample(x)
        x = self.conv_out(F.silu(self.conv_norm_out(self.mid(x))))
        return self.quant_conv(x)


class VaeDecoder(nn.Module):
    """post_quant_conv + Decoder: latents [b,latent,h,w] -> image [b,3,8h,8w] in about [-1, 1]."""

    def __init__(self, s: VaeSpec):
        super().__init__()
        ch, g = list(reversed(s.channels)), s.groups
        self.post_quant_conv = nn.Conv2d(s.latent, s.latent, 1)
        self.conv_in = nn.Conv2d(s.latent, ch[0], 3, padding=1)
        self.mid = VaeMid(ch[0], g)
        self.up = nn.ModuleList()
        prev = ch[0]
        for i, c in enumerate(ch):
            level = nn.Module()
            level.resnets = nn.ModuleList(
                ResnetBlock(prev if j == 0 else c, c, None, g, 1e-6) for j in range(s.layers_per_block + 1)
            )
            level.upsample = Upsample(c) if i < len(ch) - 1 else None
            self.up.append(level)
            prev = c
        self.conv_norm_out = nn.GroupNorm(g, ch[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(ch[-1], 3, 3, padding=1)

    def forward(self, latent_sample: torch.Tensor) -> torch.Tensor:
        x = self.mid(self.conv_in(self.post_quant_conv(latent_sample)))
        for level in self.up:
            for resnet in level.resnets:
                x = resnet(x)
            if level.upsample is not None:
                x = level.upsample(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


# --------------------------------------------------------------------------------------------
# Configs written beside each model.onnx (diffusers / transformers keys)
# --------------------------------------------------------------------------------------------


def text_config(a: Arch, dtype: str) -> dict:
    s = a.text
    return {
        '_name_or_path': f'random-{a.name}/text_encoder',
        'architectures': ['CLIPTextModel'],
        'model_type': 'clip_text_model',
        'attention_dropout': 0.0,
        'bos_token_id': 0,
        'dropout': 0.0,
        'eos_token_id': 2,
        'hidden_act': s.act,
        'hidden_size': s.hidden,
        'initializer_factor': 1.0,
        'initializer_range': 0.02,
        'intermediate_size': s.intermediate,
        'layer_norm_eps': s.eps,
        'max_position_embeddings': s.positions,
        'num_attention_heads': s.heads,
        'num_hidden_layers': s.layers,
        'pad_token_id': 1,
        'projection_dim': s.projection_dim,
        'torch_dtype': 'float16' if dtype == 'fp16' else 'float32',
        'vocab_size': s.vocab,
    }


def unet_config(a: Arch) -> dict:
    s = a.unet
    heads = list(s.heads)
    return {
        '_class_name': 'UNet2DConditionModel',
        '_diffusers_version': '0.24.0.dev0',
        'act_fn': 'silu',
        'attention_head_dim': heads if a.name == 'sd-turbo' else heads[0],
        'block_out_channels': list(s.channels),
        'center_input_sample': False,
        'class_embed_type': None,
        'cross_attention_dim': s.cross_attention_dim,
        'down_block_types': ['CrossAttnDownBlock2D'] * 3 + ['DownBlock2D'],
        'downsample_padding': 1,
        'dual_cross_attention': False,
        'flip_sin_to_cos': True,
        'freq_shift': 0,
        'in_channels': 4,
        'layers_per_block': s.layers_per_block,
        'mid_block_scale_factor': 1,
        'mid_block_type': 'UNetMidBlock2DCrossAttn',
        'norm_eps': s.eps,
        'norm_num_groups': s.groups,
        'num_class_embeds': None,
        'only_cross_attention': False,
        'out_channels': 4,
        'resnet_time_scale_shift': 'default',
        'sample_size': s.sample_size,
        'time_cond_proj_dim': None,
        'up_block_types': ['UpBlock2D'] + ['CrossAttnUpBlock2D'] * 3,
        'upcast_attention': False,
        'use_linear_projection': s.linear_projection,
    }


def vae_config(a: Arch) -> dict:
    s = a.vae
    return {
        '_class_name': 'AutoencoderKL',
        '_diffusers_version': '0.24.0.dev0',
        'act_fn': 'silu',
        'block_out_channels': list(s.channels),
        'down_block_types': ['DownEncoderBlock2D'] * 4,
        'force_upcast': True,
        'in_channels': 3,
        'latent_channels': s.latent,
        'layers_per_block': s.layers_per_block,
        'norm_num_groups': s.groups,
        'out_channels': 3,
        'sample_size': s.sample_size,
        'scaling_factor': s.scaling_factor,
        'up_block_types': ['UpDecoderBlock2D'] * 4,
    }


def model_index(a: Arch) -> dict:
    # What `optimum-cli export onnx` keeps: the source pipeline's model_index.json.
    return {
        '_class_name': 'StableDiffusionPipeline',
        '_diffusers_version': '0.24.0.dev0',
        'feature_extractor': [None, None],
        'image_encoder': [None, None],
        'requires_safety_checker': False,
        'safety_checker': [None, None],
        'scheduler': ['diffusers', a.scheduler['_class_name']],
        'text_encoder': ['transformers', 'CLIPTextModel'],
        'tokenizer': ['transformers', 'CLIPTokenizer'],
        'unet': ['diffusers', 'UNet2DConditionModel'],
        'vae': ['diffusers', 'AutoencoderKL'],
    }


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


@dataclass
class ExportSpec:
    module: nn.Module
    args: tuple
    input_names: list
    output_names: list
    dynamic_axes: dict


def make_component(name: str, a: Arch, seed: int, ids_dtype: torch.dtype) -> ExportSpec:
    # One seed per component, so building a subset gives the same weights as a full build.
    torch.manual_seed(seed + COMPONENTS.index(name))
    if name == 'text_encoder':
        m = ClipTextModel(a.text)
        ids = torch.full((1, a.text.positions), 49407, dtype=ids_dtype)
        ids[0, :5] = torch.tensor([49406, 320, 1125, 539, 320])
        return ExportSpec(m, (ids,), ['input_ids'], ['last_hidden_state', 'pooler_output'], {
            'input_ids': {0: 'batch_size', 1: 'sequence_length'},
            'last_hidden_state': {0: 'batch_size', 1: 'sequence_length'},
            'pooler_output': {0: 'batch_size'},
        })
    if name == 'unet':
        m = UNet(a.unet)
        # Trace at 8x8 latents: three stride-2 levels need sides divisible by 8; shapes stay dynamic.
        args = (torch.randn(2, 4, 8, 8), torch.tensor(999.0),
                torch.randn(2, a.text.positions, a.unet.cross_attention_dim))
        return ExportSpec(m, args, ['sample', 'timestep', 'encoder_hidden_states'], ['out_sample'], {
            'sample': {0: 'batch_size', 2: 'height', 3: 'width'},
            'encoder_hidden_states': {0: 'batch_size', 1: 'sequence_length'},
            'out_sample': {0: 'batch_size', 2: 'height', 3: 'width'},
        })
    if name == 'vae_decoder':
        m = VaeDecoder(a.vae)
        return ExportSpec(m, (torch.randn(1, 4, 8, 8),), ['latent_sample'], ['sample'], {
            'latent_sample': {0: 'batch_size', 2: 'latent_height', 3: 'latent_width'},
            'sample': {0: 'batch_size', 2: 'latent_height * 8', 3: 'latent_width * 8'},
        })
    if name == 'vae_encoder':
        m = VaeEncoder(a.vae)
        return ExportSpec(m, (torch.randn(1, 3, 64, 64),), ['sample'], ['latent_parameters'], {
            'sample': {0: 'batch_size', 2: 'sample_height', 3: 'sample_width'},
            'latent_parameters': {0: 'batch_size', 2: 'sample_height / 8', 3: 'sample_width / 8'},
        })
    raise ValueError(f'unknown component {name!r}')


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def log(msg: str) -> None:
    print(f'[{time.strftime("%H:%M:%S")} rss_peak={peak_rss_mb():.0f}MB] {msg}', flush=True)


# --------------------------------------------------------------------------------------------
# fp32 -> fp16 graph conversion
# --------------------------------------------------------------------------------------------


def _float_tensors(model: onnx.ModelProto) -> set:
    """Names of float32 values, from shape inference on a copy whose large weights are stubs."""
    skel = onnx.ModelProto()
    skel.ir_version = model.ir_version
    skel.opset_import.extend(model.opset_import)
    g = skel.graph
    g.name = model.graph.name
    g.node.extend(model.graph.node)
    g.input.extend(model.graph.input)
    g.output.extend(model.graph.output)
    for t in model.graph.initializer:
        if t.data_type == TensorProto.FLOAT and np.prod(t.dims, dtype=np.int64) > 64:
            # Inference needs only the type and dims of a weight; small (shape) tensors stay whole.
            stub = g.initializer.add()
            stub.name, stub.data_type = t.name, t.data_type
            stub.dims.extend(t.dims)
            stub.data_location = TensorProto.EXTERNAL
            e = stub.external_data.add()
            e.key, e.value = 'location', 'stub'
        else:
            g.initializer.append(t)
    inferred = onnx.shape_inference.infer_shapes(skel)
    floats = set()
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
            floats.add(vi.name)
    for t in model.graph.initializer:
        if t.data_type == TensorProto.FLOAT:
            floats.add(t.name)
    for n in model.graph.node:
        if n.op_type == 'Constant':
            for at in n.attribute:
                if at.name == 'value' and at.t.data_type == TensorProto.FLOAT:
                    floats.update(n.output)
    return floats


def _to_fp16(t: TensorProto) -> TensorProto:
    arr = numpy_helper.to_array(t)
    out = numpy_helper.from_array(np.clip(arr, -FP16_MAX, FP16_MAX).astype(np.float16), t.name)
    return out


def convert_fp16(model: onnx.ModelProto, fp32_island_from: tuple = ()) -> onnx.ModelProto:
    """Converts float32 weights, values and graph I/O to float16, in place.

    Nodes reachable from the inputs in ``fp32_island_from`` before the first MatMul/Gemm stay
    float32 (the sinusoidal timestep embedding); Casts are inserted at the island's borders.
    Resize's roi/scales inputs stay float32 as the operator requires.
    """
    g = model.graph
    floats = _float_tensors(model)
    consumers: dict = {}
    for i, n in enumerate(g.node):
        for x in n.input:
            consumers.setdefault(x, []).append(i)

    # 1. The float32 island: forward from the island inputs, stopping at the first matmul.
    island = set()
    frontier = [x for x in fp32_island_from]
    while frontier:
        v = frontier.pop()
        for i in consumers.get(v, []):
            n = g.node[i]
            if i in island or n.op_type in ('MatMul', 'Gemm'):
                continue
            island.add(i)
            frontier.extend(n.output)
    # Constants that feed only island nodes are island too (keeps e.g. the frequencies exact).
    for i, n in enumerate(g.node):
        if n.op_type == 'Constant' and all(c in island for o in n.output for c in consumers.get(o, [])):
            if any(consumers.get(o) for o in n.output):
                island.add(i)
    produced_in_island = {o for i in island for o in g.node[i].output}

    # 2. Initializers.
    keep32 = set()
    for t in g.initializer:
        if t.data_type == TensorProto.FLOAT:
            cs = consumers.get(t.name, [])
            if cs and all(c in island for c in cs):
                keep32.add(t.name)
    new_inits = []
    for t in g.initializer:
        if t.data_type == TensorProto.FLOAT and t.name not in keep32:
            new_inits.append(_to_fp16(t))
        else:
            new_inits.append(t)
    del g.initializer[:]
    g.initializer.extend(new_inits)
    del new_inits
    gc.collect()
    f32_values = keep32 | produced_in_island  # values that remain float32 after conversion

    # 3. Graph inputs and outputs.
    for vi in list(g.input) + list(g.output):
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT and vi.name not in keep32:
            vi.type.tensor_type.elem_type = TensorProto.FLOAT16

    # 4. Rewrite nodes, inserting boundary casts.
    out_nodes = []
    cast_cache: dict = {}
    counter = [0]

    def cast(value: str, to: int) -> str:
        key = (value, to)
        if key not in cast_cache:
            counter[0] += 1
            name = f'{value}__to_{"fp32" if to == TensorProto.FLOAT else "fp16"}_{counter[0]}'
            out_nodes.append(helper.make_node('Cast', [value], [name], to=to, name=f'fp16conv_cast_{counter[0]}'))
            cast_cache[key] = name
        return cast_cache[key]

    graph_outputs = {o.name for o in g.output}
    renamed_outputs = {}
    for i, n in enumerate(g.node):
        in_island = i in island
        if in_island:
            # Float inputs coming from the fp16 side go back up to float32.
            for k, x in enumerate(n.input):
                if x and x in floats and x not in f32_values:
                    n.input[k] = cast(x, TensorProto.FLOAT)
        else:
            for k, x in enumerate(n.input):
                if not x or x not in floats:
                    continue
                if n.op_type == 'Resize' and k in (1, 2):
                    if x not in f32_values:
                        n.input[k] = cast(x, TensorProto.FLOAT)
                elif x in f32_values:
                    n.input[k] = cast(x, TensorProto.FLOAT16)
            if n.op_type == 'Cast':
                for at in n.attribute:
                    if at.name == 'to' and at.i == TensorProto.FLOAT:
                        at.i = TensorProto.FLOAT16
            elif n.op_type == 'Constant':
                for at in n.attribute:
                    if at.name == 'value' and at.t.data_type == TensorProto.FLOAT:
                        feeds_resize_params = any(
                            g.node[c].op_type == 'Resize' and list(g.node[c].input).index(n.output[0]) in (1, 2)
                            for c in consumers.get(n.output[0], [])
                        )
                        if not feeds_resize_params:
                            at.t.CopyFrom(_to_fp16(at.t))
                        else:
                            f32_values.add(n.output[0])
            elif n.op_type == 'ConstantOfShape':
                for at in n.attribute:
                    if at.name == 'value' and at.t.data_type == TensorProto.FLOAT:
                        at.t.CopyFrom(_to_fp16(at.t))
        out_nodes.append(n)
        if in_island:
            for o in n.output:
                if o in graph_outputs and o in floats:
                    renamed_outputs[o] = True

    # Island values read by graph outputs would need renaming; the UNet has none.
    if renamed_outputs:
        raise RuntimeError(f'fp32 island reaches graph outputs: {sorted(renamed_outputs)}')

    del g.node[:]
    g.node.extend(out_nodes)
    del g.value_info[:]
    return model


# --------------------------------------------------------------------------------------------
# Build one component
# --------------------------------------------------------------------------------------------


def weight_bytes(model: onnx.ModelProto) -> int:
    total = 0
    for t in model.graph.initializer:
        total += len(t.raw_data) if t.HasField('raw_data') else 0
    return total


def build_component(name: str, a: Arch, args, out: str) -> dict:
    t0 = time.time()
    ids_dtype = torch.int32 if args.input_ids_dtype == 'int32' else torch.int64
    spec = make_component(name, a, args.seed, ids_dtype)
    spec.module.eval()
    n_params = sum(p.numel() for p in spec.module.parameters())
    expect = a.expected_params[name]
    log(f'{name}: {n_params:,} parameters (published checkpoint: {expect:,}'
        f'{", MATCH" if n_params == expect else ", MISMATCH"}); init {time.time() - t0:.1f}s')

    with torch.no_grad():
        t1 = time.time()
        ref = spec.module(*spec.args)
        refs = ref if isinstance(ref, tuple) else (ref,)
        stats = ', '.join(f'{o}: std {r.std().item():.3g} finite {bool(torch.isfinite(r).all())}'
                          for o, r in zip(spec.output_names, refs))
        log(f'{name}: torch forward on the trace input {time.time() - t1:.1f}s ({stats})')
        if not all(torch.isfinite(r).all() for r in refs):
            raise RuntimeError(f'{name}: non-finite torch outputs')

    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'export-{name}-', dir=out)
    try:
        t2 = time.time()
        tmp_path = os.path.join(tmp, 'model.onnx')
        with torch.no_grad():
            torch.onnx.export(
                spec.module, spec.args, tmp_path,
                input_names=spec.input_names, output_names=spec.output_names,
                dynamic_axes=spec.dynamic_axes, opset_version=args.opset, do_constant_folding=True,
            )
        del spec.module, spec, ref, refs
        gc.collect()
        log(f'{name}: torch.onnx.export {time.time() - t2:.1f}s')

        t3 = time.time()
        model = onnx.load(tmp_path)  # pulls in any per-tensor external files torch wrote
        shutil.rmtree(tmp)
        log(f'{name}: reloaded {time.time() - t3:.1f}s')
        if args.dtype == 'fp16':
            t4 = time.time()
            convert_fp16(model, fp32_island_from=('timestep',) if name == 'unet' else ())
            gc.collect()
            log(f'{name}: converted to fp16 {time.time() - t4:.1f}s')
        model.producer_name = 'build_sd_random.py'
        model.doc_string = f'random-weight {a.name} {name} ({args.dtype}), seed {args.seed}'

        t5 = time.time()
        path = os.path.join(folder, 'model.onnx')
        for stale in ('model.onnx', 'model.onnx_data'):
            if os.path.exists(os.path.join(folder, stale)):
                os.remove(os.path.join(folder, stale))
        external = weight_bytes(model) > EXTERNAL_DATA_BYTES
        if external:
            onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                            location='model.onnx_data', size_threshold=1024)
        else:
            onnx.save_model(model, path)
        del model
        gc.collect()
        onnx.checker.check_model(path)  # path form: works past 2 GB
        log(f'{name}: saved{" with external data" if external else ""} and checked {time.time() - t5:.1f}s')
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)

    config = {'text_encoder': lambda: text_config(a, args.dtype), 'unet': lambda: unet_config(a)}.get(
        name, lambda: vae_config(a))()
    with open(os.path.join(folder, 'config.json'), 'w') as f:
        json.dump(config, f, indent=2)
        f.write('\n')
    sizes = {fn: os.path.getsize(os.path.join(folder, fn)) for fn in sorted(os.listdir(folder))}
    took = time.time() - t0
    log(f'{name}: done in {took:.1f}s; files {sizes}')
    return {'params': n_params, 'seconds': round(took, 1), 'files': sizes}


def write_pipeline_files(a: Arch, out: str) -> None:
    os.makedirs(os.path.join(out, 'scheduler'), exist_ok=True)
    with open(os.path.join(out, 'model_index.json'), 'w') as f:
        json.dump(model_index(a), f, indent=2)
        f.write('\n')
    with open(os.path.join(out, 'scheduler', 'scheduler_config.json'), 'w') as f:
        json.dump(a.scheduler, f, indent=2)
        f.write('\n')
    # Third-party tokenizer data: copied at build time, never committed.
    tok = os.path.join(out, 'tokenizer')
    os.makedirs(tok, exist_ok=True)
    for fn in TOKENIZER_FILES:
        shutil.copyfile(os.path.join(GOLDEN_TOKENIZER, fn), os.path.join(tok, fn))
    if a.pad_token != '<|endoftext|>':
        for fn in ('tokenizer_config.json', 'special_tokens_map.json'):
            p = os.path.join(tok, fn)
            with open(p) as f:
                data = json.load(f)
            data['pad_token'] = a.pad_token
            data.pop('name_or_path', None)
            with open(p, 'w') as f:
                json.dump(data, f, indent=2)
                f.write('\n')


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--arch', choices=sorted(ARCHS), required=True)
    p.add_argument('--dtype', choices=['fp32', 'fp16'], default='fp32')
    p.add_argument('--out', required=True, help='output folder (outside the repo)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--components', default=','.join(COMPONENTS),
                   help=f'comma-separated subset of {",".join(COMPONENTS)}')
    p.add_argument('--input-ids-dtype', choices=['int64', 'int32'], default='int64',
                   help='text_encoder input_ids dtype (optimum today and the golden tiny-sd-optimum: int64)')
    p.add_argument('--opset', type=int, default=17)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--params-only', action='store_true', help='print parameter counts and exit')
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    a = ARCHS[args.arch]
    comps = [c.strip() for c in args.components.split(',') if c.strip()]
    for c in comps:
        if c not in COMPONENTS:
            p.error(f'unknown component {c!r}')

    if args.params_only:
        for c in comps:
            spec = make_component(c, a, args.seed, torch.int64)
            n = sum(q.numel() for q in spec.module.parameters())
            print(f'{a.name} {c}: {n:,} (published {a.expected_params[c]:,})', flush=True)
            del spec
            gc.collect()
        return 0

    out = os.path.abspath(args.out)
    repo = os.path.normpath(os.path.join(HERE, '..'))
    if out == repo or out.startswith(repo + os.sep):
        p.error('write models outside the repository')
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    log(f'building {a.name} {args.dtype} seed {args.seed} -> {out} ({", ".join(comps)})')
    write_pipeline_files(a, out)
    report = {}
    for c in comps:
        report[c] = build_component(c, a, args, out)
    report['total_seconds'] = round(time.time() - t0, 1)
    report['peak_rss_mb'] = round(peak_rss_mb())
    log(f'all done in {report["total_seconds"]}s')
    print(json.dumps({'arch': a.name, 'dtype': args.dtype, 'out': out, **report}), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
