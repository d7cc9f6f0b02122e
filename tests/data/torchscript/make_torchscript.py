"""Makes the TorchScript test modules and their reference outputs (Debian python3-torch 1.13).

    python3 tests/data/torchscript/make_torchscript.py [OUT_DIR]   (default: this folder)

Writes classifier.pt (torch.jit.trace of a tiny CNN classifier, 1x32x32 -> 3 logits),
embedder.pt (torch.jit.trace_module with encode_image and encode_text), posture.pt (a tiny posture regressor,
1x32x32 in [0, 1] -> psi [5]) and expected.safetensors
(inputs and the outputs Python computed), written with a minimal safetensors writer (no extra package).
"""
import json
import os
import struct
import sys

import torch
from torch import nn


class TinyClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        return self.fc(h.mean(dim=(2, 3)))


class TinyEmbedder(nn.Module):
    def __init__(self):
        super().__init__()
        self.img = nn.Linear(16, 8)
        self.tok = nn.Embedding(50, 8)
        self.txt = nn.Linear(8, 8)

    def encode_image(self, x):
        e = self.img(nn.functional.adaptive_avg_pool2d(x, 4).flatten(1))
        return e / e.norm(dim=1, keepdim=True)

    def encode_text(self, ids, mask):
        m = mask.unsqueeze(-1).float()
        e = self.txt((self.tok(ids) * m).sum(1) / m.sum(1))
        return e / e.norm(dim=1, keepdim=True)

    def forward(self, x):
        return self.encode_image(x)


class TinyPosture(nn.Module):
    """psi = identity + a small linear function of the pooled image (a stand-in for a traced PostureNet)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        d = self.fc(nn.functional.adaptive_avg_pool2d(x, 4).flatten(1))
        return torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0]) + 0.1 * torch.tanh(d)


def save_safetensors(path, tensors):
    names = sorted(tensors)
    header, blobs, off = {}, [], 0
    codes = {torch.float32: "F32", torch.int64: "I64"}
    for k in names:
        t = tensors[k].contiguous()
        b = t.numpy().tobytes()
        header[k] = {"dtype": codes[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    torch.manual_seed(6001)
    clf = TinyClassifier().eval()
    emb = TinyEmbedder().eval()
    post = TinyPosture().eval()
    g = torch.Generator().manual_seed(6002)
    x = torch.rand(2, 1, 32, 32, generator=g)
    ids = torch.randint(1, 50, (2, 7), generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0]])
    with torch.no_grad():
        torch.jit.trace(clf, x).save(os.path.join(out, "classifier.pt"))
        torch.jit.trace_module(emb, {"forward": x, "encode_image": x, "encode_text": (ids, mask)}).save(
            os.path.join(out, "embedder.pt"))
        torch.jit.trace(post, x).save(os.path.join(out, "posture.pt"))
        save_safetensors(os.path.join(out, "expected.safetensors"), {
            "posture.psi": post(x),
            "images": x, "ids": ids, "mask": mask,
            "classifier.logits": clf(x),
            "embedder.image": emb.encode_image(x),
            "embedder.text": emb.encode_text(ids, mask),
        })


if __name__ == "__main__":
    main()
