"""Offline rendering: a MIDI file through the same engine, into a sound file.

The engine is the one that plays live; only the destination differs (a file writer instead of the
audio callback), so a render is what a live performance of the same events sounds like. Renders
are deterministic: the same file, instrument and settings give the same samples.
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from . import options, spec
from .engine import Engine, OfflineEngine
from .instruments.base import StreamingInstrument
from .midi.messages import MidiError

SOUND_FORMATS = {".wav": ("WAV", "PCM_24"), ".flac": ("FLAC", "PCM_24"),
                 ".ogg": ("OGG", "VORBIS"), ".aiff": ("AIFF", "PCM_24"), ".aif": ("AIFF", "PCM_24")}


def read_midi_events(path: str | Path, sample_rate: int = spec.SAMPLE_RATE
                     ) -> list[tuple[int, bytes]]:
    """All channel messages of all tracks of a MIDI file -> ``[(sample, bytes)]`` in time order,
    stamped at ``sample_rate`` (the engine's: :func:`read_midi_timed` and :func:`to_samples`
    when the rate is known only later).

    Tempo changes are honoured. Raises :class:`MidiError` with one readable line for a missing,
    truncated, oversized or non-MIDI file. (:mod:`rtsynth.midi.smf`: the same times as mido,
    several times faster.)
    """
    return to_samples(read_midi_timed(path), sample_rate)


def read_midi_timed(path: str | Path, max_bytes: int = options.MAX_MIDI_BYTES
                    ) -> list[tuple[float, bytes]]:
    """The channel messages of a MIDI file -> ``[(seconds, bytes)]`` in time order. The file is
    read whole, so its size is checked first: more than ``max_bytes`` is refused unread."""
    from .midi.smf import read_smf

    path = Path(path)
    if not path.exists():
        raise MidiError(f"no such MIDI file: {path}")
    if not path.is_file():
        raise MidiError(f"{path} is not a regular file")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise MidiError(f"{path} is {size / 2**20:.1f} MiB: larger than any MIDI piece "
                            f"(at most {max_bytes >> 20} MiB are read)")
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)    # the size may have changed since stat
        if len(data) > max_bytes:
            raise MidiError(f"{path} is larger than {max_bytes >> 20} MiB")
        timed, n_tracks = read_smf(data, max_events=options.MAX_MIDI_EVENTS)
    except MidiError as e:
        if str(e).startswith(str(path)):
            raise
        raise MidiError(f"{path} is not a readable MIDI file ({e})") from None
    except OSError as e:
        raise MidiError(f"{path} is not a readable MIDI file ({e.strerror or e})") from None
    if not n_tracks:
        raise MidiError(f"{path} has no tracks")
    return timed


def to_samples(timed: Iterable[tuple[float, bytes]], sample_rate: int
               ) -> list[tuple[int, bytes]]:
    """``[(seconds, message)]`` -> ``[(sample at sample_rate, message)]``."""
    sr = int(sample_rate)
    return [(int(round(t * sr)), m) for t, m in timed]


def events_length(timed: Iterable[tuple[float, bytes]]) -> float:
    """Seconds from the start to the last event (its musical length)."""
    return max((t for t, _ in timed), default=0.0)


class RenderError(ValueError):
    """A render refused before it starts (one line for the user; nothing is written)."""


def check_output(out: str | Path, midi: str | Path | None = None) -> Path:
    """Refuse an output that cannot be written, before any work: an unknown format, a missing
    folder, a folder, the MIDI file itself."""
    out = Path(out)
    if out.suffix.lower() not in SOUND_FORMATS:
        raise RenderError(f"cannot write {out.name}: the output must end in one of "
                          + ", ".join(SOUND_FORMATS))
    folder = out.parent
    if not folder.is_dir():
        raise RenderError(f"cannot write {out}: no such folder {folder}")
    if out.is_dir():
        raise RenderError(f"cannot write {out}: it is a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise RenderError(f"cannot write {out}: the folder {folder} is not writable")
    if midi is not None and out.exists() and Path(midi).exists() \
            and os.path.samefile(out, midi):
        raise RenderError(f"cannot write {out}: it is the MIDI file being rendered")
    return out


def check_length(seconds: float, tail: float, max_duration: float) -> None:
    """Refuse a render longer than ``max_duration`` seconds (the MIDI's length plus the
    tail): a tiny file can hold a note of many hours."""
    total = seconds + tail
    if total > max_duration:
        raise RenderError(f"the MIDI lasts {_hms(seconds)} (+{tail:g} s tail): longer than "
                          f"--max-duration {max_duration:g} s; nothing written (raise "
                          f"--max-duration to render it)")


def check_fits(out: str | Path, seconds: float, sample_rate: int) -> None:
    """Refuse a WAV render its header could not count (more than 4 GiB) or the disk could not
    hold (its size is known before it starts)."""
    out = Path(out)
    if _sound_format(out)[0] != "WAV":
        return
    frames = seconds * sample_rate
    if frames > wav_frames_max():
        raise RenderError(wav_too_long(sample_rate))
    import shutil
    need = 6 * frames + 44
    free = shutil.disk_usage(out.parent).free
    if need > free:
        raise RenderError(f"cannot write {out}: {seconds:.0f} s of 24-bit stereo need "
                          f"{need / 2**20:.0f} MiB, the disk has {free / 2**20:.0f} MiB free")


def _hms(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    h, rem = divmod(int(round(seconds)), 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d} ({seconds:.0f} s)"


#: the signals that stop a render cleanly (the old file kept, see :func:`render_to_file`)
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, n))


@contextmanager
def stop_on_signals(signums=STOP_SIGNALS):
    """While inside: SIGINT/SIGTERM/SIGHUP only set a flag; yields ``stop()`` -> the first
    signal's number or None, for :func:`render_to_file`'s ``stop``. (In a thread other than
    the main one, signals cannot be caught: ``stop()`` is always None.)"""
    got: list[int] = []

    def handler(signum, frame):
        got.append(signum)
    old = {}
    try:
        for s in signums:
            old[s] = signal.signal(s, handler)
    except ValueError:          # not the main thread
        pass
    try:
        yield lambda: got[0] if got else None
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def demo_events(sample_rate: int = spec.SAMPLE_RATE) -> list[tuple[int, bytes]]:
    """A short built-in phrase (melody over chords, with a bend and vibrato) for the demo."""
    return to_samples(demo_timed(), sample_rate)


def demo_timed() -> list[tuple[float, bytes]]:
    """:func:`demo_events` in seconds."""
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
    return [(t, bytes(m)) for t, m in ev]


class _Ending:
    """Where a render stops: after the last event, once every voice has ended and the output
    has been silent (below 1e-5) for a quarter second, and never more than ``tail`` seconds
    after it: the render holds at most ``last + tail * sr`` frames (:meth:`keep`)."""

    def __init__(self, last: int, sr: int, tail: float, block: int):
        self.last = last
        self.quiet_needed = sr // 4
        self.quiet = 0
        self.total_est = last + int(round(tail * sr))
        self.max_len = self.total_est

    def keep(self, n: int, done: int) -> int:
        """Frames to keep of a block of ``n`` that ends ``done`` frames into the render."""
        return max(0, min(n, self.max_len - (done - n)))

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
        done += engine.block
        yield out[:ending.keep(len(out), done)]
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


class RenderInterrupted(Exception):
    """A render stopped by a signal (``signum``) before its end; nothing was written."""

    def __init__(self, signum: int, frames: int):
        super().__init__(f"interrupted by signal {signum}")
        self.signum, self.frames = signum, frames


def render_to_file(engine: Engine, events: Iterable[tuple[int, bytes]], path: str | Path,
                   tail: float = 3.0, progress: Callable[[int, int], None] | None = None,
                   stop: Callable[[], int | None] | None = None) -> tuple[int, float]:
    """Render events (as :func:`render_events`) straight into a sound file. Returns
    ``(frames, peak)``, peak the largest absolute sample. The file holds the same samples as
    ``write_audio(path, render_events(...))``.

    The file is written under a temporary name beside ``path`` and renamed to ``path`` only
    when the render is complete: whatever stops a render (an error, a full disk, ``stop``), a
    file already at ``path`` is left as it was and the temporary file is removed. ``stop``
    is asked after every block; a signal number from it ends the render with
    :class:`RenderInterrupted`.

    With an :class:`OfflineEngine` each block's master chain (reverb, limiter: serial), the
    end detection and the writing run beside the next block's model step
    (:meth:`OfflineEngine.beside`), on the render's second thread; the block rendered past the
    end is dropped. (A third, writer thread: the OS ran it against the two render threads,
    and each block waited about 0.3 ms for the one it had preempted.)
    """
    from functools import partial

    path = Path(path)
    fmt = _sound_format(path)
    tmp = _temporary_beside(path)
    ok = False
    try:
        if fmt == ("WAV", "PCM_24"):
            f = _Pcm24Wav(tmp, engine.sr, 2)
        else:
            f = _soundfile_no_sync(tmp, engine.sr, fmt)
        try:
            frames, peak = _render_into(engine, events, f, tail, progress, stop, partial)
        finally:
            f.close()
        os.replace(tmp, path)
        ok = True
    finally:
        if not ok:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return frames, peak


def _temporary_beside(path: Path) -> Path:
    """A new empty file in ``path``'s folder (the rename is then within one file system),
    hidden, created with the permissions a new ``path`` would get."""
    import secrets
    for _ in range(16):
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(3)}.part")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise OSError(f"cannot create a temporary file beside {path}")


def _render_into(engine, events, f, tail, progress, stop, partial) -> tuple[int, float]:
    ending = _begin(engine, events, tail)
    result = {"frames": 0, "peak": 0.0, "ended": False}

    def finish(chunk: np.ndarray, done: int, active: int) -> None:
        """Master, write and check for the end: one block, blocks in order."""
        engine.master_block(chunk)
        kept = chunk[:ending.keep(len(chunk), done)]
        peak = f.write(kept)
        result["frames"] += len(kept)
        if len(kept):
            if peak is None:
                peak = float(np.max(np.abs(kept)))
            result["peak"] = max(result["peak"], peak)
        if ending.reached(chunk, done, active):
            result["ended"] = True

    beside = getattr(engine, "beside", None)
    deferred = engine.defer_master
    engine.defer_master = True
    done = 0
    pending = None
    fork = getattr(engine, "fork_parts", None)      # a rack: its parts in processes
    if fork is not None and fork(ending.max_len):
        beside = None               # the task runs here, while the parts' processes render on
    try:
        while not result["ended"] and done < ending.max_len:
            if stop is not None:
                signum = stop()
                if signum:
                    raise RenderInterrupted(signum, result["frames"])
            if pending is not None:
                if beside is not None:
                    beside(partial(finish, *pending))
                else:
                    finish(*pending)
                    if result["ended"]:
                        pending = None          # (finished: not again after the loop)
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
        join = getattr(engine, "join_parts", None)
        if join is not None:
            join()
        engine.defer_master = deferred
    return result["frames"], result["peak"]


def wav_frames_max(channels: int = 2) -> int:
    """The most frames a 24-bit WAV file can hold (its RIFF header counts 32-bit sizes)."""
    return _Pcm24Wav.LIMIT // (3 * channels)


def wav_too_long(sample_rate: int, channels: int = 2) -> str:
    hours = wav_frames_max(channels) / sample_rate / 3600
    return (f"a WAV file holds at most 4 GiB ({hours:.1f} hours of {sample_rate} Hz stereo "
            f"24-bit): render to .flac")


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
            raise ValueError(wav_too_long(self.sr, self.ch))
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


def report_faults(engine, file=None) -> None:
    """After a render: one warning for an instrument muted while it rendered
    (:mod:`rtsynth.nn.guard`) and one for voices dropped because their output was not finite."""
    import sys

    from .nn.guard import report
    report(getattr(engine, "inst", None))
    for part in getattr(engine, "part_list", ()):          # a rack: each part's instrument
        report(getattr(getattr(part, "engine", None), "inst", None))
    bad = getattr(engine, "stats", {}).get("nan_voices", 0)
    if bad:
        print(f"rtsynth: warning: {bad} voice(s) produced non-finite audio and were silenced",
              file=file or sys.stderr, flush=True)
    for e in [getattr(p, "engine", None) for p in getattr(engine, "part_list", ())] or [engine]:
        n = getattr(e, "stats", {}).get("clamped_frames", 0)   # the engine's level guard
        if n:
            print(f"rtsynth: warning: {getattr(e.inst, 'name', '?')}: {n} control frame(s) above "
                  f"the level limit were scaled down", file=file or sys.stderr, flush=True)


def realtime_factor(audio_frames: int, sample_rate: int, seconds: float) -> float:
    return (audio_frames / sample_rate) / max(seconds, 1e-9)
