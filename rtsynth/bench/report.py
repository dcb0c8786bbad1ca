"""Bench results as a terminal table (rich), a JSON file and a PNG plot (matplotlib, Agg)."""

from __future__ import annotations

import json
from pathlib import Path

from .runner import MAIN_BLOCK, METRICS, PER_BLOCK, metric


def _fmt(v, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "ms":
        return f"{v:.2f} ms"
    if unit == "s":
        return f"{v:.2f} s"
    if unit == "x RT":
        return f"{v:.1f}x"
    if unit == "voices":
        return f"{v:.0f}"
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.2f}"


def table_rows(res: dict) -> tuple[list[str], list[list[str]]]:
    synths = list(res["synths"])
    ratio_keys = list(res.get("ratios", {}))
    header = ["row"] + synths + [k.replace(" / ", "/") for k in ratio_keys]
    rows = []
    blocks = res["meta"]["blocks"]
    for key, label, path, unit, _ in METRICS:
        bl = blocks if path[0] in PER_BLOCK else [MAIN_BLOCK if MAIN_BLOCK in blocks
                                                  else blocks[0]]
        for b in bl:
            vals = [metric(res["synths"][s], path, b) for s in synths]
            if all(v is None for v in vals):
                continue
            name = f"{label} @{b}" if path[0] in PER_BLOCK else label
            rat = []
            for rk in ratio_keys:
                if path[0] in PER_BLOCK:  # per block: ratio (when both > 0) and difference
                    a = vals[synths.index(rk.split(" / ")[0])]
                    f = vals[synths.index(rk.split(" / ")[1])]
                    r = a / f if a is not None and f is not None and f > 0 and a >= 0 else None
                    d = a - f if a is not None and f is not None else None
                    cell = "-" if r is None else f"{r:.2f}"
                    if d is not None:
                        cell += f" ({d:+.2f} ms)"
                    rat.append(cell)
                    continue
                r = res["ratios"][rk].get(key)
                rat.append("-" if r is None else f"{r:.2f}")
            rows.append([name] + [_fmt(v, unit) for v in vals] + rat)
    # generator time per block in the dropout run (rtsynth's own counter; the peer has none)
    gens = []
    for s in synths:
        g = (res["synths"][s].get("load") or {}).get("gen_ms")
        gens.append(f"{g['median']:.2f}/{g['p99']:.2f}/{g['max']:.2f} ms" if g else "-")
    if any(g != "-" for g in gens):
        rows.append(["  generator per block med/p99/max"] + gens + ["-"] * len(ratio_keys))
    le = []
    for s in synths:
        ld = res["synths"][s].get("load") or {}
        v = ld.get("latency_ms_end")
        le.append(f"{v:.2f} ms ({ld.get('latency_raises', 0)} raises)"
                  if v is not None else "-")
    if any(v != "-" for v in le):
        rows.append(["  latency at the end of it"] + le + ["-"] * len(ratio_keys))
    dl = []
    for s in synths:
        v = (res["synths"][s].get("load") or {}).get("dsp_load_median")
        dl.append(f"{v:.0f}%" if v is not None else "-")
    if any(v != "-" for v in dl):
        rows.append(["  JACK DSP load (median)"] + dl + ["-"] * len(ratio_keys))
    return header, rows


def heading_play_args(meta: dict) -> str:
    """What the table heading says about the options given to `rtsynth play`."""
    parts = []
    if meta.get("play_args"):
        parts.append("rtsynth play " + " ".join(meta["play_args"]))
    if meta.get("variants"):
        parts.append("variants: " + ", ".join(" ".join(v) or "as is" for v in meta["variants"]))
    return ("; " + "; ".join(parts)) if parts else ""


