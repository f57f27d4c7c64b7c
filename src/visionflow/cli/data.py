"""`visionflow convert`: any dataset of the catalog as TFRecord shards."""

from __future__ import annotations

import argparse

from .common import csv_args, csv_options


def add_commands(sub: argparse._SubParsersAction) -> None:
    from ..data.catalog import dataset_names

    p = sub.add_parser("convert", help="write a dataset as TFRecord shards of image examples, or as CSV files")
    p.add_argument("--dataset", required=True, choices=dataset_names(), help="the dataset to write (as for train)")
    p.add_argument("--data-dir", default=None, help="where the dataset lives (as for train)")
    p.add_argument("--output", required=True, metavar="DIR", help="writes DIR/SPLIT-0000K-of-0000N.tfrecord (or "
                                                                  "DIR/SPLIT.csv) and labels.txt")
    p.add_argument("--format", default="tfrecord", choices=("tfrecord", "csv"),
                   help="csv: one SPLIT.csv per split, label then pixel0… (or feature0…) columns, as --dataset csv reads")
    p.add_argument("--compress", action="store_true", help="--format csv: write SPLIT.csv.gz")
    p.add_argument("--shards", type=int, default=1, help="files for the training split (the other splits get as "
                                                         "many records per file)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffle that spreads records over the shards")
    p.add_argument("--validation-size", type=int, default=None,
                   help="hold out N training examples as a validation split (default: none)")
    p.add_argument("--validation-percentage", type=float, default=None, help="image folders: of each category (default 10)")
    p.add_argument("--testing-percentage", type=float, default=None, help="image folders: of each category (default 10)")
    csv_args(p, default=None)
    p.set_defaults(run=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    from ..data.convert import convert

    result = convert(args.dataset, args.output, args.shards, args.data_dir, args.seed, args.validation_size,
                     args.validation_percentage, args.testing_percentage, fmt=args.format,
                     csv=csv_options(args), compress=args.compress)
    for split, count in result.records.items():
        files = len(result.shards[split])
        print(f"{split}: {count:,} records in {files} {'file' if args.format == 'csv' else 'shard'}"
              f"{'s' if files > 1 else ''}")
    print(f"wrote {result.output} (labels.txt: {len(result.class_names)} classes)")
    return 0
