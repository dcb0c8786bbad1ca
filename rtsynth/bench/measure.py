"""The measurements of ``rtsynth bench``: each takes a synth on a JACK server and a rig.

Everything is counted in JACK frames, from the frame at which the rig wrote a MIDI event to the
frame at which the synth's sound crossed the onset threshold in the recording; no host clock is
involved except for start-up (wall clock from the launch to the first audible frame, related
to JACK's frame counter once) and offline render speed.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rtsynth.jackserver import JackServer
from rtsynth.testing.jackrig import (NO_ONSET, JackRig, detect_onsets, find_client_ports,
                                     find_gaps, note_schedule)

from .synths import LiveSynth

ONSET_THRESHOLD = 1e-4   # -80 dBFS, above a noise floor measured before each note
GAP_MIN = 32             # frames of exact silence that count as a dropout while notes sound


def summarize(frames, sample_rate: int) -> dict:
    """median / p99 / max / min / jitter (max - min) / std, in frames and ms."""
    a = np.asarray(frames, dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    d = {"n": int(a.size), "median": float(np.median(a)), "p99": float(np.percentile(a, 99)),
         "max": float(a.max()), "min": float(a.min()), "jitter": float(a.max() - a.min()),
         "std": float(a.std())}
    for k in ("median", "p99", "max", "min", "jitter", "std"):
        d[k + "_ms"] = d[k] * 1000.0 / sample_rate
    return d


def _silence_events(channels=range(16)) -> list:
    ev = []
    for ch in channels:
        ev += [(0, bytes([0xB0 | ch, 123, 0])), (0, bytes([0xB0 | ch, 120, 0])),
               (0, bytes([0xB0 | ch, 121, 0])), (0, bytes([0xE0 | ch, 0, 64]))]
    return ev


def silence(rig: JackRig, frames: int | None = None) -> None:
    """All notes off, all sound off, controllers reset on every channel; wait ``frames``."""
    rig.run(_silence_events(), frames or rig.sample_rate // 4)


def _program_events(program: int | None, channels=(0,)) -> list:
    if program is None:
        return []
    return [(0, bytes([0xC0 | ch, program])) for ch in channels]


# -- 1. latency ----------------------------------------------------------------------------------

#: a take that lost notes to the rig (server xruns: the recorder missed cycles) is followed by
#: retakes of the lost count until the requested notes are measured or this budget is spent:
#: takes in all, and notes played in all as a multiple of the request
RETAKE_MAX_TAKES = 4
RETAKE_MAX_PLAYED = 3.0


def _latency_take(live: LiveSynth, n_notes: int, spacing: int, length: int, warmup_notes: int,
                  seed: int, threshold: float) -> dict:
    """One take of :func:`measure_latency`: its notes' latencies, and what it lost."""
    rig = live.rig
    bs = rig.blocksize
    first = 4 * bs
    # One key, one velocity: every note has the same attack, so the spread of onset frames is
    # the synth's timing jitter, not the different rise times of different notes at a fixed
    # -80 dBFS threshold (a low note's first cycle rises more slowly than a high note's).
    pitches = (69,)
    n = n_notes + warmup_notes
    ev, on = note_schedule(n, spacing, length, first=first, pitches=pitches, jitter=bs, seed=seed)
    pe = _program_events(live.spec.program)
    ev = pe + ev
    on = [i + len(pe) for i in on]
    res = rig.run(ev, first + n * spacing + spacing)
    starts = res.event_frames[on][warmup_notes:]
    # look one block back: a synth that applies events at its block start sounds before the
    # event's frame (FluidSynth at 256 frames does); that shows as a negative latency
    lat = detect_onsets(res.audio, starts, threshold=threshold, lookback=bs)
    # a note counts only if the recorder saw every frame that its measure read: from the
    # noise floor's window before it up to its onset (nothing before the onset was missed,
    # so it is the first sound), or, without an onset, up to the next note (then it is the
    # synth's: missed). A note-on never written (event_frames -1) is lost too. (Asking for
    # every frame up to the next note for each note lost most notes on a loaded machine,
    # where the server skips a cycle every few hundred ms.)
    found = lat != NO_ONSET
    rec = res.recorded
    floor = 256                                     # detect_onset's floor_window
    seen = np.zeros(len(starts), dtype=bool)
    for i, s in enumerate(starts):
        s = int(s)
        if s < bs:
            continue
        lo = max(0, s - bs - floor)
        hi = s + int(lat[i]) + 1 if found[i] else s + spacing
        seen[i] = hi <= len(rec) and bool(rec[lo:hi].all())
    heard = seen & found
    return {"frames": lat[heard].astype(int).tolist(),
            "offsets": ((starts[heard] + res.start) % bs).astype(int).tolist(),
            "notes": int(len(starts)), "heard": int(heard.sum()),
            "missed": int((seen & ~found).sum()), "lost": int((~seen).sum()),
            "xruns": int(res.xruns), "late_events": int(res.late_events)}


