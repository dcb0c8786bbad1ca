"""Presets (TOML): found by name in $XDG_CONFIG_HOME/rtsynth, loaded into the options, the
command line overriding them; a preset's effects and channels really play."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from rtsynth.lv2 import _lilv

AMP = "http://plugin.org.uk/swh-plugins/amp"
needs_lilv = pytest.mark.skipif(not _lilv.available(), reason="liblilv is not installed")

PRESET = f"""
gain = 0.3
reverb = 0.0
polyphony = 12

[channels]
2 = "basic"
10 = "basic"

[[fx]]
uri = "{AMP}"
gain = -6
"""


@pytest.fixture
def config(tmp_path, monkeypatch):
    d = tmp_path / "cfg"
    (d / "rtsynth").mkdir(parents=True)
    (d / "rtsynth" / "quiet.toml").write_text(PRESET)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(d))
    return d / "rtsynth"


def _parse(argv):
    from rtsynth.cli import build_parser
    return build_parser().parse_args(argv)


def test_preset_by_name_and_cli_overrides(config):
    from rtsynth.host.preset import load_preset
    from rtsynth.host.wiring import _apply_preset, parse_channel_specs
    pr = load_preset("quiet")
    assert pr.path == config / "quiet.toml"
    assert (pr.gain, pr.reverb, pr.polyphony) == (0.3, 0.0, 12)
    assert pr.channels == {1: "basic", 9: "basic"}
    assert pr.fx == [(AMP, {"gain": -6})]
    args = _parse(["render", "--demo", "-o", "x.wav", "--preset", "quiet"])
    _apply_preset(args)
    assert (args.gain, args.reverb, args.polyphony) == (0.3, 0.0, 12)
    args = _parse(["render", "--demo", "-o", "x.wav", "--preset", "quiet", "-g", "0.5",
                   "--polyphony", "32"])
    _apply_preset(args)                  # given on the command line, even at the defaults
    assert (args.gain, args.reverb, args.polyphony) == (0.5, 0.0, 32)
    assert parse_channel_specs(["2=violin", "10=lv2:urn:x"]) == {1: "violin", 9: "lv2:urn:x"}


def test_bad_presets_one_clear_line(config, tmp_path):
    from rtsynth.host.preset import PresetError, load_preset
    with pytest.raises(PresetError, match=r"no preset 'nothere'.*quiet"):
        load_preset("nothere")
    bad = tmp_path / "bad.toml"
    bad.write_text("gain = 0.3\nvolume = 2\n")
    with pytest.raises(PresetError, match="unknown key 'volume'"):
        load_preset(str(bad))
    bad.write_text("gain = [\n")
    with pytest.raises(PresetError, match="not valid TOML"):
        load_preset(str(bad))
    bad.write_text("[channels]\n17 = 'basic'\n")
    with pytest.raises(PresetError, match="channels are 1 to 16"):
        load_preset(str(bad))
    p = subprocess.run([sys.executable, "-m", "rtsynth.cli", "render", "--demo", "-q", "-o",
                        str(tmp_path / "x.wav"), "--preset", str(bad)], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "channels are 1 to 16" in p.stderr


def _render(tmp_path, name, argv):
    import soundfile as sf
    from rtsynth.cli import main
    out = tmp_path / f"{name}.wav"
    assert main(["render", "--demo", "-q", "-i", "basic", "-o", str(out), *argv]) == 0
    return sf.read(out, dtype="float32")[0]


def _db(a, b):
    n = min(len(a), len(b))
    return 20 * np.log10(np.sqrt(np.mean(a[:n] ** 2)) / np.sqrt(np.mean(b[:n] ** 2)))


@needs_lilv
def test_preset_effect_plays_and_cli_replaces_it(config, tmp_path):
    ref = _render(tmp_path, "ref", ["-g", "0.3", "--reverb", "0"])
    pre = _render(tmp_path, "pre", ["--preset", "quiet"])
    assert abs(_db(pre, ref) - (-6.0)) < 0.01               # the preset's amp at -6 dB
    cli = _render(tmp_path, "cli", ["--preset", "quiet", "--fx", f"{AMP} gain=-12"])
    assert abs(_db(cli, ref) - (-12.0)) < 0.01              # --fx replaces the preset's chain
    g = _render(tmp_path, "g", ["--preset", "quiet", "-g", "0.15"])
    want = -6.0 + 20 * np.log10(0.15 / 0.3)
    assert abs(_db(g, ref) - want) < 0.01                   # -g overrides the preset's gain


def test_preset_controllers_are_the_control_map_cli_map_after_them(config, tmp_path):
    from rtsynth.host.preset import PresetError
    from rtsynth.host.wiring import _apply_preset
    p = tmp_path / "expr.toml"
    p.write_text('[controllers]\npressure = "vibrato"\nbreath = "none"\n')
    args = _parse(["render", "--demo", "-o", "x.wav", "--preset", str(p), "--map",
                   "breath=dynamics"])
    _apply_preset(args)
    assert args.map == ["pressure=vibrato", "breath=none", "breath=dynamics"]
    from rtsynth.engine.expression import TARGETS, CONTROLS, control_map
    routes = control_map(args.map)                   # the engine's table: the CLI item won
    assert routes[CONTROLS["breath"]] == TARGETS["dynamics"]
    assert routes[CONTROLS["pressure"]] == TARGETS["vibrato"]
    p.write_text('[controllers]\npressure = "loudness"\n')
    args = _parse(["render", "--demo", "-o", "x.wav", "--preset", str(p)])
    with pytest.raises(PresetError, match=r"\[controllers\].*unknown target 'loudness'"):
        _apply_preset(args)
