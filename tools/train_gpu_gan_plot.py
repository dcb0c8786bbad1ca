#!/usr/bin/env python
"""Spectrograms of held-out notes: real sample, spectral-only model, after GAN fine-tuning.

    python tools/train_gpu_gan_plot.py BEFORE_DIR AFTER_DIR -o models/gan_spectrograms.png

BEFORE_DIR holds ``INST-BACKBONE`` folders, AFTER_DIR ``INST-BACKBONE-gan`` folders (from
``tools/train_gpu.py --gan-init``). One row per instrument (its first held-out note), three columns.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def render(folder, ex):
    from rtsynth import spec
    from rtsynth.nn.io import load_neural_instrument

    inst = load_neural_instrument(folder)
    h, g = inst.render_note(ex.features)
    return spec.synthesize_reference(h, g, ex.f0, offset=0)


def logspec(x, n=2048, hop=256):
    w = np.hanning(n)
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(x, (n // 2, n // 2)), n)[::hop]
    return 20 * np.log10(np.abs(np.fft.rfft(frames * w, axis=1)).T + 1e-5)


def main(argv=None) -> int:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rtsynth import data

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--backbone", default="cnn")
    ap.add_argument("--instruments", default="flute,violin,trumpet,cello")
    ap.add_argument("--data", default=str(ROOT / "data"))
    a = ap.parse_args(argv)
    insts = a.instruments.split(",")
    fig, axes = plt.subplots(len(insts), 3, figsize=(13, 3.0 * len(insts)), squeeze=False)
    for i, inst in enumerate(insts):
        ex = [e for e in data.load_dataset(Path(a.data) / inst, split="test") if e.kind == "note"][0]
        sigs = [("FluidSynth sample (held out)", ex.audio),
                (f"{inst}-{a.backbone}: spectral loss only",
                 render(Path(a.before) / f"{inst}-{a.backbone}", ex)),
                (f"{inst}-{a.backbone}: + GAN fine-tuning",
                 render(Path(a.after) / f"{inst}-{a.backbone}-gan", ex))]
        for j, (title, x) in enumerate(sigs):
            S = logspec(np.asarray(x, dtype=np.float64))
            ax = axes[i, j]
            ax.imshow(S[:600], origin="lower", aspect="auto", vmin=-100, vmax=S.max(),
                      extent=[0, len(x) / 48000, 0, 600 * 48000 / 2048 / 1000], cmap="magma")
            ax.set_title(f"{title}\npitch {ex.pitch} vel {ex.velocity}", fontsize=9)
            ax.set_xlabel("s")
            ax.set_ylabel("kHz")
    fig.tight_layout()
    fig.savefig(a.out, dpi=80)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
