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


#: Flags (dests) that set `CsvOptions` fields; `gather_csv_flags` makes them one partial "csv" override.
CSV_FLAGS = ("label_column", "header", "delimiter", "column_defaults", "image_shape", "regression")


def csv_args(p: Any, default: Any = S) -> None:
    """How `--dataset csv` files are read (decode_csv's choices; formats/csv_table.py)."""
    group = p.add_argument_group("CSV files (--dataset csv)")
    group.add_argument("--label-column", default=default, metavar="NAME|INDEX",
                       help="the label's column (negative indexes count from the end) [default: the column named "
                            "label, else the first]")
    group.add_argument("--no-header", dest="header", action="store_const", const=False, default=default,
                       help="the first line is a record [default: a header when a column is text on line 1 but a "
                            "number on line 2]")
    group.add_argument("--header", dest="header", action="store_const", const=True, default=default,
                       help="the first line is a header, even when it is all numbers")
    group.add_argument("--delimiter", default=default, type=_delimiter, help="the field separator [default ,]")
    group.add_argument("--column-defaults", default=default, metavar="DEFAULTS",
                       help="values for empty fields (record_defaults): one for all columns, one per column "
                            "(empty: required), or NAME=VALUE pairs [default: every column required]")
    group.add_argument("--image-shape", default=default, type=_image_shape, metavar="H,W[,C]|auto|none",
                       help="pixel columns as row-major H×W×C images; auto: square greyscale when the columns look "
                            "like pixels; none: tabular features [default auto]")
    group.add_argument("--regression", action="store_const", const=True, default=default,
                       help="the label column holds numbers to predict: a regressor with one output, trained on "
                            "mean squared error, reported as RMSE, MAE and R² [default: classes]")


def _image_shape(text: str) -> Any:
    from ..formats.csv_table import parse_image_shape

    try:
        return parse_image_shape(text)
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _delimiter(text: str) -> str:
    return {"\\t": "\t", "tab": "\t", "space": " "}.get(text, text)


def gather_csv_flags(flags: dict) -> dict:
    """Move the `CSV_FLAGS` entries of parsed flags into one partial "csv" dict."""
    partial = {k: flags.pop(k) for k in CSV_FLAGS if k in flags}
    if partial:
        flags["csv"] = partial
    return flags


def csv_options(args: argparse.Namespace) -> Any:
    """The `CsvOptions` of a command whose CSV flags default to None."""
    from ..formats.csv_table import CsvOptions

    given = {k: getattr(args, k) for k in CSV_FLAGS if getattr(args, k, None) is not None}
    return CsvOptions(**given)


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
