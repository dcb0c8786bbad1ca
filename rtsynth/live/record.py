"""``--record FILE.wav|.flac``: the samples played, and ``FILE.mid`` with the MIDI that arrived.

The generator (or the JACK callback in sync mode) only copies each block it hands to the device
into a preallocated ring (:meth:`Recorder.write`: two slice copies and an integer); a writer
thread drains the ring into the file through soundfile and keeps the MIDI events beside it.

A recording stays a valid file when the process is interrupted: every second the writer
flushes what it has and rewrites the WAV header's sizes (libsndfile's ``SFC_UPDATE_HEADER_NOW``),
and rewrites the ``.mid`` (to a temporary name, then renamed over the old one). Killed with
SIGKILL, the files hold everything up to the last such second. A ``.flac`` take is recorded as
``NAME.flac.part.wav`` (FLAC's length is only written at close: a killed FLAC file is not
readable) and encoded to FLAC (24-bit) when the take stops; after a SIGKILL the ``.part.wav``
is the valid recording.

The ``.mid`` file counts in frames: ``ticks_per_beat = rate / 4`` at 240 beats a minute, so one
tick is one sample (44.1, 48, 96 kHz...), and every event is at the frame where it took effect
in the audio file (the frame it arrived, plus the player's latency).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np

RECORD_FORMATS = (".wav", ".flac")
_SFC_UPDATE_HEADER_NOW = 0x1060      # sndfile.h
MIDI_TEMPO = 250_000                 # µs per beat: 240 bpm


def check_path(path: str | os.PathLike) -> Path:
    """The recording's path, or ValueError with one line (before anything starts)."""
    p = Path(path)
    if p.suffix.lower() not in RECORD_FORMATS:
        raise ValueError(f"cannot record to {p.name}: the file must end in .wav or .flac")
    if p.is_dir():
        raise ValueError(f"cannot record to {p}: it is a folder")
    if not p.parent.is_dir():
        raise ValueError(f"cannot record to {p}: folder {p.parent} does not exist")
    return p


def midi_path(path: Path) -> Path:
    return path.with_suffix(".mid")


def write_midi(path: Path, events, sample_rate: int) -> None:
    """``events``: ``[(frame, bytes)]`` (frames from the recording's start) -> a type-0 file."""
    import mido
    tpb = sample_rate // 4 if sample_rate % 4 == 0 and sample_rate // 4 < 0x8000 else 1000
    tempo = MIDI_TEMPO if tpb != 1000 else 1_000_000
    ticks_per_frame = tpb * 1e6 / tempo / sample_rate
    mid = mido.MidiFile(type=0, ticks_per_beat=tpb)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr.append(mido.MetaMessage("set_tempo", tempo=tempo, time=0))
    last = 0
    for frame, data in events:
        try:
            msg = mido.Message.from_bytes(list(data))
        except (ValueError, TypeError):
            continue
        t = int(round(max(frame, 0) * ticks_per_frame))
        msg.time = max(t - last, 0)
        last = max(t, last)
        tr.append(msg)
    tmp = path.with_name(path.name + ".part")
    mid.save(tmp)
    os.replace(tmp, path)


