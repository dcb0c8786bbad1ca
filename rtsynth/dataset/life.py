"""The life of the source: its own pitch movement per note, measured and fitted (issue 12.4).

A sampled instrument's notes are not at their MIDI pitch all along: FluidR3's violin has the
player's vibrato baked into each sample (replayed from the sample's start at every note-on, so
its phase is the same for every note of that sample), its attack settles onto the pitch, and its
tuning drifts. This module measures that from the training audio and fits a small per-note model
of it, which a model's ``config.json`` carries as ``life`` (:mod:`rtsynth.nn.life` plays it):

- :func:`track_f0`: the source's f0 per frame (spec frame starts, 4 ms), as cents against the
  note's MIDI pitch (bend included): the harmonics 1..6 found near their nominal frequency in a
  2048-point Hann window (zero padded to 8192), each peak refined by a parabola through the
  log-magnitudes, the estimates weighted by power.
- :func:`fit_note`: one note's curve as ``offset + settle * exp(-t / settle_tau) + env(t) *
  depth * sin(2 pi rate t + phase)`` with ``env`` rising from 0 at ``delay`` to 1 at ``delay +
  ramp`` (a smoothstep), least squares over a grid of rates, delays and settle times;
  ``drift``: the RMS of what the fit leaves below 2 Hz (slow wander, reported, not played).
- :func:`fit_life`: every plain training note fitted; per training pitch the parameters of its
  best-fitting note (the source's curve does not depend on velocity: one sample per pitch
  region), as a table over pitch that :mod:`rtsynth.nn.life` interpolates.

Training with ``--source-f0`` (:mod:`rtsynth.train.dataset`) gives the model the source's own
tracked pitch (with its vibrato) as its pitch input and synthesis f0, so its harmonics follow
the pitch movement; at play time the movement comes from this fitted model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import spec

WIN = 2048
NFFT = 8192
N_HARM = 6
#: where a tracked frame is trusted: its level within this many dB of the note's peak
LEVEL_RANGE_DB = 30.0
RATES = np.arange(3.0, 8.5, 0.01)
DELAYS = np.arange(0.0, 0.42, 0.04)
RAMP = 0.12
SETTLE_TAUS = (0.01, 0.02, 0.04, 0.08)
CACHE = "f0_cents.npz"


def track_f0(audio: np.ndarray, pitch_frames: np.ndarray, hop: int = spec.HOP,
             sample_rate: int = spec.SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """``(cents, power)`` per frame: the source's f0 against ``pitch_frames`` (cents, 0 where
    nothing was found) and the power of the harmonics found (0 there)."""
    pf = np.asarray(pitch_frames, np.float64)
    T = len(pf)
    x = np.concatenate([np.zeros(WIN // 2), np.asarray(audio, np.float64), np.zeros(WIN)])
    need = (T - 1) * hop + WIN
    if len(x) < need:
        x = np.concatenate([x, np.zeros(need - len(x))])
    w = np.hanning(WIN)
    idx = np.arange(T)[:, None] * hop + np.arange(WIN)[None, :]
    S = np.abs(np.fft.rfft(x[idx] * w, NFFT, axis=1))
    L = np.log(S + 1e-12)
    binhz = sample_rate / NFFT
    f0n = spec.midi_to_hz(pf)
    est = np.zeros(T)
    wsum = np.zeros(T)
    rows = np.arange(T)
    nb = S.shape[1]
    span = 2.0 ** (0.5 / 12.0)
    width = int(np.ceil((N_HARM * f0n.max() * (span - 1 / span)) / binhz)) + 3
    for h in range(1, N_HARM + 1):
        c = h * f0n / binhz
        lo = np.floor(c / span).astype(np.int64)
        hi = np.ceil(c * span).astype(np.int64)
        ok = (hi + 2 < nb) & (lo > 1)
        if not ok.any():
            continue
        cols = lo[:, None] + np.arange(width)[None, :]
        valid = cols <= hi[:, None]
        cols = np.clip(cols, 0, nb - 1)
        seg = np.where(valid, S[rows[:, None], cols], -1.0)
        k = cols[rows, np.argmax(seg, axis=1)]
        k = np.clip(k, 1, nb - 2)
        a, b, cc = L[rows, k - 1], L[rows, k], L[rows, k + 1]
        den = a - 2 * b + cc
        d = np.where(np.abs(den) > 1e-12, 0.5 * (a - cc) / np.where(den == 0, 1, den), 0.0)
        d = np.clip(d, -0.5, 0.5)
        f = (k + d) * binhz / h
        m = np.where(ok, S[rows, k] ** 2, 0.0)
        est += f * m
        wsum += m
    good = wsum > 0
    f = np.where(good, est / np.maximum(wsum, 1e-300), f0n)
    return np.where(good, 1200.0 * np.log2(f / f0n), 0.0), wsum


def trusted(power: np.ndarray, release_frame: int | None = None) -> np.ndarray:
    """Frames whose harmonics are within :data:`LEVEL_RANGE_DB` of the note's peak (and
    before the release, when given)."""
    db = 10 * np.log10(np.maximum(power, 1e-30))
    ok = db > db.max() - LEVEL_RANGE_DB
    if release_frame is not None:
        ok[release_frame:] = False
    return ok


def source_cents(examples, cache_dir: str | Path | None = None) -> dict[str, np.ndarray]:
    """Tracked cents per example id (``[T]`` float32, 0 where untrusted), cached as
    ``f0_cents.npz`` in ``cache_dir`` (a dataset folder) when it can be written."""
    cache = Path(cache_dir) / CACHE if cache_dir is not None else None
    have: dict[str, np.ndarray] = {}
    if cache is not None and cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                have = {k: z[k] for k in z.files}
        except (OSError, ValueError):
            have = {}
    out, new = {}, False
    for ex in examples:
        c = have.get(ex.id)
        if c is None or len(c) != ex.n_frames:
            cents, power = track_f0(ex.audio, ex.pitch_frames)
            ok = trusted(power)
            c = np.where(ok, cents, 0.0).astype(np.float32)
            have[ex.id] = c
            new = True
        out[ex.id] = c
    if new and cache is not None:
        try:
            tmp = cache.with_name(cache.name + ".tmp.npz")
            np.savez(tmp, **have)
            tmp.replace(cache)
        except OSError:
            pass
    return out


def source_pitch_frames(ex, cents: np.ndarray, max_cents: float = 150.0) -> np.ndarray:
    """The note's pitch per frame with the source's own movement: ``pitch_frames + cents/100``
    (the tracked frames; the first frame, smeared by the window over the onset, and frames
    beyond ``max_cents`` keep the nearest trusted value)."""
    c = np.asarray(cents, np.float64).copy()
    bad = (np.abs(c) > max_cents) | (c == 0.0)
    bad[0] = True
    if bad.all():
        return np.asarray(ex.pitch_frames, np.float64)
    good = np.flatnonzero(~bad)
    c = np.interp(np.arange(len(c)), good, c[good])
    return np.asarray(ex.pitch_frames, np.float64) + c / 100.0


def _smoothstep(t, a, w):
    x = np.clip((t - a) / w, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def life_curve(p: dict, t: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Cents at times ``t`` (seconds since the note-on) of fitted parameters ``p`` (the float64
    reference of what :mod:`rtsynth.nn.life` plays); ``scale`` multiplies the vibrato depth."""
    t = np.asarray(t, np.float64)
    env = _smoothstep(t, p["delay"], p["ramp"])
    return (p["offset"] + p["settle"] * np.exp(-t / p["settle_tau"])
            + scale * p["depth"] * env * np.sin(2 * np.pi * p["rate"] * t + p["phase"]))


