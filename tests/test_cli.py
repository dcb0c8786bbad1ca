"""The command line as a user meets it: bad input gives one clear line and a non-zero exit."""

import os
import subprocess
import sys

import numpy as np
import pytest

from rtsynth.render import demo_events


def run_cli(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "rtsynth.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def one_clear_line(r):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.startswith("rtsynth: error:")]
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.fixture()
def good_mid(tmp_path):
    import mido
    mid = mido.MidiFile()
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr.append(mido.Message("note_on", note=60, velocity=100, time=0))
    tr.append(mido.Message("note_off", note=60, velocity=0, time=480))
    p = tmp_path / "good.mid"
    mid.save(p)
    return p


def test_truncated_midi_file(tmp_path, good_mid):
    bad = tmp_path / "truncated.mid"
    bad.write_bytes(good_mid.read_bytes()[:20])
    line = one_clear_line(run_cli("render", str(bad), "-o", str(tmp_path / "x.wav"), "-i", "basic"))
    assert "truncated.mid" in line
    assert not (tmp_path / "x.wav").exists()


def test_file_that_is_not_midi(tmp_path):
    bad = tmp_path / "song.mid"
    bad.write_text("this is not a MIDI file\n" * 10)
    line = one_clear_line(run_cli("render", str(bad), "-o", str(tmp_path / "x.wav"), "-i", "basic"))
    assert "not a readable MIDI file" in line


def test_missing_midi_file(tmp_path):
    line = one_clear_line(run_cli("render", str(tmp_path / "nope.mid"), "-o",
                                  str(tmp_path / "x.wav"), "-i", "basic"))
    assert "no such MIDI file" in line


def test_missing_model_path(tmp_path, good_mid):
    line = one_clear_line(run_cli("render", str(good_mid), "-o", str(tmp_path / "x.wav"),
                                  "-i", str(tmp_path / "no_such_model")))
    assert "no model at" in line


def test_unknown_instrument_name(tmp_path, good_mid):
    line = one_clear_line(run_cli("render", str(good_mid), "-o", str(tmp_path / "x.wav"),
                                  "-i", "kazoo"))
    assert "unknown instrument 'kazoo'" in line and "-i help" in line
    assert not (tmp_path / "x.wav").exists()


def test_unknown_instrument_suggests_the_nearest_names(tmp_path, good_mid):
    from rtsynth.instruments import available_instruments
    names = available_instruments()
    for typo, meant in (("flute-lte", "flute-lite"), ("trumpt", "trumpet"), ("basc", "basic")):
        if meant not in names:
            continue
        line = one_clear_line(run_cli("render", str(good_mid), "-o", str(tmp_path / "x.wav"),
                                      "-i", typo))
        assert f"unknown instrument {typo!r}; did you mean {meant!r}" in line, line


def _instrument_lines(out: str) -> dict[str, str]:
    rows = [l.split(None, 1) for l in out.splitlines() if l.startswith("  ")]
    return {r[0]: r[1] for r in rows if len(r) == 2}


def test_instrument_help_lists_each_with_a_description():
    """``-i help`` (FluidSynth's ``help`` as a value): one line per instrument, exit 0, whatever
    else the command line lacks (render's -o)."""
    import json

    from rtsynth.instruments import (available_instruments, default_instrument,
                                     instrument_folders)
    for cmd in ("render", "play"):
        r = run_cli(cmd, "-i", "help")
        assert r.returncode == 0, r.stderr
        rows = _instrument_lines(r.stdout)
        assert list(rows) == available_instruments()
        assert "no neural network" in rows["basic"]
        for name, folder in instrument_folders().items():
            cfg = json.loads((folder / "config.json").read_text())
            assert rows[name].startswith(cfg["description"]), (name, rows[name])
            assert "k parameters" in rows[name]
        assert rows[default_instrument()].endswith("[default]")
        assert sum(l.endswith("[default]") for l in rows.values()) == 1


def test_user_models_folder(tmp_path):
    """A model folder under $XDG_DATA_HOME/rtsynth/models plays by its name, is listed by
    ``devices`` and ``-i help``, and renders what the same model renders from its shipped place."""
    import os
    import shutil

    import soundfile as sf

    from rtsynth.instruments import default_instrument, instrument_folders
    name = default_instrument()
    if name == "basic":
        pytest.skip("no shipped model")
    user = tmp_path / "data" / "rtsynth" / "models" / "my-model"
    shutil.copytree(instrument_folders()[name], user)
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "data"))
    r = run_cli("devices", env=env)
    assert r.returncode == 0, r.stderr
    inst_line = next(l for l in r.stdout.splitlines() if l.startswith("Instruments"))
    assert "my-model" in inst_line and f"User models folder: {user.parent}" in r.stdout
    r = run_cli("render", "-i", "help", env=env)
    assert f"[user: {user}]" in _instrument_lines(r.stdout)["my-model"]
    outs = []
    for i in ("my-model", name):
        o = tmp_path / f"{i}.wav"
        r = run_cli("render", "--demo", "-q", "-o", str(o), "-i", i, env=env)
        assert r.returncode == 0, r.stderr
        outs.append(sf.read(o, dtype="float32")[0])
    # the same model: the same samples, up to a 24-bit LSB (a render that JIT-compiles its
    # kernels afresh can differ from one that loads them compiled by that much)
    assert np.abs(outs[0] - outs[1]).max() <= 4 * 2.0 ** -23 and np.abs(outs[0]).max() > 0.01
    # without it, the name is unknown again
    r = run_cli("render", "--demo", "-o", str(tmp_path / "x.wav"), "-i", "my-model")
    assert "unknown instrument 'my-model'" in one_clear_line(r)


