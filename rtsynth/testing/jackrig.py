"""A JACK test rig: send MIDI at exact frames, record audio by absolute frame.

The rig is two JACK clients in this process (JACK-Client): a *sender* with one MIDI output port
and a *recorder* with N audio input ports. Two clients rather than one keep the graph a chain
(sender -> device under test -> recorder) instead of a feedback loop, so within one cycle the
device sees our MIDI before the recorder sees its audio, and frame arithmetic is exact::

    with JackRig(n_inputs=2) as rig:
        rig.connect_midi("rtsynth:midi_in")
        rig.connect_audio(["rtsynth:out_1", "rtsynth:out_2"])
        res = rig.run([(0, b"\\x90\\x45\\x64"), (4800, b"\\x80\\x45\\x00")], n_frames=9600)
        lat = detect_onset(res.mono, res.event_frames[0])   # frames from note-on to onset

Frames are JACK's absolute frame counter (``last_frame_time`` in the process callback): an event
scheduled at offset ``k`` is written into the cycle that contains frame ``start + k`` at its exact
offset, and ``res.audio[:, j]`` is what the recorder's ports held at absolute frame ``start + j``.
No host clock is involved anywhere.

The process callbacks run Python: they only index preallocated arrays and copy one period.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

__all__ = ["JackRig", "RigResult", "detect_onset", "detect_onsets", "NO_ONSET", "find_gaps",
           "pitch_cents",
           "find_client_ports", "wait_for_ports", "note_schedule"]


@dataclass
class RigResult:
    audio: np.ndarray            # [n_inputs, n_frames] float32, indexed by frame - start
    event_frames: np.ndarray     # [n_events] int64, frame (relative to start) each was written at
    start: int                   # absolute JACK frame of audio[:, 0]
    recorded: np.ndarray         # [n_frames] bool, frames the recorder actually saw
    late_events: int             # events written after their scheduled frame (rig fell behind)
    xruns: int                   # xrun callbacks seen by the recorder during the run
    sample_rate: int
    blocksize: int
    cpu_load: list = field(default_factory=list)  # JACK DSP load samples (%) during the run

    @property
    def mono(self) -> np.ndarray:
        """Peak over channels (``max |x|``), for onset and gap detection."""
        return np.max(np.abs(self.audio), axis=0) if self.audio.shape[0] else self.audio[0]

    @property
    def complete(self) -> bool:
        return bool(self.recorded.all())


class JackRig:
    """Sender + recorder clients on the server named by ``servername`` (default: environment).

    ``max_seconds`` bounds the preallocated recording buffer.
    """

    def __init__(self, n_inputs: int = 2, name: str = "rig", servername: str | None = None,
                 max_seconds: float = 60.0):
        import jack
        self._jack = jack
        if sys.getswitchinterval() > 0.001:
            sys.setswitchinterval(0.0005)  # Python callbacks must get the GIL promptly
        self.tx = jack.Client(f"{name}-tx", no_start_server=True, servername=servername)
        self.rx = jack.Client(f"{name}-rx", no_start_server=True, servername=servername)
        self.name = name
        self.midi_out = self.tx.midi_outports.register("midi_out")
        self.inputs = [self.rx.inports.register(f"in_{i + 1}") for i in range(n_inputs)]
        self.sample_rate = self.rx.samplerate
        self.blocksize = self.rx.blocksize
        self.max_frames = int(max_seconds * self.sample_rate)
        self._buf = np.zeros((n_inputs, self.max_frames), dtype=np.float32)
        self._seen = np.zeros(self.max_frames, dtype=bool)
        # schedule state, swapped atomically (one attribute) by the main thread
        self._sched = None           # (t0, n_frames, offs, datas, written)
        self._next = 0
        self._late = 0
        self._rec_end = -1           # highest relative frame recorded + 1
        self._xruns = 0
        self.tx.set_process_callback(self._tx_process)
        self.rx.set_process_callback(self._rx_process)
        self.rx.set_xrun_callback(self._on_xrun)
        self.tx.activate()
        self.rx.activate()
        self._closed = False

    # -- process callbacks (JACK threads) ----------------------------------------------------
    def _tx_process(self, frames):
        port = self.midi_out
        port.clear_buffer()
        s = self._sched
        if s is None:
            return
        t0, _n, offs, datas, written = s
        t = self.tx.last_frame_time
        end = t + frames
        i = self._next
        n_ev = len(offs)
        while i < n_ev:
            f = t0 + offs[i]
            if f >= end:
                break
            o = f - t
            if o < 0:
                o = 0
                self._late += 1
            port.write_midi_event(o, datas[i])
            written[i] = t + o - t0
            i += 1
        self._next = i

    def _rx_process(self, frames):
        s = self._sched
        if s is None:
            return
        t0, n = s[0], s[1]
        a = self.rx.last_frame_time - t0
        if a + frames <= 0 or a >= n:
            return
        lo = 0 if a >= 0 else -a
        hi = frames if a + frames <= n else n - a
        buf = self._buf
        for k, p in enumerate(self.inputs):
            buf[k, a + lo:a + hi] = p.get_array()[lo:hi]
        self._seen[a + lo:a + hi] = True
        self._rec_end = a + hi

    def _on_xrun(self, delayed_usecs):
        self._xruns += 1

    # -- wiring ------------------------------------------------------------------------------
    def ports(self, pattern: str = "", **kw) -> list[str]:
        return [p.name for p in self.rx.get_ports(pattern, **kw)]

    def connect_midi(self, port: str) -> None:
        self.tx.connect(self.midi_out, port)

    def connect_audio(self, ports: list[str]) -> None:
        for p, inp in zip(ports, self.inputs):
            self.rx.connect(p, inp)

    def disconnect_all(self) -> None:
        for p in [self.midi_out, *self.inputs]:
            try:
                p.disconnect()
            except Exception:
                pass

    @property
    def frame_time(self) -> int:
        """JACK's estimate of the current frame (for relating wall-clock events to frames)."""
        return self.rx.frame_time

    # -- running -----------------------------------------------------------------------------
    def start(self, events, n_frames: int, lead_frames: int | None = None,
              start_frame: int | None = None) -> int:
        """Arm a run; returns its absolute start frame. ``events``: ``[(frame_offset, bytes)]``."""
        if n_frames > self.max_frames:
            raise ValueError(f"run of {n_frames} frames > buffer of {self.max_frames}")
        self._sched = None
        time.sleep(2 * self.blocksize / self.sample_rate)  # let any cycle in flight finish
        ev = sorted(((int(o), bytes(d)) for o, d in events), key=lambda e: e[0])
        offs = np.array([o for o, _ in ev], dtype=np.int64)
        if len(offs) and offs[0] < 0:
            raise ValueError("negative event offset")
        datas = [d for _, d in ev]
        written = np.full(len(ev), -1, dtype=np.int64)
        self._buf[:, :n_frames] = 0.0
        self._seen[:n_frames] = False
        self._next = 0
        self._late = 0
        self._rec_end = -1
        self._xruns = 0
        if start_frame is None:
            lead = 4 * self.blocksize if lead_frames is None else int(lead_frames)
            start_frame = self.frame_time + lead
        self._sched = (int(start_frame), int(n_frames), offs, datas, written)
        return int(start_frame)

    def progress(self) -> int:
        """Frames recorded so far in the current run."""
        return max(self._rec_end, 0)

    def finish(self, timeout: float | None = None, stop_when=None, poll: float = 0.02,
               cpu_load: bool = False) -> RigResult:
        """Wait until the run is recorded (or ``stop_when(rig)`` is true), then return it."""
        s = self._sched
        if s is None:
            raise RuntimeError("no run armed")
        t0, n, offs, datas, written = s
        if timeout is None:
            timeout = n / self.sample_rate + 10.0
        deadline = time.monotonic() + timeout
        loads = []
        while self._rec_end < n and time.monotonic() < deadline:
            if stop_when is not None and stop_when(self):
                break
            if cpu_load:
                loads.append(self.rx.cpu_load())
            time.sleep(poll)
        self._sched = None
        time.sleep(2 * self.blocksize / self.sample_rate)
        m = max(self._rec_end, 0) if self._rec_end < n else n
        return RigResult(audio=self._buf[:, :m].copy(), event_frames=written.copy(), start=t0,
                         recorded=self._seen[:m].copy(), late_events=self._late,
                         xruns=self._xruns, sample_rate=self.sample_rate,
                         blocksize=self.blocksize, cpu_load=loads)

    def run(self, events, n_frames: int, lead_frames: int | None = None,
            timeout: float | None = None, stop_when=None, cpu_load: bool = False) -> RigResult:
        self.start(events, n_frames, lead_frames)
        return self.finish(timeout=timeout, stop_when=stop_when, cpu_load=cpu_load)

    def close(self, timeout: float = 10.0) -> bool:
        """Deactivate and close both clients; False when the server did not answer within
        ``timeout`` s (a wedged server: seen once in CI, a ``jack_deactivate`` that never
        returned). The calls then go on in a daemon thread, which ends when the server is
        stopped (its socket closes), so a test session never hangs on it."""
        if self._closed:
            return True
        self._closed = True
        self._sched = None
        from ..live.drivers import close_jack_clients
        return close_jack_clients((self.tx, self.rx), timeout, name="jackrig-close")

    def __enter__(self) -> "JackRig":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- port discovery ------------------------------------------------------------------------------

