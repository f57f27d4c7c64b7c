"""`visionflow board`: the real TensorBoard on a model directory."""

from __future__ import annotations

import argparse
import time

from ..errors import InputError


def add_commands(sub: argparse._SubParsersAction) -> None:
    bd = sub.add_parser("board", help="start TensorBoard on a model directory")
    bd.add_argument("--model-dir", required=True)
    bd.add_argument("--port", type=int, default=6006)
    bd.add_argument("--host", default="127.0.0.1")
    bd.set_defaults(run=cmd_board)


def cmd_board(args: argparse.Namespace) -> int:
    from pathlib import Path

    directory = Path(args.model_dir)
    if not directory.is_dir():
        raise InputError(f"{directory}: model directory not found")
    from tensorboard import program

    board = program.TensorBoard()
    board.configure(argv=[None, "--logdir", str(directory), "--port", str(args.port), "--host", args.host])
    url = board.launch()
    print(f"TensorBoard {url} (Ctrl-C to stop)", flush=True)
    while True:
        time.sleep(3600)