class Recorder:
    """A ring the audio side copies into and a writer thread that drains it to a file.

    ``start(path, frame)`` begins a file with the next block copied (its engine frame becomes
    :attr:`start_frame`, time 0 of the ``.mid``); ``stop()`` closes it. :meth:`write` and :meth:`midi` are the only calls
    made from the real-time side.
    """

    def __init__(self, sample_rate: int, block: int, seconds: float = 8.0,
                 interval: float = 1.0):
        self.sr = int(sample_rate)
        cap = 1
        while cap < int(seconds * self.sr):
            cap <<= 1
        self.cap = cap
        self.ring = np.zeros((cap, 2), np.float32)
        self.w = 0               # frames written into the ring (since start)
        self.dropped = 0         # frames the writer had not taken when the ring came round
        self.active = False      # the audio side copies only while True
        self.start_frame = 0
        self.interval = interval
        self.path: Path | None = None
        self.files: list[Path] = []
        self.frames_written = 0
        self.error: BaseException | None = None
        self._midi: deque = deque()
        self._first = True
        self._r = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._file = None

    # ---------------------------------------------------------------- real-time side
    def write(self, block: np.ndarray, frame: int) -> None:
        """Copy one played block (``[n, 2]``) that starts at engine frame ``frame``."""
        if not self.active:
            return
        if self._first:
            # the take starts with the first block copied (not when start() was called: the
            # generator may have rendered blocks meanwhile); MIDI is placed relative to it
            self.start_frame = frame
            self._first = False
        n = len(block)
        if self.w + n - self._r > self.cap:
            self.dropped += n
            return
        i = self.w & (self.cap - 1)
        k = min(n, self.cap - i)
        self.ring[i:i + k] = block[:k]
        self.ring[:n - k] = block[k:]
        self.w += n

    def midi(self, frame: int, data) -> None:
        """A MIDI message that takes effect at engine frame ``frame``."""
        if self.active:
            self._midi.append((frame, data))         # made relative in the writer

    # ---------------------------------------------------------------- control side
    def start(self, path: str | os.PathLike, frame: int) -> Path:
        import soundfile as sf
        if self.active:
            self.stop()
        path = check_path(path)
        # FLAC's header (its length) is written only at close: a process killed mid-take
        # would leave a file libsndfile cannot read. So a .flac take is recorded as a float
        # WAV beside it (kept valid every second) and encoded when the take stops.
        self._final = path if path.suffix.lower() == ".flac" else None
        wav = path.with_name(path.name + ".part.wav") if self._final else path
        self._file = sf.SoundFile(wav, "w", samplerate=self.sr, channels=2, format="WAV",
                                  subtype="FLOAT")
        self._wav = wav
        self.path = path
        self.files.append(path)
        self._events: list = []
        self._midi_dirty = True
        self.frames_written = 0
        self._r = self.w
        self._w0 = self.w
        self.start_frame = frame
        self._first = True
        self._midi.clear()
        self._stop.clear()
        self.active = True
        self._thread = threading.Thread(target=self._run, name="rtsynth-recorder", daemon=True)
        self._thread.start()
        return path

    def _drain(self) -> None:
        w = self.w
        while self._r < w:
            i = self._r & (self.cap - 1)
            k = min(w - self._r, self.cap - i)
            # float recordings clip nothing; the engine's output never exceeds full scale
            self._file.write(self.ring[i:i + k])
            self._r += k
            self.frames_written += k
        while self._midi and not self._first:
            frame, data = self._midi.popleft()
            self._events.append((frame - self.start_frame, data))
            self._midi_dirty = True

    def _checkpoint(self) -> None:
        import soundfile as sf
        self._file.flush()
        sf._snd.sf_command(self._file._file, _SFC_UPDATE_HEADER_NOW, sf._ffi.NULL, 0)
        if self._midi_dirty:
            write_midi(midi_path(self.path), self._events, self.sr)
            self._midi_dirty = False

    def _run(self) -> None:
        try:
            last = time.monotonic()
            while not self._stop.wait(0.05):
                self._drain()
                if time.monotonic() - last >= self.interval:
                    self._checkpoint()
                    last = time.monotonic()
        except BaseException as e:        # reported by the main thread (stop())
            self.error = e
            self.active = False

    def stop(self) -> Path | None:
        """Close the file (everything copied so far is in it); returns its path."""
        if self._file is None:
            return None
        self.active = False
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        try:
            self._drain()
            write_midi(midi_path(self.path), self._events, self.sr)
        finally:
            self._file.close()
            self._file = None
        if self._final is not None:
            _encode_flac(self._wav, self._final)
        return self.path

    @property
    def taken(self) -> int:
        """Frames copied into the current take so far."""
        return self.w - getattr(self, "_w0", self.w)

    @property
    def seconds(self) -> float:
        return self.frames_written / self.sr


def _encode_flac(wav: Path, flac: Path, chunk: int = 1 << 16) -> None:
    import soundfile as sf
    tmp = flac.with_name(flac.name + ".part")
    with sf.SoundFile(wav) as src, sf.SoundFile(tmp, "w", samplerate=src.samplerate,
                                                channels=src.channels, format="FLAC",
                                                subtype="PCM_24") as dst:
        while True:
            b = src.read(chunk, dtype="float32")
            if not len(b):
                break
            dst.write(b)
    os.replace(tmp, flac)
    os.remove(wav)


def next_take(path: Path) -> Path:
    """``song.wav`` -> ``song-2.wav``, ``song-3.wav``... (the first that does not exist)."""
    k = 2
    while True:
        p = path.with_name(f"{path.stem}-{k}{path.suffix}")
        if not p.exists():
            return p
        k += 1


def default_take(folder: str | os.PathLike = ".") -> Path:
    return Path(folder) / time.strftime("rtsynth-%Y%m%d-%H%M%S.wav")
