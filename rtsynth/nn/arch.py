"""A decoder's architecture as plain data, without torch: the backbone registry, the defaults a
config's ``backbone_kw`` may leave out, and the conversion of a torch ``Decoder`` to its ``architecture``
dict (what ``config.json`` stores; :func:`rtsynth.nn.model.build_decoder` is the way back).

Both real-time paths read from here: the file loader (:mod:`rtsynth.nn.io`) and the NumPy step
(:mod:`rtsynth.nn.fast`); this module imports neither, so neither imports the other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .model import Decoder

#: the backbones and their one set of defaults: what ``Decoder(kind)`` and ``rtsynth train``
#: build, and what fills in the keys a ``backbone_kw`` (a config's, a constructor's) leaves out.
#: Every shipped model is one of these sizes, except the ``-lite`` CNNs (48 channels).
BACKBONE_DEFAULTS: dict[str, dict[str, Any]] = {
    "gru": {"hidden": 256, "layers": 1},
    "cnn": {"channels": 96, "kernel": 4, "dilations": [1, 4, 16, 64]},
    "attention": {"dim": 64, "heads": 4, "layers": 1, "window": 64, "ff_mult": 4},
}
BACKBONES = tuple(BACKBONE_DEFAULTS)


def fill_backbone_kw(kind: str, kw: dict[str, Any] | None = None) -> dict[str, Any]:
    """``kw`` with the defaults of backbone ``kind`` filled in (a fresh dict)."""
    if kind not in BACKBONE_DEFAULTS:
        raise ValueError(f"unknown backbone {kind!r} ({', '.join(BACKBONES)})")
    out = {k: list(v) if isinstance(v, list) else v for k, v in BACKBONE_DEFAULTS[kind].items()}
    out.update(kw or {})
    return out


def backbone_kw(arch: dict[str, Any]) -> dict[str, Any]:
    """``arch['backbone_kw']`` with the defaults filled in."""
    return fill_backbone_kw(arch["backbone"], arch["backbone_kw"])


def decoder_config(model: Decoder) -> dict[str, Any]:
    """A torch ``Decoder`` -> its ``architecture`` dict."""
    bb = model.backbone
    if model.backbone_kind == "gru":
        kw = {"hidden": bb.hidden, "layers": bb.layers}
    elif model.backbone_kind == "cnn":
        kw = {"channels": bb.channels, "kernel": bb.kernel, "dilations": list(bb.dilations)}
    else:
        kw = {"dim": bb.dim, "heads": bb.heads, "layers": bb.n_layers, "window": bb.window,
              "ff_mult": model.backbone.ff1[0].out_features // bb.dim}
    return {"backbone": model.backbone_kind, "backbone_kw": kw, "pre_dim": model.pre.out_features,
            "z_dim": model.z_dim, "n_features": model.n_features,
            "n_harmonics": model.n_harmonics, "n_noise": model.n_noise,
            "sample_rate": model.sample_rate, "amp_max": model.amp_max,
            "noise_max": model.noise_max}

