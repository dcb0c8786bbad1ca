"""The host: a rack of instruments per MIDI channel (neural, basic, LV2), the GM program table,
presets, stems; :mod:`rtsynth.lv2` runs the plugins."""