def measure_latency(live: LiveSynth, n_notes: int = 200, spacing: int = 4800, length: int = 1920,
                    warmup_notes: int = 2, seed: int = 0,
                    threshold: float = ONSET_THRESHOLD, max_takes: int = RETAKE_MAX_TAKES,
                    max_played: float = RETAKE_MAX_PLAYED) -> dict:
    """Note-ons one at a time at every position inside a block (random offsets), CC120 between
    notes; latency = onset frame - note-on frame (negative when a synth applies an event at
    the start of the block it arrives in).

    Notes the recorder did not see up to their onset (or, without one, up to the next note:
    the server dropped cycles, a loaded machine) are lost, not measured; each lost note is played again in a further take (fresh random
    offsets) until ``n_notes`` notes were seen or ``max_takes`` takes / ``max_played`` x
    ``n_notes`` notes were played. A note seen but without an onset is the synth's: ``missed``,
    never played again. ``n`` is the notes measured, ``requested`` the request, ``lost`` the
    notes lost to the rig over all takes, ``takes`` each take's count; ``budget_spent``: the
    budget ran out before ``n_notes`` notes were seen."""
    rig = live.rig
    sr, bs = rig.sample_rate, rig.blocksize
    takes, frames, offsets = [], [], []
    seen = played = 0
    budget = int(math.ceil(max_played * n_notes))
    while True:
        want = n_notes - seen
        if want <= 0 or len(takes) >= max_takes or played >= budget:
            break
        if takes:
            # the loss rate so far: ask for enough notes that the missing ones are likely seen
            rate = sum(t["lost"] for t in takes) / max(played, 1)
            want = int(math.ceil(want / max(1.0 - rate, 0.25))) + 2
        want = max(1, min(want, n_notes, budget - played))
        t = _latency_take(live, want, spacing, length, warmup_notes, seed + 7919 * len(takes),
                          threshold)
        takes.append(t)
        frames += t.pop("frames")
        offsets += t.pop("offsets")
        played += t["notes"]
        seen += t["heard"] + t["missed"]
    # a take may see more notes than were missing: the request's count, in the order played
    frames, offsets = frames[:n_notes], offsets[:n_notes]
    out = summarize(frames, sr)
    lost = sum(t["lost"] for t in takes)
    out.update(block=bs, sample_rate=sr, requested=int(n_notes), notes=int(played),
               missed=sum(t["missed"] for t in takes), lost=int(lost), lost_to_rig=int(lost),
               rig_xruns=sum(t["xruns"] for t in takes),
               late_events=sum(t["late_events"] for t in takes),
               takes=takes, budget_spent=bool(seen < n_notes),
               frames=[int(f) for f in frames], offsets_in_block=[int(o) for o in offsets])
    return out


# -- 1b. felt latency ---------------------------------------------------------------------------

FELT_NOTES = tuple(range(60, 84))    # C4..B5: a flute's range
FELT_REL = 0.02                      # "audible": the first sample above 2% of the note's peak
FELT_PROGRAM = 73                    # GM flute (FluidSynth's preset for the flute models)
FELT_MIN_SEEN = 0.9                  # of a note's frames the recorder saw, for it to count


def even_offsets(n: int, block: int, seed: int = 0) -> np.ndarray:
    """``n`` offsets inside a block of ``block`` frames, spread evenly (each position
    ``floor(i * block / n)``), in a shuffled order."""
    offs = (np.arange(n, dtype=np.int64) * block) // max(n, 1)
    np.random.default_rng(seed + 1).shuffle(offs)
    return offs


