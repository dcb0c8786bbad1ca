"""Hostile inputs, generated: MIDI files, model folders, option lists and live MIDI byte
streams, for the fault suite (``tests/test_faults*.py``) and the longer fuzz (``tools/fuzz.py``).

Everything is built here from a seed, so a failing case can be rebuilt by name; nothing is
downloaded. Each generator returns ``{name: case}``; the tests assert what every case must give:
a clear one-line error or a valid render (no NaN, nothing above full scale), nothing destroyed,
bounded time.
"""

from __future__ import annotations

import json
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np

__all__ = ["vlq", "smf", "track", "midi_files", "random_smf", "model_folders", "bad_options",
           "random_midi_event", "PICKLE_MARKER"]


# ----------------------------------------------------------------------------- MIDI files
def vlq(n: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def track(events: list[tuple[int, bytes]], end: bool = True) -> bytes:
    """An ``MTrk`` chunk from ``[(delta ticks, raw event bytes)]`` (end-of-track added)."""
    body = b"".join(vlq(d) + e for d, e in events)
    if end:
        body += b"\x00\xff\x2f\x00"
    return b"MTrk" + struct.pack(">I", len(body)) + body


def smf(tracks: list[bytes], division: int = 96, fmt: int = 1, ntrks: int | None = None) -> bytes:
    """A Standard MIDI File from ready ``MTrk`` chunks."""
    n = len(tracks) if ntrks is None else ntrks
    return b"MThd" + struct.pack(">IHHH", 6, fmt, n, division) + b"".join(tracks)


def _tempo(us: int) -> bytes:
    return b"\xff\x51\x03" + us.to_bytes(3, "big")


def _note(delta_on: int, length: int, pitch: int = 60, vel: int = 100, ch: int = 0):
    return [(delta_on, bytes((0x90 | ch, pitch, vel))), (length, bytes((0x80 | ch, pitch, 0)))]


def midi_files(seed: int = 0, n_random: int = 8, random_events: int = 100
               ) -> dict[str, bytes]:
    """Malformed and absurd Standard MIDI Files, by name (44 plus ``n_random`` random ones of
    ``random_events`` events; the largest is 9 MB)."""
    rng = np.random.default_rng(seed)
    ok_track = track(_note(0, 96) + _note(0, 96, 64))
    c: dict[str, bytes] = {
        "empty": b"",
        "mthd_only": b"MThd",
        "header_truncated": b"MThd\x00\x00\x00\x06\x00\x01",
        "header_length_huge": b"MThd\xff\xff\xff\xff\x00\x01\x00\x01\x00\x60",
        "no_track": smf([], ntrks=1),
        "zero_tracks": smf([], ntrks=0),
        "track_length_huge": smf([b"MTrk\xff\xff\xff\xf0" + b"\x00\x90\x3c\x40"]),
        "track_truncated_event": smf([b"MTrk\x00\x00\x00\x03\x00\x90\x3c"]),
        "bad_vlq_5_bytes": smf([b"MTrk\x00\x00\x00\x08\xff\xff\xff\xff\x7f\x90\x3c\x40"]),
        "vlq_runs_off_the_end": smf([b"MTrk\x00\x00\x00\x02\x81\x82"]),
        "running_status_without_status": smf([track([(0, b"\x3c\x40")])]),
        "running_status": smf([track([(0, b"\x90\x3c\x64"), (0, b"\x40\x64"), (96, b"\x3c\x00"),
                                      (0, b"\x40\x00")])]),
        "undefined_status_f4": smf([track([(0, b"\xf4"), *_note(0, 96)])]),
        "status_f9_realtime": smf([track([(0, b"\xf9"), *_note(0, 96)])]),
        "meta_length_huge": smf([track([(0, b"\xff\x01\x8f\xff\xff\x7f")], end=False)]),
        "sysex_length_huge": smf([track([(0, b"\xf0\x8f\xff\xff\x7f")], end=False)]),
        "sysex_then_note": smf([track([(0, b"\xf0\x03\x7e\x7f\xf7"), *_note(0, 96)])]),
        "data_bytes_over_127": smf([track([(0, b"\x90\xbc\xff"), (96, b"\x80\xbc\x00")])]),
        "tempo_zero": smf([track([(0, _tempo(0)), *_note(0, 960), *_note(5, 1000, 67)])]),
        "tempo_max_long_deltas": smf([track([(0, _tempo(0xFFFFFF)), *_note(0, 0x0FFFFFFF)])],
                                     division=1),
        "tempo_short_meta": smf([track([(0, b"\xff\x51\x01\x07"), *_note(0, 96)])]),
        "ten_hour_note": smf([track(_note(0, 10 * 3600 * 2 * 96))]),
        "seventy_seven_hour_note": smf([track(_note(0, 77 * 3600 * 2 * 96))]),
        "division_zero": smf([ok_track], division=0),
        "smpte_bad": smf([ok_track], division=0xE300),
        "smpte_25fps": smf([ok_track], division=0xE728),
        "format_3": smf([ok_track], fmt=3),
        "ntrks_65535_one_track": smf([ok_track], ntrks=65535),
        "unknown_chunk_first": smf([b"XFIH\x00\x00\x00\x04abcd", ok_track], ntrks=1),
        "unknown_chunk_length_huge": smf([b"XFIH\xff\xff\xff\xff", ok_track], ntrks=1),
        "garbage_after_tracks": smf([ok_track]) + bytes(rng.integers(0, 256, 200, np.uint8)),
        "zero_length_track": smf([b"MTrk\x00\x00\x00\x00", ok_track]),
        "velocity_zero_only": smf([track([(0, b"\x90\x3c\x00"), (10, b"\x90\x40\x00")])]),
        "note_offs_without_ons": smf([track([(i, bytes((0x80 | (i % 16), i, 64)))
                                             for i in range(128)])]),
        "channel_mode_messages": smf([track([*_note(0, 10), (0, b"\xb0\x79\x00"),
                                             (0, b"\xb0\x7b\x00"), (0, b"\xb0\x78\x00"),
                                             (0, b"\xb0\x7c\x00"), (0, b"\xb0\x7f\x00")])]),
        "ten_thousand_note_ons": smf([track([(0, bytes((0x90 | (i % 16), i % 128, 1 + i % 127)))
                                             for i in range(10000)])]),
        "every_channel_every_pitch": smf([track([(0, bytes((0x90 | ch, p, 100)))
                                                 for ch in range(16) for p in range(128)]
                                                + [(96, b"\xb0\x7b\x00")])]),
        "bend_extremes_rpn_127": smf([track([
            (0, b"\xb0\x65\x00"), (0, b"\xb0\x64\x00"), (0, b"\xb0\x06\x7f"), (0, b"\xb0\x26\x7f"),
            (0, b"\x90\x45\x64"), *[(4, b"\xe0" + (b"\x00\x00" if i % 2 else b"\x7f\x7f"))
                                    for i in range(200)], (0, b"\x80\x45\x00")])]),
        "cc_storm": smf([track([(1, bytes((0xB0 | (i % 16), i % 128, (i * 37) % 128)))
                                for i in range(4000)] + _note(0, 96))]),
        "program_changes": smf([track([(1, bytes((0xC0 | (i % 16), i % 128)))
                                       for i in range(2000)] + _note(0, 96))]),
        "aftertouch_storm": smf([track(_note(0, 0) + [(1, bytes((0xD0, i % 128)))
                                                      for i in range(2000)]
                                       + [(1, bytes((0xA0, 60, i % 128))) for i in range(2000)]
                                       + _note(0, 96))]),
        "thousand_tracks": smf([track(_note(i % 7, 10, 40 + i % 40)) for i in range(1000)]),
        "many_meta_events": smf([track([(0, b"\xff\x01\x00")] * 50000 + _note(0, 96))]),
        "three_million_events": smf([b"MTrk" + struct.pack(">I", 4 + 3 * 2_999_999)
                                     + b"\x00\x90\x3c\x40" + b"\x00\x3c\x40" * 2_999_999]),
    }
    for i in range(n_random):
        c[f"random_{i}"] = random_smf(rng, n_events=random_events, damage=i % 2 == 1)
    return c


def random_smf(rng: np.random.Generator, n_events: int = 300, damage: bool = True) -> bytes:
    """A random file: channel messages (any values), tempo changes, sysex, and with ``damage``
    random byte runs and a few bytes flipped."""
    evs = []
    for _ in range(n_events):
        r = rng.random()
        d = int(rng.integers(0, 200))
        if r < 0.6:
            st = int(rng.integers(0x80, 0xF0))
            n = 1 if st >> 4 in (0xC, 0xD) else 2
            evs.append((d, bytes([st, *rng.integers(0, 128, n)])))
        elif r < 0.7:
            evs.append((d, _tempo(int(rng.integers(50_000, 2_000_000)))))
        elif r < 0.8:
            body = bytes(rng.integers(0, 128, int(rng.integers(0, 10)), np.uint8))
            evs.append((d, b"\xf0" + vlq(len(body) + 1) + body + b"\xf7"))
        elif damage:
            evs.append((d, bytes(rng.integers(0, 256, int(rng.integers(1, 4)), np.uint8))))
    data = bytearray(smf([track(evs)], division=int(rng.integers(48, 1000))))
    for _ in range(int(rng.integers(0, 4)) if damage else 0):
        data[int(rng.integers(14, len(data)))] = int(rng.integers(0, 256))
    return bytes(data)


# ---------------------------------------------------------------------------- model folders
#: a pickle that, if ever unpickled, creates this file next to itself
PICKLE_MARKER = "UNPICKLED"


class _Payload:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def model_folders(source: str | Path, root: str | Path) -> dict[str, Path]:
    """Hostile model folders built from a real one (``source``) under ``root``, by name (about
    30). ``pickle`` holds a pickle that would create ``PICKLE_MARKER`` in its folder."""
    from safetensors.numpy import load_file, save_file

    source, root = Path(source), Path(root)
    w = load_file(str(source / "model.safetensors"))
    cfg = json.loads((source / "config.json").read_text())
    meta = {"format": cfg.get("format", "rtsynth-neural-1")}
    out: dict[str, Path] = {}

    def folder(name: str) -> Path:
        d = root / name
        if d.exists():
            shutil.rmtree(d)
        shutil.copytree(source, d)
        out[name] = d
        return d

    def weights(name: str, fn) -> None:
        d = folder(name)
        save_file({k: fn(k, v) for k, v in w.items()}, str(d / "model.safetensors"),
                  metadata=meta)

    def config(name: str, edit) -> None:
        d = folder(name)
        c = json.loads(json.dumps(cfg))
        edit(c)
        (d / "config.json").write_text(json.dumps(c))

    first = sorted(w)[0]
    with np.errstate(over="ignore"):
        weights("nan_weights", lambda k, v: np.full_like(v, np.nan) if k == first else v)
        weights("inf_weights", lambda k, v: np.where(np.arange(v.size).reshape(v.shape) == 0,
                                                     np.float32(np.inf), v))
        weights("zero_weights", lambda k, v: np.zeros_like(v))
        weights("weights_x1e30", lambda k, v: v * np.float32(1e30))
    weights("wrong_shape", lambda k, v: np.zeros((3, 3), np.float32) if k == first else v)
    weights("float16", lambda k, v: v.astype(np.float16))
    d = folder("missing_tensor")
    save_file({k: v for k, v in w.items() if k != first}, str(d / "model.safetensors"))
    d = folder("extra_tensor")
    save_file({**w, "decoder.extra": np.zeros(3, np.float32)}, str(d / "model.safetensors"))
    d = folder("pickle")
    (d / "model.safetensors").write_bytes(pickle.dumps(_Payload(str(d / PICKLE_MARKER))))
    d = folder("truncated_weights")
    raw = (source / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(raw[: len(raw) // 2])
    d = folder("header_length_huge")
    (d / "model.safetensors").write_bytes(struct.pack("<Q", 1 << 62) + raw[8:])
    d = folder("weights_empty")
    (d / "model.safetensors").write_bytes(b"")
    d = folder("weights_missing")
    (d / "model.safetensors").unlink()
    d = folder("config_missing")
    (d / "config.json").unlink()
    d = folder("config_not_json")
    (d / "config.json").write_text("{not json")
    d = folder("config_a_list")
    (d / "config.json").write_text("[1, 2]")
    d = folder("config_huge")
    (d / "config.json").write_text(json.dumps({**cfg, "pad": "x" * (2 << 20)}))

    def arch(k, v):
        return lambda c: c["architecture"].__setitem__(k, v)

    def top(k, v):
        return lambda c: c.__setitem__(k, v)
    for name, edit in {
        "sample_rate_0": top("sample_rate", 0),
        "sample_rate_negative": top("sample_rate", -48000),
        "sample_rate_1e9": top("sample_rate", 10 ** 9),
        "sample_rate_string": top("sample_rate", "48000"),
        "arch_sample_rate_44100": arch("sample_rate", 44100),
        "hop_0": top("hop", 0),
        "hop_huge": top("hop", 1 << 30),
        "n_harmonics_100000": arch("n_harmonics", 100000),
        "n_noise_0": arch("n_noise", 0),
        "pre_dim_huge": arch("pre_dim", 1 << 30),
        "z_dim_without_timbre": arch("z_dim", 8),
        "amp_max_nan": arch("amp_max", float("nan")),
        "backbone_unknown": arch("backbone", "transformer-xl"),
        "backbone_kw_huge": lambda c: c["architecture"]["backbone_kw"].update(
            {k: 1 << 20 for k in c["architecture"]["backbone_kw"] if k != "dilations"}),
        "dilations_huge": lambda c: c["architecture"]["backbone_kw"].__setitem__(
            "dilations", [1 << 20] * 64),
        "source_a_list": top("source", [1, 2, 3]),
        "description_a_number": top("description", 12345),
        "format_wrong": top("format", "pytorch"),
    }.items():
        config(name, edit)
    return out


# --------------------------------------------------------------------------------- options
def bad_options() -> dict[str, list[str]]:
    """Option values every ``rtsynth render`` must refuse with a usage error (exit 2)."""
    c = {}
    for opt, vals in {
        "--polyphony": ["0", "-1", "100000", "1000000000", "1.5", "nan", "x"],
        "-z": ["0", "-128", "10000000", "nan", "1e3"],
        "-r": ["0", "-48000", "1000000000", "44100.5", "inf"],
        "--gain": ["nan", "inf", "-inf", "-1", "1e9", ""],
        "--reverb": ["nan", "-0.5", "2", "inf"],
        "--tail": ["-1", "nan", "1e9", "inf"],
        "--max-duration": ["0", "-5", "nan", "1e12"],
        "--timbre-cc": ["-1", "128", "1.5"],
    }.items():
        for v in vals:
            # a value argparse would take for an option ("-inf") goes in the option's word
            c[f"{opt}={v}"] = [f"{opt}={v}"] if v.startswith("-") and not v[1:2].isdigit() \
                else [opt, v]
    return c


# ------------------------------------------------------------------------------- live MIDI
def random_midi_event(rng: np.random.Generator) -> bytes:
    """One JACK MIDI event's bytes: a plausible message, several in one (running status,
    real-time bytes inside), a sysex then a note, or random bytes."""
    r = rng.random()
    if r < 0.35:
        st = int(rng.integers(0x80, 0xF0))
        n = 1 if st >> 4 in (0xC, 0xD) else 2
        return bytes([st, *rng.integers(0, 128, n)])
    if r < 0.5:                                         # running status
        st = int(rng.choice([0x90, 0x80, 0xB0, 0xE0])) | int(rng.integers(0, 16))
        return bytes([st, *rng.integers(0, 128, 2 * int(rng.integers(1, 5)))])
    if r < 0.6:                                         # real time inside a message
        return bytes([0x90, int(rng.choice([0xF8, 0xFE, 0xFA])), 60, 0xF8, 100])
    if r < 0.7:
        return b"\xf0" + bytes(rng.integers(0, 128, int(rng.integers(0, 20)), np.uint8)) \
            + b"\xf7" + bytes([0x90 | int(rng.integers(0, 16)), int(rng.integers(0, 128)), 90])
    if r < 0.8:                                         # extreme controllers and bends
        return bytes(rng.choice([[0xE0, 127, 127], [0xE0, 0, 0], [0xB0, 7, 127],
                                 [0xB0, 11, 127], [0xB0, 64, 127], [0xB0, 121, 0]]))
    return bytes(rng.integers(0, 256, int(rng.integers(1, 12)), np.uint8))
