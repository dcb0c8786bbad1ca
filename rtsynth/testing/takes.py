"""A live take against an offline render of the same events, on a machine that drops cycles.

On a loaded machine a take through :class:`~rtsynth.testing.jackrig.JackRig` is rarely clean:
the server reports xruns and now and then skips a cycle. What that does to rtsynth's output is
exact and known (``rtsynth.live.player``):

- after every xrun the server reports, the next block is faded in over ``GAP_FADE`` frames
  (what the server played around it is not what was rendered): a short window where the live
  take is the offline render times a ramp from 0 to 1, never louder;
- a cycle the server skipped (the recorder did not see its frames either: ``recorded`` is
  False there) pauses rtsynth's stream where the client saw the skip: the stream goes on where it
  was, so notes sounding across the gap come that many frames later, while a note-on sent
  after it sounds at its own frame (MIDI is placed relative to the stream). Whether rtsynth
  itself saw the skip (its cycle too was skipped) or only the recorder did is not known from
  the outside: each gap is tried both ways.

:func:`match_offline` maps the take and its events onto rtsynth's stream (the frames it
rendered, in order), renders the events offline at their stream positions, and compares sample
by sample. Outside the fade windows the two must agree to ``tol``; the windows must be short,
few (at most one per xrun or gap, plus one), and attenuations only. A take with no xrun and no
gap must agree everywhere, as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: rtsynth.live.player.GAP_FADE (a fade-in's length), plus slack for windows that a zero
#: crossing of the signal splits or a second fade right after the first lengthens
FADE_SPAN = 192
#: mismatched frames this close together are one window
MERGE = 16


def recorded_gaps(recorded: np.ndarray) -> list[tuple[int, int]]:
    """Runs of frames the recorder did not see, before its last recorded frame:
    ``[(first_frame, length)]``."""
    rec = np.asarray(recorded, dtype=bool)
    if not rec.any():
        return []
    last = int(np.flatnonzero(rec)[-1]) + 1
    q = ~rec[:last]
    d = np.diff(np.concatenate(([0], q.astype(np.int8), [0])))
    a = np.flatnonzero(d == 1)
    b = np.flatnonzero(d == -1)
    return [(int(s), int(e - s)) for s, e in zip(a, b)]


@dataclass
class Match:
    ok: bool
    reason: str
    lag: int = 0                       # frames from an event's stream position to its sound
    taken: tuple = ()                  # per gap: rtsynth's stream paused there too
    live: np.ndarray | None = None     # [n, ch] live stream from the first event's sound
    off: np.ndarray | None = None      # [n, ch] the offline render at the same positions
    valid: np.ndarray | None = None    # [n] frames of ``live`` the recorder saw
    windows: list = field(default_factory=list)   # [(start, length)] faded windows in ``live``
    miss: float = 0.0                  # max |live - off| outside the windows
    gaps: list = field(default_factory=list)
    xruns: int = 0
    events: list = field(default_factory=list)    # [(frame, bytes)] the render was given
    bad: int = 0                       # frames that differ (match_stream)
    relabel: tuple = ()                # late callbacks' clocks put back a cycle (match_render)

    def __str__(self) -> str:
        return (f"Match(ok={self.ok}, {self.reason}; lag {self.lag}, gaps {self.gaps} taken "
                f"{self.taken}, xruns {self.xruns}, windows {self.windows[:8]}"
                f"{'...' if len(self.windows) > 8 else ''}, miss {self.miss:.3g})")


def _stream(n_frames: int, gaps, taken):
    """``keep`` (frames of the take that are in rtsynth's stream) and ``shift`` (frames of
    pause before each frame of the take)."""
    keep = np.ones(n_frames, dtype=bool)
    shift = np.zeros(n_frames + 1, dtype=np.int64)
    for (a, g), t in zip(gaps, taken):
        if t:
            keep[a:a + g] = False
            shift[a + g:] += g
    return keep, shift


def _windows(bad: np.ndarray) -> list[tuple[int, int]]:
    idx = np.flatnonzero(bad)
    if not idx.size:
        return []
    out = []
    s = p = int(idx[0])
    for i in idx[1:]:
        i = int(i)
        if i - p > MERGE:
            out.append((s, p + 1 - s))
            s = i
        p = i
    out.append((s, p + 1 - s))
    return out


def _compare(live, valid, off, tol):
    n = min(len(live), len(off))
    d = np.max(np.abs(live[:n] - off[:n]), axis=1)
    bad = (d > tol) & valid[:n]
    return n, d, bad


def judge(live, ref, valid, xruns: int, n_gaps: int, tol: float, d=None, wins=None):
    """``(ok, reason, miss)``: ``live`` ``[n, ch]`` equals ``ref`` to ``tol`` on the ``valid``
    frames but in fade-in windows: short (:data:`FADE_SPAN`), few (one per xrun or gap, plus
    one; none for a take with neither) and never louder than ``ref``; ``miss``: the largest
    difference outside them."""
    n = min(len(live), len(ref))
    live, ref, valid = live[:n], ref[:n], np.asarray(valid[:n], dtype=bool)
    if d is None:
        d = np.max(np.abs(live - ref), axis=1)
    if wins is None:
        wins = _windows((d > tol) & valid)
    inside = np.zeros(n, dtype=bool)
    for s, k in wins:
        inside[s:s + k] = True
    rest = valid & ~inside
    miss = float(np.max(d[rest])) if np.any(rest) else 0.0
    allowed = int(xruns) + n_gaps + 1 if (xruns or n_gaps) else 0
    long = [w for w in wins if w[1] > FADE_SPAN]
    louder = [w for w in wins
              if np.any(np.abs(live[w[0]:w[0] + w[1]]) > np.abs(ref[w[0]:w[0] + w[1]]) + tol)]
    if len(wins) > allowed:
        return False, f"{len(wins)} windows differ (at most {allowed}: xruns + gaps + 1)", miss
    if long:
        return False, f"windows longer than a fade: {long[:4]}", miss
    if louder:
        return False, f"windows louder than the reference (not a fade): {louder[:4]}", miss
    if np.count_nonzero(valid) < 0.5 * max(n, 1):
        return False, "less than half the take recorded", miss
    return True, ("equal" if not wins else f"equal outside {len(wins)} fade-ins"), miss


def match_offline(res, events, render, *, latency: int = 0, lags=(0,), tol: float = 3e-5,
                  max_gaps: int = 32, tail: int = 100) -> Match:
    """The take ``res`` (a :class:`~rtsynth.testing.jackrig.RigResult`) of ``events``
    (``[(offset, bytes)]``, in the order they were scheduled) against ``render(stream_events)``:
    an offline render ``[frames, channels]`` of ``[(frame, bytes)]`` whose frame 0 is the first
    event's. ``latency``: frames from an event to its sound in the take; ``lags``: extra
    candidates added to it (the player may have gone a block further ahead). ``tol``: what
    the two may differ by outside the fade windows."""
    rec = np.asarray(res.recorded, dtype=bool)
    m = len(rec)
    gaps = recorded_gaps(rec)
    out = Match(False, "", gaps=gaps, xruns=int(res.xruns))
    if len(gaps) > max_gaps:
        out.reason = f"{len(gaps)} gaps > {max_gaps}"
        return out
    frames = np.asarray(res.event_frames, dtype=np.int64)
    if np.any(frames < 0):
        out.reason = "an event was never sent"
        return out
    datas = [bytes(d) for _, d in sorted(((int(o), bytes(d)) for o, d in events),
                                         key=lambda e: e[0])]
    audio = np.asarray(res.audio).T                   # [m, ch]
    cache = {}

    def rendered(taken):
        if taken not in cache:
            _, shift = _stream(m, gaps, taken)
            pos = frames - shift[np.minimum(frames, m)]
            sev = [(int(p - pos[0]), d) for p, d in zip(pos, datas)]
            cache[taken] = (np.asarray(render(sev), dtype=np.float32), pos, sev)
        return cache[taken][:2]

    def attempt(taken, lag, upto=None):
        keep, shift = _stream(m, gaps, taken)
        off, pos = rendered(taken)
        live_s = audio[keep]
        valid_s = rec[keep]
        start = int(pos[0]) + latency + lag
        if start < 0 or start >= len(live_s):
            return None
        live_s, valid_s = live_s[start:], valid_s[start:]
        n, d, bad = _compare(live_s, valid_s, off, tol)
        n = max(n - tail, 0)
        if upto is not None:
            n = min(n, max(upto - start, 0))
        return live_s[:n], valid_s[:n], off[:n], d[:n], bad[:n]

    best = None
    for lag in lags:
        taken: tuple = ()
        for k, (a, g) in enumerate(gaps):
            # this gap both ways, the later ones not yet: judged on the frames up to the next
            nxt = gaps[k + 1][0] if k + 1 < len(gaps) else m
            scores = []
            for t in (False, True):
                cand = taken + (t,) + (False,) * (len(gaps) - k - 1)
                keep, _ = _stream(m, gaps, cand)
                upto = int(np.count_nonzero(keep[:nxt]))
                r = attempt(cand, lag, upto)
                scores.append(np.inf if r is None else int(np.count_nonzero(r[4])))
            taken = taken + (bool(scores[1] < scores[0]),)
        r = attempt(taken, lag)
        if r is None:
            continue
        live_s, valid_s, off, d, bad = r
        wins = _windows(bad)
        score = int(np.count_nonzero(bad))
        if best is None or score < best[0]:
            best = (score, lag, taken, live_s, valid_s, off, d, wins)
    if best is None:
        out.reason = "no lag leaves a take to compare"
        return out
    score, lag, taken, live_s, valid_s, off, d, wins = best
    out.lag, out.taken, out.live, out.off, out.valid, out.windows = (
        lag, taken, live_s, off, valid_s, wins)
    out.events = cache[taken][2]
    out.ok, out.reason, out.miss = judge(live_s, off, valid_s, res.xruns, len(gaps), tol,
                                         d=d, wins=wins)
    return out


def write_midi(events, path, sample_rate: int = 48000) -> None:
    """``[(frame, bytes)]`` as a MIDI file whose ticks are frames (frame 0: time 0)."""
    import mido
    mid = mido.MidiFile(ticks_per_beat=sample_rate // 100)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr.append(mido.MetaMessage("set_tempo", tempo=10000, time=0))   # 1 tick = 1 frame
    last = 0
    for f, data in events:
        tr.append(mido.Message.from_bytes(bytes(data), time=int(f) - last))
        last = int(f)
    mid.save(path)


def offline_renderer(tmp_path, args, name: str = "take", sample_rate: int = 48000):
    """``render(events)`` for :func:`match_offline`: ``rtsynth render`` of ``[(frame, bytes)]``
    with ``args`` (files under ``tmp_path``), as ``[frames, channels]`` float32."""
    import soundfile as sf
    from ..cli import main
    count = [0]

    def render(events):
        count[0] += 1
        path = tmp_path / f"{name}{count[0]}.mid"
        write_midi(events, path, sample_rate)
        out = tmp_path / f"{name}{count[0]}.wav"
        if main(["render", str(path), "-o", str(out), *args, "-q"]) != 0:
            raise RuntimeError(f"rtsynth render {path} {' '.join(args)} failed")
        return sf.read(out, dtype="float32")[0]
    return render


def first_passing(take, check, tries: int = 6):
    """``check(take())`` until it passes (returns without an ``AssertionError``), at most
    ``tries`` times; its value, or the last failure raised again. For a test whose take a
    loaded machine can spoil in ways the check cannot see past (a note-on in a cycle the
    server skipped for the synth but not for the sender is lost, as for any JACK client)."""
    err = None
    for _ in range(tries):
        try:
            return check(take())
        except AssertionError as e:
            err = e
    raise err


# -- exact: a take mapped through the player's cycle log (rtsynth play --cycle-log) ----------

def clean_log(log, relabel=()):
    """The cycle log sorted by clock, with a late callback's label put right: a callback that
    began after the server had started the next cycle reads that cycle's clock (JACK's frame
    time is the current cycle's), so two callbacks can carry one clock; the first of them is
    the cycle before. ``relabel``: clocks of further rows to move one cycle back (see
    :func:`log_jumps`)."""
    log = np.asarray(log, dtype=np.int64)
    log = log[log[:, 0] >= 0]
    if not len(log):
        return log
    # the log is in callback order: a label that does not grow is a late one's (where the
    # cycle before it is free)
    lab = log[:, 0].copy()
    for k in range(len(lab) - 1):
        if lab[k] >= lab[k + 1] and (k == 0 or lab[k - 1] < lab[k + 1] - log[k, 5]):
            lab[k] = lab[k + 1] - log[k, 5]
    if relabel:
        rel = np.isin(lab, np.asarray(sorted(relabel), dtype=np.int64))
        lab[rel] -= log[rel, 5]
    log = log.copy()
    log[:, 0] = lab
    return log[np.argsort(lab, kind="stable")]


def log_jumps(log, start: int, n: int) -> list[int]:
    """Clocks (as :func:`clean_log` leaves them) of callbacks within ``start .. start + n``
    that came a cycle or more after the one before: the server skipped cycles for rtsynth, or
    the callback began late, in the next cycle, and its label is one cycle too far: which,
    the log cannot tell."""
    lg = clean_log(log)
    c = lg[:, 0]
    k = np.flatnonzero(np.diff(c) > lg[:-1, 5]) + 1
    return [int(c[i]) for i in k if start <= c[i] < start + n]


def take_stream(res, log, relabel=()):
    """Per frame of the take ``res``, through ``log`` (``Player.cycle_log()`` rows): ``(stream,
    pos, flags, inside)``: the stream frame rtsynth played there (-1: silence, or a frame it
    had no callback for), the frame's place in its callback, that callback's flags, and
    whether any callback of rtsynth's covered it."""
    log = clean_log(log, relabel)
    m = len(res.recorded)
    absf = int(res.start) + np.arange(m, dtype=np.int64)
    k = np.searchsorted(log[:, 0], absf, side="right") - 1
    kk = np.maximum(k, 0)
    pos = absf - log[kk, 0] if len(log) else np.zeros(m, np.int64)
    inside = (k >= 0) & (pos < log[kk, 5]) if len(log) else np.zeros(m, bool)
    out = log[kk, 3] if len(log) else np.full(m, -1)
    stream = np.where(inside & (out >= 0), out + pos, -1)
    flags = np.where(inside, log[kk, 4] if len(log) else 0, 0)
    return stream, pos, flags, inside


