"""Checks on what training reads and what it is about to write: a crafted ``--resume``
checkpoint, a diverged (non-finite) model, a dataset index that names files outside its folder.
Each failure is one :class:`TrainingInputError` line (a ``ValueError``: ``rtsynth`` prints it and
exits 1), never a traceback, and never a model file that will not load.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable

#: a checkpoint larger than this is refused unread (the largest GPU runs' are ~30 MB)
MAX_CHECKPOINT_BYTES = 2 << 30
MAX_CHECKPOINT_JSON_BYTES = 16 << 20


class TrainingInputError(ValueError):
    """A checkpoint, dataset or training state that cannot be used (one line)."""


def load_checkpoint_checked(load: Callable[..., dict], run_dir: Path, *args) -> dict:
    """``load(run_dir, *args)`` (:func:`rtsynth.train.core.load_checkpoint`) with every way a
    crafted checkpoint can fail turned into one :class:`TrainingInputError`: sizes checked
    before reading, tensors finite, the counters of the right types."""
    run_dir = Path(run_dir)
    ck, js = run_dir / "ckpt.safetensors", run_dir / "ckpt.json"
    hint = f"; delete {run_dir} or train without --resume"
    for p, limit in ((ck, MAX_CHECKPOINT_BYTES), (js, MAX_CHECKPOINT_JSON_BYTES)):
        if not p.is_file():
            raise TrainingInputError(f"{p}: missing (a checkpoint is ckpt.safetensors + "
                                     f"ckpt.json){hint}")
        if p.stat().st_size > limit:
            raise TrainingInputError(f"{p}: larger than {limit >> 20} MiB{hint}")
    _check_finite(ck, hint, args[0] if args and isinstance(args[0], dict) else {})
    try:
        info = load(run_dir, *args)
    except TrainingInputError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever a crafted file provokes in the loaders
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise TrainingInputError(f"{run_dir}: not a usable checkpoint ({type(e).__name__}: "
                                 f"{msg[:200]}){hint}") from None
    return check_info(info, run_dir, hint)


def _check_finite(path: Path, hint: str, modules: dict) -> None:
    """Every tensor finite, and each module tensor of the module's own kind (float / int)."""
    import numpy as np
    kinds = {}
    for name, m in modules.items():
        if m is not None:
            for k, v in m.state_dict().items():
                kinds[f"{name}.{k}"] = "F" if v.is_floating_point() else "I"
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework="np") as f:
            for k in f.keys():
                sl = f.get_slice(k)
                dt = sl.get_dtype()
                if dt not in ("F32", "F64", "F16", "BF16", "I64", "I32") or \
                        kinds.get(k, dt[0]) != dt[0].replace("B", "F"):
                    raise TrainingInputError(f"{path}: tensor {k} has dtype {dt}{hint}")
                t = f.get_tensor(k)
                if t.dtype.kind == "f" and not np.isfinite(t).all():
                    raise TrainingInputError(f"{path}: tensor {k} holds non-finite values (the "
                                             f"run had diverged){hint}")
    except TrainingInputError:
        raise
    except Exception as e:  # noqa: BLE001 - SafetensorError, a truncated or hostile file
        raise TrainingInputError(f"{path}: not a readable safetensors file ({e}){hint}") from None


def check_info(info: Any, where, hint: str = "") -> dict:
    """The counters a checkpoint resumes from: non-negative integers and finite seconds."""
    if not isinstance(info, dict):
        raise TrainingInputError(f"{where}: the checkpoint's info is not an object{hint}")
    for k in ("step", "gan_step"):
        v = info.get(k)
        if not (isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 40):
            raise TrainingInputError(f"{where}: checkpoint {k} is {v!r}, not a step count{hint}")
    for k in ("elapsed", "gan_elapsed"):
        v = info.get(k)
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                and 0 <= v < 1e9):
            raise TrainingInputError(f"{where}: checkpoint {k} is {v!r}, not seconds{hint}")
    if not isinstance(info.get("last", {}), dict):
        raise TrainingInputError(f"{where}: checkpoint 'last' is not an object{hint}")
    return info


def check_finite_loss(loss: float, step: int, phase: str = "spectral") -> None:
    """Stop a run whose loss is not finite: what it trains from here is garbage."""
    if not math.isfinite(loss):
        raise TrainingInputError(f"the {phase} loss is {loss} at step {step}: training "
                                 f"diverged (a NaN/Inf checkpoint, data or learning rate); "
                                 f"stopped, no model written")


def check_finite_modules(modules: dict, what: str) -> None:
    """Refuse to write ``what`` (a checkpoint, a model) from parameters that are not finite."""
    import torch
    for name, m in modules.items():
        if m is None:
            continue
        for k, v in m.state_dict().items():
            if torch.is_floating_point(v) and not bool(torch.isfinite(v).all()):
                raise TrainingInputError(f"{name}.{k} holds non-finite values: training "
                                         f"diverged; no {what} written")


def inside(folder: str | os.PathLike, name: str, what: str = "file") -> Path:
    """``folder / name`` when it stays inside ``folder`` (no absolute path, no ``..`` out, no
    link out); else :class:`TrainingInputError`. A dataset index names its own files only."""
    base = Path(folder).resolve()
    if not isinstance(name, str) or not name or "\0" in name:
        raise TrainingInputError(f"{base}: a {what} name {name!r} in index.json is not a "
                                 f"relative path")
    p = (base / name).resolve()
    if os.path.isabs(name) or not p.is_relative_to(base):
        raise TrainingInputError(f"{base}/index.json names {name!r}, outside the dataset "
                                 f"folder: refused")
    return p
