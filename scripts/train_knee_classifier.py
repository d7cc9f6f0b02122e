#!/usr/bin/env python3
"""Train the KL-grade classifier that scores knee_rl images, and export it as TorchScript.

The data file comes from the knee_rl program: a safetensors file with `images` float32 [N,1,R,R] in [0,1],
`kl_grade` int64 [N] (0..4) and `split` int64 [N] (0 train, 1 validate). Only Debian's python3-torch and
python3-numpy are needed, so the safetensors reader is written out here rather than imported.

The exported model takes images in [0,1], shape [B,1,R,R], and returns KL logits [B,5]; its normalisation is
inside it, so the C++ side feeds images exactly as the world renders them. A JSON sidecar next to it records the
resolution, classes and validation accuracy.

Usage: /usr/bin/python3 scripts/train_knee_classifier.py --data DATA.safetensors --out OUT.pt [--epochs 30] [--seed 0] [--threads 2]
"""
import argparse
import json
import os
import pathlib
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

NUM_GRADES = 5
DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "U8": np.uint8}


def fail(msg):
    sys.exit(f"train_knee_classifier: {msg}")


def read_safetensors(path):
    """All tensors of a safetensors file as numpy arrays (8-byte LE header length, JSON header, raw data)."""
    try:
        blob = pathlib.Path(path).read_bytes()
    except OSError as e:
        fail(f"{path}: cannot read ({e.strerror})")
    if len(blob) < 8:
        fail(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        fail(f"{path}: header length {n} runs past the end of the file ({len(blob)} bytes)")
    try:
        header = json.loads(blob[8:8 + n])
    except ValueError as e:
        fail(f"{path}: header is not JSON ({e})")
    data = memoryview(blob)[8 + n:]
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        dtype = DTYPES.get(info.get("dtype"))
        if dtype is None:
            fail(f"{path}: tensor '{key}' has unsupported dtype {info.get('dtype')!r}")
        shape, (begin, end) = info["shape"], info["data_offsets"]
        count = int(np.prod(shape)) if shape else 1
        if end > len(data) or end - begin != count * np.dtype(dtype).itemsize:
            fail(f"{path}: tensor '{key}' offsets {begin}..{end} do not fit shape {shape} / dtype {info['dtype']}")
        out[key] = np.frombuffer(data[begin:end], dtype=dtype).reshape(shape)
    return out


def load_data(path):
    t = read_safetensors(path)
    for key in ("images", "kl_grade", "split"):
        if key not in t:
            fail(f"{path}: missing tensor '{key}' (has: {', '.join(sorted(t)) or 'none'})")
    images, grade, split = t["images"], t["kl_grade"], t["split"]
    if images.ndim != 4 or images.shape[1] != 1 or images.shape[2] != images.shape[3]:
        fail(f"{path}: 'images' must be [N,1,R,R], got {list(images.shape)}")
    n = images.shape[0]
    for key, a in (("kl_grade", grade), ("split", split)):
        if a.shape != (n,):
            fail(f"{path}: '{key}' must be [{n}] to match 'images', got {list(a.shape)}")
    if grade.size and (grade.min() < 0 or grade.max() >= NUM_GRADES):
        fail(f"{path}: 'kl_grade' values must lie in 0..{NUM_GRADES - 1}, got {grade.min()}..{grade.max()}")
    images = torch.from_numpy(images.astype(np.float32))
    grade, split = torch.from_numpy(grade.astype(np.int64)), torch.from_numpy(split.astype(np.int64))
    train, val = split == 0, split == 1
    if not train.any():
        fail(f"{path}: no training rows (split == 0)")
    if not val.any():
        fail(f"{path}: no validation rows (split == 1)")
    return images[train], grade[train], images[val], grade[val]


class KneeNet(nn.Module):
    """Three conv blocks (16/32/64) and a linear head; the input statistics are buffers so the export is
    self-contained and takes images in [0,1]."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                                 nn.MaxPool2d(2))

        self.features = nn.Sequential(block(1, 16), block(16, 32), block(32, 64))
        self.head = nn.Linear(64, NUM_GRADES)

    def forward(self, x):
        x = (x - self.mean) / self.std
        return self.head(self.features(x).mean(dim=(2, 3)))


@torch.no_grad()
def evaluate(model, images, grade, batch=512):
    model.eval()
    confusion = torch.zeros(NUM_GRADES, NUM_GRADES, dtype=torch.int64)
    for i in range(0, len(images), batch):
        pred = model(images[i:i + batch]).argmax(1)
        cells = torch.bincount(grade[i:i + batch] * NUM_GRADES + pred, minlength=NUM_GRADES ** 2)
        confusion += cells.view(NUM_GRADES, NUM_GRADES)
    return confusion.diag().sum().item() / max(1, confusion.sum().item()), confusion


def save_atomic(path, write):
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="safetensors file written by knee_rl")
    ap.add_argument("--out", required=True, help="TorchScript file to write (a .json sidecar goes next to it)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    # Two threads suit an idle 2-core machine; on a busy one, 1 thread avoids the pool's barrier stalls (4x faster).
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    meta_path = out.with_suffix(".json")
    if meta_path == out:
        fail(f"--out {out}: must not end in .json (the sidecar takes that name)")
    if args.epochs < 1:
        fail("--epochs must be at least 1")

    torch.set_num_threads(max(1, args.threads))
    torch.manual_seed(args.seed)
    xtr, ytr, xva, yva = load_data(args.data)
    res = xtr.shape[-1]
    print(f"train {len(xtr)}  validate {len(xva)}  resolution {res}  "
          f"train grades {torch.bincount(ytr, minlength=NUM_GRADES).tolist()}", flush=True)

    model = KneeNet(xtr.mean().item(), xtr.std().item() + 1e-6)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = (len(xtr) + args.batch - 1) // args.batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(args.seed)
    best_acc, best_state, best_confusion = -1.0, None, None
    t0 = time.time()
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(xtr), generator=gen)
        total = 0.0
        for i in range(0, len(xtr), args.batch):
            idx = order[i:i + args.batch]
            x, y = xtr[idx], ytr[idx]
            # The grade does not depend on which knee it is, so a mirror image is an equally valid example.
            flip = torch.rand(len(idx), generator=gen) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        acc, confusion = evaluate(model, xva, yva)
        # Keep the best epoch: the exported weights are then the ones whose accuracy the sidecar reports.
        if acc > best_acc:
            best_acc, best_confusion = acc, confusion
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        print(f"epoch {epoch:3d}  train loss {total / len(xtr):.4f}  val acc {acc:.4f}  ({time.time() - t0:.0f} s)", flush=True)

    model.load_state_dict(best_state)
    model.eval()
    print(f"best val acc {best_acc:.4f}; validation confusion (rows true KL, columns predicted):")
    for g, row in enumerate(best_confusion.tolist()):
        print(f"  KL{g} " + " ".join(f"{c:5d}" for c in row))

    ts = torch.jit.trace(model, torch.zeros(2, 1, res, res))
    out.parent.mkdir(parents=True, exist_ok=True)
    save_atomic(out, lambda p: ts.save(str(p)))
    meta = {"kind": "knee_kl_classifier", "resolution": res, "classes": [f"KL{g}" for g in range(NUM_GRADES)],
            "val_accuracy": best_acc, "val_confusion": best_confusion.tolist(), "n_train": len(xtr), "epochs": args.epochs,
            "seed": args.seed, "torch": torch.__version__}
    save_atomic(meta_path, lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))
    print(f"wrote {out} and {meta_path}")


if __name__ == "__main__":
    main()