def find_client_ports(client, client_re: str, *, midi: bool = False, is_input: bool | None = None,
                      exclude: tuple[str, ...] = ("system:",)) -> list[str]:
    """Ports whose client part (before ':') matches ``client_re`` (full match), sorted.

    ``client``: a ``jack.Client`` or a :class:`JackRig`."""
    c = client.rx if isinstance(client, JackRig) else client
    kw = {"is_midi": True} if midi else {"is_audio": True}
    if is_input is not None:
        kw["is_input" if is_input else "is_output"] = True
    rx = re.compile(client_re)
    out = []
    for p in c.get_ports(**kw):
        if any(p.name.startswith(e) for e in exclude):
            continue
        cl = p.name.split(":", 1)[0]
        if rx.fullmatch(cl):
            out.append(p.name)
    return sorted(out)


def wait_for_ports(client, client_re: str, *, midi: bool, is_input: bool, count: int = 1,
                   timeout: float = 30.0, poll: float = 0.005, proc=None) -> list[str]:
    """Poll until at least ``count`` matching ports exist; raises ``TimeoutError``.

    ``proc``: a ``subprocess.Popen`` whose exit aborts the wait with ``RuntimeError``."""
    deadline = time.monotonic() + timeout
    while True:
        ports = find_client_ports(client, client_re, midi=midi, is_input=is_input)
        if len(ports) >= count:
            return ports
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with code {proc.returncode} before its JACK "
                               f"ports appeared")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {'MIDI' if midi else 'audio'} ports of client "
                               f"{client_re!r} after {timeout:.0f} s")
        time.sleep(poll)


