"""An offline rack's engine parts rendered in processes of their own (``fork``), one per part.

Why: a rack's parts are engines whose block is Python between nogil kernels (events, the
frame plan, the model step's set-up, the voice bank's end of block); two threads of one process
take turns at the GIL for all of it, and every block hands work from one to the other. A file
render knows every event before its first block (:func:`rtsynth.render._begin` pushes them all,
and the rack decides the voice pool's steals as they are pushed), so each part's samples are
fixed then: a process forked after the pushes renders its part alone, block after block, on a
thread of its own, and streams the blocks through a pipe; the parent sums the parts in their
order, runs the master chain and writes the file, as :meth:`Rack.render` does. The OS spreads
the processes over the cores (a busy part gets the CPU while the others wait with their pipes
full: no scheduling of ours to get wrong), and nothing is handed over per block.

The samples are the in-process render's, byte for byte: each part renders the rack's block grid
with :meth:`~rtsynth.host.rack.EnginePart.render_alone` (its idle skip, and the engine's
two-thread split computed on one thread: :meth:`OfflineEngine.render_here`), cut at its own
steals of voices that still sound (:meth:`Rack._due_cuts` with ``only``: a cut depends on the
stolen part's engine alone, and only the stolen part is cut), split as beside the file render's
task where the rack gives it one (the first engine part, from the second block on:
:meth:`Rack._render_pieces`). Each block also brings the part's voices (the end of the render)
and its counters (the engine's stats, the instrument guard's), so the parent's objects report
what the children saw.

A part's process ends after its last block, when the parent closes its pipe, or when the parent
dies (``PR_SET_PDEATHSIG``); the parent kills and reaps them when the render ends, however.
"""

from __future__ import annotations

import os
import signal
import struct

import numpy as np

#: per block and part: frames (-1: an error, its text follows), voices, guard bad rows, guard
#: rows out of range, the guard's fault text length, the engine's counters
_N_COUNTS = 6
_HEAD = struct.Struct(f"<{5 + _N_COUNTS}q")
#: the pipe's buffer (Linux: F_SETPIPE_SZ, at most /proc/sys/fs/pipe-max-size): 16 blocks of 8192
PIPE_BYTES = 1 << 20


def usable(rack) -> bool:
    """Whether ``rack``'s parts can render in processes: ``fork`` here, two or more cores, two or
    more parts, each a plain engine part (LV2 instruments stay in the rack's process)."""
    if not hasattr(os, "fork") or not hasattr(os, "sched_getaffinity"):
        return False
    try:
        if len(os.sched_getaffinity(0)) < 2:
            return False
    except OSError:
        return False
    parts = rack.part_list
    return len(parts) >= 2 and all(p.kind == "engine" and hasattr(p, "render_alone")
                                   for p in parts)


