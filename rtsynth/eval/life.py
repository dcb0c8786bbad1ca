"""The life of the source measured on held-out notes (issue 12.4): vibrato rate and depth of
the model's notes against the source's, and how far its pitch curve is from the source's.

For each held-out plain note of 0.5 s or more (a dataset's test split, e.g. ``rtsynth dataset
soundfont --dynamics --test-only --float32``): the source's f0 and the model's (the note through
the engine, as ``rtsynth render`` plays it) tracked per frame by
:func:`rtsynth.dataset.life.track_f0`, each curve fitted by :func:`rtsynth.dataset.life.fit_note`
(rate, depth); ``curve_cents``: the RMS of model minus source over the frames both track
(frame 0 and the release left out), against ``static_cents``: the same for a note held at its
MIDI pitch (the source's own movement, what a model without life misses). The level's own
movement (:func:`level_breathing`): ``breath_db_*``, the RMS of the held level less its
envelope, and ``tremolo_db_*``, its amplitude at the source's vibrato rate, model and source.
The drift (:func:`rtsynth.dataset.life.slow_part`: each curve's 0.5 s moving average over the
frames both track): ``drift_cents_*``, its standard deviation (the slow wander, tuning left
out), and ``drift_error_cents``, the RMS of the model's slow part less the source's (tuning
included).
"""

from __future__ import annotations

import numpy as np

from .. import spec


def note_life(inst, ex) -> dict | None:
    from ..dataset import life as dl
    from .common import render_engine
    rel = int(ex.release_sample) // spec.HOP
    if ex.kind != "note" or ex.meta.get("bend") or rel < int(0.5 * spec.SAMPLE_RATE / spec.HOP):
        return None
    cs, ps = dl.track_f0(ex.audio, ex.pitch_frames)
    y = render_engine(inst, ex)
    cm, pm = dl.track_f0(y, ex.pitch_frames)
    oks = dl.trusted(ps, rel)
    okm = dl.trusted(pm, rel)
    both = oks & okm
    both[:2] = False
    fs = dl.fit_note(cs, oks)
    fm = dl.fit_note(cm, okm)
    if fs is None or fm is None or both.sum() < 10:
        return None
    bs, ts = level_breathing(ex.audio, rel, fs["rate"])
    bm, tm = level_breathing(y, rel, fs["rate"])
    # the drift: the curves' parts slower than ~2 Hz (0.5 s moving averages), frames both track
    fr = np.flatnonzero(both)
    ds = dl.slow_part(cs[fr])
    dm = dl.slow_part(cm[fr])
    return {"pitch": int(ex.pitch), "velocity": int(ex.velocity),
            "drift_cents_source": float(np.std(ds)), "drift_cents_model": float(np.std(dm)),
            "drift_error_cents": float(np.sqrt(np.mean((dm - ds) ** 2))),
            "breath_db_source": bs, "breath_db_model": bm,
            "tremolo_db_source": ts, "tremolo_db_model": tm,
            "rate_source": fs["rate"], "rate_model": fm["rate"],
            "depth_source": fs["depth"], "depth_model": fm["depth"],
            "curve_cents": float(np.sqrt(np.mean((cm[both] - cs[both]) ** 2))),
            "static_cents": float(np.sqrt(np.mean(cs[both] ** 2)))}


