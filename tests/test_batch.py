"""``rtsynth batch``: a folder of MIDI files rendered in worker processes gives the same bytes
as each file rendered on its own; a bad file is one line and does not stop the others."""

from pathlib import Path

import mido

from rtsynth.batch import find_inputs
from rtsynth.cli import main


def _write(path: Path, base: int, program: int = 0) -> None:
    mid = mido.MidiFile(ticks_per_beat=480)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr.append(mido.Message("control_change", control=1, value=20 * program, time=0))
    for n in (base, base + 4, base + 7, base + 12):
        tr.append(mido.Message("note_on", note=n, velocity=70 + n % 30, time=0))
        tr.append(mido.Message("note_off", note=n, velocity=0, time=200))
    mid.save(path)


def test_batch_equals_single_renders_and_reports_a_bad_file(tmp_path, capsys):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for k, name in enumerate(("a.mid", "b.mid", "sub/c.mid")):
        _write(src / name, 55 + 3 * k, k)
    (src / "broken.mid").write_bytes(b"MThd not really")
    out = tmp_path / "out"
    code = main(["batch", str(src), "--recursive", "-o", str(out), "-j", "2", "-i", "basic",
                 "--reverb", "0.2", "-q"])
    err = capsys.readouterr().err
    assert code == 1
    bad = [line for line in err.splitlines() if "broken.mid" in line]
    assert len(bad) == 1 and "Traceback" not in err, err
    for name in ("a", "b", "sub/c"):
        single = tmp_path / f"single-{name.replace('/', '-')}.wav"
        assert main(["render", str(src / f"{name}.mid"), "-o", str(single), "-i", "basic",
                     "--reverb", "0.2", "-q"]) == 0
        batch = out / f"{name}.wav"
        assert batch.read_bytes() == single.read_bytes(), name
        assert batch.stat().st_size > 10000
    assert not (out / "broken.wav").exists()


def test_find_inputs_files_and_folders(tmp_path):
    (tmp_path / "d" / "e").mkdir(parents=True)
    for n in ("d/x.mid", "d/y.MIDI", "d/e/z.mid", "d/notes.txt"):
        (tmp_path / n).write_bytes(b"")
    flat = [str(r) for _, r in find_inputs([tmp_path / "d"])]
    deep = [str(r) for _, r in find_inputs([tmp_path / "d", tmp_path / "d" / "x.mid"], True)]
    assert flat == ["x.mid", "y.MIDI"]
    assert deep == ["e/z.mid", "x.mid", "y.MIDI"]           # each file once


def test_batch_of_multi_program_files_equals_single_renders(tmp_path):
    """The default instruments (no -i): GM program changes on several channels, so each file
    renders through the rack (its parts on two threads), in the batch's worker processes as
    alone: the same bytes."""
    import mido
    src = tmp_path / "in"
    src.mkdir()
    for k, name in enumerate(("p.mid", "q.mid")):
        mid = mido.MidiFile(ticks_per_beat=480)
        for ch, prog in enumerate((73, 40, 42)):
            tr = mido.MidiTrack()
            mid.tracks.append(tr)
            tr.append(mido.Message("program_change", channel=ch, program=prog, time=0))
            for i in range(3):
                n = 60 + 5 * k + 4 * i - 12 * (ch == 2)
                tr.append(mido.Message("note_on", channel=ch, note=n, velocity=80, time=0))
                tr.append(mido.Message("note_off", channel=ch, note=n, velocity=0, time=300))
        mid.save(src / name)
    out = tmp_path / "out"
    assert main(["batch", str(src), "-o", str(out), "-j", "2", "-q"]) == 0
    for name in ("p", "q"):
        single = tmp_path / f"single-{name}.wav"
        assert main(["render", str(src / f"{name}.mid"), "-o", str(single), "-q"]) == 0
        batch = out / f"{name}.wav"
        assert batch.stat().st_size > 50000
        assert batch.read_bytes() == single.read_bytes(), name