def _assign(res, log, events):
    """Each sent event's row in the cleaned ``log`` (-1: no callback of rtsynth's there)."""
    frames = np.asarray(res.event_frames, dtype=np.int64)
    rows = np.full(len(frames), -1, dtype=np.int64)
    for i, f in enumerate(frames):
        if f < 0:
            continue
        e = int(res.start) + int(f)
        k = int(np.searchsorted(log[:, 0], e, side="right")) - 1
        if k >= 0 and e - log[k, 0] < log[k, 5]:
            rows[i] = k
    return frames, rows


def count_mismatch(res, log, events, relabel=()) -> int:
    """How far the events sent, assigned to rtsynth's callbacks by clock, are from the
    messages each callback logged it got (``midi``): 0 when every callback of the take got
    just what was sent in its cycle; -1 for a log without the count."""
    log = clean_log(log, relabel)
    if log.shape[1] < 7:
        return -1
    _, rows = _assign(res, log, events)
    m = len(res.recorded)
    inside = (log[:, 0] >= int(res.start)) & (log[:, 0] < int(res.start) + m)
    got = np.bincount(rows[rows >= 0], minlength=len(log))
    return int(np.sum(np.abs(got[inside] - log[inside, 6])))


def late_labels(res, log, events) -> set:
    """The jumps of the log (:func:`log_jumps`) that the callbacks' MIDI counts show to be a
    late callback's label (the events sent in the cycle before were the ones it got), for
    :func:`clean_log`'s ``relabel``; empty for a log without the counts."""
    relabel: set = set()
    if np.asarray(log).shape[1] < 7:
        return relabel
    for c in log_jumps(log, int(res.start), len(res.recorded)):
        if count_mismatch(res, log, events, relabel | {c}) < count_mismatch(res, log, events,
                                                                            relabel):
            relabel.add(c)
    return relabel


