"""``render --stems DIR``: each channel's part alone, one file per channel, frame for frame
beside the master file (the parts before the master chain, after the rack's gain)."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np


class Stems:
    def __init__(self, folder, rack, output=None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.rack = rack
        ext = Path(output).suffix.lower() if output else ".wav"
        if ext not in (".wav", ".flac"):
            ext = ".wav"
        self.ext = ext
        self.files = []
        self.slots = None
        self.lengths = [0, 0]
        self.next_slot = 0
        self.pending: deque = deque()

    def _open(self) -> None:
        """The files, one per part: at the first block (every part is built by then: a render
        pushes all its events first)."""
        import soundfile as sf
        rack, ext = self.rack, self.ext
        self.parts = list(rack.part_list)
        for p in self.parts:
            ch = min(p.channels) if p.channels else None
            label = p.name.rsplit("/", 1)[-1].replace(":", "_").replace("#", "_")
            name = f"ch{ch + 1:02d}_{label}{ext}" if ch is not None else f"{label}{ext}"
            path = self.folder / name
            self.files.append((path, sf.SoundFile(str(path), "w", samplerate=rack.sr,
                                                  channels=2, subtype="FLOAT")))
        # two slots: the block being rendered and the one waiting for its master chain
        self.slots = [np.zeros((len(self.parts), rack.block, 2), np.float32) for _ in range(2)]

    def capture(self, outputs, n: int) -> None:
        if self.slots is None:
            self._open()
        k = self.next_slot
        self.next_slot = 1 - k
        buf = self.slots[k]
        for i, o in enumerate(outputs):
            if i < len(buf):
                buf[i, :n] = o
        self.lengths[k] = n
        self.pending.append(k)

    def write_next(self, n: int) -> None:
        if not self.pending:
            return
        k = self.pending.popleft()
        for i, (_, f) in enumerate(self.files):
            f.write(self.slots[k][i, :n])

    def close(self) -> None:
        for _, f in self.files:
            if not f.closed:
                f.close()
