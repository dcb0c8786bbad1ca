"""Offline rendering: a MIDI file through the same engine, into a sound file.

The engine is the one that plays live; only the destination differs (a file writer instead of the
audio callback), so a render is what a live performance of the same events sounds like. Renders
are deterministic: the same file, instrument and settings give the same samples.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from . import spec
from .engine import Engine, OfflineEngine
from .instruments.base import StreamingInstrument
from .midi.messages import MidiError

SOUND_FORMATS = {".wav": ("WAV", "PCM_24"), ".flac": ("FLAC", "PCM_24"),
                 ".ogg": ("OGG", "VORBIS"), ".aiff": ("AIFF", "PCM_24"), ".aif": ("AIFF", "PCM_24")}


def read_midi_events(path: str | Path, sample_rate: int = spec.SAMPLE_RATE
                     ) -> list[tuple[int, bytes]]:
    """All channel messages of all tracks of a MIDI file -> ``[(sample, bytes)]`` in time order.

    Tempo changes are honoured. Raises :class:`MidiError` with one readable line for a missing,
    truncated or non-MIDI file. (:mod:`rtsynth.midi.smf`: the same times as mido, several
    times faster.)
    """
    from .midi.smf import read_smf

    path = Path(path)
    if not path.is_file():
        raise MidiError(f"no such MIDI file: {path}")
    try:
        data = path.read_bytes()
        timed, n_tracks = read_smf(data)
    except MidiError as e:
        raise MidiError(f"{path} is not a readable MIDI file ({e})") from None
    except OSError as e:
        raise MidiError(f"{path} is not a readable MIDI file ({e.strerror or e})") from None
    if not n_tracks:
        raise MidiError(f"{path} has no tracks")
    return [(int(round(t * sample_rate)), m) for t, m in timed]


def demo_events(sample_rate: int = spec.SAMPLE_RATE) -> list[tuple[int, bytes]]:
    """A short built-in phrase (melody over chords, with a bend and vibrato) for the demo."""
    sr = sample_rate
    ev: list[tuple[float, tuple[int, ...]]] = []
    beat = 0.45
    melody = [72, 74, 76, 79, 77, 76, 74, 72, 74, 76, 72]
    durs = [1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 3]
    t = 0.0
    for i, (n, d) in enumerate(zip(melody, durs)):
        ev.append((t, (0x90, n, 96 if i % 4 == 0 else 80)))
        if d >= 2:
            ev.append((t + 0.3 * beat, (0xB0, 1, 70)))
            ev.append((t + d * beat * 0.95, (0xB0, 1, 0)))
        ev.append((t + d * beat * 0.98, (0x80, n, 0)))
        t += d * beat
    ev.append((2.0 * beat, (0xE0, 0, 32)))        # a small bend down and back
    ev.append((2.5 * beat, (0xE0, 0, 64)))
    chords = [(48, 55, 64), (53, 57, 60), (55, 59, 62), (48, 55, 64)]
    for i, ch in enumerate(chords):
        for n in ch:
            ev.append((i * 4 * beat, (0x91, n, 60)))
            ev.append(((i + 1) * 4 * beat - 0.05, (0x81, n, 0)))
    ev.sort(key=lambda e: e[0])
    return [(int(round(t * sr)), bytes(m)) for t, m in ev]


class _Ending:
    """Where a render stops: after the last event, once every voice has ended and the output
    has been silent (below 1e-5) for a quarter second, at most ``tail`` seconds after it."""

    def __init__(self, last: int, sr: int, tail: float, block: int):
        self.last = last
        self.quiet_needed = sr // 4
        self.quiet = 0
        self.total_est = last + int(tail * sr)
        self.max_len = self.total_est + block

    def reached(self, out: np.ndarray, done: int, active_voices: int) -> bool:
        """After a (mastered) block that ends ``done`` frames into the render."""
        if done > self.last:
            if active_voices == 0 and np.max(np.abs(out)) < 1e-5:
                self.quiet += len(out)
                if self.quiet >= self.quiet_needed:
                    return True
            else:
                self.quiet = 0
        return done >= self.max_len


def _begin(engine: Engine, events: Iterable[tuple[int, bytes]], tail: float) -> _Ending:
    events = list(events)
    last = max((t for t, _ in events), default=0)
    start = engine.time
    for t, m in events:
        engine.push(start + t, m)
    return _Ending(last, engine.sr, tail, engine.block)


def iter_blocks(engine: Engine, events: Iterable[tuple[int, bytes]], tail: float = 3.0,
                progress: Callable[[int, int], None] | None = None) -> Iterator[np.ndarray]:
    """Render sample-stamped events through ``engine``, block by block: yields each block
    (``[block, 2]`` float32, a view of the engine's buffer, valid until the next block).

    Renders until the last event, then until every voice has ended, at most ``tail`` seconds
    more (the reverb's tail included: rendering stops once the output has been silent for
    a quarter second after the voices end).
    """
    ending = _begin(engine, events, tail)
    done = 0
    while True:
        out = engine.render()
        yield out
        done += engine.block
        if progress is not None:
            progress(min(done, ending.total_est), ending.total_est)
        if ending.reached(out, done, engine.active_voices):
            break


def render_events(engine: Engine, events: Iterable[tuple[int, bytes]], tail: float = 3.0,
                  progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Render sample-stamped events through ``engine`` -> ``[n, 2]`` float32 (see
    :func:`iter_blocks` for where it stops)."""
    chunks = [b.copy() for b in iter_blocks(engine, events, tail, progress)]
    return np.concatenate(chunks) if chunks else np.zeros((0, 2), np.float32)


#: the block of an offline render: large model batches, few per-block hand-offs between
#: threads (the output does not depend on it)
OFFLINE_BLOCK = 8192


def offline_engine(instrument: StreamingInstrument, *, block: int | None = None,
                   threads: int | None = None, **engine_kw) -> OfflineEngine:
    """An engine for rendering files: :class:`rtsynth.engine.OfflineEngine` (the same samples
    as the live engine to float32 rounding, large model batches, two threads when the machine
    has two cores). ``engine_kw``: as :class:`rtsynth.engine.Engine` (``sample_rate``,
    ``n_slots``, ``gain``, ``reverb``, ``timbre_cc``...)."""
    if threads is None:
        threads = 2 if _cpu_count() >= 2 else 1
    return OfflineEngine(instrument, block=block or OFFLINE_BLOCK, threads=threads, **engine_kw)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def render_to_file(engine: Engine, events: Iterable[tuple[int, bytes]], path: str | Path,
                   tail: float = 3.0, progress: Callable[[int, int], None] | None = None
                   ) -> tuple[int, float]:
    """Render events (as :func:`render_events`) straight into a sound file. Returns
    ``(frames, peak)``, peak the largest absolute sample. The file holds the same samples as
    ``write_audio(path, render_events(...))``.

    With an :class:`OfflineEngine` each block's master chain (reverb, limiter: serial), the
    end detection and the writing run beside the next block's model step
    (:meth:`OfflineEngine.beside`), on the render's second thread; the block rendered past the
    end is dropped. (A third, writer thread did this until session 5: the OS ran it against the
    two render threads, and each block waited about 0.3 ms for the one it had preempted.)
    """
    from functools import partial

    path = Path(path)
    fmt = _sound_format(path)
    if fmt == ("WAV", "PCM_24"):
        f = _Pcm24Wav(path, engine.sr, 2)
    else:
        f = _soundfile_no_sync(path, engine.sr, fmt)
    try:
        ending = _begin(engine, events, tail)
    except BaseException:
        f.close()
        raise
    result = {"frames": 0, "peak": 0.0, "ended": False}

    def finish(chunk: np.ndarray, done: int, active: int) -> None:
        """Master, write and check for the end: one block, blocks in order."""
        engine.master_block(chunk)
        peak = f.write(chunk)
        result["frames"] += len(chunk)
        if len(chunk):
            if peak is None:
                peak = float(np.max(np.abs(chunk)))
            result["peak"] = max(result["peak"], peak)
        if ending.reached(chunk, done, active):
            result["ended"] = True

    beside = getattr(engine, "beside", None)
    deferred = engine.defer_master
    engine.defer_master = True
    done = 0
    pending = None
    try:
        while not result["ended"] and done < ending.max_len:
            if pending is not None:
                if beside is not None:
                    beside(partial(finish, *pending))
                else:
                    finish(*pending)
                    if result["ended"]:
                        break
                pending = None
            out = engine.render()
            done += engine.block
            if not result["ended"]:
                pending = (out.copy(), done, engine.active_voices)
            if progress is not None:
                progress(min(done, ending.total_est), ending.total_est)
        if pending is not None:
            finish(*pending)
    finally:
        if beside is not None:
            beside(None)
        f.close()
        engine.defer_master = deferred
    return result["frames"], result["peak"]


class _Pcm24Wav:
    """A 24-bit PCM WAV file (the ``.wav`` of a render) written here, not through libsndfile:
    the same bytes (the same 44-byte header, :func:`~rtsynth.dsp.effects.pcm24` the same
    conversion), 0.17 s less CPU time in the bench's 187 s render. ``write``
    returns the block's peak."""

    LIMIT = 0xFFFFFFFF - 36          # the most data bytes a RIFF header can count

    def __init__(self, path: Path, sample_rate: int, channels: int):
        self.sr, self.ch = int(sample_rate), int(channels)
        self.n = 0
        self._buf = np.zeros(0, np.uint8)
        self._f = open(path, "wb")
        self._f.write(self._header(0))

    def _header(self, n: int) -> bytes:
        import struct
        ba = 3 * self.ch
        return (b"RIFF" + struct.pack("<I", 36 + n) + b"WAVE" + b"fmt "
                + struct.pack("<IHHIIHH", 16, 1, self.ch, self.sr, self.sr * ba, ba, 24)
                + b"data" + struct.pack("<I", n))

    def write(self, chunk: np.ndarray) -> float:
        from .dsp.effects import pcm24
        nb = chunk.shape[0] * 3 * self.ch
        if self.n + nb > self.LIMIT:
            raise ValueError("a WAV file holds at most 4 GiB (6.2 hours of 48 kHz stereo "
                             "24-bit): render to .flac")
        if len(self._buf) < nb:
            self._buf = np.zeros(nb, np.uint8)
        buf = self._buf[:nb]
        peak = float(pcm24(np.ascontiguousarray(chunk, dtype=np.float32), buf))
        self._f.write(buf.data)
        self.n += nb
        return peak

    def close(self) -> None:
        if self._f.closed:
            return
        try:
            self._f.seek(0)
            self._f.write(self._header(self.n))
        finally:
            self._f.close()


def _soundfile_no_sync(path: Path, sample_rate: int, fmt: tuple[str, str]):
    """A soundfile writer whose ``close`` skips ``flush``: soundfile's flush is libsndfile's
    ``sf_write_sync``, an fsync (0.12 s at the end of the bench's 187 s render, for a file the
    page cache writes out anyway). libsndfile keeps no data of its own to flush: each ``write``
    reaches the file, and ``close`` (``sf_close``) still completes the header."""
    import soundfile as sf

    class NoSync(sf.SoundFile):
        def flush(self):
            pass
    return NoSync(str(path), "w", samplerate=sample_rate, channels=2, format=fmt[0],
                  subtype=fmt[1])


def _sound_format(path: Path) -> tuple[str, str]:
    fmt = SOUND_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot write {path.suffix or 'a file without extension'}: use one of "
                         + ", ".join(SOUND_FORMATS))
    return fmt


def write_audio(path: str | Path, audio: np.ndarray, sample_rate: int) -> None:
    import soundfile as sf

    path = Path(path)
    fmt = _sound_format(path)
    sf.write(str(path), audio, sample_rate, format=fmt[0], subtype=fmt[1])


def realtime_factor(audio_frames: int, sample_rate: int, seconds: float) -> float:
    return (audio_frames / sample_rate) / max(seconds, 1e-9)
