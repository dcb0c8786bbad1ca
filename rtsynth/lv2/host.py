"""One running LV2 plugin: features, buffers connected once, a MIDI input, the worker.

:class:`Instance` instantiates a plugin through lilv with the features a host offers here
(``urid:map``/``unmap``, ``options`` with the block length and sample rate, bounded block
length, ``worker:schedule``), connects every port once to a preallocated NumPy buffer (audio:
``[block]`` float32 each; controls: one float; atom ports: an ``LV2_Atom_Sequence`` buffer)
and activates it. The block path (:meth:`Instance.run`) allocates nothing: MIDI events are
written with their frame offsets into the preallocated sequence (NumPy views of one byte
buffer), the plugin's ``run`` is called through its descriptor, the outputs are checked (one
dot product per output), and a plugin whose output is not finite or absurdly loud is bypassed
with one warning.

The worker: ``schedule_work`` (called by the plugin inside ``run``) copies the request into a
queue for a worker thread (never the audio thread) that calls the plugin's ``work``; its
responses are handed to ``work_response`` before the next ``run`` (the next ``run`` waits for
pending work, so a render is deterministic and live equals offline), then ``end_run``.
"""

from __future__ import annotations

import ctypes
import math
import sys
import threading
from collections import deque

import numpy as np

from . import _lilv
from .world import (URI_STATE_INTERFACE, URI_WORKER_INTERFACE, LV2Error, PluginInfo,
                    plugin_info, world)

URI_URID_MAP = "http://lv2plug.in/ns/ext/urid#map"
URI_URID_UNMAP = "http://lv2plug.in/ns/ext/urid#unmap"
URI_OPTIONS = "http://lv2plug.in/ns/ext/options#options"
URI_BOUNDED = "http://lv2plug.in/ns/ext/buf-size#boundedBlockLength"
URI_WORKER_SCHEDULE = "http://lv2plug.in/ns/ext/worker#schedule"
URI_LOAD_DEFAULT_STATE = "http://lv2plug.in/ns/ext/state#loadDefaultState"
URI_HARD_RT = "http://lv2plug.in/ns/lv2core#hardRTCapable"
URI_IS_LIVE = "http://lv2plug.in/ns/lv2core#isLive"
URI_IN_PLACE_BROKEN = "http://lv2plug.in/ns/lv2core#inPlaceBroken"
SUPPORTED_FEATURES = {URI_URID_MAP, URI_URID_UNMAP, URI_OPTIONS, URI_BOUNDED,
                      URI_WORKER_SCHEDULE, URI_HARD_RT, URI_IS_LIVE, URI_IN_PLACE_BROKEN,
                      URI_LOAD_DEFAULT_STATE}

ATOM = "http://lv2plug.in/ns/ext/atom#"
MIDI_EVENT = "http://lv2plug.in/ns/ext/midi#MidiEvent"

#: an output whose RMS over a block is above this (+20 dBFS) is absurd: the plugin is bypassed
ABSURD_RMS = 10.0
#: silence a new instance runs before its first block (:meth:`Instance.settle`)
SETTLE_S = 0.25
#: bytes of each atom port's sequence buffer (input: MIDI of one block; output: notifications)
ATOM_CAPACITY = 16384
#: the longest :func:`wait_plugin_threads` waits for a plugin's own threads to finish their work
THREADS_TIMEOUT_S = 60.0

#: the threads the plugins started themselves (Linux thread ids; see :func:`wait_plugin_threads`)
_plugin_tids: set[int] = set()


def _tasks() -> set[int]:
    try:
        import os
        return {int(t) for t in os.listdir("/proc/self/task")}
    except (OSError, ValueError):
        return set()


def _note_new_threads(before: set[int]) -> None:
    """The threads that appeared since ``before`` and are not Python's: the plugin's own."""
    if not before:
        return
    ours = {t.native_id for t in threading.enumerate()}
    _plugin_tids.update(_tasks() - before - ours)


