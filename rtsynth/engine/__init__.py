"""The synthesis engine: MIDI events in, stereo audio blocks out.

Modules, one concept each:

- :mod:`.block`: :class:`Engine`, the block loop (events, frames, synthesis, master chain);
- :mod:`.bank`: the voice bank (:class:`Voices`, every per-slot array in one structure the
  kernels receive whole) and the kernels that start, release, end and express voices;
- :mod:`.channels`: channel and controller state, the message and controller tables, MPE
  zones, the per-sample channel rows;
- :mod:`.expression`: the control map (what pressure, breath, CC74, CC1, CC11 drive) and the
  ``--mpe``/``--map`` options;
- :mod:`.frames`: which control frames start in a block, their features, the filing of the
  instrument's controls;
- :mod:`.offline`: :class:`OfflineEngine`, the same samples with large batches and two threads.
"""

from .bank import BIG, PRESSURE_VIBRATO, VIBRATO_MAX_SEMITONES, Voices, make_voices
from .block import SILENT_LEVEL, STEAL_FADE_S, VIBRATO_HZ, Engine
from .channels import KILL_FADE_S, ChannelRows, Channels
from .expression import DEFAULT_MAP, control_map
from .offline import OfflineEngine, _add_into

AFTERTOUCH_VIBRATO = PRESSURE_VIBRATO

__all__ = ["AFTERTOUCH_VIBRATO", "BIG", "ChannelRows", "Channels", "DEFAULT_MAP", "Engine",
           "KILL_FADE_S", "OfflineEngine", "SILENT_LEVEL", "STEAL_FADE_S", "VIBRATO_HZ",
           "VIBRATO_MAX_SEMITONES", "Voices", "control_map", "make_voices"]
