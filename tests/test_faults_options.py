"""Fault suite: hostile option values. Every one is a usage error (exit 2) of one line naming
the option, the value and the range, raised before a model loads or a file is touched; the
ranges are in ``--help``; the largest accepted values stay bounded in memory."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from rtsynth.cli import build_parser, main
from rtsynth.options import LIMITS, check_range
from rtsynth.testing.hostile import bad_options

OLD = b"an old render that must survive"
CASES = bad_options()


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_bad_value_is_one_usage_line_and_nothing_is_touched(tmp_path, capsys, name):
    out = tmp_path / "o.wav"
    out.write_bytes(OLD)
    val = name.split("=", 1)[1]
    with pytest.raises(SystemExit) as ex:
        main(["render", "--demo", "-o", str(out), "-i", "basic", "-q", *CASES[name]])
    assert ex.value.code == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("rtsynth render: error: argument ") and repr(val) in last, err
    assert " must be " in last and "Traceback" not in err
    assert out.read_bytes() == OLD
    assert [p.name for p in tmp_path.iterdir()] == ["o.wav"]


@pytest.mark.parametrize("argv", [["--polyphony", "0"], ["-z", "0"], ["-g", "nan"],
                                  ["--ahead", "1000000"], ["--ahead", "-1"],
                                  ["--duration", "nan"], ["-r", "-48000"],
                                  ["--reconnect-timeout", "nan"], ["--lower-after", "-5"],
                                  ["--cycle-log", "/no/such/folder/c.npy"],
                                  ["--cycle-log", "/tmp"]])
def test_play_refuses_the_same_values_before_opening_any_device(capsys, argv):
    with pytest.raises(SystemExit) as ex:
        main(["play", *argv])
    assert ex.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("rtsynth play: error: ")


def test_help_states_the_limits():
    ap = build_parser()
    sub = ap._subparsers._group_actions[0].choices
    text = " ".join(sub["render"].format_help().split())
    for name in ("polyphony", "block", "sample_rate", "gain", "reverb", "tail", "max_duration"):
        assert LIMITS[name].text() in text, name
    assert "16 MiB" in text and "3600" in text


def test_the_limits_themselves_are_accepted(tmp_path, capsys):
    for opts in (["--polyphony", "1", "-z", "16", "-g", "0", "--reverb", "0", "--tail", "0"],
                 ["--polyphony", "256", "-z", "16384", "-g", "10", "--reverb", "1",
                  "-r", "8000"]):
        rc = main(["render", "--demo", "-o", str(tmp_path / "o.wav"), "-i", "basic", "-q",
                   *opts])
        assert rc == 0, capsys.readouterr().err


def test_the_largest_values_stay_bounded_in_memory(tmp_path):
    """--polyphony 256 -z 16384 (the largest) with a neural model: well under 2 GB (before
    these limits --polyphony 100000 took all 24 GB)."""
    from rtsynth.instruments import available_instruments
    inst = "flute-lite" if "flute-lite" in available_instruments() else "basic"
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    r = subprocess.run([sys.executable, "-c", "import sys; from rtsynth.cli import main; "
                        "sys.exit(main(sys.argv[1:]))", "render", "--demo", "-o",
                        str(tmp_path / "o.wav"), "-i", inst, "-q", "--polyphony", "256",
                        "-z", "16384"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    assert max(peak_kb, before) < 2_000_000 or peak_kb == before


def test_check_range_for_code_paths_without_a_command_line():
    assert check_range("polyphony", "32") == 32 and check_range("gain", 0.5) == 0.5
    for name, bad in (("polyphony", 0), ("polyphony", 2.5), ("gain", float("nan")),
                      ("block", "1e9"), ("tail", True), ("sample_rate", "x")):
        with pytest.raises(ValueError, match=" must be "):
            check_range(name, bad)


@pytest.mark.parametrize("argv", [["--batch", "0"], ["--batch", "100000000"], ["--steps", "-1"],
                                  ["--crop", "0"], ["--lr", "nan"], ["--z-dim", "100000"],
                                  ["--backbone-kw", '{"hidden": 100000000}'],
                                  ["--backbone-kw", "[1]"], ["--backbone-kw", "{oops"]])
def test_train_refuses_absurd_sizes_before_reading_any_data(tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as ex:
        main(["train", str(tmp_path / "no-data"), "-o", str(tmp_path / "m"), *argv])
    assert ex.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("rtsynth train: error: ")


def test_every_numeric_option_of_every_subcommand_has_a_range():
    """No option of any subcommand takes a bare int or float: each has its range (so NaN,
    Inf and absurd sizes are usage errors)."""
    import argparse

    def walk(p, path):
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for n, sp in a.choices.items():
                    yield from walk(sp, f"{path} {n}")
            elif a.option_strings and a.type in (int, float) and not a.choices:
                yield f"{path} {a.option_strings[0]}"
    bare = list(walk(build_parser(), "rtsynth"))
    assert bare == [], bare
