"""Save and load neural instruments: ``models/NAME/{model.safetensors, config.json, README.md}``.

Loading never unpickles: weights are read with safetensors only, the config is plain JSON, and
every tensor's name, shape and dtype is checked against the architecture the config describes.
Whatever is wrong with a model folder (missing, corrupt, truncated, hostile, mismatched) raises
:class:`ModelLoadError` with a message that names the file and the problem.

Two ways in, one validation (:func:`load_weights`):

- :func:`load_neural_instrument` (``rtsynth play``/``render``): NumPy only. The weights are read
  as NumPy arrays and the real-time step runs in :mod:`rtsynth.nn.fast`; torch is never imported
  (it costs ~2 s of start-up), for every backbone.
- :func:`load_decoder` (training, ``--init``, analysis): the torch :class:`Decoder`.

This module imports torch only inside the functions that need it.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import spec
from .arch import BACKBONE_DEFAULTS, BACKBONES, backbone_kw, decoder_config

if TYPE_CHECKING:  # pragma: no cover
    from .model import Decoder

FORMAT = "rtsynth-neural-1"
MAX_CONFIG_BYTES = 1 << 20
MAX_WEIGHTS_BYTES = 64 << 20
#: per-voice state of the real-time step (float32 values): the shipped models need 256 (GRU) to
#: 24 864 (CNN); a config that asks for more than this is refused, not allocated
MAX_STATE_PER_SLOT = 1 << 22
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
class ModelLoadError(Exception):
    """A model folder cannot be loaded (missing, corrupt, mismatched or unsafe)."""


def build_decoder(arch: dict[str, Any]) -> Decoder:
    """:func:`rtsynth.nn.model.build_decoder` (imports torch)."""
    from .model import build_decoder as build

    return build(arch)


def expected_shapes(arch: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The decoder's ``state_dict`` (names without the ``decoder.`` prefix) -> shape, computed
    from a validated architecture without building it (tested equal to the torch module's)."""
    P, F, Z = arch["pre_dim"], arch["n_features"], arch["z_dim"]
    n_out = 1 + arch["n_harmonics"] + arch["n_noise"]
    kw = backbone_kw(arch)
    s: dict[str, tuple[int, ...]] = {"pre.weight": (P, F + Z), "pre.bias": (P,)}

    def lin(name, n_in, n_o):
        s[f"backbone.{name}.weight"] = (n_o, n_in)
        s[f"backbone.{name}.bias"] = (n_o,)

    kind = arch["backbone"]
    if kind == "gru":
        H = kw["hidden"]
        for i in range(kw["layers"]):
            s[f"backbone.gru.weight_ih_l{i}"] = (3 * H, P if i == 0 else H)
            s[f"backbone.gru.weight_hh_l{i}"] = (3 * H, H)
            s[f"backbone.gru.bias_ih_l{i}"] = (3 * H,)
            s[f"backbone.gru.bias_hh_l{i}"] = (3 * H,)
        out = H
    elif kind == "cnn":
        C, k = kw["channels"], kw["kernel"]
        lin("inp", P, C)
        for i in range(len(kw["dilations"])):
            lin(f"convs.{i}", k * C, C)
        for i in range(len(kw["dilations"])):
            lin(f"mix.{i}", C, C)
        out = C
    else:
        D, ff = kw["dim"], kw["ff_mult"] * kw["dim"]
        lin("inp", P, D)
        for i in range(kw["layers"]):
            s[f"backbone.norm1.{i}.weight"] = (D,)
            s[f"backbone.norm1.{i}.bias"] = (D,)
            lin(f"qkv.{i}", D, 3 * D)
            lin(f"proj.{i}", D, D)
            s[f"backbone.norm2.{i}.weight"] = (D,)
            s[f"backbone.norm2.{i}.bias"] = (D,)
            lin(f"ff1.{i}", D, ff)
            lin(f"ff2.{i}", ff, D)
        s["backbone.rel_bias"] = (kw["heads"], kw["window"])
        out = D
    s["head.weight"] = (n_out, out + P)
    s["head.bias"] = (n_out,)
    return s


