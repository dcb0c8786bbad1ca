"""``rtsynth train DATA_DIR [DATA_DIR...] -o models/NAME --backbone gru|cnn|attention ...``

Several data folders with ``--vae`` train one multi-instrument model with a timbre latent (the
morph path runs through the instruments in the order given).
"""

from __future__ import annotations

import argparse
import json

from ..nn.arch import BACKBONES      # torch-free (rtsynth.nn.backbones imports torch)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="train a neural instrument on a dataset folder",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    configure(p)
    return p


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", nargs="+", help="dataset folder(s) (rtsynth dataset)")
    p.add_argument("-o", "--out", required=True, help="model folder to write, e.g. models/NAME")
    p.add_argument("--backbone", choices=BACKBONES, default="gru")
    p.add_argument("--vae", action="store_true", help="learn a timbre latent (VAE)")
    p.add_argument("--z-dim", type=int, default=8)
    p.add_argument("--kl-weight", type=float, default=1e-3)
    p.add_argument("--steps", type=int, default=3000, help="spectral-loss steps")
    p.add_argument("--gan-steps", type=int, default=0, help="adversarial fine-tuning steps after")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=256, help="frames of each note in the loss")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-final", type=float, default=1e-4)
    p.add_argument("--gan-lr", type=float, default=1e-4)
    p.add_argument("--adv-weight", type=float, default=0.1)
    p.add_argument("--fm-weight", type=float, default=1.0)
    p.add_argument("--time-limit", type=float, default=None, help="seconds for the spectral phase")
    p.add_argument("--gan-time-limit", type=float, default=None, help="seconds for the GAN phase")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", default=None, help="checkpoints and log.jsonl (runs/NAME)")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    p.add_argument("--max-frames", type=int, default=None, help="cut notes (tiny CPU runs)")
    p.add_argument("--tiny", action="store_true", help="tiny model sizes (tests, smoke runs)")
    p.add_argument("--backbone-kw", default=None, help="JSON object of backbone sizes")
    p.add_argument("--pre-dim", type=int, default=None,
                   help="width of the decoder's input layer (default 128)")
    p.add_argument("--teacher", default=None,
                   help="distil: a model folder whose controls (harmonic amplitudes, noise "
                        "gains) the model also learns to match, frame by frame")
    p.add_argument("--distill-weight", type=float, default=1.0,
                   help="the weight of the --teacher term (L1 of the log controls)")
    p.add_argument("--ckpt-every", type=int, default=250)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--init", default=None, help="start from this model folder's weights "
                   "(same architecture), e.g. to fine-tune a trained model with --gan-steps")
    p.add_argument("--noise-warmup", type=int, default=400,
                   help="steps over which the noise gains ramp in")
    p.add_argument("--amp-bias", type=float, default=-2.0,
                   help="initial amplitude logit bias (e.g. -2: start quiet)")
    p.add_argument("--features", type=int, choices=(7, 9), default=7,
                   help="9: a contract-v2 model (dynamics and brightness inputs, measured from "
                   "the target audio with the dataset's calibration)")
    p.add_argument("--tilt", type=float, default=0.0,
                   help="v2: add this fraction of the notes again through a random spectral "
                   "tilt (brightness augmentation)")
    p.add_argument("--velocity-dropout", type=float, default=0.0,
                   help="v2: this fraction of each batch gets a random velocity column, so the "
                   "spectrum follows the dynamics column")
    p.add_argument("--loss-normalize", action="store_true",
                   help="divide prediction and target by the target's RMS before the loss (the "
                   "evaluation compares unit-RMS signals)")
    p.add_argument("--log-weight", type=float, default=1.0,
                   help="weight of the log-magnitude term of the MR-STFT loss")
    p.add_argument("--onset-weight", type=float, default=0.0,
                   help="weight of the attack term: on crops from a note's onset, the L1 "
                   "distance of the log level in 1 ms windows over its first 24 ms")
    p.add_argument("--level-weight", type=float, default=0.0,
                   help="weight of the level term: the L1 distance of the log level per 4 ms "
                   "frame over the whole crop (the held-out loudness error)")
    p.add_argument("--source-f0", action="store_true",
                   help="the pitch input and synthesis f0 follow the source's own tracked pitch "
                   "(its vibrato): the model's config gets the fitted life table that plays "
                   "that movement (rtsynth.nn.life)")
    p.add_argument("--export-before-gan", default=None,
                   help="also write the model as it is before the GAN phase to this folder")
    from ..options import bound_train_options
    bound_train_options(p)          # every number's range (exit 2 outside it)


def run(args: argparse.Namespace) -> int:
    from .core import TrainConfig, train_and_export

    cfg = TrainConfig(
        data=list(args.data), out=args.out, backbone=args.backbone, vae=args.vae, z_dim=args.z_dim,
        kl_weight=args.kl_weight, steps=args.steps, gan_steps=args.gan_steps, batch=args.batch,
        crop=args.crop, lr=args.lr, lr_final=args.lr_final, gan_lr=args.gan_lr,
        adv_weight=args.adv_weight, fm_weight=args.fm_weight, time_limit=args.time_limit,
        gan_time_limit=args.gan_time_limit, device=args.device, seed=args.seed,
        run_dir=args.run_dir, max_frames=args.max_frames, tiny=args.tiny,
        backbone_kw=json.loads(args.backbone_kw) if args.backbone_kw else None,
        pre_dim=args.pre_dim, teacher=args.teacher, distill_weight=args.distill_weight,
        ckpt_every=args.ckpt_every, log_every=args.log_every, resume=args.resume,
        quiet=args.quiet, export_before_gan=args.export_before_gan, init=args.init,
        noise_warmup=args.noise_warmup, amp_bias=args.amp_bias, n_features=args.features,
        tilt_fraction=args.tilt, log_weight=args.log_weight,
        velocity_dropout=args.velocity_dropout, loss_normalize=args.loss_normalize,
        source_f0=args.source_f0, onset_weight=args.onset_weight,
        level_weight=args.level_weight)
    if getattr(args, "command_line", None):
        cfg.command = args.command_line
    from ..nn.io import ModelLoadError
    try:
        out = train_and_export(cfg)
    except ModelLoadError as e:  # --init / --teacher: one error line (the CLI's), no traceback
        raise ValueError(str(e)) from None
    if not args.quiet:
        print(f"rtsynth: trained model written to {out}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="rtsynth train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    configure(p)
    import shlex
    import sys
    args = p.parse_args(argv)
    args.command_line = "rtsynth train " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
