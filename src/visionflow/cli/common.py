"""What the command modules share: the parser class, shared flag groups, optional extras."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from typing import Any

from ..errors import InputError

#: Flags left out of the namespace unless given, so recipes and stored runs supply the rest.
S = argparse.SUPPRESS


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that ends each option with its default, when it has one worth showing and its text
    does not state it already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if default in (None, False, argparse.SUPPRESS, ()) or "default" in text or not action.option_strings:
            return text
        return f"{text} [default {default}]".strip()


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line with exit code 2 and shows defaults in help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def loop_args(p: Any, epochs_help: str, defaults: dict[str, str] | None = None) -> None:
    """How long and how fast to train: shared by `train` and `retrain` (`defaults`: help suffixes)."""
    from ..engine.config import OPTIMIZERS

    d = defaults or {}
    p.add_argument("--steps", type=int, default=S, help="train until global step N (continues a model dir; a higher N "
                                                        "than the run's starts a new learning-rate cycle)")
    p.add_argument("--epochs", type=float, default=S, help=f"{epochs_help} {d.get('epochs', '')}".strip())
    p.add_argument("--batch-size", type=int, default=S, help=f"examples per step {d.get('batch_size', '')}".strip())
    recipe = d.get("optimizer", "[default: the recipe's]")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=S, help="momentum and nesterov: SGD with --momentum; muon: orthogonalised updates for conv "
                   f"filters, nesterov SGD for the rest {recipe}")
    p.add_argument("--lr", type=float, default=S, help=f"peak learning rate {d.get('lr', '')}".strip())


def top_k_args(p: argparse.ArgumentParser, what: str) -> None:
    """The flags label-image and classify-image share: how many `what` per image, device, output, images."""
    p.add_argument("--top-k", type=int, default=5, help=f"{what} per image")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
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
