"""A trained decoder as a :class:`rtsynth.instrument.StreamingInstrument`.

State is one batch row per voice slot (see :mod:`rtsynth.nn.backbones`). :meth:`step` gathers the
rows of the given slots, runs one frame for all of them in one batched call, writes the rows back
and the controls into the engine's arrays. Runs under ``torch.inference_mode`` with one thread.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import spec
from ..instrument import StreamingInstrument
from .backbones import reset_state
from .model import Decoder


class NeuralInstrument(StreamingInstrument):
    def __init__(self, decoder: Decoder, config: dict[str, Any], name: str = "neural"):
        self.decoder = decoder.eval()
        for p in self.decoder.parameters():
            p.requires_grad_(False)
        self.config = config
        self.name = name
        self.sample_rate = int(config.get("sample_rate", spec.SAMPLE_RATE))
        self.hop = int(config.get("hop", spec.HOP))
        arch = config["architecture"]
        src = config.get("source") or {}
        self.description = config.get("description") or (
            f"neural {arch['backbone']} instrument"
            + (f", {src.get('name', '')} (GM program {src['program']})" if "program" in src else ""))
        self.n_slots = 0
        self.state: dict[str, torch.Tensor] = {}
        self._fresh = None
        timbre = config.get("timbre")
        self.z_dim = int(arch["z_dim"])
        if self.z_dim:
            self._anchors = np.array([timbre["anchors"][n] for n in timbre["path"]], dtype=np.float32)
            self.z = torch.from_numpy(self._anchors[0].copy())
        else:
            self._anchors = None
            self.z = None
        self.timbre_position = 0.0
        self.n_nan_resets = 0

    # --- state --------------------------------------------------------------------------------
    def allocate(self, n_slots: int) -> None:
        torch.set_num_threads(1)
        self.n_slots = int(n_slots)
        with torch.inference_mode():
            self.state = self.decoder.init_state(self.n_slots)
            self._fresh = self.decoder.init_state(1)
        # The NumPy path (rtsynth.nn.fast) for GRU and CNN decoders: same numbers, a fraction
        # of torch's per-operator overhead. The torch state tensors are views of its arrays, so
        # reset and snapshot still work on them.
        from .fast import FastCNNDecoder, FastGRUDecoder, fast_decoder
        self._fast = fast_decoder(self.decoder, self.n_slots)
        if isinstance(self._fast, FastGRUDecoder):
            self.state["h"] = torch.from_numpy(self._fast.h).unsqueeze(1)
        elif isinstance(self._fast, FastCNNDecoder):
            self.state["buf"] = torch.from_numpy(self._fast.buf)
            self.state["pos"] = torch.from_numpy(self._fast.pos)

    def reset(self, slots: np.ndarray) -> None:
        if not self.state:
            return
        idx = torch.as_tensor(np.asarray(slots, dtype=np.int64))
        if idx.numel():
            with torch.inference_mode():
                reset_state(self.state, idx, self._fresh)

    def snapshot(self) -> dict[str, Any]:
        return {"state": {k: v.clone() for k, v in self.state.items()},
                "z": None if self.z is None else self.z.clone()}

    def restore(self, snap: dict[str, Any]) -> None:
        with torch.inference_mode():
            fast_ok = getattr(self, "_fast", None) is not None and all(
                k in self.state and self.state[k].shape == v.shape
                for k, v in snap["state"].items())
            if fast_ok:       # copy into the arrays the torch tensors view
                for k, v in snap["state"].items():
                    self.state[k].copy_(v)
            else:
                self._fast = None
                self.state = {k: v.clone() for k, v in snap["state"].items()}
            self.n_slots = next(iter(self.state.values())).shape[0] if self.state else 0
            if snap.get("z") is not None:
                self.z = snap["z"].clone()

    # --- the real-time step -------------------------------------------------------------------
    def step(self, features: np.ndarray, slots: np.ndarray,
             out_harm: np.ndarray, out_noise: np.ndarray) -> None:
        n = len(slots)
        if n == 0:
            return
        if getattr(self, "_fast", None) is not None:
            z = None if self.z is None else self.z.numpy()[None, :]
            bad = self._fast.step(features, z, slots, out_harm, out_noise)
            if bad.any():
                self.n_nan_resets += int(bad.sum())
            return
        with torch.inference_mode():
            idx = torch.from_numpy(np.ascontiguousarray(slots, dtype=np.int64))
            x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
            z = None if self.z is None else self.z[None, :].expand(n, -1)
            h, g = self.decoder.step_slots(x, z, self.state, idx)
            # one reduction in the common case: a sum is finite only if every term is
            if not bool(torch.isfinite(h.sum() + g.sum())):
                bad = ~(torch.isfinite(h).all(-1) & torch.isfinite(g).all(-1))
                h = torch.where(bad[:, None], torch.zeros_like(h), h)
                g = torch.where(bad[:, None], torch.zeros_like(g), g)
                reset_state(self.state, idx[bad], self._fresh)
                self.n_nan_resets += int(bad.sum())
            out_harm[:n] = h.numpy()
            out_noise[:n] = g.numpy()

    # --- timbre (VAE models) --------------------------------------------------------------------
    @property
    def has_timbre(self) -> bool:
        return self.z_dim > 0

    def set_timbre(self, position: float) -> None:
        """Piecewise-linear path through the instruments' mean latents, ``position`` in [0, 1]."""
        if not self.z_dim:
            return
        p = float(np.clip(position, 0.0, 1.0))
        self.timbre_position = p
        m = len(self._anchors)
        if m == 1:
            z = self._anchors[0]
        else:
            s = p * (m - 1)
            i = min(int(s), m - 2)
            a = s - i
            z = (1.0 - a) * self._anchors[i] + a * self._anchors[i + 1]
        self.z = torch.from_numpy(np.asarray(z, dtype=np.float32).copy())

    def sample_timbre(self, seed: int | None = None) -> None:
        """A new timbre: a random mixture of the instruments' latents plus prior noise."""
        if not self.z_dim:
            return
        rng = np.random.default_rng(seed)
        w = rng.dirichlet(np.ones(len(self._anchors)))
        z = w @ self._anchors + 0.3 * rng.standard_normal(self.z_dim) * self._anchors.std(0)
        self.z = torch.from_numpy(z.astype(np.float32))

    def render_note(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Offline helper: whole-note features ``[T, 7]`` -> (harm ``[T, K]``, noise ``[T, Bn]``)."""
        with torch.inference_mode():
            x = torch.from_numpy(np.asarray(features, dtype=np.float32))[None]
            z = None if self.z is None else self.z[None]
            h, g, _ = self.decoder(x, z, None)
        return h[0].numpy(), g[0].numpy()
