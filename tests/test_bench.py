"""``rtsynth bench``: runs end to end, and measures known cases right.

Known cases use the delay client (rtsynth.testing.delayclient), a JACK synth whose latency,
dropped blocks, missed deadlines and voice limit are set on its command line. Nothing here
asserts how fast anything is.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rtsynth.bench import measure as M
from rtsynth.bench import report
from rtsynth.bench.runner import BenchConfig, ratios, run_bench
from rtsynth.bench.synths import delay_spec, find_sf2

pytestmark = pytest.mark.skipif(shutil.which("jackd") is None, reason="jackd2 not installed")
ROOT = Path(__file__).resolve().parents[1]


def bench(tmp_path, synths, rows, **kw):
    cfg = BenchConfig(quick=True, synths=synths, rows=tuple(rows), private_server=True,
                      render=False, workdir=str(tmp_path), **kw)
    return run_bench(cfg)


@pytest.mark.parametrize("delay", [37, 256])
def test_latency_of_known_delay(tmp_path, delay):
    spec = delay_spec(delay, wave="impulse", label="known")
    res = bench(tmp_path, [spec], ["startup", "latency"], notes=40)
    row = res["synths"]["known"]
    assert not row["errors"], row["errors"]
    lat = row["latency"]["128"]
    assert lat["n"] >= 20 and lat["missed"] == 0
    assert lat["median"] == lat["min"] == lat["max"] == delay
    assert lat["jitter"] == 0
    assert lat["median_ms"] == pytest.approx(delay / 48.0)
    assert row["startup"]["first_sound_s"] > 0


def test_block_quantised_synth_shows_its_jitter(tmp_path):
    """A synth that applies events at its block start (as FluidSynth does) answers an event
    at offset o of a block N - o frames later: negative for o > N, jitter of one block."""
    spec = delay_spec(20, wave="impulse", extra=["--quantize"], label="quantised")
    res = bench(tmp_path, [spec], ["latency"], notes=60)
    lat = res["synths"]["quantised"]["latency"]["128"]
    assert lat["missed"] == 0 and lat["n"] >= 40
    assert all(f + o == 20 for f, o in zip(lat["frames"], lat["offsets_in_block"]))
    assert lat["min"] < 0 < lat["max"] <= 20
    assert lat["jitter"] >= 100                # offsets spread over the block


def test_latency_at_other_block_sizes(tmp_path):
    spec = delay_spec(100, wave="impulse", label="known")
    res = bench(tmp_path, [spec], ["latency"], notes=20, blocks=[64, 256])
    lat = res["synths"]["known"]["latency"]
    assert set(lat) == {"64", "256"}
    for b in ("64", "256"):
        assert lat[b]["block"] == int(b)
        assert lat[b]["median"] == lat[b]["max"] == 100


def test_dropped_blocks_are_reported(tmp_path):
    clean = delay_spec(0, label="clean")
    dropper = delay_spec(0, extra=["--zero-every", "25"], label="dropper")
    res = bench(tmp_path, [clean, dropper], ["load"], load_seconds=3.0, load_voices=8)
    c, d = res["synths"]["clean"]["load"], res["synths"]["dropper"]["load"]
    assert c["gaps"] == 0 and c["underruns"] == 0
    assert d["underruns"] > 0 and d["dropouts"] > 0
    # every dropped block inside the analysed window is a silent gap in the recording:
    # 3 s - settle - 2 blocks at one drop per 25 blocks, give or take the window's edges
    expected = (3.0 - 0.5) * 48000 / 128 / 25
    assert abs(d["gaps"] - expected) <= 4
    assert 128 * d["gaps"] <= d["gap_frames"] <= 128 * d["gaps"] + 8


def test_missed_deadlines_are_blamed_on_the_synth(tmp_path):
    staller = delay_spec(0, extra=["--stall-every", "40", "--stall-ms", "12"], label="staller")
    res = bench(tmp_path, [staller], ["load"], load_seconds=3.0, load_voices=4)
    row = res["synths"]["staller"]["load"]
    # its own, or (another client running late beside it, as a loaded machine's) shared
    own = row["client_xruns"] + (row.get("client_xruns_shared") or 0)
    assert own >= 3, row
    assert row["dropouts"] >= row["client_xruns"]


def test_capacity_finds_the_voice_limit(tmp_path):
    spec = delay_spec(0, extra=["--max-voices", "5"], label="five")
    res = bench(tmp_path, [spec], ["capacity"], capacity_steps=[2, 4, 8, 16],
                capacity_seconds=1.5)
    cap = res["synths"]["five"]["capacity"]
    why = [{k: st.get(k) for k in ("voices", "attempt", "error", "dropouts", "underruns",
                                   "client_xruns", "client_xruns_shared", "gaps",
                                   "server_xruns", "unrecorded_frames", "earlier")}
           for st in cap["steps"]]
    assert cap["voices"] == 4 and cap["first_failure"] == 8, json.dumps(why)
    assert [s["voices"] for s in cap["steps"]] == [2, 4, 8]
    # the step that failed failed for the voice limit: the synth's own underruns, in (nearly)
    # every cycle the notes sounded, not an xrun of a loaded machine
    assert cap["steps"][2]["underruns"] >= 0.8 * 1.5 * 48000 / 128 - 20, cap["steps"][2]
    assert all(s["underruns"] == 0 for s in cap["steps"][:2]), cap["steps"]


def test_ratios_table_json_png(tmp_path):
    lat = {"128": {"median_ms": 3.0, "p99_ms": 4.0, "max_ms": 5.0, "jitter_ms": 0.5,
                   "frames": [144, 150], "sample_rate": 48000}}
    res = {"meta": {"blocks": [128], "quick": True, "cpu": "x", "cpus": 2, "date": "d",
                    "server": "s", "bench_s": 1.0},
           "synths": {"rtsynth basic": {"kind": "rtsynth", "latency": lat, "errors": [],
                                        "capacity": {"voices": 64, "steps": [], "block": 128},
                                        "render": [{"file": "a.mid", "x_realtime": 30.0}]},
                      "FluidSynth": {"kind": "fluidsynth", "errors": [],
                                     "latency": {"128": dict(lat["128"], median_ms=1.5)},
                                     "capacity": {"voices": 128, "steps": [], "block": 128},
                                     "render": [{"file": "a.mid", "x_realtime": 40.0}]}}}
    r = ratios(res)["rtsynth basic / FluidSynth"]
    assert r["latency_median_ms"] == pytest.approx(2.0)
    assert r["capacity"] == pytest.approx(0.5)
    assert r["render_x"] == pytest.approx(0.75)
    res["ratios"] = ratios(res)
    header, rows = report.table_rows(res)
    assert header[1:3] == ["rtsynth basic", "FluidSynth"]
    assert any(r[0].startswith("latency median") and r[-1] == "2.00 (+1.50 ms)" for r in rows)
    j = report.write_json(res, tmp_path / "b.json")
    assert json.loads(j.read_text())["ratios"]
    pytest.importorskip("matplotlib")
    assert report.write_png(res, tmp_path / "b.png").stat().st_size > 1000


@pytest.mark.skipif(shutil.which("fluidsynth") is None or find_sf2() is None,
                    reason="fluidsynth / FluidR3_GM.sf2 not installed")
def test_bench_quick_end_to_end(tmp_path):
    """The command a user runs: rtsynth (-i basic) and FluidSynth, every row, table/JSON/PNG."""
    cmd = [sys.executable, "-m", "rtsynth.bench.cli", "--quick", "--private-server",
           "-i", "basic", "-o", str(tmp_path)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=400)
    res = json.loads((tmp_path / "bench.json").read_text())
    assert (tmp_path / "bench.png").stat().st_size > 1000
    assert set(res["synths"]) == {"rtsynth basic", "FluidSynth"}, r.stderr[-2000:]
    for label, row in res["synths"].items():
        assert not row["errors"], (label, row["errors"], r.stderr[-2000:])
        lat = row["latency"]["128"]
        # notes lost to server xruns are played again in further takes, within a budget: the
        # request is measured unless the budget ran out, and every note played is accounted for
        assert lat["notes"] == sum(t["notes"] for t in lat["takes"]), label
        assert sum(t["heard"] + t["missed"] + t["lost"] for t in lat["takes"]) == lat["notes"]
        assert lat["lost"] == sum(t["lost"] for t in lat["takes"]), label
        assert lat["n"] == min(lat["requested"], sum(t["heard"] for t in lat["takes"]))
        assert lat["requested"] == 60 and lat["missed"] <= 6, (label, lat["missed"])
        if not lat["budget_spent"]:
            assert lat["n"] + lat["missed"] >= lat["requested"], (label, lat["takes"])
        else:
            assert len(lat["takes"]) == M.RETAKE_MAX_TAKES or \
                lat["notes"] >= M.RETAKE_MAX_PLAYED * lat["requested"], (label, lat["takes"])
        if lat["lost"] == 0:
            assert len(lat["takes"]) == 1, (label, lat["takes"])
        assert row["felt"]["128"]["heard"] >= 12, label
        assert row["startup"]["first_sound_s"] > 0
        assert "dropouts" in row["load"]
        assert row["capacity"]["steps"]
        assert row["render"][0]["x_realtime"] > 0, row["render"]
    assert r.returncode == 0, r.stderr[-2000:]
    assert "latency median @128" in r.stdout
    assert res["ratios"]["rtsynth basic / FluidSynth"]["render_x"] is not None


def test_uses_a_running_server(tmp_path, monkeypatch):
    from rtsynth.jackserver import JackServer
    with JackServer(period=256) as srv:
        monkeypatch.setenv("JACK_DEFAULT_SERVER", srv.name)
        spec = delay_spec(64, wave="impulse", label="known")
        cfg = BenchConfig(quick=True, synths=[spec], rows=("latency",), render=False,
                          notes=20, workdir=str(tmp_path))
        res = run_bench(cfg)
        assert srv.running()                       # ours to keep: the bench did not stop it
    assert res["meta"]["server"] == f"running server {srv.name!r}"
    assert res["meta"]["blocks"] == [256]
    lat = res["synths"]["known"]["latency"]["256"]
    assert lat["median"] == lat["max"] == 64
    srv.cleanup()


def test_play_options_reach_rtsynth(tmp_path):
    """--variant (and --sync / --play-arg) reach `rtsynth play`: the process's own stats and its
    measured latency say which mode it ran in; JSON and table heading record the options."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "rtsynth.bench.cli", "--private-server", "--no-peer", "-i",
           "basic", "--rows", "latency", "--blocks", "128", "--notes", "10", "--no-plot",
           "--play-arg=--gain=0.4", "--variant=--ahead=1", "--variant=--sync", "-o", str(out)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((out / "bench.json").read_text())
    assert res["meta"]["play_args"] == ["--gain=0.4"]
    assert res["meta"]["variants"] == [["--ahead=1"], ["--sync"]]
    buf, syn = res["synths"]["rtsynth basic [--ahead=1]"], res["synths"]["rtsynth basic [--sync]"]
    assert buf["play_args"] == ["--gain=0.4", "--ahead=1"]
    assert syn["play_args"] == ["--gain=0.4", "--sync"]
    assert buf["play_stats"]["128"]["sync"] is False
    assert buf["play_stats"]["128"]["latency_frames"] == 256
    assert syn["play_stats"]["128"]["sync"] is True
    assert syn["latency"]["128"]["median"] < 128 <= 256 <= buf["latency"]["128"]["median"]
    head = r.stdout.replace("\n", " ")
    assert "rtsynth play --gain=0.4" in head and "variants: --ahead=1, --sync" in head


