#!/usr/bin/env python
"""Train every shipped instrument on the GPU machine in one call (one process per model).

Usage (on the device machine, from the repository root, with data/<instrument> carried)::

    python3 tools/train_gpu.py --out $OUT --t1 260 --t2 100 [--eval 140]

For each instrument in ``--instruments`` and each backbone: ``rtsynth train data/INST -o
work/models/INST-BACKBONE`` with a spectral phase of ``--t1`` seconds, then (``--t2`` > 0) an
adversarial phase of ``--t2`` seconds; the spectral-only model is exported first to
``work/models/INST-BACKBONE-nogan`` so that both can be evaluated. Plus ``morph``: one VAE model
over all the instruments (GRU). All processes share the GPU. Results are packed as one tar per
instrument (model folders + logs) under ``--out``; ``--eval S`` then runs ``rtsynth eval``
(held-out notes, step path) for up to S seconds and packs its JSON into ``logs.tar``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--instruments", default="flute,violin,trumpet,cello")
    ap.add_argument("--backbones", default="gru,cnn,attention")
    ap.add_argument("--t1", type=float, default=260)
    ap.add_argument("--t2", type=float, default=100)
    ap.add_argument("--morph", default="gru", help="backbone of the VAE morph model ('' = none)")
    ap.add_argument("--morph-t1", type=float, default=None)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--eval", type=float, default=0, help="seconds for rtsynth eval (0: skip)")
    ap.add_argument("--work", default="work")
    ap.add_argument("--extra", default="", help="extra arguments for every rtsynth train")
    ap.add_argument("--gan-init", default="", help="comma list of model folders under --init-dir "
                    "to fine-tune adversarially for --t2 s each (written to work/models/NAME-gan)")
    ap.add_argument("--init-dir", default=".carry/init")
    ap.add_argument("--finetune", default="", help="comma list of model folders under --init-dir "
                    "to train further with the spectral loss for --t1 s (work/models/NAME-ft)")
    ap.add_argument("--finetune-args", default="--lr 3e-4 --lr-final 3e-5")
    ap.add_argument("--variants", default="", help="semicolon list of SUFFIX=ARGS: each instrument x "
                    "backbone is also trained with these extra arguments, as NAME-SUFFIX "
                    "({inst} in ARGS: the instrument's name)")
    a = ap.parse_args(argv)

    out = Path(a.out)
    work = ROOT / a.work
    (work / "models").mkdir(parents=True, exist_ok=True)
    (work / "runs").mkdir(parents=True, exist_ok=True)
    (work / "logs").mkdir(parents=True, exist_ok=True)
    insts = [x for x in a.instruments.split(",") if x]
    bbs = [x for x in a.backbones.split(",") if x]
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    jobs = []

    def launch(name, data, extra):
        cmd = [sys.executable, "-m", "rtsynth.train.cli", *data, "-o", f"{a.work}/models/{name}",
               "--run-dir", f"{a.work}/runs/{name}", "--steps", "1000000", "--time-limit",
               str(extra.pop("t1")), "--batch", str(a.batch), "--crop", str(a.crop),
               "--ckpt-every", "100000", "--log-every", "10", *extra.pop("args"), *a.extra.split()]
        log = open(work / "logs" / f"{name}.log", "w")
        jobs.append((name, subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log,
                                            stderr=subprocess.STDOUT), log))

    gan = ["--gan-steps", "1000000", "--gan-time-limit", str(a.t2)] if a.t2 > 0 else []
    for inst in insts:
        for bb in bbs if a.t1 > 0 and a.backbones else []:
            name = f"{inst}-{bb}"
            args = ["--backbone", bb]
            if gan:
                args += gan + ["--export-before-gan", f"{a.work}/models/{name}-nogan"]
            if not a.variants:
                launch(name, [f"data/{inst}"], {"t1": a.t1, "args": args})
            for var in [v for v in a.variants.split(";") if v]:
                suffix, vargs = var.split("=", 1)
                launch(f"{name}-{suffix}", [f"data/{inst}"],
                       {"t1": a.t1, "args": ["--backbone", bb,
                                             *vargs.replace("{inst}", inst).split()]})
    for name in [x for x in a.finetune.split(",") if x]:
        init = Path(a.init_dir) / name
        cfg = json.loads((ROOT / init / "config.json").read_text())
        if cfg["architecture"]["z_dim"]:
            continue  # a VAE needs its encoder, which a model folder does not hold
        launch(f"{name}-ft", cfg["training"]["data"],
               {"t1": a.t1, "args": ["--backbone", cfg["architecture"]["backbone"], "--init",
                                     str(init), *a.finetune_args.split()]})
    for name in [x for x in a.gan_init.split(",") if x]:
        init = Path(a.init_dir) / name
        cfg = json.loads((ROOT / init / "config.json").read_text())
        data = cfg["training"]["data"]
        args = ["--backbone", cfg["architecture"]["backbone"], "--init", str(init), "--steps", "0",
                "--gan-steps", "1000000", "--gan-time-limit", str(a.t2)]
        if cfg["architecture"]["z_dim"]:
            continue  # a VAE needs its encoder, which a model folder does not hold
        launch(f"{name}-gan", data, {"t1": 0, "args": args})
    if a.morph:
        args = ["--backbone", a.morph, "--vae"]
        if gan:
            args += gan + ["--export-before-gan", f"{a.work}/models/morph-nogan"]
        launch("morph", [f"data/{i}" for i in insts], {"t1": a.morph_t1 or a.t1, "args": args})

    t0 = time.time()
    print(f"launched {len(jobs)} training processes", flush=True)
    for name, p, log in jobs:
        rc = p.wait()
        log.close()
        print(f"{name}: rc {rc} after {time.time() - t0:.0f}s", flush=True)

    # summary of final losses
    summary = {}
    for name, _, _ in jobs:
        lines = (work / "runs" / name / "log.jsonl").read_text().splitlines() \
            if (work / "runs" / name / "log.jsonl").exists() else []
        recs = [json.loads(x) for x in lines]
        spec_recs = [r for r in recs if r.get("phase") == "spectral"]
        gan_recs = [r for r in recs if r.get("phase") == "gan"]
        summary[name] = {
            "steps": spec_recs[-1]["step"] if spec_recs else 0,
            "mrstft_last10": (sum(r["mrstft"] for r in spec_recs[-10:]) / max(len(spec_recs[-10:]), 1)
                              if spec_recs else None),
            "gan_steps": gan_recs[-1]["gan_step"] if gan_recs else 0,
            "gan_mrstft_last10": (sum(r["mrstft"] for r in gan_recs[-10:]) / len(gan_recs[-10:])
                                  if gan_recs else None)}
        print(name, summary[name], flush=True)
    (work / "logs" / "summary.json").write_text(json.dumps(summary, indent=1))

    out.mkdir(parents=True, exist_ok=True)
    groups = {inst: [n for n, _, _ in jobs if n.startswith(inst + "-")] for inst in insts}
    groups = {g: v for g, v in groups.items() if v}
    if a.morph:
        groups["morph"] = ["morph"]
    for g, names in groups.items():
        with tarfile.open(out / f"{g}.tar", "w") as tar:
            for n in names:
                for suffix in ("", "-nogan"):
                    d = work / "models" / f"{n}{suffix}"
                    if d.is_dir():
                        tar.add(d, arcname=f"models/{n}{suffix}")
                lj = work / "runs" / n / "log.jsonl"
                if lj.exists():
                    tar.add(lj, arcname=f"runs/{n}/log.jsonl")
    pack_logs(work, out)

    if a.eval > 0:
        procs = []
        for inst in insts:
            models = [str(d) for d in sorted((work / "models").glob(f"{inst}-*"))]
            models += [str(d) for d in sorted((ROOT / a.init_dir).glob(f"{inst}-*"))
                       if d.name + "-gan" in {Path(m).name for m in models}]
            if a.morph:
                models += [str(d) for d in sorted((work / "models").glob("morph*"))]
            cmd = [sys.executable, "-m", "rtsynth.eval", "basic", *models, "-d", "data",
                   "--instrument", inst, "--path", "step", "--json",
                   str(work / "logs" / f"eval_{inst}.json")]
            lf = open(work / "logs" / f"eval_{inst}.log", "w")
            procs.append((subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=lf,
                                           stderr=subprocess.STDOUT), lf))
        deadline = time.time() + a.eval
        for p, lf in procs:
            try:
                p.wait(timeout=max(1.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
            lf.close()
        pack_logs(work, out)
        for inst in insts:
            f = work / "logs" / f"eval_{inst}.log"
            if f.exists():
                print(f.read_text()[-3000:])
    return 0


def pack_logs(work: Path, out: Path) -> None:
    with tarfile.open(out / "logs.tar.tmp", "w") as tar:
        tar.add(work / "logs", arcname="logs")
    (out / "logs.tar.tmp").replace(out / "logs.tar")


if __name__ == "__main__":
    raise SystemExit(main())
