#!/usr/bin/env python3
"""Evaluate the *exported ONNX* model on the same held-out prompts as train.py.

Python builds the prompts, token ids and initial noise; training/eval_onnx.cjs runs the ONNX text
encoder / UNet (DDIM trailing, CFG) / VAE decoder with onnxruntime-node; Python judges the images.
Usage: /usr/bin/python3 training/eval_onnx.py models/tiny-shapes [steps] [guidance ...]
"""
import json, os, random, subprocess, sys
import numpy as np
import torch
sys.path.insert(0, os.path.dirname(__file__))
from train import (SIZES, POSITIONS, make_caption, judge, split_combos, Tokenizer, sd_alphas_cumprod, BACKGROUNDS,
                   FG_RGB, FG_NAMES, FILL_RATIO, POS_XY, POS_NAMES)


def judge_all_pixels(img, bg, thresh=50.0):
    """Variant: shape fill ratio and centroid over *all* non-background pixels."""
    x = img.astype(np.float32)
    m = np.sqrt(((x - np.array(BACKGROUNDS[bg], np.float32)) ** 2).sum(-1)) > thresh
    if m.sum() < 20:
        return None
    near = np.argmin(((x[m][:, None, :] - FG_RGB[None]) ** 2).sum(-1), 1)
    col = FG_NAMES[int(np.bincount(near, minlength=len(FG_NAMES)).argmax())]
    ys, xs = np.nonzero(m)
    fill = len(ys) / ((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1))
    shape = min(FILL_RATIO, key=lambda k: abs(FILL_RATIO[k] - fill))
    cen = np.array([xs.mean() + 0.5, ys.mean() + 0.5], np.float32)
    return col, shape, POS_NAMES[int(np.argmin(((POS_XY - cen) ** 2).sum(-1)))]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "models/tiny-shapes"
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    gss = [float(g) for g in sys.argv[3:]] or [7.5, 1.0]
    seed, n = 1234, 100
    _, held_c = split_combos(seed)
    merges = [tuple(l.split()) for l in open(os.path.join(out, "tokenizer/merges.txt")).read().splitlines()[1:]]
    window = json.load(open(os.path.join(out, "tokenizer/tokenizer_config.json")))["model_max_length"]
    tok = Tokenizer(merges, window)
    assert tok.vocab == json.load(open(os.path.join(out, "tokenizer/vocab.json")))
    erng = random.Random(seed + 5)
    prompts, truths = [], []
    for i in range(n):
        c, s, b = held_c[i % len(held_c)]
        size, pos = erng.choice(list(SIZES)), erng.choice(list(POSITIONS))
        p = make_caption(erng, c, s, b, size, pos)
        if not any(w in p for w in ["left", "right", "top", "bottom", "centre", "center", "middle"]):
            pos = "centre"
        prompts.append(p)
        truths.append((c, s, b, pos))
    sf = json.load(open(os.path.join(out, "vae_decoder/config.json")))["scaling_factor"]
    d = "/tmp/tiny-shapes-eval"
    os.makedirs(d, exist_ok=True)
    np.array([tok(p) for p in prompts], np.int64).tofile(f"{d}/ids.bin")
    np.array([tok("")] * n, np.int64).tofile(f"{d}/uids.bin")
    gen = torch.Generator().manual_seed(seed + 6)
    torch.randn(n, 4, 8, 8, generator=gen).numpy().astype(np.float32).tofile(f"{d}/noise.bin")
    ac = sd_alphas_cumprod().numpy().astype(np.float64)
    ts = (np.round(np.arange(1000, 0, -1000 / steps)).astype(np.int64) - 1).tolist()
    json.dump({"n": n, "window": window, "sf": sf, "ts": ts, "ratio": 1000 // steps, "ac": ac.tolist(), "guidance": gss},
              open(f"{d}/meta.json", "w"))
    subprocess.run(["node", os.path.join(os.path.dirname(__file__), "eval_onnx.cjs"), out, d], check=True)
    res = {}
    for g in gss:
        ims = np.fromfile(f"{d}/images_{g:g}.bin", np.float32).reshape(n, 3, 64, 64)
        ims = (np.clip(ims * 0.5 + 0.5, 0, 1) * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)
        for name, fn in [("dominant-colour bbox", judge), ("all-non-bg bbox", judge_all_pixels)]:
            js = [fn(im, t[2]) for im, t in zip(ims, truths)]
            r = {k: float(np.mean([j is not None and j[i] == t[ti] for j, t in zip(js, truths)]))
                 for k, i, ti in [("colour", 0, 0), ("shape", 1, 1), ("position", 2, 3)]}
            r["all"] = float(np.mean([j is not None and j == (t[0], t[1], t[3]) for j, t in zip(js, truths)]))
            res[f"guidance {g}, judge {name}"] = r
            print(f"ONNX eval steps {steps} guidance {g} judge [{name}]: {r}", flush=True)
    json.dump(res, open(f"{d}/results.json", "w"), indent=2)


if __name__ == "__main__":
    main()
