"""``rtsynth eval [MODELS...] [-d DATA] [--melodies DIR | --phrases DIR | --swell | --plot PNG]``:
held-out evaluation of instruments against their source (:mod:`rtsynth.eval.metrics`)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    from . import metrics

    p = subparsers.add_parser("eval", help="evaluate instruments on held-out data",
                              description=metrics.__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    metrics.configure(p)
    from ..options import EVAL_LIMITS, bound
    bound(p, EVAL_LIMITS)           # every number's range (exit 2 outside it)
    return p


def run(args: argparse.Namespace) -> int:
    from . import metrics

    return metrics.run(args)