# -- schedules -----------------------------------------------------------------------------------

def note_schedule(n_notes: int, spacing: int, length: int, *, first: int = 0,
                  pitches=(60, 64, 67, 72), velocity: int = 100, channel: int = 0,
                  jitter: int = 0, seed: int = 0, silence: bool = True):
    """Note-on/note-off pairs, one note at a time; returns ``(events, on_indices)``.

    ``jitter``: a random extra offset in ``[0, jitter)`` per note (use the period, so that
    note-ons fall at every position inside a block). ``silence``: send CC120 (all sound off)
    halfway between a note-off and the next note-on, so release tails do not hide onsets."""
    rng = np.random.default_rng(seed)
    ev, on_idx = [], []
    for k in range(n_notes):
        t = first + k * spacing + (int(rng.integers(jitter)) if jitter else 0)
        p = int(pitches[k % len(pitches)])
        on_idx.append(len(ev))
        ev.append((t, bytes([0x90 | channel, p, velocity])))
        ev.append((t + length, bytes([0x80 | channel, p, 0])))
        if silence:
            ev.append((t + length + (spacing - length - jitter) // 2,
                       bytes([0xB0 | channel, 120, 0])))
    order = sorted(range(len(ev)), key=lambda i: ev[i][0])  # stable: keep note-on indices valid
    pos = {old: new for new, old in enumerate(order)}
    return [ev[i] for i in order], [pos[i] for i in on_idx]


# -- analysis ------------------------------------------------------------------------------------

