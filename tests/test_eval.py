"""Evaluation metrics (rtsynth.eval.metrics): exact values on synthetic signals, and a tiny run."""

from pathlib import Path

import numpy as np
import pytest

from rtsynth.eval import metrics as ev  # noqa: E402
from rtsynth import spec  # noqa: E402
from rtsynth.data import load_dataset, write_dataset  # noqa: E402

SR, HOP = spec.SAMPLE_RATE, spec.HOP


def tone(pitch, n, amp=0.3, n_harm=8, cents=0.0):
    f = spec.midi_to_hz(pitch) * 2 ** (cents / 1200)
    t = np.arange(n) / SR
    y = sum(amp / h * np.sin(2 * np.pi * f * h * t + h) for h in range(1, n_harm + 1))
    env = np.minimum(1.0, t / 0.02) * np.minimum(1.0, (n - np.arange(n)) / (0.05 * SR))
    return y * env


def test_mss_zero_for_identical_and_positive_otherwise():
    x = tone(60, 48000)
    assert ev.mss_distance(x, x) == 0.0
    d_gain = ev.mss_distance(x, 0.5 * x)
    d_det = ev.mss_distance(x, tone(60, 48000, cents=50))
    d_far = ev.mss_distance(x, tone(67, 48000))
    assert d_gain > 0.3  # log|0.5| = 0.69 nats on most bins + SC 0.5
    assert 0 < d_det < d_far


def test_f0_of_detuned_copy_is_the_detune():
    n = 40 * HOP
    pf = np.full(40, 69.0)
    for cents in (0.0, 10.0, -23.0):
        m = ev.note_metrics(tone(69, n), tone(69, n, cents=cents), pf)
        assert abs(np.median(m["cents"]) - abs(cents)) < 0.5, (cents, np.median(m["cents"]))
        assert np.median(m["ref_cents"]) < 0.5
    # the tracker follows a pitch far from the guide within its +-100 cent window
    f = ev.track_f0(tone(69, n, cents=60), pf)
    assert np.all(np.abs(1200 * np.log2(f[5:-5] / 440.0) - 60) < 1.0)


def test_identical_metrics_are_zero_and_loudness_error_is_the_gain():
    n = 50 * HOP
    x = tone(57, n)
    pf = np.full(50, 57.0)
    m = ev.note_metrics(x, x, pf)
    assert m["mss_distance"] == 0 and m["loudness_db"] == 0 and np.max(m["cents"]) < 1e-9
    m = ev.note_metrics(x, 0.5 * x, pf)
    assert abs(m["loudness_db"] - 20 * np.log10(2)) < 0.05


def _tiny_dataset(tmp_path):
    from rtsynth.data import pitch_curve
    exs, audios = [], {}
    for i, (p, v, bend) in enumerate([(60, 100, []), (67, 76, [[10, 0.5], [20, 1.0]])]):
        T = 60
        pc = pitch_curve(p, bend, T)
        f0 = np.repeat(spec.midi_to_hz(pc), HOP)
        ph = np.cumsum(2 * np.pi * f0 / SR)
        audios[f"e{i}"] = (0.2 * np.sin(ph) * np.minimum(1, np.arange(T * HOP) / 2000)
                           ).astype(np.float32)
        exs.append(dict(id=f"e{i}", split="test", kind="note" if not bend else "bend", pitch=p,
                        velocity=v, release_sample=40 * HOP, n_samples=T * HOP, bend=bend))
    write_dataset(tmp_path / "tiny", dict(sample_rate=SR, hop=HOP, name="tiny",
                                          source=dict(type="test", program=99), examples=exs),
                  audios)
    return tmp_path


