"""The training loop: spectral phase (MR-STFT [+ KL]), optional adversarial phase, export.

A run folder (``--run-dir``, default ``runs/<model name>``) holds ``log.jsonl`` (one line per
logged step), ``ckpt.safetensors`` + ``ckpt.json`` (model, encoder, discriminator and optimizer
state, all safetensors; the JSON holds the step counters and the optimizer hyper-parameters), so
``--resume`` continues where a run stopped. Checkpoints are our own files in our own run folder;
nothing is ever unpickled.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import spec
from ..nn import synth
from ..nn.io import save_model
from ..nn.losses import MultiResolutionSTFTLoss
from ..nn.model import (DEFAULT_BACKBONE_KW, Decoder, Discriminator, TimbreEncoder,
                        d_hinge_loss, feature_matching_loss, g_hinge_loss, kl_divergence)
from .dataset import TrainSet, load_train_set
from .inputs import check_finite_loss, check_finite_modules, load_checkpoint_checked

TINY_KW = {"gru": {"hidden": 16, "layers": 1},
           "cnn": {"channels": 8, "kernel": 2, "dilations": [1, 2, 4]},
           "attention": {"dim": 8, "heads": 2, "layers": 1, "window": 8, "ff_mult": 2}}


@dataclass
class TrainConfig:
    data: list[str]
    out: str
    backbone: str = "gru"
    vae: bool = False
    z_dim: int = 8
    kl_weight: float = 1e-3
    steps: int = 3000
    gan_steps: int = 0
    batch: int = 16
    crop: int = 256
    onset_prob: float = 0.5
    lr: float = 1e-3
    lr_final: float = 1e-4
    gan_lr: float = 1e-4
    adv_weight: float = 0.1
    fm_weight: float = 1.0
    time_limit: float | None = None      # seconds for the spectral phase
    gan_time_limit: float | None = None  # seconds for the GAN phase
    device: str = "auto"
    seed: int = 0
    run_dir: str | None = None
    max_frames: int | None = None
    tiny: bool = False
    backbone_kw: dict | None = None
    pre_dim: int | None = None           # the input layer's width (None: 128, tiny 16)
    teacher: str | None = None           # distil: also match this model folder's controls
    distill_weight: float = 1.0          # the weight of that term (L1 of log controls)
    ckpt_every: int = 250
    log_every: int = 10
    resume: bool = False
    quiet: bool = False
    export_before_gan: str | None = None  # also export the spectral-only model here
    init: str | None = None               # start from this exported model folder's weights
    noise_warmup: int = 400               # noise gains ramp 0 -> 1 over these first steps
    amp_bias: float | None = -2.0         # initial bias of the amplitude logit (0: amp 0.41)
    n_features: int = spec.N_FEATURES     # 9: contract v2 (dynamics, brightness from the audio)
    tilt_fraction: float = 0.0            # v2: add this fraction again through a spectral tilt
    log_weight: float = 1.0               # weight of the log-magnitude term of the loss
    velocity_dropout: float = 0.0         # v2: this fraction of a batch gets a random velocity
    loss_normalize: bool = False          # both signals / the target's RMS before the loss
    source_f0: bool = False               # pitch input and f0 from the source's tracked pitch
    onset_weight: float = 0.0             # the attack term (onset_loss) on crops from onsets
    level_weight: float = 0.0             # the level term (level_loss) on every crop
    command: str = field(default_factory=lambda: _command_line())


def _command_line() -> str:
    argv = list(sys.argv)
    if argv and argv[0].endswith(("train/cli.py", "rtsynth.train.cli")):
        argv = ["python", "-m", "rtsynth.train.cli"] + argv[1:]
    elif argv and argv[0].endswith("rtsynth"):
        argv[0] = "rtsynth"
    return " ".join(shlex.quote(a) for a in argv)


# --- checkpoints (safetensors only) ---------------------------------------------------------------

def _opt_to_flat(opt: torch.optim.Optimizer, prefix: str):
    sd = opt.state_dict()
    tensors, meta = {}, {"param_groups": sd["param_groups"], "state_keys": {}}
    for pid, st in sd["state"].items():
        keys = []
        for k, v in st.items():
            t = v if torch.is_tensor(v) else torch.tensor(v)
            tensors[f"{prefix}.{pid}.{k}"] = t.detach().cpu().contiguous()
            keys.append(k)
        meta["state_keys"][str(pid)] = keys
    return tensors, meta


def _opt_from_flat(opt: torch.optim.Optimizer, tensors: dict, meta: dict, prefix: str, device):
    state = {}
    for pid, keys in meta["state_keys"].items():
        state[int(pid)] = {k: (tensors[f"{prefix}.{pid}.{k}"].to(device) if k != "step"
                               else tensors[f"{prefix}.{pid}.{k}"]) for k in keys}
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(run_dir: Path, modules: dict, opts: dict, info: dict) -> None:
    from safetensors.torch import save_file

    tensors, meta = {}, {}
    for name, m in modules.items():
        if m is not None:
            for k, v in m.state_dict().items():
                tensors[f"{name}.{k}"] = v.detach().cpu().contiguous()
    for name, o in opts.items():
        if o is not None:
            t, m = _opt_to_flat(o, f"opt_{name}")
            tensors.update(t)
            meta[name] = m
    tmp = run_dir / "ckpt.safetensors.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(run_dir / "ckpt.safetensors")
    (run_dir / "ckpt.json").write_text(json.dumps({"info": info, "optimizers": meta}, indent=1))


def load_checkpoint(run_dir: Path, modules: dict, opts: dict, device) -> dict:
    from safetensors.torch import load_file

    tensors = load_file(str(run_dir / "ckpt.safetensors"), device="cpu")
    js = json.loads((run_dir / "ckpt.json").read_text())
    for name, m in modules.items():
        if m is None:
            continue
        sd = {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")}
        if sd:
            m.load_state_dict(sd)
    for name, o in opts.items():
        if o is not None and name in js["optimizers"]:
            _opt_from_flat(o, tensors, js["optimizers"][name], f"opt_{name}", device)
    return js["info"]


# --- the loop -----------------------------------------------------------------------------------

def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.device = _device(cfg.device)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.out = Path(cfg.out)
        self.run_dir = Path(cfg.run_dir) if cfg.run_dir else Path("runs") / self.out.name
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.ts: TrainSet = load_train_set(cfg.data, "train", cfg.max_frames,
                                           n_features=cfg.n_features,
                                           tilt_fraction=cfg.tilt_fraction,
                                           seed=cfg.seed,
                                           source_f0=cfg.source_f0).to(self.device)
        kw = cfg.backbone_kw or (TINY_KW if cfg.tiny else DEFAULT_BACKBONE_KW)[cfg.backbone]
        z = cfg.z_dim if cfg.vae else 0
        pre_dim = cfg.pre_dim or (16 if cfg.tiny else 128)
        if cfg.init and cfg.backbone_kw is None:
            # the architecture of the model it starts from
            from ..nn.io import read_config
            arch = read_config(cfg.init)["architecture"]
            cfg.backbone, kw, pre_dim = arch["backbone"], arch["backbone_kw"], arch["pre_dim"]
        self.decoder = Decoder(cfg.backbone, kw, pre_dim=pre_dim,
                               z_dim=z, n_features=cfg.n_features).to(self.device)
        self.encoder = (TimbreEncoder(z, channels=16 if cfg.tiny else 128).to(self.device)
                        if cfg.vae else None)
        if cfg.amp_bias is not None:
            with torch.no_grad():
                self.decoder.head.bias[0] = cfg.amp_bias
        if cfg.init:
            from ..nn.io import load_decoder
            init_dec, _ = load_decoder(cfg.init)
            sd = init_dec.state_dict()
            w = sd["pre.weight"]
            if init_dec.n_features < cfg.n_features:
                # a v1 model grows the v2 columns: their weights start at zero, so the new
                # model starts as the old one and learns what dynamics and brightness add
                nf0 = init_dec.n_features
                w2 = w.new_zeros(w.shape[0], w.shape[1] + cfg.n_features - nf0)
                w2[:, :nf0] = w[:, :nf0]
                w2[:, cfg.n_features:] = w[:, nf0:]
                sd["pre.weight"] = w2
            self.decoder.load_state_dict(sd)
        self.teacher = None
        self._distill = None
        if cfg.teacher:
            from ..nn.io import load_decoder
            self.teacher, tcfg = load_decoder(cfg.teacher)
            if int(tcfg["architecture"]["n_features"]) != cfg.n_features or \
                    int(tcfg["architecture"]["z_dim"]):
                raise ValueError(f"--teacher {cfg.teacher}: not a {cfg.n_features}-feature "
                                 "model without a timbre latent")
            self.teacher = self.teacher.to(self.device).eval()
            for q in self.teacher.parameters():
                q.requires_grad_(False)
        params = list(self.decoder.parameters()) + (list(self.encoder.parameters())
                                                    if self.encoder else [])
        self.opt = torch.optim.Adam(params, lr=cfg.lr)
        self.disc = None
        self.opt_d = None
        self.opt_g = None
        if cfg.gan_steps > 0:
            self.disc = Discriminator().to(self.device)
            self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=cfg.gan_lr, betas=(0.5, 0.9))
            self.opt_g = torch.optim.Adam(params, lr=cfg.gan_lr, betas=(0.5, 0.9))
        self.loss_fn = MultiResolutionSTFTLoss(log_weight=cfg.log_weight).to(self.device)
        lab = self.ts.label.cpu().numpy()
        self._by_label = {int(l): np.nonzero(lab == l)[0] for l in np.unique(lab)}
        self.step = 0
        self.gan_step = 0
        self.in_gan = False
        self.stop_requested = False      # Ctrl-C: stop at the end of this step (_stop_on_sigint)
        self.elapsed = 0.0
        self.gan_elapsed = 0.0
        self.last: dict = {}
        self.history: list[dict] = []
        if cfg.resume and (self.run_dir / "ckpt.safetensors").exists():
            info = load_checkpoint_checked(load_checkpoint, self.run_dir, self._modules(),
                                           self._opts(), self.device)
            self.step, self.gan_step = info["step"], info["gan_step"]
            self.elapsed, self.gan_elapsed = info["elapsed"], info["gan_elapsed"]
            self.last = info.get("last", {})
            self.rng = np.random.default_rng(cfg.seed + 7919 * (self.step + self.gan_step))
            self.log({"event": "resumed", "step": self.step, "gan_step": self.gan_step})

    def _modules(self):
        return {"decoder": self.decoder, "encoder": self.encoder, "disc": self.disc}

    def _opts(self):
        return {"main": self.opt, "d": self.opt_d, "g": self.opt_g}

    def log(self, rec: dict) -> None:
        with open(self.run_dir / "log.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")

    def checkpoint(self) -> None:
        check_finite_modules(self._modules(), "checkpoint")
        save_checkpoint(self.run_dir, self._modules(), self._opts(),
                        {"step": self.step, "gan_step": self.gan_step, "elapsed": self.elapsed,
                         "gan_elapsed": self.gan_elapsed, "last": self.last,
                         "config": asdict(self.cfg)})

    # one batch: predicted and target audio of the crops (+ KL)
    def batch(self):
        cfg, ts, hop = self.cfg, self.ts, spec.HOP
        n = len(ts)
        idx = torch.as_tensor(self.rng.choice(n, size=cfg.batch, replace=n < cfg.batch),
                              device=self.device)
        t_all = ts.features.shape[1]
        crop = min(cfg.crop, t_all)
        nf = ts.n_frames[idx].cpu().numpy()
        starts = np.where(self.rng.random(cfg.batch) < cfg.onset_prob, 0,
                          self.rng.integers(0, np.maximum(np.minimum(nf, t_all) - crop // 2, 1)))
        starts = np.minimum(starts, t_all - crop)
        s = torch.as_tensor(starts, device=self.device)
        feats = ts.features[idx]
        if cfg.velocity_dropout > 0 and feats.shape[-1] > spec.N_FEATURES and not self.in_gan:
            # in a plain note the velocity and dynamics columns are equal: a random velocity
            # in some rows makes the spectrum's dependence on loudness go through dynamics
            # (which expression controllers move), not through the note-on velocity
            drop = torch.rand(feats.shape[0], 1, device=self.device) < cfg.velocity_dropout
            rv = torch.rand(feats.shape[0], 1, device=self.device).expand(-1, feats.shape[1])
            feats = feats.clone()
            feats[..., 1] = torch.where(drop, rv, feats[..., 1])
        ar = torch.arange(crop * hop, device=self.device)
        samp = s[:, None] * hop + ar[None, :]
        target = torch.gather(ts.audio[idx], 1, samp)
        kl = None
        z = None
        if self.encoder is not None:
            # the timbre comes from ANOTHER note of the same instrument (a random crop of it), so
            # the latent can only carry what the instrument's notes share, not this note's pitch
            # or loudness: the instrument's mean latent then plays all its notes
            lab = ts.label[idx].cpu().numpy()
            other = np.array([self.rng.choice(self._by_label[l]) for l in lab])
            onf = ts.n_frames[torch.as_tensor(other, device=self.device)].cpu().numpy()
            os_ = np.minimum(self.rng.integers(0, np.maximum(onf - crop // 2, 1)), t_all - crop)
            osamp = torch.as_tensor(os_, device=self.device)[:, None] * hop + ar[None, :]
            enc_in = torch.gather(ts.audio[torch.as_tensor(other, device=self.device)], 1, osamp)
            mu, logvar = self.encoder(enc_in)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            kl = kl_divergence(mu, logvar)
        harm, noise, _ = self.decoder(feats, z)
        if self.teacher is not None and not self.in_gan:
            self._distill = distill_loss(harm, noise, *self.teacher(feats)[:2])
        # frames s-1 .. s+crop-1; frame -1 is the silent frame before the onset
        fr = s[:, None] + torch.arange(-1, crop, device=self.device)[None, :] + 1
        hp = torch.cat([harm.new_zeros(harm.shape[0], 1, harm.shape[2]), harm], 1)
        npd = torch.cat([noise.new_zeros(noise.shape[0], 1, noise.shape[2]), noise], 1)
        h_c = torch.gather(hp, 1, fr[:, :, None].expand(-1, -1, hp.shape[2]))
        n_c = torch.gather(npd, 1, fr[:, :, None].expand(-1, -1, npd.shape[2]))
        sampf = (s[:, None] - 1) * hop + torch.arange((crop + 1) * hop, device=self.device)[None]
        f0 = torch.gather(ts.f0[idx], 1, sampf.clamp(min=0))
        off = torch.as_tensor(self.rng.integers(0, spec.NOISE_TABLE_LEN, cfg.batch),
                              device=self.device)
        if (self.decoder.training and not self.in_gan and not self.cfg.init
                and self.step < self.cfg.noise_warmup):
            # harmonics first: with noise at full strength from the start, a model can settle
            # in the minimum where noise carries all the energy and the harmonic amplitude dies
            n_c = n_c * (self.step / self.cfg.noise_warmup)
        # a crop from the onset (s == 0): its frame 1 is the note's first (the spec's short ramp)
        first = torch.where(s == 0, 1, -1)
        y = synth.synthesize(h_c, n_c, f0, off, first=first)[:, hop:]
        self._onset_rows = s == 0
        return y, target, kl

    def _normalized(self, y, target):
        """``--loss-normalize``: both divided by the target crop's RMS, so the log term's
        1e-5 floor sits where the evaluation's does (it compares unit-RMS signals): the
        source's quiet spectrum (its band edge, the floor between harmonics) counts as
        much as it does there."""
        if not self.cfg.loss_normalize:
            return y, target
        r = target.pow(2).mean(-1, keepdim=True).sqrt().clamp(min=1e-4)
        return y / r, target / r

    def _lr(self, step, steps, elapsed, limit, lr0, lr1):
        frac = step / max(steps, 1)
        if limit:
            frac = max(frac, elapsed / limit)
        return lr0 * (lr1 / lr0) ** min(frac, 1.0)

    def train(self) -> dict:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        cfg = self.cfg
        quiet = cfg.quiet or not sys.stdout.isatty()
        cols = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn()]
        with Progress(*cols, disable=quiet) as prog:
            task = prog.add_task(f"{self.out.name} {cfg.backbone}", total=cfg.steps,
                                 completed=self.step, info="")
            t0 = time.time() - self.elapsed
            while (self.step < cfg.steps and not self.stop_requested
                   and not (cfg.time_limit and self.elapsed >= cfg.time_limit)):
                lr = self._lr(self.step, cfg.steps, self.elapsed, cfg.time_limit, cfg.lr, cfg.lr_final)
                for g in self.opt.param_groups:
                    g["lr"] = lr
                y, target, kl = self.batch()
                rec = self.loss_fn(*self._normalized(y, target))
                loss = rec + (cfg.kl_weight * kl if kl is not None else 0.0)
                if cfg.onset_weight > 0:
                    loss = loss + cfg.onset_weight * onset_loss(y, target, self._onset_rows)
                if cfg.level_weight > 0:
                    loss = loss + cfg.level_weight * level_loss(y, target)
                if self._distill is not None:
                    loss = loss + cfg.distill_weight * self._distill
                _descend(self.opt, loss, clip=3.0)
                self.step += 1
                self.elapsed = time.time() - t0
                if self.step % cfg.log_every == 0 or self.step == 1:
                    check_finite_loss(float(loss.detach()), self.step)
                    self.last = {"phase": "spectral", "step": self.step, "loss": float(loss.detach()),
                                 "mrstft": float(rec.detach()), "lr": lr, "elapsed": round(self.elapsed, 2)}
                    if kl is not None:
                        self.last["kl"] = float(kl.detach())
                    if self._distill is not None:
                        self.last["distill"] = float(self._distill.detach())
                    self.log(self.last)
                    self.history.append(self.last)
                    info = f"mrstft {self.last['mrstft']:.3f}" + (f" kl {self.last['kl']:.2f}" if kl is not None else "")
                    prog.update(task, completed=self.step, info=info)
                    if quiet and not cfg.quiet and self.step % (cfg.log_every * 20) == 0:
                        print(f"[{self.out.name}] step {self.step} {info} "
                              f"{self.elapsed:.0f}s", flush=True)
                if self.step % cfg.ckpt_every == 0:
                    self.checkpoint()
            prog.update(task, completed=self.step)
            self.spectral_steps_done = self.step
            if cfg.gan_steps > 0:
                if cfg.export_before_gan and self.gan_step == 0:
                    self.export(Path(cfg.export_before_gan))
                self.train_gan(prog)
        self.checkpoint()
        return self.last

    def train_gan(self, prog) -> None:
        cfg = self.cfg
        self.in_gan = True
        task = prog.add_task(f"{self.out.name} GAN", total=cfg.gan_steps, completed=self.gan_step,
                             info="")
        t0 = time.time() - self.gan_elapsed
        while (self.gan_step < cfg.gan_steps and not self.stop_requested
               and not (cfg.gan_time_limit and self.gan_elapsed >= cfg.gan_time_limit)):
            y, target, kl = self.batch()
            # discriminator
            d_loss = d_hinge_loss(self.disc(target), self.disc(y.detach()))
            _descend(self.opt_d, d_loss)
            # generator
            real = self.disc(target)
            fake = self.disc(y)
            rec = self.loss_fn(y, target)
            adv = g_hinge_loss(fake)
            fm = feature_matching_loss(real, fake)
            loss = rec + cfg.adv_weight * adv + cfg.fm_weight * fm
            if kl is not None:
                loss = loss + cfg.kl_weight * kl
            _descend(self.opt_g, loss, clip=3.0)
            self.gan_step += 1
            self.gan_elapsed = time.time() - t0
            if self.gan_step % cfg.log_every == 0 or self.gan_step == 1:
                check_finite_loss(float(loss.detach()), self.gan_step, "GAN")
                self.last = {"phase": "gan", "step": self.step, "gan_step": self.gan_step,
                             "loss": float(loss.detach()), "mrstft": float(rec.detach()),
                             "d_loss": float(d_loss.detach()), "adv": float(adv.detach()),
                             "fm": float(fm.detach()),
                             "elapsed": round(self.gan_elapsed, 2)}
                self.log(self.last)
                self.history.append(self.last)
                prog.update(task, completed=self.gan_step,
                            info=f"mrstft {self.last['mrstft']:.3f} d {self.last['d_loss']:.2f}")
            if self.gan_step % cfg.ckpt_every == 0:
                self.checkpoint()

    # --- export ---------------------------------------------------------------------------------
    @torch.no_grad()
    def timbre_anchors(self) -> dict:
        """Mean latent of each instrument: the encoder over the first ``crop`` frames of its notes."""
        self.encoder.eval()
        ts, hop = self.ts, spec.HOP
        n = min(self.cfg.crop, ts.features.shape[1]) * hop
        anchors = {}
        for i, name in enumerate(self.ts.names):
            sel = (ts.label == i).nonzero().flatten()
            mus = [self.encoder(ts.audio[sel[j:j + 32], :n])[0] for j in range(0, len(sel), 32)]
            anchors[name] = [float(v) for v in torch.cat(mus).mean(0).cpu()]
        self.encoder.train()
        return anchors

    def pitch_range(self) -> list[float]:
        """The MIDI pitch range of the training notes (bends included), a semitone wider on
        each side: beyond it the instrument fades (rtsynth.nn.neural)."""
        ts = self.ts
        fr = torch.arange(ts.features.shape[1], device=ts.features.device)[None, :]
        real = fr < ts.n_frames[:, None]
        p = ts.features[..., 0][real] * 24.0 + 60.0
        return [round(float(p.min()) - 1.0, 2), round(float(p.max()) + 1.0, 2)]

    def bandwidth(self) -> float:
        """The source's bandwidth measured on the training audio
        (:func:`rtsynth.data.source_bandwidth`): the instrument plays nothing above it."""
        from .. import data as rdata

        ts = self.ts
        audio = ts.audio.detach().cpu().numpy()
        n = ts.n_frames.cpu().numpy() * spec.HOP
        # not the spectral-tilt copies (--tilt): brightened, they reach Nyquist
        exs = [rdata.Example(audio=a[:k], pitch_frames=np.zeros(1), f0=np.zeros(1), velocity=0,
                             release_sample=0, split="train", features=np.zeros((1, 1)))
               for a, k, i in zip(audio, n, ts.ids) if "-tilt" not in i]
        return round(rdata.source_bandwidth(exs), 1)

    def export(self, out: Path | None = None, extra: dict | None = None) -> Path:
        cfg = self.cfg
        out = Path(out) if out is not None else self.out
        dec = self.decoder.to("cpu").eval()
        check_finite_modules({"decoder": dec}, "model")
        srcs = self.ts.sources
        if len(srcs) == 1:
            source = dict(srcs[0])
            program = source.get("program", -1)
        else:
            source = {"type": srcs[0].get("type"), "soundfont": srcs[0].get("soundfont"),
                      "bank": srcs[0].get("bank", 0),
                      "program": [s.get("program", -1) for s in srcs],
                      "instruments": [{"name": n, **s} for n, s in zip(self.ts.names, srcs)]}
            program = source["program"]
        timbre = None
        if self.encoder is not None:
            self.encoder.to(self.device)
            timbre = {"z_dim": cfg.z_dim, "anchors": self.timbre_anchors(),
                      "path": list(self.ts.names)}
        config = {
            "name": out.name,
            "description": (f"neural {cfg.backbone} instrument trained on "
                            + ", ".join(self.ts.names)
                            + (" (VAE timbre morph)" if timbre else "")),
            "program": program,
            "source": source,
            "training": {"command": cfg.command, "data": [str(d) for d in cfg.data],
                         "n_train_examples": len(self.ts), "steps": self.step,
                         "gan_steps": self.gan_step, "gan": self.gan_step > 0,
                         "spectral_loss": "rtsynth.nn.losses.MultiResolutionSTFTLoss",
                         "seconds": round(self.elapsed + self.gan_elapsed, 1),
                         "init": cfg.init,
                         "device": str(self.device), "final": self.last,
                         "config": {k: v for k, v in asdict(cfg).items() if k != "command"}},
            "metrics": {},
            "pitch_range": self.pitch_range(),
            "bandwidth_hz": self.bandwidth(),
        }
        if cfg.source_f0 and len(cfg.data) == 1:
            config["life"] = source_life(cfg.data[0])
        if extra:
            config.update(extra)
        card = model_card(config)
        save_model(out, dec, config, card, timbre=timbre)
        self.decoder.to(self.device).train()
        if self.encoder is not None:
            self.encoder.train()
        return out


def source_life(data) -> dict:
    """The ``life`` table (rtsynth.nn.life) fitted on a dataset's training notes."""
    from .. import data as rdata
    from ..dataset import life as dlife
    exs = rdata.load_dataset(data, split="train")
    return dlife.fit_life(exs, dlife.source_cents(exs, data))


