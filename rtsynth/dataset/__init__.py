"""Building datasets (:mod:`rtsynth.data` format): SoundFont renders with FluidSynth, phrases
for evaluation, recordings (:mod:`.build`); ``rtsynth dataset`` (:mod:`.cli`)."""
