"""The installed LV2 plugins, as lilv finds and describes them.

:func:`world` loads every bundle on ``LV2_PATH`` (lilv's default path when unset) once per
process. :func:`plugin_info` describes one plugin by URI: its name, whether it is an instrument,
and its ports (symbols, ranges and defaults of the controls) -- all read through lilv, which
parses the Turtle files.
"""

from __future__ import annotations

import ctypes
import math
import threading
from dataclasses import dataclass, field

from . import _lilv

NS_LV2 = "http://lv2plug.in/ns/lv2core#"
NS_ATOM = "http://lv2plug.in/ns/ext/atom#"
URI_MIDI_EVENT = "http://lv2plug.in/ns/ext/midi#MidiEvent"
URI_INSTRUMENT = NS_LV2 + "InstrumentPlugin"
RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
URI_WORKER_INTERFACE = "http://lv2plug.in/ns/ext/worker#interface"
URI_STATE_INTERFACE = "http://lv2plug.in/ns/ext/state#interface"


class LV2Error(ValueError):
    """A plugin that cannot be found, set or run as asked (one clear line for the user)."""


@dataclass
class PortInfo:
    index: int
    symbol: str
    name: str
    kind: str            # 'audio', 'control', 'atom', 'cv' or 'other'
    output: bool
    minimum: float = float("nan")
    maximum: float = float("nan")
    default: float = float("nan")
    integer: bool = False
    toggled: bool = False
    sample_rate: bool = False    # the range is a fraction of the sample rate
    midi: bool = False           # an atom port that carries MIDI events
    optional: bool = False       # lv2:connectionOptional

    def range_at(self, sample_rate: float) -> tuple[float, float]:
        """(min, max) at ``sample_rate`` (NaN where the plugin gives none)."""
        k = float(sample_rate) if self.sample_rate else 1.0
        return self.minimum * k, self.maximum * k

    def default_at(self, sample_rate: float) -> float:
        """The value a control starts at: the default, else the minimum, else 0."""
        k = float(sample_rate) if self.sample_rate else 1.0
        for v in (self.default, self.minimum):
            if math.isfinite(v):
                return v * k
        return 0.0


@dataclass
class PluginInfo:
    uri: str
    name: str
    class_label: str
    instrument: bool
    ports: list[PortInfo]
    required_features: list[str]
    extension_data: list[str]
    latency_port: int | None
    handle: int = field(repr=False, default=0)     # the LilvPlugin*

    def of(self, kind: str, output: bool) -> list[PortInfo]:
        return [p for p in self.ports if p.kind == kind and p.output == output]

    @property
    def audio_in(self) -> list[PortInfo]:
        return self.of("audio", False)

    @property
    def audio_out(self) -> list[PortInfo]:
        return self.of("audio", True)

    @property
    def controls(self) -> list[PortInfo]:
        """The control inputs (what ``symbol=value`` sets)."""
        return self.of("control", False)

    @property
    def midi_in(self) -> list[PortInfo]:
        return [p for p in self.ports if p.kind == "atom" and not p.output and p.midi]

    def control(self, symbol: str) -> PortInfo:
        for p in self.controls:
            if p.symbol == symbol:
                return p
        valid = ", ".join(p.symbol for p in self.controls) or "none"
        raise LV2Error(f"{self.uri} has no control {symbol!r} (its controls: {valid})")