def test_sync_shorthand_and_play_arg():
    import argparse
    from rtsynth.bench.cli import _add_options, play_args
    from rtsynth.bench.runner import default_synths
    p = argparse.ArgumentParser()
    _add_options(p)
    a = p.parse_args(["--sync", "--rtsynth-arg=--reverb=0", "--play-arg=-g0.3"])
    assert play_args(a) == ["--reverb=0", "-g0.3", "--sync"]
    cfg = BenchConfig(instruments=["basic"], peer=False, rtsynth_args=play_args(a))
    (spec,) = default_synths(cfg)
    assert spec.cmd[-3:] == ["--reverb=0", "-g0.3", "--sync"] and spec.label == "rtsynth basic"
    assert report.heading_play_args({"play_args": play_args(a)}) == \
        "; rtsynth play --reverb=0 -g0.3 --sync"


def test_held_row_counts_dropouts_and_records_the_latency_it_ended_with():
    """The dropout row: own underruns + blamed xruns (a late block in sync mode once), and, for
    --ahead auto, the latency the process ended with (it goes up one block per underrun)."""
    from rtsynth.bench.measure import finish_held
    row = finish_held({"block": 128, "gaps": 1, "client_xruns": 0},
                      {"underruns": 1, "late_blocks": 0, "latency_frames": 256,
                       "latency_raises": 1, "sample_rate": 48000, "gen_ms": [0.5, 0.7, 2.9]})
    assert row["dropouts"] == 1 and row["latency_raises"] == 1
    assert row["latency_frames_end"] == 256 and abs(row["latency_ms_end"] - 5.3333) < 1e-3
    assert row["gen_ms"]["max"] == 2.9
    sync = finish_held({"block": 128, "gaps": 0, "client_xruns": 3},
                       {"underruns": 2, "late_blocks": 2, "latency_frames": 0})
    assert sync["dropouts"] == 3            # 2 late blocks are 2 of the 3 blamed xruns
    # rtsynth's own judgement: 5 underruns, 3 of them next to a server-wide xrun (not blamed),
    # 2 its own: one in the ring, one a late sync block (also the one xrun JACK blamed on it);
    # the 4 silent gaps are 4 of its 5 underruns
    judged = finish_held({"block": 128, "gaps": 4, "client_xruns": 1},
                         {"underruns": 5, "late_blocks": 2, "own_underruns": 2,
                          "own_late_blocks": 1, "server_underruns": 3})
    assert judged["dropouts"] == 2 and judged["dropouts_any"] == 5
    # silence no underrun accounts for is the synth's (as FluidSynth's gaps are)
    silent = finish_held({"block": 128, "gaps": 3, "client_xruns": 0},
                         {"underruns": 1, "late_blocks": 0, "own_underruns": 0})
    assert silent["dropouts"] == 2 and silent["dropouts_any"] == 3
    # with its trace's clock, only what fell inside the analysed window counts: an own late
    # block while the notes started (before it) and a server's late block at exit do not
    tr = [{"what": "late_own", "own": 1.2, "clock": 100}, {"what": "late_own", "own": 1.5,
                                                          "clock": 5000},
          {"what": "own_underrun", "own": 2, "clock": 6000},
          {"what": "server_underrun", "own": 1, "clock": 7000},
          {"what": "late", "own": 0.2, "clock": 99000}]
    win = finish_held({"block": 128, "gaps": 0, "client_xruns": 1, "window_clock": [1000, 90000]},
                      {"underruns": 6, "late_blocks": 3, "own_underruns": 4,
                       "own_late_blocks": 2, "policy_trace": tr})
    assert win["underruns"] == 4 and win["late_blocks"] == 1 and win["own_underruns"] == 3
    assert win["dropouts"] == 3 and win["whole_run"]["underruns"] == 6
    header, rows = report.table_rows({"meta": {"blocks": [128]}, "ratios": {},
                                      "synths": {"rtsynth x": {"load": row}}})
    assert ["  latency at the end of it", "5.33 ms (1 raises)"] in rows