def print_table(res: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table
    console = console or Console()
    header, rows = table_rows(res)
    m = res["meta"]
    t = Table(title=f"rtsynth bench{' --quick' if m.get('quick') else ''} - {m.get('cpu')} "
                    f"({m.get('cpus')} CPUs), {m.get('server')}, {m.get('date')}"
                    + heading_play_args(m))
    for i, h in enumerate(header):
        t.add_column(h, justify="left" if i == 0 else "right")
    for r in rows:
        t.add_row(*r)
    console.print(t)
    for s, row in res["synths"].items():
        cap = row.get("capacity")
        if cap and cap.get("steps"):
            parts = []
            for st in cap["steps"]:
                g = st.get("gen_ms") or {}
                gs = (f", gen {g['median']:.2f}/{g['p99']:.2f}/{g['max']:.2f} ms"
                      if g else "")
                dl = st.get("dsp_load_median")
                parts.append(f"{st['voices']}: {st.get('dropouts')} dropouts{gs}"
                             + (f", DSP {dl:.0f}%" if dl is not None else ""))
            console.print(f"[bold]{s}[/] capacity steps (block {cap['block']}, "
                          f"{cap['seconds']:g} s each; gen median/p99/max): " + "; ".join(parts))
        for e in row.get("retries", []):
            console.print(f"[yellow]{s} (retried): {e}[/]")
        for e in row.get("errors", []):
            console.print(f"[red]{s}: {e}[/]")
    for t in res.get("targets", []):
        mark = {True: "[green]met[/]", False: "[red]NOT met[/]", None: "[dim]n/a[/]"}[t["ok"]]
        v = t["value"]
        console.print(f"target {mark}: {t['synth']}: {t['target']}"
                      + (f" (measured {v:.2f})" if isinstance(v, (int, float)) else ""))
    console.print(f"bench took {m.get('bench_s', 0):.0f} s")


def write_json(res: dict, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1, default=float))
    return path


def write_png(res: dict, path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    synths = list(res["synths"])
    fig, ax = plt.subplots(2, 2, figsize=(13, 9))
    # latency distributions per synth and block
    a = ax[0, 0]
    data, labels = [], []
    for s in synths:
        for b, lat in sorted(res["synths"][s].get("latency", {}).items(), key=lambda x: int(x[0])):
            if lat.get("frames"):
                data.append([f * 1000.0 / lat["sample_rate"] for f in lat["frames"]])
                labels.append(f"{s}\n@{b}")
    if data:
        a.boxplot(data, whis=(1, 99))
        a.set_xticks(range(1, len(labels) + 1), labels, fontsize=7, rotation=20, ha="right")
    a.set_ylabel("MIDI -> first sample (ms)")
    a.set_title("latency (whiskers p1-p99)")
    # capacity: generator time per block vs voices, and DSP load
    a = ax[0, 1]
    for s in synths:
        cap = res["synths"][s].get("capacity") or {}
        pts = [(st["voices"], st["gen_ms"]["median"], st["gen_ms"]["p99"])
               for st in cap.get("steps", []) if st.get("gen_ms")]
        if pts:
            v, med, p99 = zip(*pts)
            a.plot(v, med, "o-", label=f"{s} gen median")
            a.plot(v, p99, "x--", label=f"{s} gen p99")
        pts = [(st["voices"], st["dsp_load_median"]) for st in cap.get("steps", [])
               if st.get("dsp_load_median") is not None]
        if pts:
            v, dl = zip(*pts)
            b = cap.get("block", MAIN_BLOCK)
            a.plot(v, [d / 100.0 * b / 48.0 for d in dl], "s:", label=f"{s} JACK DSP load")
        if cap.get("first_failure"):
            a.axvline(cap["first_failure"], ls=":", color="gray")
    a.axhline(MAIN_BLOCK / 48.0, color="red", lw=0.8, label="block budget (128 @ 48 kHz)")
    a.set_xlabel("held voices")
    a.set_ylabel("ms per block")
    a.set_title("polyphony: time per block")
    a.legend(fontsize=7)
    # render speed
    a = ax[1, 0]
    names, vals = [], []
    for s in synths:
        for r in res["synths"][s].get("render", []) or []:
            if r.get("x_realtime"):
                names.append(f"{s.replace('rtsynth ', '')}\n{Path(str(r['file'])).stem}")
                vals.append(r["x_realtime"])
    if vals:
        a.bar(range(len(vals)), vals)
        a.set_xticks(range(len(vals)), names, fontsize=7, rotation=30, ha="right")
    a.set_ylabel("x real time (whole command)")
    a.set_title("offline render speed")
    # start-up and dropouts
    a = ax[1, 1]
    st = [(s, res["synths"][s].get("startup", {}).get("first_sound_s")) for s in synths]
    st = [(s, v) for s, v in st if v is not None]
    if st:
        a.bar(range(len(st)), [v for _, v in st], color="tab:orange")
        a.set_xticks(range(len(st)), [s for s, _ in st], fontsize=7, rotation=20, ha="right")
    a.set_ylabel("s")
    a.set_title("start-up: command start to first audible sample")
    fig.suptitle(f"rtsynth bench - {res['meta'].get('cpu')} - {res['meta'].get('date')}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