def fit_note(cents: np.ndarray, ok: np.ndarray, hop: int = spec.HOP,
             sample_rate: int = spec.SAMPLE_RATE) -> dict | None:
    """The life parameters of one note's tracked curve (frames ``ok`` only), or None when too
    little of it is trusted (under 0.5 s)."""
    ok = ok.copy()
    ok[0] = False
    ok &= np.abs(cents) < 150
    fr = np.flatnonzero(ok)
    if len(fr) < int(0.5 * sample_rate / hop):
        return None
    t = fr * hop / sample_rate
    y = cents[fr].astype(np.float64)
    best = None
    for tau in SETTLE_TAUS:
        ex = np.exp(-t / tau)
        for dl in DELAYS:
            env = _smoothstep(t, dl, RAMP)
            ph = 2 * np.pi * RATES[:, None] * t[None, :]
            S, C = env * np.sin(ph), env * np.cos(ph)            # [R, n]
            ones = np.ones_like(t)
            # per rate: least squares over [1, exp, S, C]
            A = np.stack([np.broadcast_to(ones, S.shape), np.broadcast_to(ex, S.shape), S, C],
                         axis=-1)                                  # [R, n, 4]
            AtA = np.einsum("rni,rnj->rij", A, A) + 1e-9 * np.eye(4)
            Aty = np.einsum("rni,n->ri", A, y)
            coef = np.linalg.solve(AtA, Aty[..., None])[..., 0]
            res = y[None, :] - np.einsum("rni,ri->rn", A, coef)
            sse = np.sum(res ** 2, axis=1)
            j = int(np.argmin(sse))
            if best is None or sse[j] < best[0]:
                best = (sse[j], tau, dl, RATES[j], coef[j], res[j])
    sse, tau, dl, rate, coef, res = best
    a, s, cs, cc = (float(v) for v in coef)
    depth = float(np.hypot(cs, cc))
    phase = float(np.arctan2(cc, cs))       # cs sin + cc cos = depth sin(x + phase)
    # drift: what the fit leaves below 2 Hz (a moving average over 0.5 s)
    k = max(1, int(0.5 * sample_rate / hop))
    slow = np.convolve(res, np.ones(k) / k, mode="same") if len(res) > k else res * 0
    total = float(np.sqrt(np.mean((y - y.mean()) ** 2)))
    return {"offset": a, "settle": s, "settle_tau": float(tau), "delay": float(dl),
            "ramp": RAMP, "rate": float(rate), "depth": depth, "phase": phase,
            "drift": float(np.sqrt(np.mean(slow ** 2))),
            "residual": float(np.sqrt(sse / len(y))), "rms": total,
            "seconds": float(t[-1])}


