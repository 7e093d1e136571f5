#!/usr/bin/env python3
"""Write models/tiny-shapes/README.md (the model card) from training_stats.json + the JSON files."""
import json, os, sys

out = sys.argv[1] if len(sys.argv) > 1 else "models/tiny-shapes"
note = sys.argv[2] if len(sys.argv) > 2 else ""
S = json.load(open(os.path.join(out, "training_stats.json")))
H = json.load(open(os.path.join(out, "heldout.json")))
W = json.load(open(os.path.join(out, "world.json")))
tc = json.load(open(os.path.join(out, "tokenizer/tokenizer_config.json")))
te = json.load(open(os.path.join(out, "text_encoder/config.json")))
size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(out) for f in fs)
P = S["params"]
E = S["eval"]
pct = lambda v: f"{100 * v:.0f}%"
rows = "\n".join(f"| {g} | {pct(E[g]['colour'])} | {pct(E[g]['shape'])} | {pct(E[g]['position'])} | {pct(E[g]['all'])} |" for g in ["7.5", "1.0"])
held = "\n".join(f"- {h['color']} {h['shape']} on {h['background']}" for h in H)
card = f"""# tiny-shapes — the bundled default text-to-image model

A small Stable-Diffusion-style latent diffusion model trained from scratch (CPU, seeded) on a synthetic
world of flat-coloured shapes. Standard diffusers/optimum ONNX layout; total size {size / 1e6:.1f} MB.
Reproduce: `/usr/bin/python3 training/train.py --out models/tiny-shapes` (see `training/README.md`).

## Layout
```
model_index.json            OnnxStableDiffusionPipeline; "_defaults": 20 steps, guidance 7.5, 64x64
scheduler/scheduler_config.json   DDIMScheduler, scaled_linear 0.00085..0.012, 1000 steps, epsilon,
                                  timestep_spacing "trailing", set_alpha_to_one false, steps_offset 1
tokenizer/{{vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json}}   CLIP-style BPE
text_encoder/{{model.onnx, config.json}}
unet/{{model.onnx, config.json}}
vae_decoder/{{model.onnx, config.json}}
world.json      grammar vocabulary: colours (RGB), backgrounds (RGB), shapes, sizes (px), positions (x, y), templates
heldout.json    the (color, shape, background) combos never seen in training
contact-sheet.png   first 40 held-out evaluation prompts, guidance 7.5, 20 DDIM steps (Python sampler)
training_stats.json all measured numbers of the run that produced these files
```

## ONNX interfaces (opset 14, fp32)
| model | inputs | outputs |
|---|---|---|
| text_encoder | `input_ids` int64 [batch, {tc['model_max_length']}] | `last_hidden_state` float32 [batch, {tc['model_max_length']}, {te['hidden_size']}], `pooler_output` float32 [batch, {te['hidden_size']}] |
| unet | `sample` float32 [batch, 4, h, w]; `timestep` float32 [N] with N = batch or 1 (broadcast); `encoder_hidden_states` float32 [batch, {tc['model_max_length']}, {te['hidden_size']}] | `out_sample` float32 [batch, 4, h, w] (predicted noise) |
| vae_decoder | `latent_sample` float32 [batch, 4, h, w] | `sample` float32 [batch, 3, 8h, 8w] in [-1, 1]; image = (sample * 0.5 + 0.5).clamp(0, 1) |

Batch, h and w are dynamic (trained at h = w = 8, i.e. 64x64 images). Latents are divided by
`vae_decoder/config.json` `scaling_factor` = {S['scaling_factor']:.6f} before decoding (1 / std of the training latents;
per-channel latent means {S['latent_channel_mean']}, so no shift is needed).

Tokenizer: token window {tc['model_max_length']}; ids = [BOS] + BPE ids[:{tc['model_max_length'] - 2}] + [EOS], padded with EOS
(`<|endoftext|>`, id {te['eos_token_id']}); BOS `<|startoftext|>` id {te['bos_token_id']}; vocab {te['vocab_size']} (256 bytes, 256 bytes + `</w>`,
{te['vocab_size'] - 514} merges, the two specials last). Every caption word is a single token. The unconditional input is the empty string.

## Architecture and parameters
- Text encoder: CLIP-style causal pre-LN transformer, {te['num_hidden_layers']} layers, hidden {te['hidden_size']}, {te['num_attention_heads']} heads, MLP {te['intermediate_size']} (GELU),
  learned positions, final LayerNorm; pooler = state at the first EOS (argmax id). {P['text_encoder']:,} params.
- UNet: epsilon prediction; channels 64 (8x8) / 128 (4x4); ResNet blocks (GroupNorm 32, SiLU, conv, time-embedding add) each followed by a
  transformer block (self-attention, cross-attention to the text states, GELU feed-forward); sinusoidal timestep embedding
  (flip_sin_to_cos, freq_shift 0) + MLP, plus an attention-pooled text vector added to it. {P['unet']:,} params.
- VAE: KL autoencoder 64x64x3 -> 8x8x4 (pixel-unshuffle + conv/ResNet encoder, conv/ResNet + pixel-shuffle decoder 8->16->32->64).
  Decoder {P['vae_decoder']:,} params (encoder {P['vae_encoder']:,}, not exported). Reconstruction MAE {S['vae_recon_heldout']['mae_255']:.1f}/255 and
  colour judged correct on {pct(S['vae_recon_heldout']['colour'])} of held-out-combo images.

## Training
World: {len(W['colors'])} shape colours, {len(W['backgrounds'])} backgrounds, {len(W['shapes'])} shapes, sizes small {W['sizes']['small']['px']} / large {W['sizes']['large']['px']} px,
{len(W['positions'])} positions; 90 (colour, shape, background) combos with colour != background, {len(H)} (20%) held out (seeded). All 3,888
distinct images of the 72 training combos, each caption freshly sampled from {len(W['templates']) + 1} templates with synonyms.
VAE {S['vae_train_s'] / 60:.1f} min; UNet + text encoder jointly from scratch on the diffusion loss {S['unet_train_s'] / 60:.1f} min
(batch 64, AdamW, cosine, EMA, min-SNR-5, 10% caption dropout); total wall time {S['total_wall_s'] / 60:.1f} min on a shared 2-core CPU.
Final training loss {S['unet_final_loss']:.4f}.

## Evaluation (Python torch sampler, not the TS pipeline)
{S['eval_n']} prompts over the held-out combos (random size, position and wording), DDIM trailing 20 steps, judged with the pixel
rules in `world.json` (dominant nearest palette colour of non-background pixels; bounding-box fill ratio; nearest position
centre to the centroid). The TypeScript pipeline evaluation will be added later by others.

| guidance | colour | shape | position | all three |
|---|---|---|---|---|
{rows}

{note}

## Held-out combos (also `heldout.json`)
{held}
"""
open(os.path.join(out, "README.md"), "w").write(card)
print(card)