def _mono(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return np.max(np.abs(x), axis=0) if x.ndim == 2 else np.abs(x)


def detect_onset(x: np.ndarray, start: int, *, threshold: float = 1e-3, rel: float = 4.0,
                 floor_window: int = 256, search: int | None = None, lookback: int = 0) -> int:
    """Frames from ``start`` to the first sample above the onset threshold; -1 if none
    (:data:`NO_ONSET` if none and ``lookback`` > 0, since -1 is then a valid latency).

    The threshold is ``max(threshold, rel * noise floor)``, the noise floor being the peak
    ``|x|`` over the ``floor_window`` frames before ``start - lookback``. The search starts at
    ``start - lookback``: a synth that applies events at its block start can sound *before* the
    event's frame (negative latency), and ``lookback`` (e.g. one block) lets that show. With
    ``lookback`` > 0 use :data:`NO_ONSET` to test for "none". ``x``: mono, or
    ``[channels, frames]`` (peak over channels)."""
    m = _mono(x)
    s0 = start - lookback
    if s0 < 0 or start >= len(m):
        return NO_ONSET if lookback else -1
    floor = float(m[max(0, s0 - floor_window):s0].max()) if s0 > 0 else 0.0
    thr = max(threshold, rel * floor)
    seg = m[s0:] if search is None else m[s0:start + search]
    hit = np.flatnonzero(seg > thr)
    if not hit.size:
        return NO_ONSET if lookback else -1
    return int(hit[0]) - lookback


NO_ONSET = -(1 << 40)


def detect_onsets(x: np.ndarray, starts, **kw) -> np.ndarray:
    """:func:`detect_onset` for each start, searching up to the next start."""
    starts = [int(s) for s in starts]
    m = _mono(x)
    out = np.full(len(starts), -1, dtype=np.int64)
    for i, s in enumerate(starts):
        nxt = starts[i + 1] if i + 1 < len(starts) else len(m)
        out[i] = detect_onset(m, s, search=max(nxt - s, 1), **kw)
    return out


def find_gaps(x: np.ndarray, start: int = 0, end: int | None = None, *, min_len: int = 32,
              eps: float = 1e-7) -> list[tuple[int, int]]:
    """Runs of at least ``min_len`` samples with ``|x| <= eps`` inside ``[start, end)``:
    ``[(first_frame, length)]``. A sounding synth that drops a block leaves exactly such a run."""
    m = _mono(x)
    end = len(m) if end is None else min(end, len(m))
    q = m[start:end] <= eps
    if not q.any():
        return []
    d = np.diff(np.concatenate(([0], q.astype(np.int8), [0])))
    a = np.flatnonzero(d == 1)
    b = np.flatnonzero(d == -1)
    return [(int(s) + start, int(e - s)) for s, e in zip(a, b) if e - s >= min_len]


def pitch_cents(x: np.ndarray, sample_rate: float, expected_hz: float, *, nfft: int = 1 << 18,
                search_cents: float = 300.0) -> tuple[float, float]:
    """``(measured_hz, cents)`` of the spectral peak nearest ``expected_hz``.

    Hann-windowed, zero-padded FFT (2^18 points at 48 kHz: 0.18 Hz bins), peak searched within
    ``±search_cents`` of the expected fundamental, refined by parabolic interpolation of the
    log magnitude. Pass the steady part of one note (mono)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=0)
    n = len(x)
    nfft = max(nfft, 1 << int(np.ceil(np.log2(max(n, 2)))))
    spec = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(n), nfft))
    lo_hz = expected_hz * 2 ** (-search_cents / 1200)
    hi_hz = expected_hz * 2 ** (search_cents / 1200)
    lo = max(1, int(np.floor(lo_hz * nfft / sample_rate)))
    hi = min(len(spec) - 2, int(np.ceil(hi_hz * nfft / sample_rate)))
    k = lo + int(np.argmax(spec[lo:hi + 1]))
    a, b, c = np.log(spec[k - 1:k + 2] + 1e-30)
    den = a - 2 * b + c
    delta = 0.5 * (a - c) / den if den != 0 else 0.0
    f = (k + delta) * sample_rate / nfft
    return float(f), float(1200 * np.log2(f / expected_hz))