class PartProcesses:
    """The rack's parts, each in its own process, ``blocks`` blocks of ``rack.block`` frames
    from ``rack.time`` (see the module doc). :meth:`read` gives the next block of every part."""

    def __init__(self, rack, frames: int, beside_from: int = 1):
        self.rack = rack
        self.block = rack.block
        self.blocks = -(-int(frames) // self.block)
        self.parts = list(rack.part_list)
        self.pids: list[int] = []
        self.fds: list[int] = []
        self.bufs = [np.zeros((self.block, 2), np.float32) for _ in self.parts]
        self._head = bytearray(_HEAD.size)
        self.active = 0
        self.read_blocks = 0
        first = rack._first_beside()
        pipes = []
        try:
            for _ in self.parts:
                r, w = os.pipe()
                pipes.append((r, w))
                try:
                    import fcntl
                    fcntl.fcntl(w, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
                except (ImportError, OSError):
                    pass
            for i in range(len(self.parts)):
                pid = os.fork()
                if pid == 0:                                    # the part's process
                    code = 1
                    try:
                        for j, (r, w) in enumerate(pipes):
                            os.close(r)
                            if j != i:
                                os.close(w)
                        code = _child(rack, i, pipes[i][1], self.blocks,
                                      beside_from if self.parts[i] is first else -1)
                    finally:
                        os._exit(code)
                self.pids.append(pid)
        except BaseException:
            for r, w in pipes:
                os.close(w)
                os.close(r)
            self.fds = []
            self.close()
            raise
        for r, w in pipes:
            os.close(w)
            self.fds.append(r)

    def read(self) -> list[np.ndarray]:
        """The next block of every part (buffers of this object, valid until the next call);
        the parts' voices after it in :attr:`active`; their counters into the parent's
        engines and guards."""
        if self.read_blocks >= self.blocks:
            raise RuntimeError("read past the parts' last block")
        active = 0
        for i, p in enumerate(self.parts):
            fd = self.fds[i]
            head = self._head
            _read_into(fd, memoryview(head), p.name)
            n, voices, bad_rows, outside, fault_len, *counts = _HEAD.unpack(head)
            text = b""
            if fault_len:
                text = _read_bytes(fd, fault_len, p.name)
            if n < 0:
                raise RuntimeError(f"the render of {p.name} failed: "
                                   + text.decode("utf-8", "replace"))
            buf = self.bufs[i]
            _read_into(fd, memoryview(buf).cast("B")[:n * 8], p.name)
            active += voices
            e = p.engine
            e._counts[:_N_COUNTS] = counts[:len(e._counts)]
            g = getattr(getattr(e, "inst", None), "guard", None)
            if g is not None:
                g.bad_rows, g.out_of_range = bad_rows, outside
                if text:
                    g.mute(text.decode("utf-8", "replace"))
        self.active = active
        self.read_blocks += 1
        return self.bufs

    def close(self) -> None:
        """Stop and reap the processes (the ones still rendering past the end are killed)."""
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in self.pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self.pids = []


def _read_into(fd: int, mv: memoryview, name: str) -> None:
    got = 0
    n = len(mv)
    while got < n:
        k = os.readv(fd, [mv[got:]])
        if k == 0:
            raise RuntimeError(f"the render process of {name} ended before its last block")
        got += k


def _read_bytes(fd: int, n: int, name: str) -> bytes:
    b = bytearray(n)
    _read_into(fd, memoryview(b), name)
    return bytes(b)


def _write_all(fd: int, data) -> None:
    mv = memoryview(data).cast("B")
    while len(mv):
        k = os.write(fd, mv)
        mv = mv[k:]


def _die_with_parent() -> None:
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)             # PR_SET_PDEATHSIG
    except Exception:
        pass


def _child(rack, i: int, fd: int, blocks: int, beside_from: int) -> int:
    """A part's process: ``blocks`` blocks of the rack's grid into ``fd``, each cut at the
    part's own steals (:meth:`Rack._due_cuts`); from block ``beside_from`` on (-1: never) split
    as beside a file render's task (:meth:`Rack._render_pieces`). Returns the exit code (the
    caller ``os._exit``\\ s: nothing is flushed)."""
    for s in ("SIGINT", "SIGHUP", "SIGTERM"):
        if hasattr(signal, s):
            # the parent stops the render (a Ctrl-C reaches the whole process group)
            signal.signal(getattr(signal, s), signal.SIG_IGN if s != "SIGTERM"
                          else signal.SIG_DFL)
    _die_with_parent()
    part = rack.part_list[i]
    e = part.engine
    block = rack.block
    acc = np.zeros((block, 2), np.float32)
    head = bytearray(_HEAD.size)
    g = getattr(getattr(e, "inst", None), "guard", None)
    try:
        t = int(e.time)
        for k in range(blocks):
            end = t + block
            beside = 0 <= beside_from <= k
            m = rack._due_cuts(t, end, only=part) if rack._cuts and rack._cuts[0][0] < end \
                else 0
            at, who = rack._cut_at, rack._cut_who
            a = t
            for j in range(m):
                b = int(at[j])
                acc[a - t:b - t] = part.render_alone(b - a, beside)
                a = b
            if a == t:
                out = part.render_alone(block, beside)
            else:
                acc[a - t:] = part.render_alone(end - a, beside)
                out = acc
            t = end
            fault = (g.fault or "").encode() if g is not None else b""
            counts = list(e._counts[:_N_COUNTS]) + [0] * (_N_COUNTS - len(e._counts))
            _HEAD.pack_into(head, 0, block, int(e.active_voices),
                            int(getattr(g, "bad_rows", 0)), int(getattr(g, "out_of_range", 0)),
                            len(fault), *counts)
            _write_all(fd, head + fault if fault else head)
            _write_all(fd, np.ascontiguousarray(out, np.float32))
        return 0
    except BrokenPipeError:
        return 0                        # the parent has what it needs (or is gone)
    except BaseException as ex:  # noqa: BLE001 - reported by the parent, in one line
        try:
            text = f"{type(ex).__name__}: {ex}".encode("utf-8", "replace")[:4000]
            _HEAD.pack_into(head, 0, -1, 0, 0, 0, len(text), *([0] * _N_COUNTS))
            _write_all(fd, bytes(head) + text)
        except OSError:
            pass
        return 1
