"""Test and benchmark harness for JACK (no sound card needed).

- :mod:`rtsynth.jackserver`: ``JackServer`` (private ``jackd -d dummy``, ended by its PID).
- :mod:`rtsynth.testing.jackrig`: ``JackRig`` (MIDI out at exact frames, audio in by absolute
  frame), ``detect_onset(s)``, ``find_gaps``, ``pitch_cents``, ``note_schedule``,
  ``wait_for_ports``.
- :mod:`rtsynth.testing.delayclient`: a JACK synth with known latency and faults on demand.
- :mod:`rtsynth.testing.procs`: ``ManagedProcess`` (wait for a ready line, stop by PID).
- :mod:`rtsynth.testing.pytest_fixtures`: ``jack_server``, ``jack_rig`` fixtures.
"""