def test_engine_path_matches_step_path_for_basic(tmp_path):
    pytest.importorskip("rtsynth.engine")
    from rtsynth.instruments import load_instrument
    d = _tiny_dataset(tmp_path)
    for ex in load_dataset(d / "tiny", split="test"):
        a = ev.render_step(load_instrument("basic"), ex)
        b = ev.render_engine(load_instrument("basic"), ex)
        assert len(a) == len(b) == len(ex.audio)
        # same voice at the same gain and pitch; only the noise loop's offset differs
        assert abs(np.sqrt(np.mean(a ** 2)) / np.sqrt(np.mean(b ** 2)) - 1) < 0.01
        m = ev.note_metrics(a, b, ex.pitch_frames)
        assert m["loudness_db"] < 0.1 and np.median(m["cents"]) < 0.5
        assert m["mss_distance"] < 0.2 * ev.mss_distance(ex.audio, a)


def test_evaluate_rows_on_tiny_dataset(tmp_path):
    d = _tiny_dataset(tmp_path)
    rows = ev.evaluate(["basic"], str(d), path="step", verbose=False)
    assert len(rows) == 1
    r = rows[0]
    assert r["n_notes"] == 2 and r["dataset"] == "tiny"
    for k in ("mss_distance", "f0_cents_median", "f0_cents_p95", "loudness_db"):
        assert np.isfinite(r[k]) and r[k] >= 0
    assert r["mss_vs_basic"] == 1.0
    # the synthetic reference is on its pitch curve (frames near a bend step are blurred by the
    # 2048-sample window)
    assert r["ref_f0_vs_midi_cents_median"] < 5.0
    assert "basic" in ev.format_table(rows)


def test_phrase_pitch_follows_keys_and_bend():
    hop = HOP
    ev = [(0, bytes((0xB0, 101, 0))), (0, bytes((0xB0, 100, 0))), (0, bytes((0xB0, 6, 12))),
          (0, bytes((0x90, 60, 100))), (3 * hop, bytes((0x90, 62, 100))),
          (4 * hop, bytes((0x80, 60, 0))), (5 * hop, bytes((0xE0, 0, 96))),  # +0.5 of 12 st
          (7 * hop, bytes((0x80, 62, 0)))]
    pf, mask = __import__("rtsynth.eval.metrics", fromlist=["x"]).phrase_pitch(ev, 9)
    assert list(pf[:7]) == [60, 60, 60, 62, 62, 68, 68]
    assert list(mask) == [True] * 7 + [False] * 2


@pytest.mark.skipif(not Path("/usr/share/sounds/sf2/FluidR3_GM.sf2").exists(),
                    reason="FluidR3_GM not installed")
def test_phrase_evaluation_runs_engine_against_fluidsynth(tmp_path):
    pytest.importorskip("rtsynth.render")
    from rtsynth.dataset import build as bd
    bd.render_phrases(71, str(tmp_path), n=1, n_notes=3, seed=2)
    rows = ev.evaluate_phrases(["basic"], str(tmp_path), verbose=False)
    (r,) = rows
    assert r["n_notes"] == 1 and r["voiced_frames"] > 50
    assert np.isfinite(r["mss_distance"]) and r["mss_distance"] > 0.1
    # the reference tracks its own MIDI within a few cents (the clarinet samples are in tune)
    assert r["ref_f0_vs_midi_cents_median"] < 10


def test_multi_instrument_model_gets_each_instruments_timbre():
    class Fake:
        has_timbre = True
        pos = None

        def set_timbre(self, p):
            self.pos = p

    cfg = {"program": [73, 56, 40], "timbre": {"path": ["flute", "trumpet", "violin"]}}
    f = Fake()
    assert ev.select_timbre(f, cfg, "trumpet") == 0.5 and f.pos == 0.5
    assert ev.select_timbre(f, cfg, "violin") == 1.0
    assert ev.select_timbre(f, cfg, "cello") is None
    assert ev.select_timbre(object(), cfg, "flute") is None
    md = ev.format_markdown([dict(model="m", dataset="flute", n_notes=3, mss_distance=1.0,
                                  mss_vs_basic=0.5, f0_cents_median=1.0, f0_cents_p95=2.0,
                                  loudness_db=3.0)])
    assert md.count("\n") == 2 and "| m | flute | 3 | 1.000 | 0.50 | 1.00 | 2.00 | 3.00 | nan" in md


