"""The computer keyboard as an instrument while ``rtsynth play`` runs (stdin a terminal).

Tracker layout (the lower row is the octave from middle C, the upper row the next)::

     s d   g h j          2 3   5 6 7
    z x c v b n m        q w e r t y u i
    C4 ........ B4       C5 ........... C6

Terminals send no key-up: a key's note lasts ``NOTE_SECONDS`` after its last press. Holding the
key down (the terminal's auto-repeat) keeps it sounding; it ends that long after the key is let
go, or at once with the panic key. Upper-case letters play the same notes (Caps Lock is harmless).

Commands: ``[``/``]`` octave down/up, ``-``/``=`` velocity down/up, ``,``/``.`` gain down/up,
space sustain on/off, Esc or Backspace panic (all sound off, sustain off), Tab / Shift-Tab next /
previous instrument, Ctrl-R start/stop recording, Ctrl-C quit.

The terminal is put in non-canonical mode without echo (termios: ``ICANON``, ``ECHO``,
``IEXTEN``, ``IXON`` off; ``ISIG`` kept, so Ctrl-C still raises SIGINT and the player stops as
usual) and restored on exit, on exceptions (context manager) and at interpreter exit (atexit).
Notes go in through the player's MIDI path (``Player.midi_now``: stamped with the host clock,
like rtmidi input).
"""

from __future__ import annotations

import atexit
import os
import select
import threading
import time
from typing import Callable

NOTE_SECONDS = 0.6
LOWER = "zsxdcvgbhnjm"        # C4 .. B4
UPPER = "q2w3er5t6y7ui"       # C5 .. C6
BASE_NOTE = 60
VELOCITY_STEP = 16
GAIN_STEP = 2 ** 0.5          # +-3 dB
GAIN_MAX = 4.0

KEY_HELP = ("keys: z s x d c v g b h n j m = C4..B4, q 2 w 3 e r 5 t 6 y 7 u i = C5..C6 "
            f"(a note lasts {NOTE_SECONDS:g} s after its last key press; hold the key to hold it) "
            "| [ ] octave | - = velocity | , . gain | space sustain | Esc panic | "
            "Tab/Shift-Tab instrument | Ctrl-R record | Ctrl-C quit")

_KEYMAP = {c: i for i, c in enumerate(LOWER)}
_KEYMAP.update({c: 12 + i for i, c in enumerate(UPPER)})
_SHIFTED = {"@": "2", "#": "3", "%": "5", "^": "6", "&": "7"}


class TerminalMode:
    """Non-canonical, no-echo input on ``fd`` for a ``with`` block; always restored."""

    def __init__(self, fd: int):
        self.fd = fd
        self._saved = None

    def __enter__(self) -> "TerminalMode":
        import termios
        self._saved = termios.tcgetattr(self.fd)
        new = termios.tcgetattr(self.fd)
        new[0] &= ~(termios.IXON | termios.ICRNL)                       # iflag
        new[3] &= ~(termios.ICANON | termios.ECHO | termios.IEXTEN)      # lflag (ISIG kept)
        new[6][termios.VMIN] = 0
        new[6][termios.VTIME] = 0
        termios.tcsetattr(self.fd, termios.TCSADRAIN, new)
        self._mode = new
        atexit.register(self.restore)
        try:       # back from Ctrl-Z (the shell restored its own settings): ours again
            import signal
            self._old_cont = signal.signal(signal.SIGCONT, self._reapply)
        except (ValueError, AttributeError):        # not the main thread / no SIGCONT
            self._old_cont = None
        return self

    def _reapply(self, signum, frame) -> None:
        if self._saved is not None:
            import termios
            try:
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self._mode)
            except termios.error:
                pass

    def restore(self) -> None:
        if self._saved is None:
            return
        import termios
        try:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
        except termios.error:
            pass
        self._saved = None

    def __exit__(self, *exc) -> None:
        self.restore()
        atexit.unregister(self.restore)
        if getattr(self, "_old_cont", None) is not None:
            import signal
            try:
                signal.signal(signal.SIGCONT, self._old_cont)
            except ValueError:
                pass