def placements(res, log, events, relabel=None):
    """Per event of the take, in the order sent (sorted by offset): ``(when, latency)``
    arrays, the stream frame rtsynth placed it at and the latency it added, -1 where it was
    lost: sent in a cycle rtsynth had no callback for (the server skipped it for rtsynth: its
    MIDI never reached it, as for any JACK client), or, where a callback logged fewer messages
    than were sent in its cycle (a cycle cut short), the last of them. ``relabel``: as
    :func:`clean_log`'s; by default the late labels the MIDI counts show (:func:`late_labels`)."""
    if relabel is None:
        relabel = late_labels(res, log, events)
    log = clean_log(log, relabel)
    frames, rows = _assign(res, log, events)
    if log.shape[1] >= 7:
        for k in np.unique(rows[rows >= 0]):
            idx = np.flatnonzero(rows == k)
            extra = len(idx) - int(log[k, 6])
            if extra > 0:
                rows[idx[len(idx) - extra:]] = -1
    when = np.full(len(frames), -1, np.int64)
    lat = np.full(len(frames), -1, np.int64)
    last = None
    for i, (f, k) in enumerate(zip(frames, rows)):
        if k < 0:
            continue
        e = int(res.start) + int(f)
        w = int(log[k, 1] + (e - log[k, 0]) + log[k, 2])
        if last is not None and w < last:
            w = last
        last = when[i] = w
        lat[i] = log[k, 2]
    return when, lat


