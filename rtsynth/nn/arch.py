"""A decoder's architecture as plain data, without torch: the backbone registry, the defaults a
config's ``backbone_kw`` may leave out, and the conversions between a torch ``Decoder`` and its
``architecture`` dict (what ``config.json`` stores).

Both real-time paths read from here: the file loader (:mod:`rtsynth.nn.io`) and the NumPy step
(:mod:`rtsynth.nn.fast`); this module imports neither, so neither imports the other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .model import Decoder

#: the backbones (the same tuple as :data:`rtsynth.nn.backbones.BACKBONES`, without torch)
BACKBONES = ("gru", "cnn", "attention")
#: the backbone constructors' defaults for keys a config's ``backbone_kw`` leaves out
BACKBONE_DEFAULTS = {
    "gru": {"hidden": 256, "layers": 1},
    "cnn": {"channels": 64, "kernel": 2, "dilations": [1, 2, 4, 8, 16, 32, 64, 128]},
    "attention": {"dim": 64, "heads": 4, "layers": 2, "window": 48, "ff_mult": 2},
}


def backbone_kw(arch: dict[str, Any]) -> dict[str, Any]:
    """``arch['backbone_kw']`` with the constructor defaults filled in."""
    kw = dict(BACKBONE_DEFAULTS[arch["backbone"]])
    kw.update(arch["backbone_kw"])
    return kw


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


def build_decoder(arch: dict[str, Any]) -> Decoder:
    """An ``architecture`` dict -> a fresh torch ``Decoder`` (imports torch)."""
    from .model import Decoder

    return Decoder(backbone=arch["backbone"], backbone_kw=arch["backbone_kw"],
                   pre_dim=arch["pre_dim"], z_dim=arch["z_dim"], n_features=arch["n_features"],
                   n_harmonics=arch["n_harmonics"], n_noise=arch["n_noise"],
                   sample_rate=arch["sample_rate"], amp_max=arch["amp_max"],
                   noise_max=arch["noise_max"])
