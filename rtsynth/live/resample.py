"""Play a 48 kHz instrument on a device that runs at another rate (44.1 kHz, 96 kHz...).

:class:`ResampledEngine` looks like an :class:`~rtsynth.engine.Engine` at the device's rate and
block to the player (``sr``, ``block``, ``push``, ``render``), and runs the real engine at the
instrument's rate underneath, converting its output with soxr's streaming resampler
(``soxr.ResampleStream``) in the generator thread.

Timing, measured rather than assumed: libsoxr converts in internal chunks, so its output comes in
bursts (HQ: ~740 output frames every ~6 calls of 128 frames; QQ, its cubic interpolator: every
call). The engine underneath is therefore kept ``lead_in`` frames ahead of what the device has
taken, ``lead_in`` being the largest lag between input fed and output produced that a simulation
of the same stream shows at start-up; the resampled frames wait in a preallocated FIFO. Each
device block then costs one engine render of about ``block * in_rate / out_rate`` frames
(constant load, no catch-up bursts). MIDI is moved by the same amount: an event for device frame
``F`` is placed at engine frame ``(F + extra_frames) * in_rate / out_rate``, so it sounds exactly
``extra_frames`` device frames after ``F``: the added latency, constant, stated by
:attr:`extra_frames`.

The output array of ``resample_chunk`` is the one allocation per block on this path (a few
hundred bytes; python-soxr offers no output buffer). Everything else is preallocated.
"""

from __future__ import annotations

import math

import numpy as np

#: soxr quality for live resampling: "QQ" (cubic, one frame of delay) or "LQ"/"MQ"/"HQ"/"VHQ"
#: (steeper filters, much more latency: libsoxr works in internal chunks). Measured on the demo
#: phrase, 48 -> 44.1 kHz, against a VHQ one-shot conversion (flute-lite / violin-lite): QQ
#: -70 / -57 dB error, LQ -83 / -62, HQ -114 / -97 dB; added latency QQ 7 frames (0.16 ms), LQ
#: 455 (10.3 ms), HQ 847 (19.2 ms).
DEFAULT_QUALITY = "QQ"
QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")


def _stream(in_rate: int, out_rate: int, quality: str):
    import soxr
    return soxr.ResampleStream(in_rate, out_rate, 2, dtype="float32", quality=quality)


def measure_lag(in_rate: int, out_rate: int, chunk: int, quality: str,
                seconds: float = 2.0) -> int:
    """The largest number of input frames fed to a fresh stream of this kind (in ``chunk``-frame
    calls) whose output had not come out yet: how far ahead the engine must run."""
    s = _stream(in_rate, out_rate, quality)
    ratio = in_rate / out_rate
    x = np.zeros((chunk, 2), np.float32)
    fed = produced = 0
    lag = 0
    for _ in range(int(seconds * in_rate / chunk) + 1):
        fed += chunk
        produced += len(s.resample_chunk(x))
        lag = max(lag, fed - int(produced * ratio))
    return lag


class ResampledEngine:
    """An engine at ``device_rate``/``device_block`` over ``engine`` at the instrument's rate.

    ``engine.block`` must hold ``ceil(device_block * engine.sr / device_rate) + 2`` frames (see
    :func:`inner_block`). Attributes not defined here (``inst``, ``n_slots``, ``stats``,
    ``gain``...) are the engine's.
    """

    def __init__(self, engine, device_rate: int, device_block: int,
                 quality: str = DEFAULT_QUALITY):
        if quality not in QUALITIES:
            raise ValueError(f"unknown resampling quality {quality!r}; choose one of "
                             + ", ".join(QUALITIES))
        self.inner = engine
        self.sr = int(device_rate)
        self.block = int(device_block)
        self.in_rate = int(engine.sr)
        self.quality = quality
        self.ratio = self.in_rate / self.sr            # engine frames per device frame
        self._chunk = max(1, int(round(self.block * self.ratio)))
        if engine.block < self._chunk:
            raise ValueError(f"the engine's block ({engine.block}) must hold {self._chunk} frames")
        self.lead_in = measure_lag(self.in_rate, self.sr, self._chunk, quality) + 2
        #: device frames from an event's frame to where it sounds (the added latency)
        self.extra_frames = int(math.ceil((self.lead_in + 2) / self.ratio)) + 1
        self._stream = _stream(self.in_rate, self.sr, quality)
        cap = 1
        while cap < 4 * (self.lead_in + 4 * engine.block + self.block):
            cap <<= 1
        self._fifo = np.zeros((cap, 2), np.float32)
        self._fr = 0                 # frames taken from the FIFO
        self._fw = 0                 # frames put in
        self._out = np.zeros((self.block, 2), np.float32)
        self.time = 0                # device frame of the next block
        self.short_blocks = 0        # blocks that needed more engine frames than planned
        self._base = engine.time     # the engine's frame at device frame 0

    def __getattr__(self, name):     # inst, n_slots, stats, gain, active_voices, ...
        return getattr(self.inner, name)

    @property
    def added_latency_ms(self) -> float:
        return self.extra_frames / self.sr * 1e3

    def set_gain(self, g: float) -> None:
        self.inner.gain = g

    def swap(self, engine) -> None:
        """Continue with ``engine`` (same rate and block) from where the current one is."""
        engine.time = self.inner.time
        self.inner = engine

    def push(self, when: int, message) -> None:
        self.inner.push(self._base + int(round((when + self.extra_frames) * self.ratio)), message)

    def _feed(self, k: int) -> None:
        y = self.inner.render(k)
        z = self._stream.resample_chunk(y)
        n = len(z)
        if not n:
            return
        cap = len(self._fifo)
        i = self._fw & (cap - 1)
        a = min(n, cap - i)
        self._fifo[i:i + a] = z[:a]
        self._fifo[:n - a] = z[a:]
        self._fw += n

    def render(self, nframes: int | None = None) -> np.ndarray:
        """The next ``nframes`` device frames (``[n, 2]`` float32 view of an internal buffer)."""
        n = self.block if nframes is None else int(nframes)
        inner = self.inner
        target = self._base + int(math.ceil((self.time + n) * self.ratio)) + self.lead_in
        while inner.time < target:
            self._feed(min(inner.block, target - inner.time))
        while self._fw - self._fr < n:           # never expected: the lead is measured
            self.short_blocks += 1
            self._feed(inner.block)
        cap = len(self._fifo)
        i = self._fr & (cap - 1)
        a = min(n, cap - i)
        out = self._out[:n]
        out[:a] = self._fifo[i:i + a]
        out[a:] = self._fifo[:n - a]
        self._fr += n
        self.time += n
        return out

    def close(self) -> None:
        """Drop the soxr stream once the player has stopped (an instance still alive at
        interpreter exit makes nanobind print leak warnings)."""
        self._stream = None

    def warmup(self) -> None:
        self.inner.warmup()          # keeps its clock running: rebase
        self._base = self.inner.time - int(math.ceil(self.time * self.ratio))


def inner_block(device_block: int, device_rate: int, engine_rate: int) -> int:
    """The block the engine underneath needs for one device block, with a margin."""
    return int(math.ceil(device_block * engine_rate / device_rate)) + 2
