"""LV2 plugin hosting through liblilv (ctypes): discovery, description, instances.

lilv (Debian ``liblilv-0-0``) finds the installed plugins and parses their Turtle files;
:mod:`._lilv` declares its C API, :mod:`.world` describes plugins, :mod:`.host` runs them.
"""

from ._lilv import LilvMissing, available
from .world import LV2Error, PluginInfo, PortInfo, plugin_info, plugin_uris


def Instance(*a, **kw):
    """:class:`rtsynth.lv2.host.Instance` (imported on first use)."""
    from .host import Instance as _I
    return _I(*a, **kw)


__all__ = ["LilvMissing", "available", "LV2Error", "PluginInfo", "PortInfo", "plugin_info",
           "plugin_uris", "Instance"]