def measure_felt_latency(live: LiveSynth, repeats: int = 2, spacing: int = 24000,
                         length: int = 14400, program: int | None = FELT_PROGRAM,
                         notes=FELT_NOTES, seed: int = 0, rel: float = FELT_REL) -> dict:
    """What a player feels: note-on to the first sample above ``rel`` of the note's own peak
    (over its held part), for every key of ``notes`` ``repeats`` times, one note at a time at
    every position inside a block, CC120 between notes. ``program`` is sent on channel 0 (a
    GM synth plays that preset; rtsynth's instrument ignores it). Reverb must be off."""
    rig = live.rig
    sr, bs = rig.sample_rate, rig.blocksize
    first = 4 * bs
    pitches = [p for _ in range(repeats) for p in notes]
    rng = np.random.default_rng(seed)
    rng.shuffle(pitches)
    # Every position inside a block equally often, the same positions in every run and for
    # every synth: the run starts on a block boundary, notes are whole blocks apart plus an
    # offset from an even spread over the block, dealt in a shuffled order. (Random offsets from
    # a run start anywhere in a block made a synth that applies events at its block start,
    # FluidSynth, draw its median afresh each run: 0.06-0.31 ms at 128 frames, same notes.)
    spacing -= spacing % bs
    ev, on = note_schedule(len(pitches), spacing, length, first=first, pitches=pitches)
    offs = even_offsets(len(pitches), bs, seed)
    assert len(ev) == 3 * len(pitches)    # note-on, note-off, CC120 per note, notes in order
    ev = sorted(((t + int(offs[k // 3]), d) for k, (t, d) in enumerate(ev)), key=lambda e: e[0])
    on = [i for i, (_, d) in enumerate(ev) if d[0] & 0xF0 == 0x90]
    pe = _program_events(program)
    ev = pe + ev
    on = [i + len(pe) for i in on]
    t0 = -(-(rig.frame_time + 4 * bs) // bs) * bs
    rig.start(ev, first + len(pitches) * spacing + spacing, start_frame=t0)
    res = rig.finish()
    m = res.mono
    starts = res.event_frames[on]
    lat, kept, keys = [], [], []
    lost = 0
    due = [int(ev[i][0]) for i in on]
    for s, p, d in zip(starts, pitches, due):
        s = int(s)
        # a note-on the rig wrote late (it missed the cycle of its frame) is not at its place
        # in the spread over the block
        if s != d or s < bs or s + length > len(m):
            lost += 1
            continue
        # a note counts when the recorder saw nearly all of it (its peak: the loudest frame
        # seen; a held note's envelope is broad, a missed cycle or two does not move it) and
        # every frame from a block before the note-on to a block after its crossing (a
        # crossing inside a missed cycle would be read late). On a loaded machine the server
        # skips a cycle every few hundred ms: asking for the whole note lost most of them.
        rec = res.recorded[s - bs:s + length]
        if np.count_nonzero(rec) < FELT_MIN_SEEN * len(rec):
            lost += 1
            continue
        peak = float(m[s:s + length][rec[bs:]].max())
        if peak <= 1e-4:
            continue
        hit = np.flatnonzero(m[s - bs:s + length] > rel * peak)
        if not rec[:int(hit[0]) + 2 * bs].all():
            lost += 1
            continue
        lat.append(int(hit[0]) - bs)
        kept.append(s)
        keys.append(p)
    out = summarize(lat, sr)
    out.update(block=bs, sample_rate=sr, notes=len(pitches), heard=len(lat), rel=rel, lost=lost,
               program=program, frames=lat, keys=keys,
               offsets_in_block=[int((s + res.start) % bs) for s in kept])
    return out


# -- 2./3. held voices: dropouts under load, capacity ------------------------------------------

#: the channels a multi-channel held run spreads its voices over: all but GM's drum channel
SPREAD_CHANNELS = [c for c in range(16) if c != 9]


def held_stream(k: int, seconds: float, sr: int, first: int, *, program: int | None = None,
                rate_hz: float = 100.0, bend: bool = True, cc: bool = True,
                spread: bool = False) -> tuple[list, int, int]:
    """K held notes (spread over channels 0-3, 64 per channel; ``spread``: dealt round over
    the 15 channels of :data:`SPREAD_CHANNELS`, as a multi-part piece would), continuous pitch
    bend, CC1 and CC11 traffic on every channel used; returns ``(events, hold_start,
    hold_end)`` (frames from the run start)."""
    ev = []
    if spread:
        chans = SPREAD_CHANNELS[:max(1, min(k, len(SPREAD_CHANNELS)))]
    else:
        chans = list(range(max(1, math.ceil(k / 64))))

    def chan(i):
        return chans[i % len(chans)] if spread else i // 64
    ev += [(0, e) for _, e in _program_events(program, chans)]
    for i in range(k):
        ch = chan(i)
        pitch = 36 + (i * 5) % 64
        ev.append((first + i, bytes([0x90 | ch, pitch, 80 + (i % 4) * 10])))
    end = first + int(seconds * sr)
    step = int(sr / rate_hz)
    t = first + step
    j = 0
    while t < end:
        ph = 2 * math.pi * 0.5 * (t - first) / sr       # 0.5 Hz sweeps
        for ch in chans:
            if bend:
                v = int(8192 + 2048 * math.sin(ph + ch))  # +-1/4 of the bend range
                ev.append((t, bytes([0xE0 | ch, v & 0x7F, (v >> 7) & 0x7F])))
            if cc:
                if j % 2 == 0:
                    ev.append((t, bytes([0xB0 | ch, 1, int(64 + 63 * math.sin(ph * 1.3))])))
                else:
                    ev.append((t, bytes([0xB0 | ch, 11, int(100 + 27 * math.sin(ph * 0.7))])))
        t += step
        j += 1
    for i in range(k):
        ch = chan(i)
        pitch = 36 + (i * 5) % 64
        ev.append((end, bytes([0x80 | ch, pitch, 0])))
    ev += [(end + 1, e) for _, e in _silence_events(chans)]
    return ev, first, end


def recorded_silence(audio: np.ndarray, recorded: np.ndarray, lo: int, hi: int,
                     min_len: int = GAP_MIN) -> list[tuple[int, int]]:
    """Silent gaps (``>= min_len`` frames of exact zeros) in ``audio[:, lo:hi]`` that the
    recorder saw: ``[(first_frame, length)]``. A frame the recorder missed (the server skipped
    its cycle) is zero in the buffer but no evidence of silence, so a silent run is cut at the
    frames the recorder missed and each recorded piece of it counts on its own. (Dropping every
    run that touched a missed frame, as before, hid a synth that was silent all along on a
    loaded machine: one long run, a few missed cycles inside it, no gap.)"""
    rec = np.asarray(recorded, dtype=bool)
    out = []
    for a, n in find_gaps(audio, lo, hi, min_len=min_len):
        seg = rec[a:a + n]
        if seg.all():
            out.append((a, n))
            continue
        d = np.diff(np.concatenate(([0], seg.astype(np.int8), [0])))
        for s0, e0 in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)):
            if e0 - s0 >= min_len:
                out.append((a + int(s0), int(e0 - s0)))
    return out


_XRUN_LINE = re.compile(r"JackEngine::XRun: client = (.+?) was not finished(?:, state = (\w+))?")


def blamed_xruns(server: JackServer, client_prefix: str, since: int = 0) -> dict:
    """The server's xruns after byte ``since`` of its log where the client ``client_prefix``
    was inside its process callback at the deadline (``state = Running``), in two kinds:

    - ``alone``: the cycle overran because of this client: no other client was still running,
      the server's own timer was on time, and the xrun before it was not another client's or
      the server's;
    - ``shared``: the machine was late with it: another client was still running too, the
      server began the cycle late (``JackTimedDriver::Process XRun``), or it came right after
      such an xrun (the graph catching up after a stall: a loaded VM stalls every thread at
      once; one client that sleeps in its callback makes the next cycle start late for all).

    The server writes one ``not finished`` line per unfinished client of an xrun, then
    ``Process error``: the lines up to a ``Process error`` are one xrun, in order. (Seen under
    jack_chaos: a synth whose callback takes 1% of the period, blamed ``Running`` 1-3 times a
    1.5 s take, each time in the xrun right after one the stalling client was blamed for.)"""
    text = server._log_since(since)
    groups: list[tuple[list[str], bool]] = []     # (clients running, server's timer late)
    running: list[str] = []
    late = False
    for line in text.splitlines():
        m = _XRUN_LINE.search(line)
        if m:
            if m.group(2) in (None, "Running"):
                running.append(m.group(1))
        elif "JackTimedDriver::Process XRun" in line:
            late = True
        elif "Process error" in line:
            groups.append((running, late))
            running, late = [], False
    if running or late:
        groups.append((running, late))
    alone = shared = 0
    prev_foreign = False
    for running, late in groups:
        mine = [c for c in running if c.startswith(client_prefix)]
        foreign = late or len(running) > len(mine)
        if mine:
            if foreign or prev_foreign:
                shared += 1
            else:
                alone += 1
        prev_foreign = foreign
    return {"alone": alone, "shared": shared}


def measure_held(live: LiveSynth, server: JackServer | None, k: int, seconds: float,
                 settle: float = 0.5, spread: bool = False) -> dict:
    """Hold ``k`` voices for ``seconds`` with bend/CC traffic. Dropouts found three ways:
    silent gaps (>= ``GAP_MIN`` frames of exact zeros) in the frames the recorder saw while the
    notes sound (:func:`recorded_silence`), xruns the server blames on the synth's client alone
    (``client_xruns``; those where the machine was late with it are ``client_xruns_shared``,
    :func:`blamed_xruns`), and (after exit) the synth's own underrun counter."""
    rig = live.rig
    sr, bs = rig.sample_rate, rig.blocksize
    first = 4 * bs
    program = live.spec.sustain_program
    ev, t_on, t_off = held_stream(k, seconds, sr, first, program=program, spread=spread)
    since = server.log_size() if server is not None else 0
    res = rig.run(ev, t_off + sr // 4, cpu_load=True)
    res_len = res.audio.shape[1]
    lo = t_on + int(settle * sr)
    # a synth that applies MIDI at its block start (FluidSynth) goes quiet up to a block before
    # the note-off frame: stop the window two blocks early
    t_off = t_off - 2 * bs
    gaps = recorded_silence(res.audio, res.recorded, lo, t_off)
    # frames the synth produced silence for, in blocks (a dropped block leaves one full gap)
    out = {"voices": k, "seconds": seconds, "block": bs, "gaps": len(gaps), "spread": spread,
           "gap_frames": int(sum(n for _, n in gaps)),
           "unrecorded_frames": int((~res.recorded[lo:t_off]).sum()),
           "rig_xruns": res.xruns,
           "dsp_load_median": float(np.median(res.cpu_load)) if res.cpu_load else None,
           "dsp_load_max": float(np.max(res.cpu_load)) if res.cpu_load else None,
           "events": len(ev), "peak": float(np.abs(res.audio[:, lo:t_off]).max())
           if t_off > lo and res_len > lo else 0.0,
           # the analysed window on the server's frame clock (the synth's own counters are
           # counted inside it where its trace gives their clock)
           "window_clock": [int(res.start + lo), int(res.start + t_off)]}
    if server is not None:
        blame = blamed_xruns(server, live.xrun_client, since)
        out["client_xruns"] = blame["alone"]
        out["client_xruns_shared"] = blame["shared"]
        out["server_xruns"] = server.server_xruns(since)
    else:
        out["client_xruns"] = None
        out["server_xruns"] = res.xruns
    return out


def finish_held(row: dict, stats: dict | None) -> dict:
    """Add the synth's own counters (from ``--stats-json`` at exit) and the dropout total."""
    if stats:
        row["underruns"] = int(stats.get("underruns", 0))
        # sync mode: a block that ends after its period is an underrun of its own counter and
        # the xrun the server blames on it; counted once
        row["late_blocks"] = int(stats.get("late_blocks", 0))
        # --ahead auto renders further ahead after an underrun: the latency it ended with
        if "latency_frames" in stats:
            row["latency_frames_end"] = int(stats["latency_frames"])
            row["latency_ms_end"] = 1e3 * row["latency_frames_end"] / stats.get("sample_rate",
                                                                               48000)
            row["latency_raises"] = int(stats.get("latency_raises", 0))
        trace = stats.get("policy_trace") or []
        if trace:
            row["policy_trace"] = trace[:32]
        win = row.get("window_clock")
        from rtsynth.live.player import TRACE_ROWS
        if (win and trace and len(trace) < TRACE_ROWS and "clock" in trace[0]
                and all(t["clock"] >= 0 for t in trace)):
            # rtsynth's own underruns and late blocks inside the window (a ring underrun is
            # classified SERVER_GRACE cycles after it: a few frames late, counted as inside)
            inside = [t for t in trace if win[0] <= t["clock"] <= win[1]]
            late = sum(1 for t in inside if t["what"] in ("late", "late_own"))
            own_late = sum(1 for t in inside if t["what"] == "late_own")
            own_ring = sum(int(t["own"]) for t in inside if t["what"] == "own_underrun")
            srv_ring = sum(int(t["own"]) for t in inside if t["what"] == "server_underrun")
            row["whole_run"] = {k: stats.get(k) for k in ("underruns", "late_blocks",
                                                          "own_underruns", "own_late_blocks")}
            stats = dict(stats, underruns=late + own_ring + srv_ring, late_blocks=late,
                         own_underruns=own_late + own_ring, own_late_blocks=own_late)
            row["underruns"] = int(stats["underruns"])
            row["late_blocks"] = int(stats["late_blocks"])
        for k in ("own_underruns", "server_underruns", "xruns", "sync_fallbacks", "load_fallbacks",
                  "mode"):
            if k in stats:
                row["play_" + k] = stats[k]
        g = np.asarray(stats.get("gen_ms") or [], dtype=np.float64)
        if g.size:
            row["gen_ms"] = {"median": float(np.median(g)), "p99": float(np.percentile(g, 99)),
                             "max": float(g.max()), "n": int(g.size),
                             "budget": 1000.0 * row["block"] / stats.get("sample_rate", 48000)}
        # rtsynth tells its own underruns from those next to a server-wide xrun (the whole
        # graph late: the generator stalled with everything else); a synth that does not
        # counts every underrun as its own
        row["own_underruns"] = int(stats.get("own_underruns", row["underruns"]))
        row["own_late_blocks"] = int(stats.get("own_late_blocks", row["late_blocks"]))
    else:
        row["underruns"] = None
    late = row.get("late_blocks") or 0
    und = row.get("underruns") or 0
    xr = row.get("client_xruns") or 0
    # xruns it shared with the machine (another client running too, the cycle begun late)
    shared = row.get("client_xruns_shared") or 0
    # silence in the recording that no underrun of its own counter accounts for
    unexplained = max(0, row["gaps"] - und)
    # every dropout, whoever's: its underruns (a late sync block once, with the xrun JACK
    # blames on it), the xruns JACK blames on it (alone or with the machine), unexplained
    # silence
    row["dropouts_any"] = int(und - late + max(late, xr + shared) + unexplained)
    # the dropouts blamed on the synth, FluidSynth's measure (the xruns JACK blames on its
    # client alone, silent gaps) plus rtsynth's own underruns: its own ring underruns, its own late
    # blocks (each also an xrun JACK blames on it, counted once); what the server's xruns
    # caused (rtsynth's server underruns, the graph late) is not the synth's
    own = row.get("own_underruns", und) or 0
    own_late = row.get("own_late_blocks", late) or 0
    row["dropouts"] = int(own - own_late + max(own_late, xr) + unexplained)
    return row


def add_held(rows: list[dict]) -> dict:
    """Held runs of one synth (rounds of the dropout row) as one: counts added up, the
    seconds too; the rest from the worst round (most dropouts), its rounds under ``rounds``."""
    if len(rows) == 1:
        return rows[0]
    worst = max(rows, key=lambda r: (r.get("dropouts") or 0, r.get("dropouts_any") or 0))
    out = dict(worst)
    for k in ("seconds", "gaps", "gap_frames", "unrecorded_frames", "rig_xruns", "events",
              "client_xruns", "client_xruns_shared", "server_xruns", "underruns",
              "late_blocks", "own_underruns",
              "own_late_blocks", "latency_raises", "dropouts", "dropouts_any"):
        vals = [r.get(k) for r in rows]
        if all(v is None for v in vals):
            continue
        out[k] = sum(v or 0 for v in vals)
    out["rounds"] = [{k: r.get(k) for k in ("seconds", "dropouts", "dropouts_any",
                                            "client_xruns", "server_xruns", "gaps",
                                            "underruns")} for r in rows]
    return out


# -- 5. start-up -------------------------------------------------------------------------------

def measure_startup(live: LiveSynth, timeout: float = 90.0, threshold: float = ONSET_THRESHOLD,
                    every: int = 480, program: int | None = None) -> dict:
    """Launch ``live`` and press a key every ``every`` frames (10 ms) from the launch on;
    the first audible frame (``> threshold``, the latency rows' -80 dBFS: a synth's output is
    exact zeros before its first note), in seconds from the launch. ``program``: the program
    change sent first (None: the synth's own, ``live.spec.program``; the runner gives
    FluidSynth the felt row's GM flute, the instrument rtsynth's default models). The synth is
    left running, connected and silenced."""
    rig = live.rig
    sr = rig.sample_rate
    n_max = min(int(timeout * sr), rig.max_frames)
    ev = []
    for i in range(n_max // every):
        ev.append((i * every, bytes([0x90, 60, 100])))
    ev = _program_events(live.spec.program if program is None else program) + ev
    f_launch = rig.frame_time
    start = rig.start(ev, n_max, start_frame=f_launch)
    live.launch()
    connected = False
    found = {"i": -1, "checked": 0}

    def check(r: JackRig) -> bool:
        nonlocal connected
        if not connected:
            mp = find_client_ports(r, live.client_re, midi=True, is_input=True)
            ap = find_client_ports(r, live.client_re, midi=False, is_input=False)
            if mp and len(ap) >= live.spec.n_audio:
                live.midi_port, live.audio_ports = mp[0], ap[:live.spec.n_audio]
                try:
                    live.connect()  # fails while the client is registered but not active
                except Exception:  # noqa: BLE001 - jack.JackErrorCode; try again next poll
                    return False
                live.t_ports = time.monotonic()
                connected = True
            elif live.proc.proc.poll() is not None:
                return True
            return False
        hi = r.progress()
        lo = found["checked"]
        if hi > lo:
            seg = np.max(np.abs(r._buf[:, lo:hi]), axis=0)
            hit = np.flatnonzero(seg > threshold)
            if hit.size:
                found["i"] = lo + int(hit[0])
                return True
            found["checked"] = hi
        return False

    try:
        rig.finish(timeout=timeout + 5, stop_when=check, poll=0.005)
        if live.proc.proc.poll() is not None:
            raise RuntimeError(f"{live.spec.label} exited with code {live.proc.proc.returncode}:"
                               f"\n{live.output[-1500:]}")
        if not connected:
            raise TimeoutError(f"{live.spec.label}: no JACK ports after {timeout:.0f} s")
        if live.spec.ready and live.t_ready is None:
            live.t_ready = live.proc.wait_ready(live.spec.ready, timeout)
        silence(rig)
    except BaseException:
        live.stop()
        raise
    out = {"ports_s": live.t_ports - live.t_launch if live.t_ports else None,
           "ready_s": (live.t_ready - live.t_launch) if live.t_ready else None}
    out["first_sound_s"] = (start + found["i"] - f_launch) / sr if found["i"] >= 0 else None
    return out


# -- 4. offline render ---------------------------------------------------------------------------

def chorale_midi(cache_dir: str | Path | None = None, repeat: int = 1) -> Path:
    """Bach's BWV 66.6 as a 4-part MIDI file (music21's corpus), cached; ``repeat`` > 1 chains
    copies of it (for a longer, steady-state render). Falls back on a generated 4-part file
    when music21 is not installed."""
    cache = Path(cache_dir or os.environ.get("RTSYNTH_BENCH_CACHE",
                                             Path.home() / ".cache" / "rtsynth" / "bench"))
    cache.mkdir(parents=True, exist_ok=True)
    base = cache / "bwv66_6.mid"
    if not base.exists():
        try:
            from music21 import corpus
            tmp = cache / f".bwv66_6.{os.getpid()}.mid"
            corpus.parse("bach/bwv66.6").write("midi", fp=str(tmp))
            tmp.replace(base)
        except ImportError:
            _synthetic_chorale(base)
    if repeat <= 1:
        return base
    out = cache / f"bwv66_6_x{repeat}.mid"
    if not out.exists():
        import mido
        src = mido.MidiFile(str(base))
        dst = mido.MidiFile(type=src.type, ticks_per_beat=src.ticks_per_beat)
        for tr in src.tracks:
            body = [m for m in tr if m.type != "end_of_track"]
            end_gap = sum(m.time for m in tr if m.type == "end_of_track")
            new = mido.MidiTrack()
            for r in range(repeat):
                for i, m in enumerate(body):
                    new.append(m.copy(time=m.time + end_gap) if r > 0 and i == 0 else m.copy())
            new.append(mido.MetaMessage("end_of_track", time=end_gap))
            dst.tracks.append(new)
        dst.save(str(out))
    return out


#: the GM programs of the shipped models (flute, violin, clarinet, cello, trumpet), one per part
#: and repetition in :func:`multipart_file`
MULTIPART_PROGRAMS = [73, 40, 71, 42, 56]


def multipart_file(seconds: float, single: bool = False):
    """The chorale (:func:`chorale_midi`) with each part on its own channel, looped to about
    ``seconds``, each repetition giving the parts other GM programs (program changes, from
    :data:`MULTIPART_PROGRAMS`); ``single``: the parts on channel 1, no program changes.
    Returns a ``mido.MidiFile``."""
    import mido
    src = mido.MidiFile(str(chorale_midi()))
    parts = [t for t in src.tracks if any(m.type == "note_on" for m in t)]
    meta = [m for t in src.tracks for m in t if m.is_meta and m.type in ("set_tempo",
                                                                        "time_signature")]
    reps = max(1, math.ceil(seconds / src.length))
    # absolute-tick events of one repetition per part, and the repetition's length in ticks
    per_part = []
    rep_len = 0
    for tr in parts:
        t, evs = 0, []
        for m in tr:
            t += m.time
            if not m.is_meta and m.type in ("note_on", "note_off", "control_change",
                                            "pitchwheel"):
                evs.append((t, m))
        rep_len = max(rep_len, t)
        per_part.append(evs)
    beat = src.ticks_per_beat
    rep_len = int(math.ceil(rep_len / beat)) * beat
    out = mido.MidiFile(type=1, ticks_per_beat=beat)
    head = mido.MidiTrack()
    t_prev = 0
    for m in meta:                    # tempo map of the first repetition, kept as is
        head.append(m.copy(time=0))
    head.append(mido.MetaMessage("end_of_track", time=0))
    out.tracks.append(head)
    for i, evs in enumerate(per_part):
        ch = 0 if single else i
        tr = mido.MidiTrack()
        t_prev = 0
        for r in range(reps):
            base = r * rep_len
            if not single:
                prog = MULTIPART_PROGRAMS[(i + r) % len(MULTIPART_PROGRAMS)]
                tr.append(mido.Message("program_change", channel=ch, program=prog,
                                       time=base - t_prev))
                t_prev = base
            for t, m in evs:
                tr.append(m.copy(channel=ch, time=base + t - t_prev))
                t_prev = base + t
        tr.append(mido.MetaMessage("end_of_track", time=0))
        out.tracks.append(tr)
    return out


def multipart_midi(seconds: float = 336.0, cache_dir: str | Path | None = None) -> Path:
    """:func:`multipart_file` of ``seconds``, cached: the render row's long multi-part file
    (4 parts on 4 channels with program changes, like the held-back 336 s chorale)."""
    cache = Path(cache_dir or os.environ.get("RTSYNTH_BENCH_CACHE",
                                             Path.home() / ".cache" / "rtsynth" / "bench"))
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / f"bwv66_6_parts_{int(round(seconds))}s.mid"
    if not out.exists():
        tmp = cache / f".{out.name}.{os.getpid()}"
        multipart_file(seconds).save(str(tmp))
        tmp.replace(out)
    return out


def _synthetic_chorale(path: Path) -> None:
    import mido
    mid = mido.MidiFile(ticks_per_beat=480)
    chords = [(60, 64, 67, 48), (62, 65, 69, 50), (64, 67, 71, 52), (65, 69, 72, 53)] * 12
    for voice in range(4):
        tr = mido.MidiTrack()
        tr.append(mido.Message("program_change", channel=voice, program=0, time=0))
        for ch in chords:
            tr.append(mido.Message("note_on", channel=voice, note=ch[voice], velocity=80, time=0))
            tr.append(mido.Message("note_off", channel=voice, note=ch[voice], velocity=0,
                                   time=480))
        mid.tracks.append(tr)
    mid.save(str(path))


def _timed(cmd, env=None, timeout=600) -> tuple[float, subprocess.CompletedProcess]:
    t = time.monotonic()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    return time.monotonic() - t, r


def measure_render(kind: str, midi: Path, *, instrument: str = "basic", sf2: str | None = None,
                   python: str | None = None, workdir: str | None = None,
                   sample_rate: int = 48000) -> dict:
    """Wall time of the whole command (what a user waits for) and the rendered audio's length;
    ``x_realtime`` = audio seconds / wall seconds."""
    import soundfile as sf
    from .synths import find_sf2
    wd = Path(workdir or tempfile.mkdtemp(prefix="rtsynth-bench-"))
    out = wd / f"render-{kind}-{instrument if kind == 'rtsynth' else 'fs'}-{midi.stem}.wav"
    if kind == "rtsynth":
        cmd = [python or sys.executable, "-m", "rtsynth.cli", "render", str(midi), "-o", str(out),
               "-i", instrument, "-r", str(sample_rate)]
    else:
        cmd = ["fluidsynth", "-ni", "-g", "0.5", "-r", str(sample_rate), "-F", str(out),
               sf2 or find_sf2(), str(midi)]
    wall, r = _timed(cmd)
    row = {"file": midi.name, "wall_s": wall, "cmd": " ".join(cmd)}
    if r.returncode != 0 or not out.exists():
        row["error"] = (r.stderr or r.stdout).strip().splitlines()[-1:] or [f"exit {r.returncode}"]
        row["error"] = row["error"][0]
        return row
    info = sf.info(str(out))
    row["audio_s"] = info.frames / info.samplerate
    row["x_realtime"] = row["audio_s"] / wall if wall > 0 else None
    try:
        out.unlink()
    except OSError:
        pass
    return row