def _thread_busy(tid: int) -> tuple[bool, int] | None:
    """(running or runnable, nanoseconds on a CPU so far) of one thread; None once it is gone."""
    try:
        with open(f"/proc/self/task/{tid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                ran = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            ran = 0
    except (OSError, IndexError):
        return None
    return state not in ("S", "T", "t", "Z", "X", "I"), ran


def wait_plugin_threads(timeout: float = THREADS_TIMEOUT_S) -> bool:
    """Wait until every thread a plugin started itself sleeps with its work done: True when
    they do (or there are none, or this is not Linux), False after ``timeout``.

    Why: a plugin may do part of its set-up on its own thread, not through the LV2 worker.
    synthv1 computes a wave table whose shape, width or band limit differ from its built-in
    saw on its scheduler thread (synthv1_sched), started by the first run() that sees the
    port values; its voices read the table meanwhile. A render reaches its first note a few
    milliseconds after start-up, a live player seconds later, so with e.g. DCO1_BANDL1=1 a
    render's first notes differed from the player's (and from another render's) on a loaded
    machine. Such a thread sleeps on its condition once its queue is done: the work is done
    when each of these threads is asleep (state S) on two looks 2 ms apart without having run
    in between (schedstat). Not on the audio path: settle and preset loading only."""
    import time
    if not _plugin_tids:
        return True
    deadline = time.monotonic() + timeout
    last: dict[int, int] = {}
    _plugin_tids.difference_update(t.native_id for t in threading.enumerate())  # a reused id
    while True:
        idle = True
        for tid in list(_plugin_tids):
            b = _thread_busy(tid)
            if b is None:
                _plugin_tids.discard(tid)
                last.pop(tid, None)
                continue
            busy, ran = b
            if busy or last.get(tid) != ran:
                idle = False
            last[tid] = ran
        if idle:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)


class URIDMap:
    """``urid:map`` / ``urid:unmap`` for every plugin of the process (URIs are interned once;
    the strings ``unmap`` returns stay alive)."""

    def __init__(self):
        self._ids: dict[bytes, int] = {}
        self._strs: list = [None]
        self._lock = threading.Lock()
        self._map_cb = _lilv.URID_MAP_FN(self._map_c)
        self._unmap_cb = _lilv.URID_UNMAP_FN(self._unmap_c)
        self.map_struct = _lilv.LV2_URID_Map(None, self._map_cb)
        self.unmap_struct = _lilv.LV2_URID_Unmap(None, self._unmap_cb)

    def map(self, uri: str | bytes) -> int:
        b = uri.encode() if isinstance(uri, str) else bytes(uri)
        u = self._ids.get(b)
        if u is None:
            with self._lock:
                u = self._ids.get(b)
                if u is None:
                    u = len(self._strs)
                    self._strs.append(ctypes.create_string_buffer(b))
                    self._ids[b] = u
        return u

    def unmap(self, urid: int) -> str | None:
        if 0 < urid < len(self._strs):
            return self._strs[urid].value.decode()
        return None

    def _map_c(self, handle, uri):
        return self.map(uri) if uri else 0

    def _unmap_c(self, handle, urid):
        if 0 < urid < len(self._strs):
            return ctypes.addressof(self._strs[urid])
        return None


_urids: URIDMap | None = None


def urid_map() -> URIDMap:
    global _urids
    if _urids is None:
        _urids = URIDMap()
    return _urids