def test_user_models_shadow_shipped_ones_and_stay_out_of_the_bench(tmp_path, monkeypatch):
    from rtsynth import instruments as I
    shipped = I.shipped_instruments()
    if len(shipped) < 2:
        pytest.skip("no shipped model")
    root = tmp_path / "rtsynth" / "models"
    for name in ("mine", shipped[1]):
        (root / name).mkdir(parents=True)
        (root / name / "config.json").write_text("{}")
    (root / "not-a-model").mkdir()                       # no config.json: not listed
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert I.user_models_dir() == root
    assert I.available_instruments() == sorted({*shipped, "mine"}, key=lambda n: (n != "basic", n))
    assert I.shipped_instruments() == shipped
    assert I.model_folder("mine") == root / "mine"
    assert I.model_folder(shipped[1]) == root / shipped[1]      # the user's comes first
    assert I.model_folder("not-a-model") is None and I.model_folder("basic") is None
    with pytest.raises(I.InstrumentError, match="cannot load model"):
        I.load_instrument("mine")                               # a broken one says so


def test_a_broken_subcommand_module_fails_loudly(monkeypatch):
    """A subcommand module that cannot be imported stops ``rtsynth`` with its ImportError
    instead of silently vanishing from the commands."""
    from rtsynth import cli
    commands = cli.build_parser()._subparsers._group_actions[0].choices
    assert {"play", "render", "devices", "train", "bench"} <= set(commands)
    assert len(commands) == 3 + len(cli.SUBCOMMAND_MODULES)
    for name in cli.SUBCOMMAND_MODULES:
        monkeypatch.setitem(sys.modules, name, None)      # what a failing import leaves
        with pytest.raises(ImportError, match=name):
            cli.build_parser()
        monkeypatch.delitem(sys.modules, name)


