"""``rtsynth dataset soundfont|phrases|recordings ...``: build datasets
(:mod:`rtsynth.dataset.build`)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    from . import build

    p = subparsers.add_parser("dataset", help="build a training / evaluation dataset",
                              description=build.__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    build.configure(p)
    from ..options import DATASET_LIMITS, bound
    bound(p, DATASET_LIMITS)        # every number's range (exit 2 outside it)
    return p


def run(args: argparse.Namespace) -> int:
    from . import build

    return build.run(args)