def test_render_row_is_the_median_run():
    from rtsynth.bench.runner import median_run
    rows = [{"file": "a.mid", "x_realtime": 10.0, "wall_s": 3.0},
            {"file": "a.mid", "error": "exit 1"},
            {"file": "a.mid", "x_realtime": 30.0, "wall_s": 1.0},
            {"file": "a.mid", "x_realtime": 20.0, "wall_s": 1.5}]
    row = median_run(rows)
    assert row["x_realtime"] == 20.0 and row["wall_s"] == 1.5
    assert row["runs_x"] == [10.0, None, 30.0, 20.0]
    assert median_run([{"file": "a.mid", "error": "exit 1"}])["error"] == "exit 1"


@pytest.mark.parametrize("delay", [0, 150])
def test_felt_latency_of_known_delay(tmp_path, delay):
    """A sine that starts exactly ``delay`` frames after each note-on, from phase 0: the first
    sample above 2% of its peak is one or two frames later, for every key of 60-83."""
    spec = delay_spec(delay, wave="sine", label="known")
    res = bench(tmp_path, [spec], ["felt"], felt_repeats=1)
    row = res["synths"]["known"]
    assert not row["errors"], row["errors"]
    felt = row["felt"]["128"]
    # notes the recorder lost to a server xrun (a loaded machine) are left out, not guessed
    assert felt["heard"] >= 12 and set(felt["keys"]) <= set(range(60, 84))
    assert delay <= felt["min"] and felt["max"] <= delay + 3, felt["frames"]
    assert felt["median_ms"] == pytest.approx(felt["median"] / 48.0)
    # the note-ons fall on an even spread of positions inside the block, the same every run
    # (the run starts on a block boundary): each heard note at its own position of the spread
    spread = set(M.even_offsets(felt["notes"], 128).tolist())
    assert set(felt["offsets_in_block"]) <= spread
    assert len(set(felt["offsets_in_block"])) == felt["heard"]
    table = report.table_rows(res)[1]
    assert any(r[0].startswith("felt latency median") for r in table)