class _World:
    def __init__(self):
        L = _lilv.lib()
        self.L = L
        self.ptr = L.lilv_world_new()
        L.lilv_world_load_all(self.ptr)
        self.plugins = L.lilv_world_get_all_plugins(self.ptr)
        self._nodes: dict[str, int] = {}
        self._info: dict[str, PluginInfo] = {}
        self.lock = threading.Lock()

    def node(self, uri: str) -> int:
        """A LilvNode for ``uri``, kept for the process."""
        n = self._nodes.get(uri)
        if n is None:
            n = self.L.lilv_new_uri(self.ptr, uri.encode())
            self._nodes[uri] = n
        return n

    def uris(self) -> list[str]:
        L = self.L
        out = []
        it = L.lilv_plugins_begin(self.plugins)
        while not L.lilv_plugins_is_end(self.plugins, it):
            p = L.lilv_plugins_get(self.plugins, it)
            out.append(_str(L.lilv_node_as_uri(L.lilv_plugin_get_uri(p))))
            it = L.lilv_plugins_next(self.plugins, it)
        return sorted(out)

    def find(self, uri: str) -> int:
        """The LilvPlugin* of ``uri``, or 0."""
        n = self.L.lilv_new_uri(self.ptr, uri.encode())
        try:
            return self.L.lilv_plugins_get_by_uri(self.plugins, n) or 0
        finally:
            self.L.lilv_node_free(n)

    def presets(self, uri: str) -> list[tuple[str, str]]:
        """``[(preset URI, label)]`` of a plugin (LV2 presets: ``pset:Preset``)."""
        L = self.L
        p = self.find(uri)
        if not p:
            return []
        nodes = L.lilv_plugin_get_related(p, self.node("http://lv2plug.in/ns/ext/presets#Preset"))
        out = []
        if nodes:
            it = L.lilv_nodes_begin(nodes)
            while not L.lilv_nodes_is_end(nodes, it):
                n = L.lilv_nodes_get(nodes, it)
                L.lilv_world_load_resource(self.ptr, n)
                lab = L.lilv_world_get(self.ptr, n, self.node(
                    "http://www.w3.org/2000/01/rdf-schema#label"), None)
                out.append((_str(L.lilv_node_as_uri(n)),
                            _str(L.lilv_node_as_string(lab)) if lab else ""))
                if lab:
                    L.lilv_node_free(lab)
                it = L.lilv_nodes_next(nodes, it)
            L.lilv_nodes_free(nodes)
        return sorted(out)

    def describe(self, uri: str) -> PluginInfo:
        with self.lock:
            info = self._info.get(uri)
            if info is None:
                p = self.find(uri)
                if not p:
                    raise LV2Error(f"no LV2 plugin {uri!r} is installed (`rtsynth plugins` "
                                   f"lists them)")
                info = self._describe(p)
                self._info[uri] = info
            return info

    def _describe(self, p: int) -> PluginInfo:
        L = self.L
        uri = _str(L.lilv_node_as_uri(L.lilv_plugin_get_uri(p)))
        name_node = L.lilv_plugin_get_name(p)
        name = _str(L.lilv_node_as_string(name_node)) if name_node else uri
        if name_node:
            L.lilv_node_free(name_node)
        cls = L.lilv_plugin_get_class(p)
        label = _str(L.lilv_node_as_string(L.lilv_plugin_class_get_label(cls))) if cls else ""
        cls_uri = _str(L.lilv_node_as_uri(L.lilv_plugin_class_get_uri(cls))) if cls else ""
        n = L.lilv_plugin_get_num_ports(p)
        mins = (ctypes.c_float * n)()
        maxs = (ctypes.c_float * n)()
        defs = (ctypes.c_float * n)()
        L.lilv_plugin_get_port_ranges_float(p, mins, maxs, defs)
        nd = self.node
        ports = []
        for i in range(n):
            port = L.lilv_plugin_get_port_by_index(p, i)
            sym = _str(L.lilv_node_as_string(L.lilv_port_get_symbol(p, port)))
            nn = L.lilv_port_get_name(p, port)
            pname = _str(L.lilv_node_as_string(nn)) if nn else sym
            if nn:
                L.lilv_node_free(nn)

            def is_a(cls_name: str, ns: str = NS_LV2) -> bool:
                return bool(L.lilv_port_is_a(p, port, nd(ns + cls_name)))

            def has(prop: str) -> bool:
                return bool(L.lilv_port_has_property(p, port, nd(NS_LV2 + prop)))

            if is_a("AudioPort"):
                kind = "audio"
            elif is_a("ControlPort"):
                kind = "control"
            elif is_a("AtomPort", NS_ATOM):
                kind = "atom"
            elif is_a("CVPort"):
                kind = "cv"
            else:
                kind = "other"
            ports.append(PortInfo(
                index=i, symbol=sym, name=pname, kind=kind, output=is_a("OutputPort"),
                minimum=float(mins[i]), maximum=float(maxs[i]), default=float(defs[i]),
                integer=has("integer"), toggled=has("toggled"), sample_rate=has("sampleRate"),
                midi=kind == "atom" and bool(L.lilv_port_supports_event(p, port,
                                                                      nd(URI_MIDI_EVENT))),
                optional=has("connectionOptional")))
        feats = _nodes_list(L, L.lilv_plugin_get_required_features(p))
        ext = _nodes_list(L, L.lilv_plugin_get_extension_data(p))
        latency = int(L.lilv_plugin_get_latency_port_index(p)) if L.lilv_plugin_has_latency(p) \
            else None
        midi_in = any(q.midi and not q.output for q in ports)
        audio_in = any(q.kind == "audio" and not q.output for q in ports)
        audio_out = any(q.kind == "audio" and q.output for q in ports)
        types = _nodes_list(L, L.lilv_plugin_get_value(p, nd(RDF_TYPE)))
        instrument = cls_uri == URI_INSTRUMENT or URI_INSTRUMENT in types or (midi_in and audio_out and not audio_in)
        if instrument and label in ("", "Plugin"):
            label = "Instrument"
        return PluginInfo(uri=uri, name=name, class_label=label, instrument=instrument,
                          ports=ports, required_features=feats, extension_data=ext,
                          latency_port=latency, handle=p)


def _str(b) -> str:
    if b is None:
        return ""
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b)


def _nodes_list(L, nodes) -> list[str]:
    if not nodes:
        return []
    out = []
    it = L.lilv_nodes_begin(nodes)
    while not L.lilv_nodes_is_end(nodes, it):
        out.append(_str(L.lilv_node_as_string(L.lilv_nodes_get(nodes, it))))
        it = L.lilv_nodes_next(nodes, it)
    L.lilv_nodes_free(nodes)
    return out


_world: _World | None = None
_world_lock = threading.Lock()


def world() -> _World:
    """The process's lilv world (loaded on first use); raises :class:`_lilv.LilvMissing`."""
    global _world
    with _world_lock:
        if _world is None:
            _world = _World()
        return _world


def plugin_uris() -> list[str]:
    return world().uris()


def plugin_info(uri: str) -> PluginInfo:
    return world().describe(uri)
