"""The noise loops' cache (rtsynth.spec.noise_tables): what it returns is what is built."""

from __future__ import annotations

import numpy as np

from rtsynth import spec


def test_cached_tables_are_the_built_ones_and_a_bad_cache_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    built = spec._build_noise_tables(48000, 4, 1024, spec.NOISE_SEED)
    first = spec.noise_tables(48000, 4, 1024)             # builds, writes the cache
    files = list((tmp_path / "rtsynth").glob("noise-*.npy"))
    assert len(files) == 1
    second = spec.noise_tables(48000, 4, 1024)            # reads it
    assert np.array_equal(first, built) and np.array_equal(second, built)
    for bad in (b"not an npy file", None, np.nan, np.inf):
        if bad is None:                                   # right shape, wrong content
            np.save(files[0], np.zeros((4, 1024), np.float32))
        elif isinstance(bad, float):                      # one value not finite
            t = built.copy()
            t[2, 517] = bad
            np.save(files[0], t)
        else:
            files[0].write_bytes(bad)
        assert np.array_equal(spec.noise_tables(48000, 4, 1024), built)
    # an unwritable cache folder: still the tables
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
    (tmp_path / "file").write_text("x")
    assert np.array_equal(spec.noise_tables(48000, 4, 1024), built)