class KeyboardPlayer:
    """Reads keys in its own thread and sends MIDI through ``send(bytes)``.

    ``actions``: callbacks for the non-note keys, by name: ``panic``, ``instrument(+1|-1)``,
    ``gain(factor)``, ``record()``, each optional.
    """

    def __init__(self, send: Callable[[bytes], None], fd: int = 0, channel: int = 0,
                 actions: dict | None = None, note_seconds: float = NOTE_SECONDS):
        self.send = send
        self.fd = fd
        self.channel = channel
        self.actions = actions or {}
        self.note_seconds = note_seconds
        self.octave = 0                 # octaves from the tracker's C4
        self.velocity = 100
        self.sustain = False
        self.keys_pressed = 0
        self.last_key = ""
        self._held: dict[int, float] = {}     # note -> time its note-off is due
        self._stop = False
        self._thread: threading.Thread | None = None
        self._mode = TerminalMode(fd)

    # ------------------------------------------------------------------ parsing
    def handle(self, data: str, now: float | None = None) -> None:
        """Act on the characters of one read (an escape sequence arrives whole)."""
        now = time.monotonic() if now is None else now
        i = 0
        while i < len(data):
            c = data[i]
            if c == "\x1b":
                if data.startswith("\x1b[Z", i):       # Shift-Tab
                    self._action("instrument", -1)
                    i += 3
                    continue
                if i + 1 < len(data) and data[i + 1] in "[O":
                    j = i + 2                           # skip any other escape sequence
                    while j < len(data) and not data[j].isalpha() and data[j] != "~":
                        j += 1
                    i = j + 1
                    continue
                self.panic()                            # a lone Esc
                i += 1
                continue
            self._key(c, now)
            i += 1

    def _key(self, c: str, now: float) -> None:
        self.last_key = c
        self.keys_pressed += 1
        k = _SHIFTED.get(c, c)
        k = k.lower() if k.isalpha() else k
        if k in _KEYMAP:
            self._note(BASE_NOTE + 12 * self.octave + _KEYMAP[k], now)
        elif c == "[":
            self.octave = max(self.octave - 1, -4)
        elif c == "]":
            self.octave = min(self.octave + 1, 3)
        elif c in "-_":
            self.velocity = max(self.velocity - VELOCITY_STEP, 1)
        elif c in "=+":
            self.velocity = min(self.velocity + VELOCITY_STEP, 127)
        elif c in ",<":
            self._action("gain", 1 / GAIN_STEP)
        elif c in ".>":
            self._action("gain", GAIN_STEP)
        elif c == " ":
            self.sustain = not self.sustain
            self.send(bytes((0xB0 | self.channel, 64, 127 if self.sustain else 0)))
        elif c in "\x7f\x08":
            self.panic()
        elif c == "\t":
            self._action("instrument", +1)
        elif c == "\x12":                              # Ctrl-R
            self._action("record")

    def _action(self, name: str, *args) -> None:
        f = self.actions.get(name)
        if f is not None:
            f(*args)

    def _note(self, note: int, now: float) -> None:
        if not 0 <= note <= 127:
            return
        ch = self.channel
        if note not in self._held:                     # a repeat only extends the note
            self.send(bytes((0x90 | ch, note, self.velocity)))
        self._held[note] = now + self.note_seconds

    def panic(self) -> None:
        self._held.clear()
        self.sustain = False
        for ch in range(16):
            self.send(bytes((0xB0 | ch, 64, 0)))
            self.send(bytes((0xB0 | ch, 120, 0)))      # all sound off
            self.send(bytes((0xB0 | ch, 123, 0)))      # all notes off
        self._action("panic")

    def release_due(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for note, due in list(self._held.items()):
            if due <= now:
                del self._held[note]
                self.send(bytes((0x80 | self.channel, note, 0)))

    @property
    def held(self) -> list[int]:
        return sorted(self._held)

    # ------------------------------------------------------------------ thread
    def _run(self) -> None:
        fd = self.fd
        while not self._stop:
            wait = 0.05
            if self._held:
                wait = max(0.0, min(wait, min(self._held.values()) - time.monotonic()))
            try:
                ready, _, _ = select.select([fd], [], [], wait)
            except (OSError, ValueError):
                return
            if ready:
                try:
                    raw = os.read(fd, 256)
                except BlockingIOError:
                    raw = b""
                except OSError:
                    return
                if raw:
                    self.handle(raw.decode("utf-8", "replace"))
            self.release_due()

    def start(self) -> "KeyboardPlayer":
        self._mode.__enter__()
        self._thread = threading.Thread(target=self._run, name="rtsynth-keys", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop = True
        if self._thread is not None:
            self._thread.join(1.0)
        for note in list(self._held):
            self.send(bytes((0x80 | self.channel, note, 0)))
        self._held.clear()
        self._mode.__exit__(None, None, None)

    def __enter__(self) -> "KeyboardPlayer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