class _Worker:
    """The LV2 worker for one instance: requests from ``run`` to a thread, responses back."""

    def __init__(self, inst: "Instance", iface_ptr: int):
        self.inst = inst
        iface = _lilv.LV2_Worker_Interface.from_address(iface_ptr)
        self._work = _lilv.WORKER_WORK_FN(iface.work) if iface.work else None
        self._response = _lilv.WORKER_RESPONSE_FN(iface.work_response) \
            if iface.work_response else None
        self._end_run = _lilv.WORKER_END_RUN_FN(iface.end_run) if iface.end_run else None
        self._respond_cb = _lilv.WORKER_RESPOND_FN(self._respond)
        self.requests: deque = deque()
        self.responses: deque = deque()
        self.pending = 0                  # requests not yet worked (read by run: no lock)
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stop = False
        self.count = 0
        self._thread = threading.Thread(target=self._loop, name="rtsynth-lv2-worker",
                                        daemon=True)
        self._thread.start()

    def schedule(self, handle, size, data) -> int:
        # Called by the plugin inside run(): copy the request, wake the worker, return.
        self.requests.append(ctypes.string_at(data, size))
        self.pending += 1
        self._idle.clear()
        self._wake.set()
        return 0

    def _respond(self, handle, size, data) -> int:
        self.responses.append(ctypes.string_at(data, size))
        return 0

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop:
                return
            while self.requests:
                req = self.requests.popleft()
                buf = ctypes.create_string_buffer(req, len(req))
                if self._work is not None:
                    self._work(self.inst._handle, self._respond_cb, None, len(req), buf)
                self.count += 1
                self.pending -= 1
            if not self.requests:
                self._idle.set()

    def before_run(self) -> None:
        """Wait for the work scheduled so far, then deliver its responses (in order)."""
        if self.pending:
            self._idle.wait(2.0)
        while self.responses:
            r = self.responses.popleft()
            buf = ctypes.create_string_buffer(r, len(r))
            if self._response is not None:
                self._response(self.inst._handle, len(r), buf)

    def after_run(self) -> None:
        if self._end_run is not None:
            self._end_run(self.inst._handle)

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join(2.0)


