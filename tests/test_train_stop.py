"""``rtsynth train`` stopped before its ``--steps``, as a user stops it: a real subprocess on a tiny
synthetic dataset. ``--time-limit`` ends it with one line naming the step; Ctrl-C (SIGINT) finishes
the step, saves the checkpoint and exports a model that loads and plays, and ``--resume``
continues from it; a second Ctrl-C aborts with a non-zero exit and no traceback.

The three runs start together (one module fixture) so the file costs one training start-up."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rtsynth.train import cli
from rtsynth.train.dataset import synthetic_dataset

HUGE = 1_000_000     # --steps no run here reaches
DEADLINE = 300.0     # seconds for all three runs on a loaded machine (they take ~30 s here)


def _args(data, out, run, batch=2):
    return [str(data), "-o", str(out), "--run-dir", str(run), "--tiny", "--batch", str(batch),
            "--crop", "16", "--device", "cpu", "--quiet", "--log-every", "1",
            "--ckpt-every", "1000"]


def _steps_logged(run: Path) -> list[int]:
    try:
        lines = (run / "log.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for x in lines:
        try:
            r = json.loads(x)
        except ValueError:       # the line being written
            continue
        if "mrstft" in r:
            out.append(r["step"])
    return out


class _Run:
    def __init__(self, base: Path, name: str, data: Path, *extra: str, batch: int = 2):
        self.out, self.run = base / f"m-{name}", base / f"run-{name}"
        self.log = base / f"{name}.out"
        self.fh = open(self.log, "w")
        # SIGINT as a terminal delivers it, whatever the test runner's own disposition
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rtsynth.cli", "train", *_args(data, self.out, self.run, batch),
             *extra], stdout=self.fh, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.sent = 0
        self.rc = None

    def text(self) -> str:
        return self.log.read_text()

    def done(self) -> bool:
        if self.rc is None and self.proc.poll() is not None:
            self.rc = self.proc.returncode
            self.fh.close()
        return self.rc is not None

    def sigint(self):
        self.proc.send_signal(signal.SIGINT)
        self.sent += 1


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("stop")
    data = synthetic_dataset(base / "d", "d", program=73, n_train=4, n_test=1, seconds=0.3, seed=1)
    timed = _Run(base, "timed", data, "--steps", str(HUGE), "--time-limit", "2")
    once = _Run(base, "once", data, "--steps", str(HUGE))
    # a slower step (a larger batch), so the second Ctrl-C lands inside the step the first
    # one asked to finish
    twice = _Run(base, "twice", data, "--steps", str(HUGE), batch=48)
    everything = (timed, once, twice)
    t_end = time.monotonic() + DEADLINE
    try:
        while not all(r.done() for r in everything):
            assert time.monotonic() < t_end, {r.log.name: r.text()[-2000:] for r in everything}
            for r in (once, twice):
                # the handler is in place once a step has been logged
                if not r.done() and r.sent == 0 and _steps_logged(r.run):
                    r.sigint()
            if not twice.done() and twice.sent == 1 and "stopping after this step" in twice.text():
                twice.sigint()
            time.sleep(0.02)
    finally:
        for r in everything:
            if not r.done():
                r.proc.kill()
                r.proc.wait()
                r.done()
    return {"timed": timed, "once": once, "twice": twice, "data": data}


def _plays(model: Path) -> np.ndarray:
    """The exported model through the engine (what ``rtsynth render`` runs): one note."""
    from rtsynth.engine import Engine
    from rtsynth.instruments import load_instrument
    from rtsynth.render import render_events

    inst = load_instrument(model)
    eng = Engine(inst, block=128, n_slots=4, gain=1.0, reverb=0.0, master=False)
    y = render_events(eng, [(0, bytes([0x90, 60, 100])), (9600, bytes([0x80, 60, 0]))], tail=0.1)
    assert len(y) >= 9600 and np.isfinite(y).all()
    assert np.abs(y[:9600]).max() > 1e-4      # it sounds
    return y


def _stopped_step(run: _Run, pattern: str) -> int:
    m = re.search(pattern + r" step (\d+) of (\d+) \(", run.text())
    assert m, run.text()[-2000:]
    assert int(m.group(2)) == HUGE
    step = int(m.group(1))
    assert 1 <= step < HUGE
    # the checkpoint and the exported model are of that step, and the log reached it
    assert json.loads((run.run / "ckpt.json").read_text())["info"]["step"] == step
    assert json.loads((run.out / "config.json").read_text())["training"]["steps"] == step
    assert _steps_logged(run.run)[-1] == step
    assert str(run.run) in run.text()
    return step


def test_time_limit_names_the_step_and_exports(runs, tmp_path):
    r = runs["timed"]
    assert r.rc == 0, r.text()[-2000:]
    step = _stopped_step(r, r"--time-limit 2 s reached at")
    assert "interrupted" not in r.text()
    _plays(r.out)
    # the line says how to continue: the limit counts the seconds already trained, so --resume
    # needs a larger one (the same one stops again at once)
    m = re.search(r"`--resume` with a --time-limit above (\d+) s continues", r.text())
    assert m, r.text()[-2000:]
    above = int(m.group(1))
    assert above == round(json.loads((r.run / "ckpt.json").read_text())["info"]["elapsed"])
    args = [*_args(runs["data"], tmp_path / "m", r.run), "--steps", str(HUGE), "--resume"]
    assert cli.main([*args, "--time-limit", "2"]) == 0
    assert _steps_logged(r.run)[-1] == step
    assert cli.main([*args, "--time-limit", str(above + 1.5)]) == 0
    assert _steps_logged(r.run)[-1] > step


def test_ctrl_c_saves_checkpoint_exports_and_resumes(runs, tmp_path):
    r = runs["once"]
    assert r.rc == 0, r.text()[-2000:]
    assert "stopping after this step" in r.text() and "Traceback" not in r.text()
    step = _stopped_step(r, "interrupted at")
    assert "(`--resume` continues)" in r.text()
    _plays(r.out)
    # --resume continues from the Ctrl-C checkpoint to the steps asked
    out2 = tmp_path / "m-resumed"
    assert cli.main([*_args(runs["data"], out2, r.run), "--steps", str(step + 2), "--resume"]) == 0
    log = [json.loads(x) for x in (r.run / "log.jsonl").read_text().splitlines()]
    assert any(x.get("event") == "resumed" and x["step"] == step for x in log)
    assert _steps_logged(r.run)[-2:] == [step + 1, step + 2]
    assert json.loads((out2 / "config.json").read_text())["training"]["steps"] == step + 2
    _plays(out2)


def test_second_ctrl_c_aborts(runs):
    r = runs["twice"]
    assert r.sent == 2
    assert r.rc == 130, (r.rc, r.text()[-2000:])
    assert "stopping after this step" in r.text()
    assert "Traceback" not in r.text() and "interrupted at" not in r.text()
    assert not (r.out / "model.safetensors").exists()