def test_even_offsets_cover_the_block():
    offs = M.even_offsets(24, 128, seed=3)
    assert sorted(offs.tolist()) == [i * 128 // 24 for i in range(24)]
    assert offs.tolist() != sorted(offs.tolist())          # dealt in a shuffled order
    assert (M.even_offsets(24, 128, seed=3) == offs).all()  # the same every run


def test_dropout_rounds_add_up():
    """The dropout row in rounds (the synths taking turns): counts and seconds added, the
    worst round's details kept, each round listed."""
    from rtsynth.bench.measure import add_held
    a = {"voices": 32, "seconds": 20.0, "gaps": 1, "client_xruns": 0, "underruns": 1,
         "late_blocks": 0, "dropouts": 1, "dropouts_any": 1, "peak": 0.5}
    b = {"voices": 32, "seconds": 20.0, "gaps": 0, "client_xruns": 2, "underruns": 2,
         "late_blocks": 2, "dropouts": 2, "dropouts_any": 2, "peak": 0.4}
    row = add_held([a, b])
    assert row["seconds"] == 40.0 and row["dropouts"] == 3 and row["client_xruns"] == 2
    assert row["gaps"] == 1 and row["underruns"] == 3 and row["peak"] == 0.4
    assert [r["dropouts"] for r in row["rounds"]] == [1, 2]
    assert add_held([a]) is a