def onset_loss(y, target, rows, windows: int = 24, width: int = 48):
    """The attack term (``--onset-weight``): on the batch ``rows`` whose crop starts at the
    note's onset, the mean absolute difference of the log RMS level (floor 1e-4) in
    ``windows`` windows of ``width`` samples (1 ms at 48 kHz) from the onset: the audible
    onset and the attack's shape, which the MR-STFT's long frames hardly see."""
    n = windows * width
    if not bool(rows.any()) or y.shape[1] < n:
        return y.new_zeros(())
    a = y[rows, :n].reshape(-1, windows, width).pow(2).mean(-1).add(1e-12).sqrt()
    b = target[rows, :n].reshape(-1, windows, width).pow(2).mean(-1).add(1e-12).sqrt()
    return (torch.log(a + 1e-4) - torch.log(b + 1e-4)).abs().mean()


def distill_loss(harm, noise, t_harm, t_noise, floor: float = 1e-4):
    """The distillation term (``--teacher``): the mean absolute difference of the log
    harmonic amplitudes and of the log noise gains (floor 1e-4, -80 dB) from the teacher's,
    on every frame of the batch's notes: a smaller model learns the controls of a larger one
    frame by frame, besides the audio."""
    dh = (torch.log(harm + floor) - torch.log(t_harm.detach() + floor)).abs().mean()
    dn = (torch.log(noise + floor) - torch.log(t_noise.detach() + floor)).abs().mean()
    return dh + dn


