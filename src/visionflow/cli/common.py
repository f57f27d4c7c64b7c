"""What the command modules share: the parser class, shared flag groups, optional extras."""

from __future__ import annotations

import argparse
import importlib.util
import sys

from ..errors import InputError

#: Flags left out of the namespace unless given, so recipes and stored runs supply the rest.
S = argparse.SUPPRESS


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def loop_args(p: argparse.ArgumentParser, epochs_help: str) -> None:
    """How long and how fast to train: shared by `train` and `retrain`."""
    from ..engine.config import OPTIMIZERS

    p.add_argument("--steps", type=int, default=S, help="train until global step N (continues a model dir)")
    p.add_argument("--epochs", type=float, default=S, help=epochs_help)
    p.add_argument("--batch-size", type=int, default=S)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=S)
    p.add_argument("--lr", type=float, default=S, help="peak learning rate")


def top_k_args(p: argparse.ArgumentParser, what: str) -> None:
    """The flags label-image and classify-image share: how many `what` per image, device, output, images."""
    p.add_argument("--top-k", type=int, default=5, help=f"{what} per image")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="one JSON line per image")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image file or .npy batch")


def backbone_help() -> str:
    from ..models.backbones import DEFAULT_BACKBONE, backbone_names

    return f"pretrained network: {', '.join(backbone_names())} or a timm name (default {DEFAULT_BACKBONE})"


def require_extra(extra: str, *modules: str) -> None:
    """A one-line error naming the pip command when an optional dependency is missing."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise InputError(f"{', '.join(missing)} not installed: pip install 'visionflow[{extra}]'")
