"""Neural instruments: torch synthesis, streaming backbones, the DDSP-style decoder, export/load."""