def stream_events(res, log, events, relabel=None):
    """``(placed, lost)``: :func:`placements` as ``[(stream frame, bytes)]`` of the events
    that reached rtsynth and ``[(sent frame, bytes)]`` of those lost, in the order sent."""
    datas = [bytes(d) for _, d in sorted(((int(o), bytes(d)) for o, d in events),
                                         key=lambda e: e[0])]
    when, _ = placements(res, log, events, relabel)
    frames = np.asarray(res.event_frames, dtype=np.int64)
    placed = [(int(w), d) for w, d in zip(when, datas) if w >= 0]
    lost = [(int(f), d) for w, f, d in zip(when, frames, datas) if w < 0]
    return placed, lost


def match_stream(res, log, ref, ref0: int, *, tol: float = 3e-5, tail: int = 100,
                 block: int | None = None, min_seen: float = 0.5, relabel=(),
                 upto: int | None = None) -> Match:
    """The take ``res`` against ``ref`` (``[frames, channels]``, frame 0 at rtsynth's stream
    frame ``ref0``), exactly, through the cycle log: each recorded frame rtsynth had a
    callback for is ``ref`` at the stream frame that callback played there, times the fade-in
    ramp or the crossfade its flags say. Frames the recorder did not see, silence (an
    underrun), frames rtsynth had no callback for and ``ref``'s last ``tail`` frames are not
    compared; at least ``min_seen`` of the rest must be. No allowance for xruns is needed:
    the log says what each did."""
    from ..live.player import CYCLE_FADE, CYCLE_LOWER, GAP_FADE
    ref = np.asarray(ref, dtype=np.float32)
    if ref.ndim == 1:
        ref = ref[:, None]
    audio = np.asarray(res.audio, dtype=np.float32).T          # [m, ch]
    ch = min(audio.shape[1], ref.shape[1])
    audio, ref = audio[:, :ch], ref[:, :ch]
    stream, pos, flags, inside = take_stream(res, log, relabel)
    if upto is not None:
        inside = inside.copy()
        inside[max(int(upto), 0):] = False
        stream = np.where(inside, stream, -1)
    log = np.asarray(log, dtype=np.int64)
    if block is None:
        block = int(np.median(log[:, 5])) if len(log) else 128
    n = min(GAP_FADE, block)
    up = ((np.arange(n) + 1) / (n + 1)).astype(np.float32)
    down = up[::-1].copy()
    idx = stream - int(ref0)
    span = (stream >= 0) & (idx >= 0) & (idx < len(ref) - tail)
    exp = np.zeros_like(audio)
    exp[span] = ref[idx[span]]
    fade = span & ((flags & CYCLE_FADE) != 0) & (pos < n)
    exp[fade] *= up[pos[fade]][:, None]
    lower = span & ((flags & CYCLE_LOWER) != 0) & (pos < n)
    prev = idx - block
    can = lower & (prev >= 0)
    exp[can] = (ref[idx[can]] * up[pos[can]][:, None]
                + ref[prev[can]] * down[pos[can]][:, None])
    span &= ~(lower & ~can)
    rec = np.asarray(res.recorded, dtype=bool)
    gaps = recorded_gaps(rec)
    # the recorder's own late callback reads the next cycle's clock as well: the block after
    # a hole it left may hold the cycle of the hole. Not compared.
    rec = rec.copy()
    for a, g in gaps:
        rec[a + g:a + g + block] = False
    cmp = span & rec
    out = Match(False, "", gaps=gaps, xruns=int(res.xruns))
    whole = int(np.count_nonzero(span | (~inside & (idx >= 0))))
    # laid out on the stream from ``ref0`` (frame k: stream frame ref0 + k, as ``ref``): zeros
    # where nothing was compared, ``valid`` says where
    L = max(len(ref) - tail, 0)
    out.live = np.zeros((L, ch), np.float32)
    out.off = np.zeros((L, ch), np.float32)
    out.valid = np.zeros(L, bool)
    out.live[idx[cmp]] = audio[cmp]
    out.off[idx[cmp]] = exp[cmp]
    out.valid[idx[cmp]] = True
    if not np.any(cmp):
        out.reason = "no frame of the take to compare (nothing in the log's callbacks?)"
        return out
    d = np.max(np.abs(audio[cmp] - exp[cmp]), axis=1)
    out.miss = float(np.max(d))
    out.bad = int(np.count_nonzero(d > tol))
    seen = np.count_nonzero(cmp) / max(whole, 1)
    skipped = int(np.count_nonzero(~inside & (idx >= 0)))
    what = (f"{np.count_nonzero(cmp)} frames compared ({100 * seen:.0f}%), "
            f"{int(np.count_nonzero(fade & rec))} faded, {skipped} skipped for rtsynth, "
            f"{len(out.gaps)} recorder gaps, {out.xruns} xruns")
    if out.miss > tol:
        at = np.flatnonzero(cmp)[np.flatnonzero(d > tol)[:3]]
        out.reason = (f"differs by {out.miss:.3g} > {tol:g}; first at take frames "
                      f"{[(int(j), int(stream[j]), int(flags[j]), int(pos[j])) for j in at]} "
                      f"(frame, stream frame, flags, place in its block); {what}")
        return out
    if seen < min_seen:
        out.reason = f"too little recorded: {what}"
        return out
    out.ok, out.reason = True, f"equal: {what}"
    return out