def level_loss(y, target, width: int = spec.HOP):
    """The level term (``--level-weight``): the mean absolute difference of the log RMS level
    (floor 1e-4) per frame of ``width`` samples over the whole crop, what the held-out
    loudness error measures (the MR-STFT weighs level only through its bins)."""
    n = y.shape[1] // width * width
    a = y[:, :n].reshape(y.shape[0], -1, width).pow(2).mean(-1).add(1e-12).sqrt()
    b = target[:, :n].reshape(y.shape[0], -1, width).pow(2).mean(-1).add(1e-12).sqrt()
    return (torch.log(a + 1e-4) - torch.log(b + 1e-4)).abs().mean()


def _descend(opt, loss, clip: float | None = None) -> None:
    """One optimizer step on ``loss`` (gradient norm clipped to ``clip``)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(opt.param_groups[0]["params"], clip)
    opt.step()


def model_card(config: dict) -> str:
    tr = config["training"]
    src = config.get("source", {})
    lines = [f"# {config['name']}", "", config.get("description", ""), "",
             "## Data", ""]
    if "instruments" in src:
        for s in src["instruments"]:
            lines.append(f"- {s.get('name')}: {s.get('soundfont')} bank {s.get('bank', 0)} "
                         f"GM program {s.get('program')} rendered with {s.get('renderer', '?')}")
    elif src.get("type") == "recordings":
        lines.append(f"- {src.get('name', '?')}: a folder of recordings ({len(src.get('files', []))} "
                     f"audio files) imported by `rtsynth dataset recordings`: f0 from "
                     f"{src.get('pitch_tracker', '?')}, loudness {src.get('loudness', '?')}, notes "
                     f"segmented from loudness and pitch, no labels used")
        if src.get("origin"):
            lines.append(f"- where the recordings came from: {src['origin']}")
    else:
        lines.append(f"- {src.get('name', '?')}: {src.get('soundfont', src.get('type', '?'))} bank "
                     f"{src.get('bank', 0)} GM program {src.get('program')} rendered with "
                     f"{src.get('renderer', '?')}")
    lines += [f"- training examples: {tr['n_train_examples']} (held-out pitches and velocities "
              "kept for evaluation)", "",
              "## Training", "", "```", tr["command"], "```", "",
              f"backbone `{config['architecture']['backbone'] if 'architecture' in config else tr['config']['backbone']}`, "
              f"{tr['steps']} spectral steps" + (f" + {tr['gan_steps']} GAN steps" if tr["gan"] else "")
              + f", {tr['seconds']} s on {tr['device']}; final: "
              + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in tr["final"].items()), "",
              "## Held-out metrics", ""]
    if tr.get("note"):
        lines[lines.index("## Data") - 1:lines.index("## Data") - 1] = ["", tr["note"]]
    if tr.get("gpu_command"):
        lines[-2:-2] = ["Trained on the GPU machine by `" + tr["gpu_command"] + "`, which ran the "
                        "command above in one process per model.", ""]
    m = (config.get("metrics") or {}).get("held_out") or {}
    base = (config.get("metrics") or {}).get("basic_baseline") or {}
    if m:
        lines += ["Held-out notes (pitches and velocities never seen in training) against the "
                  "real FluidSynth samples, `rtsynth eval` (engine path unless noted):", "",
                  "| dataset | notes | MSS distance | x basic | basic MSS | f0 err median / p95, "
                  "resynthesis (cents) | f0 err median / p95, MIDI pitch (cents) | f0 vs MIDI "
                  "median (cents) | sample vs MIDI (cents) | loudness err (dB) | basic loudness "
                  "err (dB) |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for ds, r in m.items():
            b = base.get(ds, {})
            f = lambda v, d=3: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
            lines.append(
                f"| {ds} | {r.get('n_notes')} | {f(r.get('mss_distance'))} | "
                f"{f(r.get('mss_vs_basic'), 2)} | {f(b.get('mss_distance'))} | "
                f"{f(r.get('f0_resynth_cents_median'), 2)} / "
                f"{f(r.get('f0_resynth_cents_p95'), 1)} | "
                f"{f(r.get('f0_cents_median'), 2)} / {f(r.get('f0_cents_p95'), 1)} | "
                f"{f(r.get('f0_vs_midi_cents_median'), 2)} | "
                f"{f(r.get('ref_f0_vs_midi_cents_median'), 2)} | {f(r.get('loudness_db'), 2)} | "
                f"{f(b.get('loudness_db'), 2)} |")
        lines += ["", "f0, resynthesis: the instrument plays the held-out sample's own tracked "
                  "pitch curve (DDSP's f0 metric); f0, MIDI pitch: it plays the MIDI note, so the "
                  "sample's own tuning and vibrato (\"sample vs MIDI\") are a floor. See "
                  "`rtsynth eval`."]
    else:
        lines.append("(not measured yet: `rtsynth eval " + config["name"] + "`)")
    return "\n".join(lines) + "\n"


def train_and_export(cfg: TrainConfig) -> Path:
    tr = Trainer(cfg)
    with _stop_on_sigint(tr):
        tr.train()
    _say_why_stopped(tr)
    return tr.export()


class _stop_on_sigint:
    """Ctrl-C during training: finish the step, save the checkpoint, export the model (a second
    Ctrl-C aborts at once). Main thread only; elsewhere a no-op."""

    def __init__(self, trainer: "Trainer"):
        self.tr = trainer
        self.old = None

    def _handler(self, signum, frame):
        if self.tr.stop_requested:
            raise KeyboardInterrupt
        self.tr.stop_requested = True
        print("\nrtsynth: stopping after this step: saving a checkpoint and the model "
              "(Ctrl-C again to abort)", file=sys.stderr, flush=True)

    def __enter__(self):
        import signal
        import threading
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        import signal
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)


def _say_why_stopped(tr: "Trainer") -> None:
    """One line when training ended before its --steps (Ctrl-C or --time-limit)."""
    cfg = tr.cfg
    done = getattr(tr, "spectral_steps_done", tr.step)
    where = (f"step {done} of {cfg.steps} ({tr.elapsed:.0f} s); checkpoint in {tr.run_dir}, "
             f"model exported from it")
    if tr.stop_requested:
        print(f"rtsynth: interrupted at {where} (`--resume` continues)", file=sys.stderr,
              flush=True)
    elif cfg.time_limit and done < cfg.steps:
        # the limit counts the seconds of the run so far, the resumed ones included: the same
        # command with --resume would stop again at once
        print(f"rtsynth: --time-limit {cfg.time_limit:g} s reached at {where} (`--resume` with "
              f"a --time-limit above {tr.elapsed:.0f} s continues)", file=sys.stderr, flush=True)
