#!/usr/bin/env python
"""Install a trained model as a shipped instrument folder, measure it, and write its card.

    python tools/train_gpu_card.py SRC models/violin --instrument violin \
        --compare violin-lite,violin-cnn [--noise-bandwidth fit] [--note TEXT] [--gpu-command STR]

Copies SRC (a folder ``tools/train_gpu.py`` brought back, or a shipped one) to the destination,
optionally fits its noise bandwidth (:mod:`rtsynth.eval.bandwidth`), then measures it next to
the ``--compare`` models, every number through the engine on data never trained on:

- issue 12's held-out melody distance (``rtsynth eval M --melodies data/phrases``; a -life model
  also with ``--life 0``), next to the floor;
- the held-out notes (``rtsynth eval M -d data/heldout-f32 --path engine``): MSS, f0 and
  loudness error, onset error (model - source, ms: median, min, max);
- vibrato rate and depth against the source's (``--vibrato``), swell brightening and level rise
  against the source's velocity layers (``--swell``), for contract-v2 models;
- the check set (``rtsynth.eval.checkset``: 3 held-out notes, step path) that
  ``tests/test_nn_cards.py`` holds the folder to.

Writes ``metrics`` into config.json and the model card README.md (data, commands, metrics).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PY = sys.executable


def _eval(args: list[str]) -> str:
    r = subprocess.run([PY, "-m", "rtsynth.eval", *args], cwd=ROOT, capture_output=True,
                       text=True, check=True)
    return r.stdout


def melodies(models: list[str], inst: str, life: float = 1.0) -> dict[str, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        _eval([*models, "--melodies", "data/phrases", "--instrument", inst, "--life", str(life),
               "--json", f"{tmp}/m.json"])
        rows = json.loads(Path(f"{tmp}/m.json").read_text())["rows"]
    return {r["model"]: r for r in rows}


def notes(models: list[str], inst: str) -> dict[str, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        _eval([*models, "-d", "data/heldout-f32", "--path", "engine", "--instrument", inst,
               "--json", f"{tmp}/n.json"])
        rows = json.loads(Path(f"{tmp}/n.json").read_text())["rows"]
    keys = ("n_notes", "mss_distance", "f0_cents_median", "f0_cents_p95", "loudness_db",
            "onset_ms_median", "onset_ms_min", "onset_ms_max")
    return {r["model"]: {k: r[k] for k in keys if k in r} for r in rows}


def vibrato(model: str, inst: str) -> dict:
    out = _eval([model, "-d", "data/heldout-f32", "--vibrato", "--instrument", inst])
    return json.loads(out.strip().splitlines()[-1])


def swell(model: str) -> dict:
    out = _eval([model, "--swell"])
    return json.loads(out[out.index("["):])[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--instrument", required=True)
    ap.add_argument("--compare", default="", help="comma list of models to measure beside it")
    ap.add_argument("--noise-bandwidth", choices=["keep", "fit"], default="keep")
    ap.add_argument("--note", default="", help="a paragraph for the card (what it is, why)")
    ap.add_argument("--gpu-command", default="", help="the tools/train_gpu.py call that trained it")
    a = ap.parse_args(argv)

    from rtsynth.eval.checkset import check_scores
    from rtsynth.eval.melody import FLOORS

    src, dst, inst = Path(a.src), ROOT / a.dst, a.instrument
    if src.resolve() != dst.resolve():
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst, symlinks=False)
    cfg_p = dst / "config.json"
    cfg = json.loads(cfg_p.read_text())
    cfg["name"] = dst.name
    cfg.setdefault("metrics", {})
    if a.noise_bandwidth == "fit":
        from rtsynth.eval.bandwidth import fit_noise_bandwidth
        fit = fit_noise_bandwidth(dst, inst)
        if fit["noise_bandwidth_hz"] is None:
            cfg.pop("noise_bandwidth_hz", None)
        else:
            cfg["noise_bandwidth_hz"] = fit["noise_bandwidth_hz"]
        cfg["noise_bandwidth_fit"] = fit
    cfg_p.write_text(json.dumps(cfg, indent=1) + "\n")

    me = str(dst.relative_to(ROOT))
    comp = [c for c in a.compare.split(",") if c]
    models = [me, *comp]
    mel = melodies(models, inst)
    has_life = "life" in cfg
    mel0 = melodies([me], inst, life=0.0)[me] if has_life else None
    nts = notes(models, inst)
    v2 = int(cfg["architecture"]["n_features"]) == 9
    vib = vibrato(me, inst) if has_life else None
    sw = swell(me) if v2 else None
    check = check_scores(me, inst, 3)

    floor = FLOORS.get(inst)
    held = {"melodies": {"melody_distance": round(mel[me]["melody_distance"], 4), "floor": floor,
                         "per_melody": mel[me]["per_melody"], "set": "data/phrases"},
            "notes": nts[me]}
    if mel0 is not None:
        held["melodies"]["without_life"] = round(mel0["melody_distance"], 4)
    if vib is not None:
        held["vibrato"] = vib
    if sw is not None:
        held["swell"] = sw
    held["compared"] = {c: {"melody_distance": round(mel[c]["melody_distance"], 4), **nts[c]}
                        for c in comp}
    cfg["metrics"]["held_out"] = held
    cfg["metrics"]["check_set"] = {
        "instrument": inst, "notes": 3, "path": "step", "mss_distance": check,
        "how": "rtsynth.eval.checkset.check_scores (first 3 held-out notes of the dynamics set, "
               "FluidSynth float samples)"}
    cfg_p.write_text(json.dumps(cfg, indent=1) + "\n")
    (dst / "README.md").write_text(card(dst.name, inst, cfg, held, comp, mel, nts, a))
    print(json.dumps(held, indent=1))
    return 0


def _f(x, nd=3):
    return "-" if x is None else f"{x:.{nd}f}"


def card(name, inst, cfg, held, comp, mel, nts, a) -> str:
    tr = cfg.get("training", {})
    arch = cfg["architecture"]
    n = held["notes"]
    L = [f"# {name}", ""]
    if a.note:
        L += [a.note, ""]
    L += ["## Model", "",
          f"{arch['backbone']} backbone {json.dumps(arch.get('backbone_kw', {}))}, "
          f"{arch['n_features']} input features (`rtsynth/spec.py`), {arch['n_harmonics']} "
          f"harmonics, {arch['n_noise']} noise bands; `bandwidth_hz` {cfg.get('bandwidth_hz')}"
          + (f", `noise_bandwidth_hz` {cfg['noise_bandwidth_hz']:.0f} (noise bands above it held "
             f"at their floor: fitted on training notes, `rtsynth.eval.bandwidth`)"
             if cfg.get("noise_bandwidth_hz") else "")
          + (", with the source's life table (`life`: its pitch movement, rtsynth.nn.life)"
             if "life" in cfg else "") + ".", ""]
    L += ["## Data and training", "",
          f"Source: {json.dumps(cfg.get('source', {}))}. Data: `{tr.get('data')}` "
          "(`rtsynth dataset soundfont --dynamics`, docs/DATA.md).", "",
          "Last training command:", "", "```", str(tr.get("command", "")), "```", "",
          f"{tr.get('steps')} steps, {tr.get('seconds')} s. "
          "Earlier stages: the card of the `--init` folder."]
    if a.gpu_command:
        L += ["", "On the GPU machine:", "", "```", a.gpu_command, "```"]
    L += ["", "## Held-out metrics (through the engine)", "",
          f"Measured by `python tools/train_gpu_card.py` (`rtsynth eval {name} --melodies "
          f"data/phrases`, `-d data/heldout-f32 --path engine`, `--vibrato`, `--swell`).", ""]
    cols = [name, *comp]
    L += ["| measure | " + " | ".join(f"`{c}`" for c in cols) + " |",
          "| --- |" + " ---: |" * len(cols)]
    floor = held["melodies"]["floor"]
    L.append(f"| melody distance (floor {floor}) | "
             + " | ".join(_f(mel[c if c != name else str(Path('models') / name)]["melody_distance"]
                             if (c if c != name else str(Path('models') / name)) in mel else None)
                          for c in cols) + " |")
    for key, label, nd in (("mss_distance", "held-out notes MSS", 3),
                           ("f0_cents_median", "f0 error, median cents", 2),
                           ("loudness_db", "loudness error, dB", 2),
                           ("onset_ms_median", "onset vs source, median ms", 2),
                           ("onset_ms_min", "onset, min ms", 2),
                           ("onset_ms_max", "onset, max ms (issue: <= +2)", 2)):
        L.append(f"| {label} | " + " | ".join(
            _f(nts.get(c if c != name else str(Path('models') / name), {}).get(key), nd)
            for c in cols) + " |")
    L.append("")
    if "without_life" in held["melodies"]:
        L.append(f"Without its life (`--life 0`): melody distance "
                 f"{held['melodies']['without_life']:.3f}.")
    v = held.get("vibrato")
    if v:
        L.append(f"Vibrato on {v['notes']} held-out notes: {v['rate_model']} Hz / "
                 f"{v['depth_model']} cents against the source's {v['rate_source']} Hz / "
                 f"{v['depth_source']} cents; pitch curve {v['curve_cents']} cents RMS from the "
                 f"source's (a static line: {v['static_cents']}).")
    s = held.get("swell")
    if s:
        src = s["source"]
        L.append(f"Swell (dynamics 30/127 -> 1): centroid x{s['swell']['centroid_ratio']:.2f}, "
                 f"level +{s['swell']['level_rise_db']:.1f} dB; the source's velocity layers "
                 f"40 -> 120: x{src['centroid_ratio']:.2f}, +{src['level_rise_db']:.1f} dB"
                 + (f"; brightening ratio {s['brightening_ratio']:.2f} (issue: >= 0.5)"
                    if s.get("brightening_ratio") is not None else " (no layers)")
                 + f". Brightness 0 -> 1: centroid x{s['brightness']['centroid_ratio']:.2f}.")
    L += ["", f"Check set (tests/test_nn_cards.py): {cfg['metrics']['check_set']['mss_distance']} "
          "MSS on the first 3 held-out notes of the dynamics set, step path.", ""]
    return "\n".join(L)


if __name__ == "__main__":
    raise SystemExit(main())