def match_render(res, log, events, render, *, tol: float = 3e-5, tail: int = 100,
                 max_lost: int = 0, **kw) -> Match:
    """The take ``res`` of ``events`` against ``render(stream_events)`` (an offline render
    ``[frames, channels]`` whose frame 0 is the first placed event's), through the cycle log:
    :func:`stream_events` places the events as rtsynth did, :func:`match_stream` compares.

    Where the log jumps a cycle (:func:`log_jumps`) it cannot tell a cycle the server skipped
    for rtsynth from a callback that began late and read the next cycle's clock: both are
    tried, jump by jump, the one that explains the take up to the next jump kept (one render
    for each different placement of the events). At most ``max_lost`` events may have been
    lost to cycles the server skipped for rtsynth (the render leaves them out)."""
    m_frames = len(res.recorded)
    jumps = log_jumps(log, int(res.start), m_frames)
    renders: dict = {}

    def attempt(relabel, upto=None):
        placed, lost = stream_events(res, log, events, relabel)
        if not placed:
            return Match(False, "no event reached rtsynth", xruns=int(res.xruns), bad=1 << 40)
        t0 = placed[0][0]
        sev = tuple((w - t0, d) for w, d in placed)
        if sev not in renders:
            renders[sev] = render(list(sev))
        m = match_stream(res, log, renders[sev], t0, tol=tol, tail=tail, relabel=relabel,
                         upto=upto, **kw)
        m.events, m.relabel = list(sev), tuple(sorted(relabel))
        if len(lost) > max_lost:
            m.ok = False
            m.reason = f"{len(lost)} events lost to skipped cycles: {lost[:4]}; {m.reason}"
        return m

    relabel: set = set()
    for j, c in enumerate(jumps):
        # the MIDI each callback logged it got tells a late label from a skipped cycle where
        # an event was sent in either cycle; else the take up to the next jump does
        ca = count_mismatch(res, log, events, relabel)
        cb = count_mismatch(res, log, events, relabel | {c})
        if ca != cb:
            if cb < ca:
                relabel.add(c)
            continue
        nxt = (jumps[j + 1] if j + 1 < len(jumps) else int(res.start) + m_frames) - int(res.start)
        a = attempt(relabel, upto=nxt)
        b = attempt(relabel | {c}, upto=nxt)
        if b.bad < a.bad:
            relabel.add(c)
    m = attempt(relabel)
    if jumps:
        m.reason += f"; {len(relabel)} of {len(jumps)} jumps taken as late callbacks"
    return m


def stream_audio(res, log, t0: int, n: int):
    """The take ``res`` laid out on rtsynth's stream through the cycle log: ``(x, seen)``,
    ``x`` ``[n, channels]`` the frames rtsynth played at stream frames ``t0 .. t0 + n``
    (zero where the recorder did not see them), ``seen`` which were recorded. Frames the server
    skipped for rtsynth are not in its stream, so they leave no hole; a signal's phase is kept
    across the recorder's holes (zeros in place), as a pitch or level measure needs."""
    stream, _, _, _ = take_stream(res, log)
    audio = np.asarray(res.audio, dtype=np.float32).T
    x = np.zeros((n, audio.shape[1]), np.float32)
    seen = np.zeros(n, bool)
    idx = stream - int(t0)
    ok = (stream >= 0) & (idx >= 0) & (idx < n) & np.asarray(res.recorded, dtype=bool)
    x[idx[ok]] = audio[ok]
    seen[idx[ok]] = True
    return x, seen