def fit_examples(examples, cents: dict[str, np.ndarray]) -> list[dict]:
    """Fits of the plain notes (no bend, no swell) with their pitch and velocity."""
    out = []
    for ex in examples:
        if ex.kind != "note" or ex.meta.get("bend"):
            continue
        c = cents[ex.id]
        rel = int(ex.release_sample) // spec.HOP
        ok = (c != 0.0)
        ok[rel:] = False
        p = fit_note(c, ok)
        if p is not None:
            p.update(pitch=float(ex.pitch), velocity=int(ex.velocity), id=ex.id)
            out.append(p)
    return out


KEYS = ("offset", "settle", "settle_tau", "delay", "ramp", "rate", "depth", "phase")


def fit_life(examples, cents: dict[str, np.ndarray]) -> dict:
    """The ``life`` table of a model's config: per training pitch the parameters of its
    longest note's fit (ties: the best fit), and the spread of the fits."""
    fits = fit_examples(examples, cents)
    if not fits:
        raise ValueError("no plain note of 0.5 s or more to fit the source's pitch movement on")
    by = {}
    for p in fits:
        k = p["pitch"]
        if k not in by or (p["seconds"], -p["residual"]) > (by[k]["seconds"], -by[k]["residual"]):
            by[k] = p
    pitches = sorted(by)
    table = {k: [round(float(by[p][k]), 6) for p in pitches] for k in KEYS}
    return {"version": 1, "pitch": [float(p) for p in pitches], **table,
            "drift_cents": round(float(np.median([p["drift"] for p in fits])), 3),
            "fit_residual_cents": round(float(np.median([p["residual"] for p in fits])), 3),
            "source_rms_cents": round(float(np.median([p["rms"] for p in fits])), 3),
            "notes": len(fits),
            "how": "rtsynth.dataset.life.fit_life over the training notes (track_f0)"}