def level_breathing(audio: np.ndarray, release_frame: int, rate: float,
                    start_s: float = 0.3, window_s: float = 0.4) -> tuple[float, float]:
    """The level's own movement in a held note (issue 12.4's breathing): the A-weighted level
    per frame (:func:`rtsynth.data.loudness_db`) from ``start_s`` to 20 ms before the release,
    less its ``window_s`` moving average (the note's envelope). Returns its RMS in dB and the
    amplitude in dB of its sinusoid at ``rate`` Hz (the tremolo that goes with the vibrato;
    least squares, any phase)."""
    from ..data import loudness_db
    fr = spec.SAMPLE_RATE / spec.HOP
    L = loudness_db(np.asarray(audio, np.float64))
    a, b = int(start_s * fr), min(int(release_frame), len(L)) - int(0.02 * fr)
    k = int(window_s * fr)
    if b - a < k:
        return float("nan"), float("nan")
    seg = L[a:b]
    pad = np.pad(seg, (k // 2, k - k // 2), mode="edge")
    x = seg - np.convolve(pad, np.ones(k) / k, "valid")[: len(seg)]
    t = np.arange(a, b) / fr
    A = np.stack([np.sin(2 * np.pi * rate * t), np.cos(2 * np.pi * rate * t)], 1)
    c = np.linalg.lstsq(A, x, rcond=None)[0]
    return float(np.sqrt(np.mean(x ** 2))), float(np.hypot(c[0], c[1]))


def evaluate_life(model: str, data_dir: str, instrument: str | None = None) -> dict:
    """Per-note rows and medians for a model on its instrument's held-out notes in
    ``data_dir/<instrument>`` (the instrument: ``--instrument``, else the model's source name)."""
    from pathlib import Path

    from .. import data as rdata
    from ..instruments import load_instrument
    from .common import model_config
    from .melody import for_engine
    cfg = model_config(model)
    name = instrument or (cfg.get("source") or {}).get("name")
    d = Path(data_dir) / name if (Path(data_dir) / name).is_dir() else Path(data_dir)
    inst = for_engine(load_instrument(model))
    rows = [r for r in (note_life(inst, ex) for ex in rdata.load_dataset(d, split="test"))
            if r is not None]
    med = {k: round(float(np.median([r[k] for r in rows])), 3) for k in
           ("rate_source", "rate_model", "depth_source", "depth_model", "curve_cents",
            "static_cents", "breath_db_source", "breath_db_model", "tremolo_db_source",
            "tremolo_db_model", "drift_cents_source", "drift_cents_model",
            "drift_error_cents")} if rows else {}
    if rows:
        med["rate_error_hz"] = round(float(np.median([abs(r["rate_model"] - r["rate_source"])
                                                      for r in rows])), 3)
        med["depth_ratio"] = round(float(np.median([r["depth_model"] / max(r["depth_source"],
                                                                           1e-9)
                                                    for r in rows])), 3)
    return {"model": model, "dataset": str(d), "notes": len(rows), **med, "rows": rows}


def long_notes(name: str, pitches: list[int], seconds: float = 6.0, velocity: int = 100,
               lag_max_s: float = 4.0) -> list[dict]:
    """The source's own slow movement beyond the training notes' 1.3 s: ``seconds``-long
    FluidR3 notes of instrument ``name`` (:mod:`rtsynth.dataset.build`'s renderer, reverb and
    chorus off), each note's tracked pitch and A-weighted level. Per note: ``loop_s``, the lag
    (over 1.5 s on) at which the pitch curve best repeats itself, and ``loop_mad_cents``, the
    mean absolute difference there (a looped sample: ~0); ``pitch_slow_cents_*``: the SD of the
    pitch's 0.5 s moving average less the fitted vibrato (:func:`rtsynth.dataset.life.fit_note`),
    0.3-1.5 s (``early``) and 1.5 s on (``late``: the drift a model would have to play);
    ``level_slow_db_*``: the same of the level (its envelope and any drift)."""
    import tempfile

    from ..data import loudness_db
    from ..dataset import build as b
    from ..dataset import life as dl
    sr, hop = spec.SAMPLE_RATE, spec.HOP
    notes = [dict(pitch=int(p), velocity=int(velocity), held=b._ticks(seconds)) for p in pitches]
    with tempfile.TemporaryDirectory() as tmp:
        on = b.build_midi(notes, b.INSTRUMENTS[name][0], f"{tmp}/n.mid")
        a = b.render_midi(f"{tmp}/n.mid", f"{tmp}/n.wav")[:, 0].astype(np.float64)
    rows = []
    for p, t0 in zip(pitches, on):
        s = int(round(t0 * b.TICK))
        x = a[s: s + int(seconds * sr)]
        T = len(x) // hop
        c, pw = dl.track_f0(x[: T * hop], np.full(T, float(p)))
        ok = dl.trusted(pw)
        ok[0] = False
        ok &= np.abs(c) < 150
        fit = dl.fit_note(c, ok)
        if fit is None:
            continue
        fr = np.flatnonzero(ok)
        t = fr * hop / sr
        slow = dl.slow_part(c[fr] - dl.life_curve(fit, t))
        late, early = t > 1.5, (t > 0.3) & (t <= 1.5)
        y = c[fr][late] - c[fr][late].mean()
        best = (0, float("inf"))
        for lag in range(20, min(len(y) // 2, int(lag_max_s * sr / hop))):
            d = float(np.mean(np.abs(y[lag:] - y[:-lag])))
            if d < best[1]:
                best = (lag, d)
        L = loudness_db(x)
        tl = np.arange(len(L)) * hop / sr
        ls = dl.slow_part(L)
        rows.append({"pitch": int(p), "rate": round(fit["rate"], 2),
                     "depth": round(fit["depth"], 2),
                     "loop_s": round(best[0] * hop / sr, 3), "loop_mad_cents": round(best[1], 3),
                     "pitch_slow_cents_early": round(float(np.std(slow[early])), 2),
                     "pitch_slow_cents_late": round(float(np.std(slow[late])), 2),
                     "level_slow_db_early": round(float(np.std(ls[(tl > 0.3) & (tl <= 1.5)])), 2),
                     "level_slow_db_late": round(float(np.std(ls[(tl > 1.5)
                                                                 & (tl < seconds - 0.2)])), 2)})
    return rows


def kernel_cost(model: str = "flute-life", voices: int = 32, rounds: int = 9,
                calls: int = 2000) -> dict:
    """The life kernel's own cost (:meth:`rtsynth.nn.life.Life.block`) in an engine of
    ``voices`` held notes (:func:`rtsynth.eval.cost._engine`): the voices' rows as the engine
    hands them to it, restored before each call; medians of ``rounds`` x ``calls`` in
    microseconds: ``block`` (all voices) and ``dispatch`` (the same call with no voice active),
    each less the restore's own time."""
    import time

    from .cost import _engine
    e = _engine(model, voices, 128)
    life, vs, rows = e.life, e.voices, e.channels.rows
    if life is None:
        raise ValueError(f"{model} has no life table")
    fields = ("bend_row", "bend_state", "bend_settled", "bend_touched", "dyn_row", "expr_touched")
    snap: dict = {}
    block = life.block

    def grab(n, vs_, rows_):
        for f in fields:
            snap[f] = getattr(vs_, f).copy()
        if life._bundle is not None:
            # its per-voice cache too: the HOLD steps' recurrence steps from the last block's
            snap["cache"] = life._bundle[-1].copy()
        block(n, vs_, rows_)
    life.block = grab
    e.render()
    life.block = block
    act = vs.active.copy()

    def restore():
        for f, arr in snap.items():
            if f == "cache":
                life._bundle[-1][...] = arr
            else:
                getattr(vs, f)[...] = arr

    def one():
        restore()
        block(128, vs, rows)

    def idle():
        restore()
        vs.active[:] = 0
        block(128, vs, rows)
        vs.active[:] = act

    def idle0():
        restore()
        vs.active[:] = 0
        vs.active[:] = act

    def med(f):
        ts = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(calls):
                f()
            ts.append((time.perf_counter() - t0) / calls)
        return float(np.median(ts)) * 1e6
    r0 = med(restore)
    return {"model": model, "voices": voices, "block_us": round(med(one) - r0, 2),
            "dispatch_us": round(med(idle) - med(idle0), 2)}


def main(argv=None) -> int:
    """``python -m rtsynth.eval.life --long INST P1,P2,...``: :func:`long_notes` of the source
    instrument at those pitches, one JSON line per note and one of the medians.
    ``--kernel-cost MODEL``: :func:`kernel_cost`."""
    import argparse
    import json
    ap = argparse.ArgumentParser(prog="python -m rtsynth.eval.life", description=main.__doc__)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--long", nargs=2, metavar=("INST", "PITCHES"))
    g.add_argument("--kernel-cost", metavar="MODEL")
    ap.add_argument("--seconds", type=float, default=6.0)
    a = ap.parse_args(argv)
    if a.kernel_cost:
        print(json.dumps(kernel_cost(a.kernel_cost)))
        return 0
    rows = long_notes(a.long[0], [int(p) for p in a.long[1].split(",")], a.seconds)
    for r in rows:
        print(json.dumps(r))
    if rows:
        print(json.dumps({"instrument": a.long[0], "notes": len(rows), "median": {
            k: round(float(np.median([r[k] for r in rows])), 3) for k in rows[0] if k != "pitch"}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