def test_render_imports_no_test_harness(tmp_path):
    """``rtsynth render`` runs on the package proper: no test fixtures, no JACK test rig."""
    log = tmp_path / "modules.txt"
    r = subprocess.run(with_modules_logged(log, "render", "--demo", "-q", "-i", "basic", "-o",
                                           str(tmp_path / "x.wav")),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert harness_modules(log) == []


#: test-harness modules (``rtsynth.bench.cli`` is only the bench subcommand's parser)
HARNESS = ("rtsynth.testing", "rtsynth.jackserver", "rtsynth.bench.", "pytest", "_pytest")


def with_modules_logged(log, *args) -> list[str]:
    """A command line running ``rtsynth ARGS`` that writes every module it imported to ``log``
    at exit."""
    code = ("import atexit, runpy, sys\n"
            f"atexit.register(lambda: open({str(log)!r}, 'w').write('\\n'.join(sys.modules)))\n"
            f"sys.argv = ['rtsynth', *{list(args)!r}]\n"
            "runpy.run_module('rtsynth.cli', run_name='__main__')\n")
    return [sys.executable, "-c", code]


def harness_modules(log) -> list[str]:
    mods = log.read_text().split()
    assert "rtsynth.instruments" in mods      # it ran
    return [m for m in mods if m.startswith(HARNESS) and m != "rtsynth.bench.cli"]


def test_bad_output_extension(tmp_path, good_mid):
    line = one_clear_line(run_cli("render", str(good_mid), "-o", str(tmp_path / "x.mp9"),
                                  "-i", "basic"))
    assert ".wav" in line


def test_unknown_audio_device_with_jack(jack_server):
    env = dict(jack_server.env)
    r = run_cli("play", "--driver", "portaudio", "--audio-device", "no-such-card", "-i", "basic",
                env=env)
    line = one_clear_line(r)
    assert "no audio output device matches 'no-such-card'" in line and "system" in line


def test_no_audio_device_at_all(tmp_path):
    import os
    env = dict(os.environ, JACK_DEFAULT_SERVER="rtsynth-nonexistent-server",
               JACK_NO_START_SERVER="1")
    r = run_cli("play", "-i", "basic", env=env)
    assert r.returncode == 3
    line = one_clear_line(r)
    assert "no audio output device found" in line and "render" in line


def test_render_is_deterministic_and_has_every_note(tmp_path):
    import mido
    import soundfile as sf
    mid = mido.MidiFile(ticks_per_beat=480)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    chord = [48, 55, 64, 71]
    for n in chord:
        tr.append(mido.Message("note_on", note=n, velocity=90, time=0))
    tr.append(mido.Message("note_off", note=chord[0], velocity=0, time=960))
    for n in chord[1:]:
        tr.append(mido.Message("note_off", note=n, velocity=0, time=0))
    p = tmp_path / "chord.mid"
    mid.save(p)
    outs = []
    for k in range(2):
        o = tmp_path / f"chord{k}.wav"
        r = run_cli("render", str(p), "-o", str(o), "-i", "basic")
        assert r.returncode == 0, r.stderr
        outs.append(sf.read(o, dtype="float32")[0])
    assert np.array_equal(outs[0], outs[1])
    x = outs[0].mean(axis=1)[4800:40000] * np.hanning(35200)
    spec = np.abs(np.fft.rfft(x, 1 << 18))
    f = np.fft.rfftfreq(1 << 18, 1 / 48000)
    for n in chord:
        f0 = 440 * 2 ** ((n - 69) / 12)
        near = spec[(f > f0 * 0.99) & (f < f0 * 1.01)].max()
        between = spec[(f > f0 * 1.02) & (f < f0 * 1.04)].max()
        assert near > 10 * between, n


def test_render_reads_all_tracks_and_channels(tmp_path):
    import mido
    from rtsynth.render import read_midi_events
    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    for ch in (0, 5, 9):
        tr = mido.MidiTrack()
        mid.tracks.append(tr)
        tr.append(mido.Message("note_on", channel=ch, note=60 + ch, velocity=80, time=ch * 10))
        tr.append(mido.Message("note_off", channel=ch, note=60 + ch, velocity=0, time=480))
    p = tmp_path / "multi.mid"
    mid.save(p)
    ev = read_midi_events(p)
    assert sorted({m[0] & 0x0F for _, m in ev}) == [0, 5, 9]
    assert len(ev) == 6


def test_demo_renders(tmp_path):
    o = tmp_path / "demo.flac"
    r = run_cli("render", "--demo", "-o", str(o), "-i", "basic")
    assert r.returncode == 0, r.stderr
    import soundfile as sf
    x, sr = sf.read(o)
    assert sr == 48000 and len(x) > 5 * sr and 0.01 < np.abs(x).max() <= 1.0
    assert len(demo_events()) > 20


def test_devices_lists_sections(jack_server):
    r = run_cli("devices", env=dict(jack_server.env))
    assert r.returncode == 0
    assert "JACK Audio Connection Kit" in r.stdout and "system" in r.stdout
    assert "JACK server: running" in r.stdout and "Instruments" in r.stdout


#: what play's start-up must not import (modules the first sound does not need): the training
#: stack, Numba (the compiled kernels run without it), the other subcommands' and back ends'
#: libraries, and the standard library's slow helpers it avoids (ldconfig's subprocess for
#: finding libjack, OpenSSL's hashlib for the kernels' build check, shutil for argparse)
PLAY_NEVER_IMPORTS = ("torch", "numba", "llvmlite", "mido", "rich", "sounddevice", "soundfile",
                      "rtmidi", "scipy", "matplotlib", "music21", "lilv", "jsonschema",
                      "subprocess", "tempfile", "hashlib", "shutil", "difflib", "ctypes.util",
                      "rtsynth.train", "rtsynth.bench", "rtsynth.render", "rtsynth.lv2",
                      "rtsynth.host.rack")


def _kernels_current() -> bool:
    from rtsynth import aot
    return aot.is_current()[0] and not os.environ.get("RTSYNTH_JIT")


@pytest.mark.skipif(not _kernels_current(), reason="the JIT kernels import Numba (and more): "
                    "needs the compiled kernels built from these sources")
def test_play_start_up_imports_stay_bounded(jack_server):
    """`play` on JACK with the default instrument: the modules imported by the time it says it
    plays (its first block comes next) are the ones it needs: none of PLAY_NEVER_IMPORTS, and
    not many more than now (~250 modules, numpy's included)."""
    import json
    code = (
        "import builtins, json, sys\n"
        "seen = {}\n"
        "real = builtins.print\n"
        "def spy(*a, **k):\n"
        "    if a and str(a[0]).startswith('rtsynth: playing') and not seen:\n"
        "        seen['m'] = sorted(sys.modules)\n"
        "    real(*a, **k)\n"
        "builtins.print = spy\n"
        "from rtsynth.cli import main\n"
        "rc = main(['play', '--driver', 'jack', '--duration', '0.05'])\n"
        "from rtsynth import jit\n"
        "real('MODE ' + jit.status()['mode'], file=sys.stderr)\n"
        "real('MODULES ' + json.dumps(seen.get('m')), file=sys.stderr)\n"
        "sys.exit(rc)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, env={**os.environ, **jack_server.env})
    assert r.returncode == 0, r.stderr[-2000:]
    if "MODE jit" in r.stderr:         # a kernel source edited since the build (another run's)
        pytest.skip("the compiled kernels went stale while the tests ran")
    line = [x for x in r.stderr.splitlines() if x.startswith("MODULES ")]
    mods = json.loads(line[-1][len("MODULES "):])
    assert mods, r.stdout + r.stderr
    bad = [m for m in mods if any(m == n or m.startswith(n + ".") for n in PLAY_NEVER_IMPORTS)]
    assert not bad, bad
    assert "rtsynth._kernels" in mods                       # the compiled kernels
    assert len(mods) < 320, len(mods)