def fit_tremolo(examples, life: dict, cal: dict, start_s: float = 0.3, db: bool = False,
                per_zone: bool = False) -> dict:
    """The level's breathing with the vibrato (issue 12.4), added to a ``life`` table: per
    table pitch, from its longest plain training note, the dynamics the source's level asks for
    frame by frame (:func:`rtsynth.data.dynamics_from_loudness`, the dataset's calibration,
    unsmoothed), held part only (``start_s`` to 20 ms before the release), less its moving
    average over two vibrato periods (the envelope), fitted by least squares to ``env(t) sin(2 pi rate t + phase
    + trem_phase)`` with the table's own vibrato rate, phase and onset: ``trem`` (dynamics
    units) and ``trem_phase``. ``db``: the held level itself (A-weighted dB) instead, giving
    ``trem_db`` (dB; played as a factor on the dynamics, the same dB at any velocity: see
    :data:`rtsynth.nn.life.DB_PER_DECADE`) and ``trem`` 0. ``per_zone`` (the table has its
    ``zone`` column, :func:`with_zones`): one fit over all the zone's notes (their rows
    stacked, each with its own vibrato), given to every row of the zone: a sample breathes
    alike at every key it plays. A new dict; the input is not changed."""
    from .. import data as rdata
    from ..nn.life import note_params, table_from_config
    pitches, table = table_from_config(life)
    fr = spec.SAMPLE_RATE / spec.HOP
    best: dict[float, tuple] = {}
    for ex in examples:
        if ex.kind != "note" or ex.meta.get("bend") or not rdata.is_plain(ex):
            continue
        rel = int(ex.release_sample) // spec.HOP
        if float(ex.pitch) not in set(pitches.tolist()):
            continue
        if float(ex.pitch) in best and best[float(ex.pitch)][0] >= rel:
            continue
        best[float(ex.pitch)] = (rel, ex)
    trem, tph = [], []
    rows: dict[int, tuple] = {}
    for p in pitches:
        if p not in best:
            trem.append(0.0)
            tph.append(0.0)
            continue
        rel, ex = best[p]
        prm = note_params(pitches, table, p)
        loud = rdata.loudness_db(np.asarray(ex.audio, np.float64))
        T = min(len(loud), len(ex.pitch_frames))
        d = loud[:T] if db else rdata.dynamics_from_loudness(
            loud[:T], np.asarray(ex.pitch_frames, np.float64)[:T], cal)
        a, b = int(max(start_s, prm[3]) * fr), min(rel, T) - int(0.02 * fr)
        k = max(2, int(round(2.0 * fr / max(prm[5], 1.0))))
        if prm[6] <= 0.0 or b - a < k + 10:
            trem.append(0.0)
            tph.append(0.0)
            continue
        seg = np.asarray(d[a:b], np.float64)
        pad = np.pad(seg, (k // 2, k - k // 2), mode="edge")
        x = seg - np.convolve(pad, np.ones(k) / k, "valid")[: len(seg)]
        t = np.arange(a, b) / fr
        env = _smoothstep(t, prm[3], prm[4])
        ph = 2 * np.pi * prm[5] * t + prm[7]
        A = np.stack([env * np.sin(ph), env * np.cos(ph)], 1)
        rows[len(trem)] = (A, x)
        c = np.linalg.lstsq(A, x, rcond=None)[0]
        trem.append(round(float(min(np.hypot(c[0], c[1]), 6.0 if db else 0.5)), 6))
        tph.append(round(float(np.arctan2(c[1], c[0])), 6))
    if per_zone:
        zone = np.asarray(life.get("zone", [0.0] * len(trem)), np.float64)
        if not (zone > 0).all():
            raise ValueError("fit_tremolo per_zone: the table needs its 'zone' column")
        for z in np.unique(zone):
            js = [j for j in np.flatnonzero(zone == z) if j in rows]
            if not js:
                continue
            c = np.linalg.lstsq(np.concatenate([rows[j][0] for j in js]),
                                np.concatenate([rows[j][1] for j in js]), rcond=None)[0]
            for j in np.flatnonzero(zone == z):
                trem[j] = round(float(min(np.hypot(c[0], c[1]), 6.0 if db else 0.5)), 6)
                tph[j] = round(float(np.arctan2(c[1], c[0])), 6)
    out = dict(life)
    out["trem_db" if db else "trem"] = trem
    if db:
        out["trem"] = [0.0] * len(trem)
    out["trem_phase"] = tph
    out["tremolo_how"] = ("rtsynth.dataset.life.fit_tremolo: the held level's "
                          + ("A-weighted dB" if db else "dynamics")
                          + " less its envelope (two vibrato periods) at the vibrato's rate and "
                            "onset")
    return out


def sf2_zones(path: str | Path, program: int, bank: int = 0) -> list[tuple[int, int, str]]:
    """The key ranges of a SoundFont 2 preset's samples: ``(lo, hi, sample name)`` sorted, one
    per distinct range (a stereo pair's two samples are one range). Read from the file's
    ``pdta`` chunk: the preset's zones (their key ranges, generator 43, and instruments,
    generator 41) and each instrument zone's key range and sample (generator 53), the ranges
    intersected. Which sample plays a key decides its vibrato, tuning and breathing: FluidR3's
    flute keys 63-65 breathe 4.4 dB, 66-68 (another sample) 1.6 dB."""
    import struct
    b = Path(path).read_bytes()
    if b[:4] != b"RIFF" or b[8:12] != b"sfbk":
        raise ValueError(f"{path}: not a SoundFont 2 file")

    def chunks(off, end):
        while off + 8 <= end:
            cid, size = b[off:off + 4], struct.unpack("<I", b[off + 4:off + 8])[0]
            yield cid, off + 8, size
            off += 8 + size + (size & 1)
    pd = {}
    for cid, o, size in chunks(12, len(b)):
        if cid == b"LIST" and b[o:o + 4] == b"pdta":
            pd = {c.decode("latin-1"): b[o2:o2 + s2] for c, o2, s2 in chunks(o + 4, o + size)}

    def recs(name, fmt):
        n = struct.calcsize(fmt)
        raw = pd.get(name, b"")
        return [struct.unpack(fmt, raw[i:i + n]) for i in range(0, len(raw) - n + 1, n)]
    phdr, pbag, pgen = recs("phdr", "<20sHHHIII"), recs("pbag", "<HH"), recs("pgen", "<HH")
    inst, ibag, igen = recs("inst", "<20sH"), recs("ibag", "<HH"), recs("igen", "<HH")
    shdr = recs("shdr", "<20sIIIIIBbHH")

    def gens(bags, gen, z):
        return {gen[k][0]: gen[k][1] for k in range(bags[z][0], bags[z + 1][0])}

    def keys(g):
        r = g.get(43)
        return (r & 255, r >> 8) if r is not None else (0, 127)
    out = set()
    for pi in range(len(phdr) - 1):
        if phdr[pi][1] != program or phdr[pi][2] != bank:
            continue
        for z in range(phdr[pi][3], phdr[pi + 1][3]):
            g = gens(pbag, pgen, z)
            if 41 not in g:
                continue
            plo, phi = keys(g)
            ii = g[41]
            for iz in range(inst[ii][1], inst[ii + 1][1]):
                ig = gens(ibag, igen, iz)
                if 53 not in ig:
                    continue
                lo, hi = keys(ig)
                lo, hi = max(lo, plo), min(hi, phi)
                if lo <= hi:
                    name = shdr[ig[53]][0].split(b"\0")[0].decode("latin-1")
                    out.add((lo, hi, name.split("(")[0].strip()))
    if not out:
        raise ValueError(f"{path}: no preset {bank}:{program} with samples")
    return sorted(out)


def with_zones(life: dict, zones: list[tuple[int, int, str]]) -> dict:
    """A ``life`` table with its ``zone`` column (:data:`rtsynth.nn.life.OPTIONAL`): per row
    the lowest key of the zone that plays its pitch (the lowest zone's as 1; 0 where none
    does). A new dict."""
    col = []
    for p in life["pitch"]:
        lo = [z[0] for z in zones if z[0] <= p <= z[1]]
        col.append(float(max(lo[0], 1)) if lo else 0.0)
    out = dict(life)
    out["zone"] = col
    out["zones_how"] = ("rtsynth.dataset.life.sf2_zones: the lowest key of the SoundFont sample "
                        "that plays each pitch")
    return out


#: the drift's time constants tried (s): FluidR3's samples wander over their first second and
#: then loop (a 6 s note's pitch curve repeats exactly: period 0.33-1.79 s, 0.01-0.13 cents
#: mean absolute difference between periods, violin), so nothing slower is there to fit
DRIFT_TAUS = (0.1, 0.15, 0.2, 0.3, 0.45)
#: a drift is kept only where it takes this fraction of what the table's curve leaves
DRIFT_MIN_GAIN = 0.1
DRIFT_LIMIT = 60.0


def slow_part(res: np.ndarray, hop: int = spec.HOP, sample_rate: int = spec.SAMPLE_RATE,
              window_s: float = 0.5) -> np.ndarray:
    """The part of a per-frame curve slower than ~2 Hz: its ``window_s`` moving average (edges
    held)."""
    k = max(1, int(window_s * sample_rate / hop))
    if len(res) <= k:
        return np.full(len(res), float(np.mean(res)) if len(res) else 0.0)
    pad = np.pad(res, (k // 2, k - k // 2), mode="edge")
    return np.convolve(pad, np.ones(k) / k, "valid")[: len(res)]


def fit_drift(examples, life: dict, cents: dict[str, np.ndarray]) -> dict:
    """The source's slow pitch wander (issue 12.4's drift), added to a ``life`` table: per
    table pitch, on its longest plain training note, what the table's curve leaves of the
    tracked cents (frame 1 to the release), fitted by least squares to ``c0 + drift *
    exp(-t / drift_tau)`` over :data:`DRIFT_TAUS`: ``drift`` (cents at the note-on, within
    +-:data:`DRIFT_LIMIT`) and ``drift_tau``, ``c0`` moved into ``offset`` (the tuning the
    sample settles to). Kept where it removes at least :data:`DRIFT_MIN_GAIN` of the leftover's
    power, else 0 (nothing played). A new dict; the input is not changed."""
    from .. import data as rdata
    from ..nn.life import note_params, table_from_config
    pitches, table = table_from_config(life)
    best: dict[float, tuple] = {}
    for ex in examples:
        if ex.kind != "note" or ex.meta.get("bend") or not rdata.is_plain(ex):
            continue
        rel = int(ex.release_sample) // spec.HOP
        p = float(ex.pitch)
        if p in best and best[p][0] >= rel:
            continue
        best[p] = (rel, ex)
    offset = list(life["offset"])
    drift, dtau, gain = [], [], []
    for j, p in enumerate(pitches):
        d, tau = 0.0, 0.5
        if p in best:
            rel, ex = best[p]
            c = np.asarray(cents[ex.id], np.float64)
            ok = c != 0.0
            ok[0] = False
            ok[rel:] = False
            ok &= np.abs(c) < 150
            fr = np.flatnonzero(ok)
            if len(fr) >= int(0.5 * spec.SAMPLE_RATE / spec.HOP):
                t = fr * spec.HOP / spec.SAMPLE_RATE
                prm = dict(zip(("offset", "settle", "settle_tau", "delay", "ramp", "rate",
                                "depth", "phase"), note_params(pitches, table, p)[:8]))
                r = c[fr] - life_curve(prm, t)
                sse0 = float(np.sum((r - r.mean()) ** 2))
                fit = None
                for tt in DRIFT_TAUS:
                    A = np.stack([np.ones_like(t), np.exp(-t / tt)], 1)
                    coef = np.linalg.lstsq(A, r, rcond=None)[0]
                    coef[1] = np.clip(coef[1], -DRIFT_LIMIT, DRIFT_LIMIT)
                    coef[0] = float(np.mean(r - coef[1] * A[:, 1]))
                    sse = float(np.sum((r - A @ coef) ** 2))
                    if fit is None or sse < fit[0]:
                        fit = (sse, tt, coef)
                g = 1.0 - fit[0] / max(sse0, 1e-12)
                gain.append(round(g, 3))
                if g >= DRIFT_MIN_GAIN:
                    d, tau = float(fit[2][1]), fit[1]
                    offset[j] = round(float(offset[j] + fit[2][0]), 6)
        drift.append(round(d, 6))
        dtau.append(float(tau))
    out = dict(life)
    out["offset"] = offset
    out["drift"] = drift
    out["drift_tau"] = dtau
    out["drift_gain_median"] = round(float(np.median(gain)), 3) if gain else 0.0
    out["drift_how"] = ("rtsynth.dataset.life.fit_drift: what the table's curve leaves of the "
                        "longest note per pitch, fitted to c0 + drift exp(-t/drift_tau) (c0 into "
                        "offset); kept where it takes >= 10 % of the leftover's power")
    return out


def main(argv=None) -> int:
    """``python -m rtsynth.dataset.life DATA [--out life.json]``: fit and print the table.
    ``--tremolo MODEL``: fit the level's tremolo on DATA's training notes into MODEL's table
    (its config.json), with DATA's calibration. ``--drift MODEL``: fit the pitch's slow drift
    (:func:`fit_drift`) into MODEL's table likewise."""
    import argparse

    from .. import data as rdata
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("data")
    ap.add_argument("--out", default=None)
    ap.add_argument("--tremolo", default=None, metavar="MODEL")
    ap.add_argument("--drift", default=None, metavar="MODEL")
    ap.add_argument("--db", action="store_true",
                    help="with --tremolo: fit it in dB (trem_db, a factor on the dynamics)")
    ap.add_argument("--per-zone", action="store_true",
                    help="with --tremolo: one fit per source sample zone (the table's 'zone')")
    ap.add_argument("--zones", default=None, metavar="MODEL",
                    help="write the source's sample zones (the 'zone' column) into MODEL's "
                         "table, from the dataset's SoundFont (--sf2)")
    ap.add_argument("--sf2", default=None, help="the SoundFont of --zones (default: "
                    "/usr/share/sounds/sf2/ and the dataset's soundfont name)")
    a = ap.parse_args(argv)
    if a.zones:
        src = json.loads((Path(a.data) / "index.json").read_text())["source"]
        sf2 = a.sf2 or str(Path("/usr/share/sounds/sf2") / src["soundfont"])
        zones = sf2_zones(sf2, int(src["program"]), int(src.get("bank", 0)))
        p = Path(a.zones) / "config.json"
        cfg = json.loads(p.read_text())
        cfg["life"] = with_zones(cfg["life"], zones)
        p.write_text(json.dumps(cfg, indent=1) + "\n")
        print(json.dumps({"zones": zones, "zone": cfg["life"]["zone"]}))
        return 0
    exs = rdata.load_dataset(a.data, split="train")
    if a.drift:
        p = Path(a.drift) / "config.json"
        cfg = json.loads(p.read_text())
        cfg["life"] = fit_drift(exs, cfg["life"], source_cents(exs, a.data))
        p.write_text(json.dumps(cfg, indent=1) + "\n")
        print(json.dumps({k: cfg["life"][k] for k in ("pitch", "offset", "drift", "drift_tau",
                                                      "drift_gain_median")}))
        return 0
    if a.tremolo:
        p = Path(a.tremolo) / "config.json"
        cfg = json.loads(p.read_text())
        cfg["life"] = fit_tremolo(exs, cfg["life"], rdata.calibrate(exs), db=a.db,
                                  per_zone=a.per_zone)
        p.write_text(json.dumps(cfg, indent=1) + "\n")
        print(json.dumps({k: cfg["life"][k] for k in ("pitch", "trem_db" if a.db else "trem",
                                                      "trem_phase")}))
        return 0
    life = fit_life(exs, source_cents(exs, a.data))
    text = json.dumps(life, indent=1)
    if a.out:
        Path(a.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
