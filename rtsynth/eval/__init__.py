"""Evaluation against the source instrument: held-out notes (:mod:`.metrics`), issue 12's
melody distance, swell brightening and onsets (:mod:`.melody`); ``rtsynth eval`` (:mod:`.cli`)."""
