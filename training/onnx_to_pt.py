#!/usr/bin/env python3
"""Read the weights of an exported tiny-shapes model back into train.py's torch modules and save them
in the `--save-dir` layout (vae.pt, unet.pt, controlnet.pt), so a stage can be continued from the
committed model (`--vae-from`, `--unet-from`, `--controlnet-from`) when its checkpoints are gone.

Usage:  /usr/bin/python3 training/onnx_to_pt.py models/tiny-shapes /tmp/ckpt-v5

torch.onnx.export keeps most parameters under their state-dict names; the rest (Linear weights
feeding a MatMul, which export stores transposed, and GroupNorm's affine parameters, stored as
[C, 1, 1] for the Mul/Add after InstanceNormalization) are found through the scoped name of the node
that reads them. Every parameter and buffer must be found, with its shape, or this fails.
"""
import json
import os
import sys

import onnx
import torch
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train  # noqa: E402


def module_path(node, prefix):
    """'/te/layers.0/mlp/mlp.0/MatMul' -> 'layers.0.mlp.0' (the export wrapper's attribute, if any,
    and the op dropped; an nn.Sequential child is scoped as 'parent/parent.N')."""
    parts = node.strip("/").split("/")[:-1]
    if parts and parts[0] == prefix.rstrip("."):
        parts = parts[1:]
    out = []
    for p in parts:
        if out and p.startswith(out[-1] + "."):
            out[-1] = p
        else:
            out.append(p)
    return ".".join(out)


def load_onnx(module, path, prefix):
    m = onnx.load(path)
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    # unnamed initializer -> (scoped node name, op type) of a node that reads it
    readers = {}
    for node in m.graph.node:
        for x in node.input:
            if x in inits and x.startswith("onnx::"):
                readers.setdefault(x, (node.name, node.op_type))
    state = {}
    for key, ref in module.state_dict().items():
        if prefix + key in inits:
            state[key] = torch.from_numpy(inits[prefix + key].copy()).reshape(ref.shape)
            continue
        mod, leaf = key.rsplit(".", 1)
        hits = []
        for name, (node, op) in readers.items():
            if module_path(node, prefix) != mod:
                continue
            a = inits[name]
            if leaf == "weight" and op == "MatMul" and a.T.shape == tuple(ref.shape):
                hits.append(a.T)
            elif op == ("Mul" if leaf == "weight" else "Add") and a.size == ref.numel() and a.ndim == 3:
                hits.append(a.reshape(ref.shape))
        if len(hits) != 1:
            raise SystemExit(f"{path}: {key}: {len(hits)} candidates")
        state[key] = torch.from_numpy(hits[0].copy())
    module.load_state_dict(state)
    return module


def main():
    src, dst = sys.argv[1], sys.argv[2]
    os.makedirs(dst, exist_ok=True)
    vocab = len(json.load(open(os.path.join(src, "tokenizer", "vocab.json"))))
    window = json.load(open(os.path.join(src, "text_encoder", "config.json")))["max_position_embeddings"]
    enc = load_onnx(train.VAEEncoder(), os.path.join(src, "vae_encoder", "model.onnx"), "enc.")
    dec = load_onnx(train.VAEDecoder(), os.path.join(src, "vae_decoder", "model.onnx"), "dec.")
    torch.save({"enc": enc.state_dict(), "dec": dec.state_dict()}, os.path.join(dst, "vae.pt"))
    te = load_onnx(train.TextEncoder(vocab, window, 128, 3, 4, 512), os.path.join(src, "text_encoder", "model.onnx"), "te.")
    unet = load_onnx(train.UNet(), os.path.join(src, "unet", "model.onnx"), "unet.")
    torch.save({"unet": unet.state_dict(), "te": te.state_dict()}, os.path.join(dst, "unet.pt"))
    cn = load_onnx(train.ControlNet(unet), os.path.join(src, "controlnet", "model.onnx"), "")
    torch.save(cn.state_dict(), os.path.join(dst, "controlnet.pt"))
    print("wrote", ", ".join(os.path.join(dst, f) for f in ["vae.pt", "unet.pt", "controlnet.pt"]))


if __name__ == "__main__":
    main()
