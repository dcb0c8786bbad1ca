"""The shipped models load and meet their cards' numbers on a few held-out notes, regenerated
with FluidSynth (rtsynth.eval.checkset)."""

import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HAVE_FS = (shutil.which("fluidsynth") is not None
           and Path("/usr/share/sounds/sf2/FluidR3_GM.sf2").exists())
MODELS = sorted(p.parent.name for p in (ROOT / "models").glob("*/config.json")
                if "check_set" in json.loads(p.read_text()).get("metrics", {}))


@pytest.mark.skipif(not HAVE_FS, reason="fluidsynth / FluidR3_GM.sf2 not installed")
@pytest.mark.parametrize("name", MODELS)
def test_shipped_model_meets_its_check_set(name):
    from rtsynth.eval.checkset import check_scores

    card = json.loads((ROOT / "models" / name / "config.json").read_text())["metrics"]["check_set"]
    got = check_scores(name, card["instrument"], card["notes"])
    for g, want in zip(got, card["mss_distance"]):
        assert g <= want * 1.01 + 1e-3, (got, card["mss_distance"])


def test_there_are_checked_models():
    assert {"flute-lite", "flute-v2", "trumpet-v2", "violin-life", "trumpet-life", "flute-life",
            "cello-life"} <= set(MODELS)
