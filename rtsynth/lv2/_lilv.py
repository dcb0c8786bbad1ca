"""ctypes declarations of the part of liblilv's C API the host uses (Debian ``liblilv-0-0``).

lilv finds the installed plugins, reads their Turtle descriptions and instantiates them; this
module only declares its functions (every ``restype``/``argtypes``: a pointer left undeclared
would be truncated to an ``int``) and the LV2 structs the host hands to plugins. The functions
``lilv.h`` defines inline (``lilv_instance_run`` ...) are not exported: :mod:`.host` calls the
plugin's ``LV2_Descriptor`` function pointers itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from ctypes import (CFUNCTYPE, POINTER, Structure, c_bool, c_char_p, c_double, c_float, c_int,
                    c_int64, c_uint32, c_void_p)


class LilvMissing(Exception):
    """liblilv is not installed (Debian: ``apt-get install liblilv-0-0``)."""


# ------------------------------------------------------------------ LV2 structs
class LV2_Feature(Structure):
    _fields_ = [("URI", c_char_p), ("data", c_void_p)]


URID_MAP_FN = CFUNCTYPE(c_uint32, c_void_p, c_char_p)
URID_UNMAP_FN = CFUNCTYPE(c_void_p, c_void_p, c_uint32)   # returns const char* (kept alive here)


class LV2_URID_Map(Structure):
    _fields_ = [("handle", c_void_p), ("map", URID_MAP_FN)]


class LV2_URID_Unmap(Structure):
    _fields_ = [("handle", c_void_p), ("unmap", URID_UNMAP_FN)]


class LV2_Options_Option(Structure):
    _fields_ = [("context", c_uint32), ("subject", c_uint32), ("key", c_uint32),
                ("size", c_uint32), ("type", c_uint32), ("value", c_void_p)]


#: LV2_Worker_Status (*)(LV2_Worker_Schedule_Handle, uint32_t size, const void* data)
WORKER_SCHEDULE_FN = CFUNCTYPE(c_int, c_void_p, c_uint32, c_void_p)
#: the respond function the host gives ``work()``: same shape
WORKER_RESPOND_FN = CFUNCTYPE(c_int, c_void_p, c_uint32, c_void_p)
#: work(instance, respond, respond_handle, size, data)
WORKER_WORK_FN = CFUNCTYPE(c_int, c_void_p, WORKER_RESPOND_FN, c_void_p, c_uint32, c_void_p)
WORKER_RESPONSE_FN = CFUNCTYPE(c_int, c_void_p, c_uint32, c_void_p)
WORKER_END_RUN_FN = CFUNCTYPE(c_int, c_void_p)


class LV2_Worker_Schedule(Structure):
    _fields_ = [("handle", c_void_p), ("schedule_work", WORKER_SCHEDULE_FN)]


class LV2_Worker_Interface(Structure):
    _fields_ = [("work", c_void_p), ("work_response", c_void_p), ("end_run", c_void_p)]


#: LV2_State_Status restore(instance, retrieve, callback_data, flags, features)
STATE_RETRIEVE_FN = CFUNCTYPE(c_void_p, c_void_p, c_uint32, POINTER(ctypes.c_size_t),
                              POINTER(c_uint32), POINTER(c_uint32))


#: void set_value(const char* port_symbol, void* user_data, const void* value, uint32_t size,
#: uint32_t type): lilv_state_restore's way to set a preset's port values
SET_PORT_VALUE_FN = CFUNCTYPE(None, c_char_p, c_void_p, c_void_p, c_uint32, c_uint32)
#: LV2_State_Status store(handle, key, value, size, type, flags)
STATE_STORE_FN = CFUNCTYPE(c_int, c_void_p, c_uint32, c_void_p, ctypes.c_size_t, c_uint32,
                           c_uint32)
#: LV2_State_Status save/restore(instance, store|retrieve, handle, flags, features)
STATE_SAVE_FN = CFUNCTYPE(c_int, c_void_p, STATE_STORE_FN, c_void_p, c_uint32, c_void_p)
STATE_RESTORE_FN = CFUNCTYPE(c_int, c_void_p, STATE_RETRIEVE_FN, c_void_p, c_uint32, c_void_p)


class LV2_State_Interface(Structure):
    _fields_ = [("save", c_void_p), ("restore", c_void_p)]


CONNECT_FN = CFUNCTYPE(None, c_void_p, c_uint32, c_void_p)
HANDLE_FN = CFUNCTYPE(None, c_void_p)
RUN_FN = CFUNCTYPE(None, c_void_p, c_uint32)
EXTENSION_DATA_FN = CFUNCTYPE(c_void_p, c_char_p)


class LV2_Descriptor(Structure):
    _fields_ = [("URI", c_char_p), ("instantiate", c_void_p), ("connect_port", c_void_p),
                ("activate", c_void_p), ("run", c_void_p), ("deactivate", c_void_p),
                ("cleanup", c_void_p), ("extension_data", c_void_p)]


class LilvInstanceStruct(Structure):
    _fields_ = [("lv2_descriptor", POINTER(LV2_Descriptor)), ("lv2_handle", c_void_p),
                ("pimpl", c_void_p)]


# ------------------------------------------------------------------ the library
_P = c_void_p
_DECLS = {
    "lilv_world_new": (_P, []),
    "lilv_world_free": (None, [_P]),
    "lilv_world_load_all": (None, [_P]),
    "lilv_world_load_resource": (c_int, [_P, _P]),
    "lilv_world_get_all_plugins": (_P, [_P]),
    "lilv_new_uri": (_P, [_P, c_char_p]),
    "lilv_node_free": (None, [_P]),
    "lilv_node_as_string": (c_char_p, [_P]),
    "lilv_node_as_uri": (c_char_p, [_P]),
    "lilv_node_as_float": (c_float, [_P]),
    "lilv_node_is_float": (c_bool, [_P]),
    "lilv_node_is_int": (c_bool, [_P]),
    "lilv_node_is_uri": (c_bool, [_P]),
    "lilv_plugins_size": (ctypes.c_uint, [_P]),
    "lilv_plugins_begin": (_P, [_P]),
    "lilv_plugins_get": (_P, [_P, _P]),
    "lilv_plugins_next": (_P, [_P, _P]),
    "lilv_plugins_is_end": (c_bool, [_P, _P]),
    "lilv_plugins_get_by_uri": (_P, [_P, _P]),
    "lilv_nodes_size": (ctypes.c_uint, [_P]),
    "lilv_nodes_begin": (_P, [_P]),
    "lilv_nodes_get": (_P, [_P, _P]),
    "lilv_nodes_next": (_P, [_P, _P]),
    "lilv_nodes_is_end": (c_bool, [_P, _P]),
    "lilv_nodes_free": (None, [_P]),
    "lilv_plugin_get_uri": (_P, [_P]),
    "lilv_plugin_get_name": (_P, [_P]),
    "lilv_plugin_get_class": (_P, [_P]),
    "lilv_plugin_class_get_uri": (_P, [_P]),
    "lilv_plugin_class_get_label": (_P, [_P]),
    "lilv_plugin_get_num_ports": (c_uint32, [_P]),
    "lilv_plugin_get_port_ranges_float": (None, [_P, POINTER(c_float), POINTER(c_float),
                                                 POINTER(c_float)]),
    "lilv_plugin_get_port_by_index": (_P, [_P, c_uint32]),
    "lilv_plugin_get_required_features": (_P, [_P]),
    "lilv_plugin_get_extension_data": (_P, [_P]),
    "lilv_plugin_has_latency": (c_bool, [_P]),
    "lilv_plugin_get_latency_port_index": (c_uint32, [_P]),
    "lilv_plugin_get_related": (_P, [_P, _P]),
    "lilv_plugin_get_value": (_P, [_P, _P]),
    "lilv_plugin_instantiate": (_P, [_P, c_double, _P]),
    "lilv_instance_free": (None, [_P]),
    "lilv_port_get_symbol": (_P, [_P, _P]),
    "lilv_port_get_name": (_P, [_P, _P]),
    "lilv_port_is_a": (c_bool, [_P, _P, _P]),
    "lilv_port_supports_event": (c_bool, [_P, _P, _P]),
    "lilv_port_has_property": (c_bool, [_P, _P, _P]),
    "lilv_port_get_value": (_P, [_P, _P, _P]),
    "lilv_world_get": (_P, [_P, _P, _P, _P]),
    "lilv_world_unload_resource": (c_int, [_P, _P]),
    "lilv_state_new_from_world": (_P, [_P, _P, _P]),
    "lilv_state_get_label": (c_char_p, [_P]),
    "lilv_state_restore": (None, [_P, _P, _P, _P, c_uint32, _P]),
    "lilv_state_free": (None, [_P]),
    "lilv_state_get_num_properties": (c_uint32, [_P]),
}

_lib = None
_error: str | None = None


def lib():
    """The loaded liblilv (declared); raises :class:`LilvMissing` when it is not installed."""
    global _lib, _error
    if _lib is not None:
        return _lib
    if _error is not None:
        raise LilvMissing(_error)
    names = ["liblilv-0.so.0", ctypes.util.find_library("lilv-0") or "liblilv-0.so"]
    last = None
    for name in names:
        try:
            handle = ctypes.CDLL(name)
            break
        except OSError as e:
            last = e
    else:
        _error = (f"LV2 hosting needs liblilv (Debian: apt-get install liblilv-0-0): {last}")
        raise LilvMissing(_error)
    for fname, (res, args) in _DECLS.items():
        try:
            fn = getattr(handle, fname)
        except AttributeError:
            continue                # an older lilv without it: not used then
        fn.restype = res
        fn.argtypes = args
    _lib = handle
    return _lib


def available() -> bool:
    try:
        lib()
        return True
    except LilvMissing:
        return False


__all__ = ["LilvMissing", "lib", "available", "LV2_Feature", "LV2_URID_Map", "LV2_URID_Unmap",
           "LV2_Options_Option", "LV2_Worker_Schedule", "LV2_Worker_Interface",
           "LV2_State_Interface", "LV2_Descriptor", "LilvInstanceStruct", "URID_MAP_FN",
           "URID_UNMAP_FN", "WORKER_SCHEDULE_FN", "WORKER_RESPOND_FN", "WORKER_WORK_FN",
           "WORKER_RESPONSE_FN", "WORKER_END_RUN_FN", "STATE_RETRIEVE_FN", "STATE_STORE_FN",
           "STATE_SAVE_FN", "STATE_RESTORE_FN", "SET_PORT_VALUE_FN", "CONNECT_FN",
           "HANDLE_FN", "RUN_FN", "EXTENSION_DATA_FN", "c_int64", "c_uint32", "c_float"]
