"""General MIDI programs -> the shipped models.

A program with a model of its own plays it (flute 73, violin 40, cello 42, trumpet 56,
clarinet 71: 0-based program numbers, as the MIDI byte carries them); another program of a
family with a model plays the family's model (its nearest relative: viola -> violin, contrabass
-> cello, saxophones -> clarinet, piccolo -> flute, ...); the rest play ``basic``.
"""

from __future__ import annotations

#: MIDI channel 10 (index 9): General MIDI percussion, never pitched notes
PERCUSSION_CHANNEL = 9

#: the 16 GM families, 8 programs each
FAMILIES = ["piano", "chromatic percussion", "organ", "guitar", "bass", "strings", "ensemble",
            "brass", "reed", "pipe", "synth lead", "synth pad", "synth effects", "ethnic",
            "percussive", "sound effects"]

#: programs with a model of their own
OWN = {73: "flute", 40: "violin", 42: "cello", 56: "trumpet", 71: "clarinet"}

#: the nearest model for the other programs of a family with one
NEAREST = {}
NEAREST.update({p: "violin" for p in (41, 44, 45, 48, 49, 50, 51, 55)})   # viola, strings
NEAREST.update({p: "cello" for p in (43, 32, 33, 34, 35, 36, 37, 38, 39)})  # contrabass, bass
NEAREST.update({p: "trumpet" for p in range(57, 64)})                      # brass
NEAREST.update({p: "clarinet" for p in range(64, 71)})                     # saxes, oboe, bassoon
NEAREST.update({p: "flute" for p in (72, 74, 75, 76, 77, 78, 79)})         # pipes


def family(program: int) -> str:
    return FAMILIES[max(0, min(127, int(program))) // 8]


def model_for(program: int, available: list[str]) -> tuple[str, str | None]:
    """``(instrument name, notice)`` for GM ``program`` (0-based); ``notice`` says what stands
    in when the program has no model of its own (None when it has). The lighter ``NAME-lite``
    model is preferred where it is shipped (as the default instrument is), unless ``SHIPPED``
    names the instrument's own folder."""
    program = int(program)
    base = OWN.get(program)
    how = None
    if base is None:
        base = NEAREST.get(program)
        how = "nearest" if base else None
    name = _resolve(base, available) if base else None
    if name is None:
        name = "basic"
        how = "basic"
    if how is None:
        return name, None
    what = f"GM program {program + 1} ({family(program)} family) has no model of its own"
    if how == "nearest":
        return name, f"{what}: playing {name}, the nearest"
    return name, f"{what}: playing basic"


#: what each instrument plays rather than ``NAME-lite``: every one a contract-v2 model (nine
#: features: it swells with CC11/pressure, CC74 brightens it) at or below issue 12's floor on
#: held-out melodies, at the -lite CNN's step (clarinet: the v2 GRU) (models/README.md, "What
#: each instrument plays"): flute-life, trumpet-life (with its noise bandwidth) and cello-life
#: are the 48-channel v2 CNNs with the source's life; models/violin is violin-life trained on
#: with the attack term; models/clarinet the v2 GRU (clarinet-lite is v1)
SHIPPED = {"flute": "flute-life", "violin": "violin", "trumpet": "trumpet-life",
           "cello": "cello-life", "clarinet": "clarinet"}


def _resolve(base: str, available: list[str]) -> str | None:
    for cand in (SHIPPED.get(base), f"{base}-lite", base):
        if cand is not None and cand in available:
            return cand
    return None


def table_models(available: list[str]) -> list[str]:
    """Every instrument the table can select (what a live rack loads up front)."""
    out = []
    for p in range(128):
        name, _ = model_for(p, available)
        if name not in out:
            out.append(name)
    return out