def save_model(folder: str | os.PathLike, decoder: Decoder, config: dict[str, Any],
               card: str | None = None, timbre: dict[str, Any] | None = None) -> Path:
    """Write ``model.safetensors`` (decoder weights, prefixed ``decoder.``), ``config.json``
    (``config`` plus ``format``, ``architecture``, sample rate, hop) and ``README.md`` (``card``).

    ``timbre``: for a VAE model, ``{"z_dim": Z, "anchors": {name: [Z floats]}, "path": [names]}``.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"decoder.{k}": v.detach().cpu().contiguous().float()
               for k, v in decoder.state_dict().items()}
    save_file(tensors, str(folder / WEIGHTS), metadata={"format": FORMAT})
    cfg = dict(config)
    cfg.update({"format": FORMAT, "architecture": decoder_config(decoder),
                "sample_rate": decoder.sample_rate, "hop": spec.HOP,
                "frame_rate": decoder.sample_rate / spec.HOP})
    if timbre is not None:
        cfg["timbre"] = timbre
    (folder / CONFIG).write_text(json.dumps(cfg, indent=2, sort_keys=False) + "\n")
    if card is not None:
        (folder / "README.md").write_text(card)
    return folder


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ModelLoadError(msg)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _validate_arch(arch: Any, where: str) -> dict[str, Any]:
    _check(isinstance(arch, dict), f"{where}: 'architecture' must be an object")
    need = {"backbone": str, "backbone_kw": dict, "pre_dim": int, "z_dim": int, "n_features": int,
            "n_harmonics": int, "n_noise": int, "sample_rate": int, "amp_max": (int, float),
            "noise_max": (int, float)}
    for k, t in need.items():
        _check(k in arch, f"{where}: architecture lacks {k!r}")
        _check(isinstance(arch[k], t) and not isinstance(arch[k], bool),
               f"{where}: architecture.{k} has the wrong type")
    _check(arch["backbone"] in BACKBONES, f"{where}: unknown backbone {arch['backbone']!r}")
    _check(arch["n_features"] in (spec.N_FEATURES, spec.N_FEATURES_V2),
           f"{where}: n_features must be {spec.N_FEATURES} (contract v1) or "
           f"{spec.N_FEATURES_V2} (v2: + dynamics, brightness)")
    _check(arch["n_harmonics"] == spec.N_HARMONICS, f"{where}: n_harmonics must be {spec.N_HARMONICS}")
    _check(arch["n_noise"] == spec.N_NOISE_BANDS, f"{where}: n_noise must be {spec.N_NOISE_BANDS}")
    _check(arch["sample_rate"] == spec.SAMPLE_RATE, f"{where}: sample_rate must be {spec.SAMPLE_RATE}")
    _check(1 <= arch["pre_dim"] <= 4096 and 0 <= arch["z_dim"] <= 256,
           f"{where}: pre_dim/z_dim out of range")
    for k in ("amp_max", "noise_max"):
        _check(math.isfinite(arch[k]) and 0 < arch[k] < 100, f"{where}: {k} out of range")
    kw = arch["backbone_kw"]
    allowed = {"gru": {"hidden", "layers"}, "cnn": {"channels", "kernel", "dilations"},
               "attention": {"dim", "heads", "layers", "window", "ff_mult"}}[arch["backbone"]]
    _check(set(kw) <= allowed, f"{where}: unexpected backbone_kw keys {sorted(set(kw) - allowed)}")
    for k, v in kw.items():
        if k == "dilations":
            _check(isinstance(v, list) and 0 < len(v) <= 64 and all(_is_int(d) and 1 <= d <= 4096
                                                                    for d in v),
                   f"{where}: bad dilations")
        else:
            _check(_is_int(v) and 1 <= v <= 4096, f"{where}: backbone_kw.{k} out of range")
    if arch["backbone"] == "attention":
        full = backbone_kw(arch)
        _check(full["dim"] % full["heads"] == 0, f"{where}: dim not divisible by heads")
    n = state_per_slot(arch)
    _check(n <= MAX_STATE_PER_SLOT,
           f"{where}: the architecture needs {n} state values per voice (at most {MAX_STATE_PER_SLOT})")
    return arch


def state_per_slot(arch: dict[str, Any]) -> int:
    """Float32 values of real-time state per voice slot (:mod:`rtsynth.nn.fast`'s layout)."""
    kw = backbone_kw(arch)
    if arch["backbone"] == "gru":
        return kw["layers"] * kw["hidden"]
    if arch["backbone"] == "cnn":
        return kw["channels"] * sum((kw["kernel"] - 1) * d + 1 for d in kw["dilations"])
    return kw["layers"] * 2 * kw["window"] * kw["dim"]


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    folder = Path(folder)
    path = folder / CONFIG
    _check(folder.is_dir(), f"{folder}: not a model folder")
    _check(path.is_file(), f"{path}: missing")
    _check(path.stat().st_size <= MAX_CONFIG_BYTES, f"{path}: too large")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{path}: not valid JSON ({e})") from None
    _check(isinstance(cfg, dict), f"{path}: must be a JSON object")
    _check(cfg.get("format") == FORMAT, f"{path}: format is {cfg.get('format')!r}, expected {FORMAT!r}")
    _check(cfg.get("hop") == spec.HOP, f"{path}: hop must be {spec.HOP}")
    _validate_arch(cfg.get("architecture"), str(path))
    # the top-level copies the instrument reads must agree with the architecture
    sr = cfg.get("sample_rate", cfg["architecture"]["sample_rate"])
    _check(_is_int(sr) and sr == cfg["architecture"]["sample_rate"],
           f"{path}: sample_rate {sr!r} is not the architecture's "
           f"{cfg['architecture']['sample_rate']} Hz")
    for k, t in (("source", dict), ("description", str), ("name", str)):
        _check(cfg.get(k) is None or isinstance(cfg[k], t),
               f"{path}: {k} must be a JSON {'object' if t is dict else 'string'}")
    z = cfg["architecture"]["z_dim"]
    if z:
        t = cfg.get("timbre")
        _check(isinstance(t, dict) and isinstance(t.get("anchors"), dict) and t["anchors"]
               and isinstance(t.get("path"), list) and t["path"],
               f"{path}: a VAE model needs timbre.anchors and timbre.path")
        for name, vec in t["anchors"].items():
            _check(isinstance(vec, list) and len(vec) == z
                   and all(isinstance(v, (int, float)) and math.isfinite(v) for v in vec),
                   f"{path}: timbre anchor {name!r} must be {z} finite numbers")
        _check(all(isinstance(p, str) and p in t["anchors"] for p in t["path"]),
               f"{path}: timbre.path names an unknown anchor")
    return cfg


def load_weights(folder: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and validate a model folder without torch -> (weights, config).

    ``weights``: the decoder's state dict as float32 NumPy arrays (names without the ``decoder.``
    prefix). Names, dtypes and shapes are checked from the safetensors header before any tensor
    is read; every tensor must be finite.
    """
    from safetensors import safe_open

    folder = Path(folder)
    cfg = read_config(folder)
    wpath = folder / WEIGHTS
    _check(wpath.is_file(), f"{wpath}: missing")
    _check(wpath.stat().st_size <= MAX_WEIGHTS_BYTES, f"{wpath}: larger than {MAX_WEIGHTS_BYTES} bytes")
    try:
        expected = {f"decoder.{k}": v for k, v in expected_shapes(cfg["architecture"]).items()}
    except Exception as e:  # noqa: BLE001 - any inconsistency in the architecture
        raise ModelLoadError(f"{folder}: cannot build the architecture ({e})") from None
    weights = {}
    try:
        with safe_open(str(wpath), framework="np") as f:
            names = set(f.keys())
            missing = sorted(set(expected) - names)
            extra = sorted(names - set(expected))
            _check(not missing, f"{wpath}: missing tensors {missing[:5]}")
            _check(not extra, f"{wpath}: unexpected tensors {extra[:5]}")
            for k, shape in expected.items():
                sl = f.get_slice(k)
                dt, got = sl.get_dtype(), tuple(sl.get_shape())
                _check(dt == "F32", f"{wpath}: {k} has dtype {dt}, expected float32 (F32)")
                _check(got == tuple(shape), f"{wpath}: {k} has shape {got}, expected {tuple(shape)}")
                t = np.ascontiguousarray(f.get_tensor(k), dtype=np.float32)
                _check(t.shape == tuple(shape), f"{wpath}: {k} reads as shape {t.shape}")
                _check(bool(np.isfinite(t).all()), f"{wpath}: {k} holds non-finite values")
                weights[k[len("decoder."):]] = t
    except ModelLoadError:
        raise
    except Exception as e:  # noqa: BLE001 - SafetensorError, OSError, anything a hostile file provokes
        raise ModelLoadError(f"{wpath}: not a readable safetensors file ({e})") from None
    return weights, cfg


def load_decoder(folder: str | os.PathLike) -> tuple[Decoder, dict[str, Any]]:
    """Load and validate a model folder -> (torch decoder in eval mode, config)."""
    import torch

    folder = Path(folder)
    weights, cfg = load_weights(folder)
    try:
        model = build_decoder(cfg["architecture"])
    except Exception as e:  # noqa: BLE001 - any inconsistency in the architecture
        raise ModelLoadError(f"{folder}: cannot build the architecture ({e})") from None
    try:
        model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    except RuntimeError as e:
        raise ModelLoadError(f"{folder / WEIGHTS}: does not fit the architecture ({e})") from None
    model.eval()
    return model, cfg


def load_neural_instrument(folder: str | os.PathLike):
    """A :class:`rtsynth.instruments.base.StreamingInstrument` for the model in ``folder``
    (NumPy real-time step; torch is not imported)."""
    from .neural import NeuralInstrument    # here, not at the top: it imports numba (nn.fast)

    weights, cfg = load_weights(folder)
    inst = NeuralInstrument(weights, cfg, name=Path(folder).name)
    inst.probe_output()         # a faulty model is muted, with a warning (rtsynth.nn.guard)
    return inst


def __getattr__(name: str):
    if name == "TimbreEncoder":     # kept importable from here; lazily, it needs torch
        from .model import TimbreEncoder
        return TimbreEncoder
    raise AttributeError(name)


__all__ = ["ModelLoadError", "save_model", "load_decoder", "load_weights",
           "load_neural_instrument", "read_config", "build_decoder", "decoder_config",
           "expected_shapes", "state_per_slot", "TimbreEncoder", "BACKBONES", "BACKBONE_DEFAULTS",
           "backbone_kw"]