class Instance:
    """A plugin instantiated at ``sample_rate`` for blocks of at most ``block`` frames.

    ``controls``: ``{symbol: value}``, checked against the ports' ranges (:class:`LV2Error`
    names the valid symbols). After construction the buffers are fixed: ``audio_in[i]`` /
    ``audio_out[i]`` are ``[block]`` float32 arrays the caller fills and reads.
    """

    def __init__(self, uri_or_info: str | PluginInfo, sample_rate: int, block: int,
                 controls: dict[str, float] | None = None, warn=None):
        info = uri_or_info if isinstance(uri_or_info, PluginInfo) else plugin_info(uri_or_info)
        self.info = info
        self.sr = int(sample_rate)
        self.block = int(block)
        self.warn = warn or (lambda msg: print(f"rtsynth: warning: {msg}", file=sys.stderr,
                                               flush=True))
        L = _lilv.lib()
        self._L = L
        _headless_qt()
        missing = [f for f in info.required_features if f not in SUPPORTED_FEATURES]
        if missing:
            raise LV2Error(f"{info.uri} needs LV2 features this host does not offer: "
                           + ", ".join(missing))
        for sym, val in (controls or {}).items():
            check_control(info, sym, val, self.sr)
        self._keep: list = []                # every ctypes object the plugin may point at
        um = urid_map()
        self.urids = um
        self._u_sequence = um.map(ATOM + "Sequence")
        self._u_chunk = um.map(ATOM + "Chunk")
        self._u_midi = um.map(MIDI_EVENT)
        feats = self._features(um)
        self._feature_array = feats
        threads_before = _tasks()
        self._ptr = L.lilv_plugin_instantiate(info.handle, float(self.sr), feats)
        _note_new_threads(threads_before)
        if not self._ptr:
            raise LV2Error(f"{info.uri} failed to instantiate at {self.sr} Hz")
        st = _lilv.LilvInstanceStruct.from_address(self._ptr)
        desc = st.lv2_descriptor.contents
        self._handle = ctypes.c_void_p(st.lv2_handle)
        self._connect = _lilv.CONNECT_FN(desc.connect_port)
        self._run = _lilv.RUN_FN(desc.run)
        self._activate = _lilv.HANDLE_FN(desc.activate) if desc.activate else None
        self._deactivate = _lilv.HANDLE_FN(desc.deactivate) if desc.deactivate else None
        self._ext = _lilv.EXTENSION_DATA_FN(desc.extension_data) if desc.extension_data \
            else None
        self._worker = None
        if self._ext is not None:
            wi = self._ext(URI_WORKER_INTERFACE.encode())
            if wi:
                self._worker = _Worker(self, wi)
                self._schedule_target[0] = self._worker
        self._state = None
        if self._ext is not None:
            si = self._ext(URI_STATE_INTERFACE.encode())
            if si:
                self._state = _lilv.LV2_State_Interface.from_address(si)
        self._connect_all()
        if controls:
            for sym, val in controls.items():
                self.set(sym, val)
        self._active = False
        self.bypassed = False
        self.runs = 0
        self.activate()

    # ------------------------------------------------------------- features
    def _features(self, um: URIDMap):
        self._schedule_target = [None]

        def schedule(handle, size, data):
            w = self._schedule_target[0]
            return w.schedule(handle, size, data) if w is not None else 1

        sched_cb = _lilv.WORKER_SCHEDULE_FN(schedule)
        sched = _lilv.LV2_Worker_Schedule(None, sched_cb)
        self._rate_f = ctypes.c_float(self.sr)
        self._len_min = ctypes.c_int32(1)
        self._len_max = ctypes.c_int32(self.block)
        self._len_nom = ctypes.c_int32(self.block)
        self._seq_size = ctypes.c_int32(ATOM_CAPACITY)
        u_int = um.map(ATOM + "Int")
        u_float = um.map(ATOM + "Float")
        opts = (_lilv.LV2_Options_Option * 6)()
        entries = [
            ("http://lv2plug.in/ns/ext/parameters#sampleRate", u_float, self._rate_f),
            ("http://lv2plug.in/ns/ext/buf-size#minBlockLength", u_int, self._len_min),
            ("http://lv2plug.in/ns/ext/buf-size#maxBlockLength", u_int, self._len_max),
            ("http://lv2plug.in/ns/ext/buf-size#nominalBlockLength", u_int, self._len_nom),
            ("http://lv2plug.in/ns/ext/buf-size#sequenceSize", u_int, self._seq_size),
        ]
        for i, (key, typ, val) in enumerate(entries):
            opts[i].context = 0          # LV2_OPTIONS_INSTANCE
            opts[i].subject = 0
            opts[i].key = um.map(key)
            opts[i].size = ctypes.sizeof(val)
            opts[i].type = typ
            opts[i].value = ctypes.cast(ctypes.pointer(val), ctypes.c_void_p)
        # opts[5] stays zeroed: the terminator
        specs = [(URI_URID_MAP, ctypes.addressof(um.map_struct)),
                 (URI_URID_UNMAP, ctypes.addressof(um.unmap_struct)),
                 (URI_OPTIONS, ctypes.addressof(opts)),
                 (URI_BOUNDED, None),
                 (URI_WORKER_SCHEDULE, ctypes.addressof(sched))]
        feats = [_lilv.LV2_Feature(k.encode(), v) for k, v in specs]
        arr = (ctypes.c_void_p * (len(feats) + 1))()
        for i, f in enumerate(feats):
            arr[i] = ctypes.addressof(f)
        arr[len(feats)] = None
        self._keep += [sched_cb, sched, opts, feats, arr, self._rate_f, self._len_min,
                       self._len_max, self._len_nom, self._seq_size]
        return arr

    # ------------------------------------------------------------- buffers
    def _connect_all(self) -> None:
        info = self.info
        n = self.block
        self.audio_in: list[np.ndarray] = []
        self.audio_out: list[np.ndarray] = []
        self._ctl = np.zeros(max(1, len(info.ports)), np.float32)   # one float per port
        self._ctl_index: dict[str, int] = {}
        self._atom_out: list[np.ndarray] = []
        self._midi = None
        self._check: list[np.ndarray] = []
        for p in info.ports:
            if p.kind in ("audio", "cv"):
                buf = np.zeros(n, np.float32)
                if p.kind == "audio":
                    (self.audio_out if p.output else self.audio_in).append(buf)
                ptr = buf.ctypes.data
                self._keep.append(buf)
            elif p.kind == "control":
                self._ctl[p.index] = p.default_at(self.sr)
                self._ctl_index[p.symbol] = p.index
                ptr = self._ctl.ctypes.data + 4 * p.index
            elif p.kind == "atom":
                buf = np.zeros(ATOM_CAPACITY // 8, np.uint64)   # 8-byte aligned
                u32 = buf.view(np.uint32)
                if p.output:
                    self._atom_out.append(u32)
                else:
                    u32[0] = 8                      # an empty sequence: the body header only
                    u32[1] = self._u_sequence
                    if p.midi and self._midi is None:
                        self._midi = buf
                self._keep.append(buf)
                ptr = buf.ctypes.data
            else:
                if not p.optional:
                    raise LV2Error(f"{info.uri}: port {p.symbol!r} is of a type this host "
                                   f"does not support")
                ptr = None
            self._connect(self._handle, p.index, ptr)
        self._check = list(self.audio_out)
        # the MIDI sequence: views of one buffer, the write position in a preallocated cell
        if self._midi is not None:
            self._m_u8 = self._midi.view(np.uint8)
            self._m_u32 = self._midi.view(np.uint32)
            self._m_i64 = self._midi.view(np.int64)
        self._m_pos = 16
        self._m_cap = ATOM_CAPACITY - 24
        self.midi_dropped = 0
        self.latency_index = info.latency_port

    # ------------------------------------------------------------- controls
    def set(self, symbol: str, value: float) -> None:
        """Set a control input (checked against its range)."""
        check_control(self.info, symbol, value, self.sr)
        self._ctl[self._ctl_index[symbol]] = float(value)

    def get(self, symbol: str) -> float:
        for p in self.info.ports:
            if p.symbol == symbol and p.kind == "control":
                return float(self._ctl[p.index])
        raise LV2Error(f"{self.info.uri} has no control port {symbol!r}")

    @property
    def latency(self) -> int:
        """The plugin's reported latency in frames (its latency output port), 0 if none."""
        if self.latency_index is None:
            return 0
        v = float(self._ctl[self.latency_index])
        return int(round(v)) if math.isfinite(v) and v > 0 else 0

    # ------------------------------------------------------------- MIDI
    @property
    def has_midi(self) -> bool:
        return self._midi is not None

    def midi(self, offset: int, status: int, d1: int = 0, d2: int = 0, size: int = 3) -> None:
        """Append a MIDI event (``size`` bytes) at frame ``offset`` of the next run; events
        must come in time order. Writes into the preallocated sequence; no allocation."""
        pos = self._m_pos
        if pos > self._m_cap:
            self.midi_dropped += 1
            return
        self._m_i64[pos >> 3] = offset
        w = (pos >> 2) + 2
        self._m_u32[w] = size
        self._m_u32[w + 1] = self._u_midi
        b = pos + 16
        u8 = self._m_u8
        u8[b] = status
        u8[b + 1] = d1
        u8[b + 2] = d2
        self._m_pos = pos + 24              # 16 header bytes + 3 data bytes padded to 8
        self._m_u32[0] = self._m_pos - 8

    # ------------------------------------------------------------- running
    def activate(self) -> None:
        if not self._active:
            if self._activate is not None:
                self._activate(self._handle)
            self._active = True

    def deactivate(self) -> None:
        if self._active:
            if self._deactivate is not None:
                self._deactivate(self._handle)
            self._active = False

    def run(self, n: int) -> bool:
        """Run ``n`` frames (inputs in :attr:`audio_in`, MIDI queued by :meth:`midi`); returns
        False once the plugin is bypassed (its outputs are then silent)."""
        if self.bypassed:
            return False
        w = self._worker
        if w is not None:
            w.before_run()
        for a in self._atom_out:
            a[0] = ATOM_CAPACITY - 8
            a[1] = self._u_chunk
        self._run(self._handle, n)
        if w is not None:
            w.after_run()
        if self._midi is not None:
            self._m_pos = 16
            self._m_u32[0] = 8
        self.runs += 1
        for buf in self._check:
            s = np.dot(buf[:n], buf[:n])
            if not (s <= n * ABSURD_RMS * ABSURD_RMS):   # NaN fails this too
                self._bypass("not finite" if not math.isfinite(s) else
                             f"RMS {math.sqrt(s / max(n, 1)):.3g} (above +20 dBFS)")
                return False
        return True

    # ------------------------------------------------------------- state
    @property
    def has_state(self) -> bool:
        return self._state is not None and bool(self._state.save)

    def save_state(self) -> list[tuple[str, bytes, str, int]]:
        """The plugin's own state (``state:interface``: what its control ports do not hold,
        e.g. a loaded sample or tuning) as ``[(key URI, value, type URI, flags)]``; [] for a
        plugin without it. Not real-time."""
        if not self.has_state:
            return []
        out = []
        um = self.urids

        def store(handle, key, value, size, typ, flags):
            out.append((um.unmap(key) or "", ctypes.string_at(value, size),
                        um.unmap(typ) or "", int(flags)))
            return 0

        cb = _lilv.STATE_STORE_FN(store)
        no_features = (ctypes.c_void_p * 1)()
        _lilv.STATE_SAVE_FN(self._state.save)(self._handle, cb, None, 1 | 2, no_features)
        return out

    def restore_state(self, items) -> None:
        """Give a state from :meth:`save_state` (of an instance of the same plugin) back to the
        plugin. Not real-time (the host calls it before the first block)."""
        if not self.has_state or not items:
            return
        um = self.urids
        table = {}
        for key, value, typ, flags in items:
            table[um.map(key)] = (ctypes.create_string_buffer(value, len(value)), len(value),
                                  um.map(typ), flags)

        def retrieve(handle, key, size, typ, flags):
            hit = table.get(key)
            if hit is None:
                return None
            buf, n, t, f = hit
            if size:
                size[0] = n
            if typ:
                typ[0] = t
            if flags:
                flags[0] = f
            return ctypes.addressof(buf)

        cb = _lilv.STATE_RETRIEVE_FN(retrieve)
        no_features = (ctypes.c_void_p * 1)()
        _lilv.STATE_RESTORE_FN(self._state.restore)(self._handle, cb, None, 1 | 2, no_features)

    def load_preset(self, preset: str) -> str:
        """Restore an LV2 preset (its URI or label, see ``rtsynth plugins``): its port values
        and its ``state:state`` (e.g. the impulse response file of x42's preset convolver;
        lilv maps its paths). Returns the preset's URI. Not real-time: before the first block."""
        w = world()
        L = self._L
        found = w.presets(self.info.uri)
        hit = [u for u, lab in found if preset in (u, lab)]
        if not hit:
            names = ", ".join(repr(lab or u) for u, lab in found) or "none"
            raise LV2Error(f"{self.info.uri} has no preset {preset!r} (its presets: {names})")
        uri = hit[0]
        node = w.node(uri)
        st = L.lilv_state_new_from_world(w.ptr, ctypes.addressof(self.urids.map_struct), node)
        if not st:
            raise LV2Error(f"{self.info.uri}: preset {uri} could not be read")
        idx = {p.symbol: p.index for p in self.info.ports if p.kind == "control" and not p.output}
        u_float = self.urids.map(ATOM + "Float")
        u_double = self.urids.map(ATOM + "Double")
        u_int = self.urids.map(ATOM + "Int")

        def set_value(symbol, user, value, size, typ):
            i = idx.get(symbol.decode() if symbol else "")
            if i is None or not value:
                return
            if typ == u_float and size == 4:
                v = ctypes.c_float.from_address(value).value
            elif typ == u_double and size == 8:
                v = ctypes.c_double.from_address(value).value
            elif typ == u_int and size == 4:
                v = ctypes.c_int32.from_address(value).value
            else:
                return
            self._ctl[i] = v

        cb = _lilv.SET_PORT_VALUE_FN(set_value)
        try:
            L.lilv_state_restore(st, self._ptr, cb, None, 0, self._feature_array)
        finally:
            L.lilv_state_free(st)
        if self._worker is not None:
            self._worker.before_run()   # the work the restore scheduled, answered now
        return uri

    def settle(self, seconds: float = SETTLE_S) -> "Instance":
        """Run silent blocks for ``seconds``: many plugins ramp their parameters from zero
        after instantiation (synthv1's first 30 ms differ otherwise), so a render that starts
        at once and a live stream that idled first would not give the same samples. After the
        first block (the first run sees the control values) and at the end, wait for the work
        the plugin gave its own threads (:func:`wait_plugin_threads`: synthv1's wave tables);
        its LV2 worker's is waited for by each run."""
        for a in self.audio_in:
            a[:] = 0.0
        left = int(seconds * self.sr)
        first = True
        while left > 0:
            k = min(left, self.block)
            threads_before = _tasks() if first else None
            self.run(k)
            if first:
                _note_new_threads(threads_before)
                self._wait_threads()
                first = False
            left -= k
        self._wait_threads()
        self.runs = 0
        return self

    def _wait_threads(self) -> None:
        if not wait_plugin_threads():
            self.warn(f"LV2 plugin {self.info.uri}: its own threads still busy after "
                      f"{THREADS_TIMEOUT_S:g} s: live and offline may differ")

    def _bypass(self, why: str) -> None:
        self.bypassed = True
        for buf in self.audio_out:
            buf[:] = 0.0
        self.warn(f"LV2 plugin {self.info.uri} output {why}: bypassed")

    def close(self) -> None:
        if getattr(self, "_ptr", None):
            self.deactivate()
            if self._worker is not None:
                self._worker.close()
            self._L.lilv_instance_free(self._ptr)
            self._ptr = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def make_instance(info, sample_rate: int, block: int, params: dict | None = None,
                  settle: bool = True) -> "Instance":
    """An instance from command-line style ``params``: control symbols, and ``preset`` (an LV2
    preset's URI or label, restored first; the controls given beside it override its values);
    settled (:meth:`Instance.settle`)."""
    params = dict(params or {})
    preset = params.pop("preset", None)
    inst = Instance(info, sample_rate, block, params)
    if preset is not None:
        inst.load_preset(str(preset))
        for k, v in params.items():
            inst.set(k, v)
    return inst.settle() if settle else inst


def check_params(info, params: dict, sample_rate: float) -> dict:
    """``params`` checked (:func:`check_control`; ``preset`` must name one of the plugin's
    presets); returns them with the control values as floats."""
    out = {}
    for k, v in params.items():
        if k == "preset":
            found = world().presets(info.uri)
            if not any(str(v) in (u, lab) for u, lab in found):
                names = ", ".join(repr(lab or u) for u, lab in found) or "none"
                raise LV2Error(f"{info.uri} has no preset {str(v)!r} (its presets: {names})")
            out[k] = str(v)
        else:
            out[k] = check_control(info, k, v, sample_rate)
    return out


def _headless_qt() -> None:
    """Some plugins (synthv1) start a Qt application when instantiated, even without their UI:
    with no display, Qt aborts the process unless its platform is 'offscreen'."""
    import os
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        os.environ.setdefault("QT_LOGGING_RULES", "*=false")   # its warnings are not ours


def check_control(info: PluginInfo, symbol: str, value, sample_rate: float) -> float:
    """``value`` as a float if ``symbol`` is a control input of the plugin and the value lies
    in its range; :class:`LV2Error` (naming the valid symbols, or the range) otherwise."""
    p = info.control(symbol)
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise LV2Error(f"{info.uri}: {symbol}={value!r} is not a number") from None
    if not math.isfinite(v):
        raise LV2Error(f"{info.uri}: {symbol}={value!r} is not a finite number")
    lo, hi = p.range_at(sample_rate)
    tol = 1e-6 * max(1.0, abs(lo) if math.isfinite(lo) else 1.0,
                     abs(hi) if math.isfinite(hi) else 1.0)
    if (math.isfinite(lo) and v < lo - tol) or (math.isfinite(hi) and v > hi + tol):
        raise LV2Error(f"{info.uri}: {symbol}={v:g} is out of range [{lo:g}, {hi:g}]")
    return v


def has_state_interface(info: PluginInfo) -> bool:
    return URI_STATE_INTERFACE in info.extension_data


__all__ = ["Instance", "URIDMap", "urid_map", "check_control", "LV2Error", "world"]
