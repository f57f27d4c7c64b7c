"""`visionflow board`: the real TensorBoard on a model directory."""

from __future__ import annotations

import argparse
import time

from ..errors import InputError


def add_commands(sub: argparse._SubParsersAction) -> None:
    bd = sub.add_parser("board", help="start TensorBoard on a model directory")
    bd.add_argument("--model-dir", required=True, help="the model directory (or a folder of them) to show")
    bd.add_argument("--port", type=int, default=6006, help="TCP port; the next free one when it is taken")
    bd.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    bd.set_defaults(run=cmd_board)


def cmd_board(args: argparse.Namespace) -> int:
    from pathlib import Path

    directory = Path(args.model_dir)
    if not directory.is_dir():
        raise InputError(f"{directory}: model directory not found")
    from tensorboard import program

    url = None
    for port in range(args.port, args.port + 20):
        board = program.TensorBoard()
        board.configure(argv=[None, "--logdir", str(directory), "--port", str(port), "--host", args.host])
        try:
            url = board.launch()
        except program.TensorBoardPortInUseError:
            continue
        except program.TensorBoardServerException as e:
            raise InputError(f"cannot start TensorBoard on {args.host}:{port} ({e})") from None
        if port != args.port:
            print(f"port {args.port} is in use: TensorBoard took {port}", flush=True)
        break
    if url is None:
        raise InputError(f"ports {args.port}-{args.port + 19} on {args.host} are all in use (--port N)")
    print(f"TensorBoard {url} (Ctrl-C to stop)", flush=True)
    while True:
        time.sleep(3600)
