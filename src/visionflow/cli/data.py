"""`visionflow convert`: any dataset of the catalog as TFRecord shards."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    from ..data.catalog import dataset_names

    p = sub.add_parser("convert", help="write a dataset as TFRecord shards of image examples")
    p.add_argument("--dataset", required=True, choices=dataset_names(), help="the dataset to write (as for train)")
    p.add_argument("--data-dir", default=None, help="where the dataset lives (as for train)")
    p.add_argument("--output", required=True, metavar="DIR", help="writes DIR/SPLIT-0000K-of-0000N.tfrecord and labels.txt")
    p.add_argument("--shards", type=int, default=1, help="files for the training split (the other splits get as "
                                                         "many records per file)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffle that spreads records over the shards")
    p.add_argument("--validation-size", type=int, default=None,
                   help="hold out N training examples as a validation split (default: none)")
    p.add_argument("--validation-percentage", type=float, default=None, help="image folders: of each category (default 10)")
    p.add_argument("--testing-percentage", type=float, default=None, help="image folders: of each category (default 10)")
    p.set_defaults(run=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    from ..data.convert import convert

    result = convert(args.dataset, args.output, args.shards, args.data_dir, args.seed, args.validation_size,
                     args.validation_percentage, args.testing_percentage)
    for split, count in result.records.items():
        files = len(result.shards[split])
        print(f"{split}: {count:,} records in {files} shard{'s' if files > 1 else ''}")
    print(f"wrote {result.output} (labels.txt: {len(result.class_names)} classes)")
    return 0
