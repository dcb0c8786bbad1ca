from rtsynth.testing.pytest_fixtures import jack_rig, jack_server  # noqa: F401