def test_spectrogram_plot(tmp_path):
    pytest.importorskip("matplotlib")
    d = _tiny_dataset(tmp_path)
    out = ev.plot_spectrograms(["basic"], str(d), str(tmp_path / "s.png"), "tiny", n_notes=2,
                               path="step")
    assert Path(out).stat().st_size > 10000


def test_resynthesis_f0_follows_a_detuned_vibrato_sample(tmp_path):
    """A "sample" 15 cents sharp with a 6 Hz, +-25 cent vibrato: played from its MIDI note, the
    basic instrument is off by the sample's own intonation; played with the sample's tracked
    pitch curve (the resynthesis protocol), it lands within a cent or two of the sample."""
    pytest.importorskip("rtsynth.engine")
    T, rel = 150, 120
    t = np.arange(T * HOP) / SR
    cents = 15.0 + 25.0 * np.sin(2 * np.pi * 6.0 * t)
    f = spec.midi_to_hz(64) * 2 ** (cents / 1200)
    ph = np.cumsum(2 * np.pi * f / SR)
    y = sum(0.2 / h * np.sin(h * ph) for h in range(1, 7))
    y *= np.minimum(1, t / 0.03) * np.clip((rel * HOP - np.arange(T * HOP)) / 2400 + 1, 0, 1)
    exs = [dict(id="e0", split="test", kind="note", pitch=64, velocity=90,
                release_sample=rel * HOP, n_samples=T * HOP, bend=[])]
    write_dataset(tmp_path / "vib", dict(sample_rate=SR, hop=HOP, name="vib",
                                         source=dict(type="test", program=98), examples=exs),
                  {"e0": y.astype(np.float32)})
    (r,) = ev.evaluate(["basic"], str(tmp_path), path="engine", verbose=False)
    assert r["f0_cents_median"] > 10          # the MIDI protocol: the sample's intonation
    assert r["ref_f0_vs_midi_cents_median"] > 10
    assert r["f0_resynth_cents_median"] < 2.0  # the resynthesis protocol follows it
    assert r["f0_resynth_cents_p95"] < 6.0, r


def test_resynthesis_pitch_curve_holds_nearest_voiced_value():
    fr = spec.midi_to_hz(60.0) * 2 ** (np.array([0, 0, 10, 20, 30, 0, 0]) / 1200)
    voiced = np.array([False, False, True, True, True, False, False])
    c = ev.resynth_pitch_cents(fr, voiced, 60)
    assert np.allclose(c, [10, 10, 10, 20, 30, 30, 30])
    assert np.allclose(ev.resynth_pitch_cents(fr, np.zeros(7, bool), 60), 0)


def test_rtsynth_eval_without_data_fails_in_one_line(tmp_path, capsys):
    from rtsynth.eval.cli import run
    from rtsynth.eval.metrics import configure
    import argparse
    ap = argparse.ArgumentParser()
    configure(ap)
    assert run(ap.parse_args(["basic", "-d", str(tmp_path / "none")])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no held-out data" in err[0] and "rtsynth dataset" in err[0]
    assert run(ap.parse_args(["basic", "--melodies", str(tmp_path)])) == 2
    assert "no phrase" in capsys.readouterr().err


def test_melody_distance_is_zero_for_equal_and_scale_free():
    from rtsynth.eval.melody import melody_distance
    rng = np.random.default_rng(0)
    x = rng.standard_normal(20000) * np.hanning(20000)
    assert melody_distance(x, x) == 0.0
    assert melody_distance(x, 3.0 * x) < 1e-9            # both normalised to unit RMS
    assert melody_distance(x, x + 0.1 * rng.standard_normal(20000)) > 0.1
