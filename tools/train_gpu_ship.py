#!/usr/bin/env python
"""Install models trained by ``tools/train_gpu.py`` into ``models/`` with metrics and model cards.

Usage::

    python tools/train_gpu_ship.py FROM_DIR [--eval EVAL.json ...] [--best cnn] [--gpu-command STR]
    python tools/train_gpu_ship.py models --refresh --eval EVAL.json   # new metrics, same weights

``FROM_DIR`` holds ``INST-BACKBONE`` folders (and ``morph``). Each ``INST-BACKBONE`` becomes
``models/INST-BACKBONE``; the ``--best`` backbone is also installed as ``models/INST`` (the name
``-i INST`` picks). Held-out metrics (``tools/evaluate.py --json`` rows) are written into each
``config.json`` under ``metrics`` and into the model card.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KEYS = ("n_notes", "mss_distance", "mss_vs_basic", "f0_cents_median", "f0_cents_p95",
        "loudness_db", "f0_vs_midi_cents_median", "f0_vs_midi_cents_p95",
        "ref_f0_vs_midi_cents_median", "f0_resynth_cents_median", "f0_resynth_cents_p95", "path")


def load_rows(paths):
    rows = []
    for p in paths:
        rows += json.loads(Path(p).read_text())["rows"]
    return rows


def metrics_for(rows, src_name: str):
    out = {}
    for r in rows:
        if Path(r["model"]).name == src_name:
            out[r["dataset"]] = {k: (round(r[k], 4) if isinstance(r[k], float) else r[k])
                                 for k in KEYS if k in r}
    return out


def install(src: Path, dst: Path, rows, note: str, gpu_command: str | None) -> None:
    stage1 = None
    if src.name.endswith("-ft") and (dst / "config.json").exists():
        # a fine-tuned model (tools/train_gpu.py --finetune): keep the history of stage 1
        old = json.loads((dst / "config.json").read_text())["training"]
        stage1 = {k: old.get(k) for k in ("command", "gpu_command", "steps", "seconds", "final",
                                          "stage1")}
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["name"] = dst.name
    _set_metrics(cfg, rows, src.name, dst.name)
    if gpu_command:
        cfg["training"]["gpu_command"] = gpu_command
    if stage1:
        cfg["training"]["stage1"] = stage1
        note = ((note + " ") if note else "") + (
            "Trained in two stages: stage 1 `" + str(stage1["command"]) + "` ("
            + str(stage1["steps"]) + " steps), then stage 2, the command below, continued from it "
            "(`--init`) at a lower learning rate.")
    if note:
        cfg["training"]["note"] = note
    _write(dst, cfg)


def _write(dst: Path, cfg: dict) -> None:
    from rtsynth.train.core import model_card
    (dst / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    (dst / "README.md").write_text(model_card(cfg))


def refresh(dst: Path, rows) -> bool:
    """Rewrite the metrics and the model card of an installed model from new evaluation rows."""
    cfg = json.loads((dst / "config.json").read_text())
    if not _set_metrics(cfg, rows, dst.name, dst.name):
        return False
    _write(dst, cfg)
    return True


def _set_metrics(cfg: dict, rows, src_name: str, dst_name: str) -> bool:
    m = metrics_for(rows, src_name) or metrics_for(rows, dst_name)
    for ds, r in m.items():
        base = [b for b in rows if b["model"] == "basic" and b["dataset"] == ds]
        if "mss_vs_basic" not in r and base:
            r["mss_vs_basic"] = round(r["mss_distance"] / base[0]["mss_distance"], 4)
    if m:
        cfg["metrics"] = {"held_out": m, "basic_baseline": {
            r["dataset"]: {k: round(r[k], 4) for k in ("mss_distance", "f0_cents_median",
                                                       "f0_resynth_cents_median", "loudness_db")
                           if k in r}
            for r in rows if r["model"] == "basic" and r["dataset"] in m},
            "tool": "tools/evaluate.py (held-out notes, unseen pitches and velocities)"}
    return bool(m)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("src")
    ap.add_argument("--eval", nargs="*", default=[])
    ap.add_argument("--best", default="cnn")
    ap.add_argument("--models", default=str(ROOT / "models"))
    ap.add_argument("--gpu-command", default=None)
    ap.add_argument("--refresh", action="store_true", help="SRC is the models folder: only rewrite "
                    "each installed model's metrics and card from --eval")
    a = ap.parse_args(argv)
    src, models = Path(a.src), Path(a.models)
    rows = load_rows(a.eval)
    if a.refresh:
        for d in sorted(src.iterdir()):
            if (d / "config.json").exists():
                print(d.name, "updated" if refresh(d, rows) else "no rows")
        return 0
    for d in sorted(src.iterdir()):
        if not (d / "config.json").exists():
            continue
        name = d.name[:-3] if d.name.endswith("-ft") else d.name
        install(d, models / name, rows, "", a.gpu_command)
        inst, _, bb = name.partition("-")
        if bb == a.best:
            install(d, models / inst, rows,
                    f"the {bb} backbone (best held-out MSS of the three); the others are "
                    f"{inst}-gru, {inst}-cnn, {inst}-attention", a.gpu_command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
