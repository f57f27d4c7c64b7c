"""`visionflow lm train | evaluate | sample`: the LSTM language model (visionflow/lm)."""

from __future__ import annotations

import argparse
import json

from .common import S, Parser

LEVELS = ("word", "char")


def add_commands(sub: argparse._SubParsersAction) -> None:
    lm = sub.add_parser("lm", help="train, evaluate and sample an LSTM language model")
    commands = lm.add_subparsers(dest="lm_command", metavar="COMMAND", parser_class=Parser, required=True)

    t = commands.add_parser("train", help="train (or continue) a language model on a text corpus")
    t.add_argument("--corpus", default=None,
                   help="a UTF-8 text file, a folder of .txt files or of ptb.{train,valid,test}.txt, or a named "
                        "corpus downloaded when missing: ptb, tinyshakespeare [required for a new model]")
    t.add_argument("--model-dir", required=True, help="the model directory (created, or continued)")
    t.add_argument("--level", choices=LEVELS, default=None,
                   help="tokens: words (+<eos> per line) or characters [default: word; char for tinyshakespeare]")
    t.add_argument("--model", default="lstm", choices=("lstm",), help="the network")
    size = t.add_argument_group("model (default: the level's recipe, see visionflow/lm/config.py)")
    size.add_argument("--embed", type=int, default=S, help="embedding width")
    size.add_argument("--hidden", type=int, default=S, help="LSTM units per layer")
    size.add_argument("--layers", type=int, default=S, help="LSTM layers")
    size.add_argument("--dropout", type=float, default=S, help="dropout between layers and before the softmax")
    size.add_argument("--tie", action="store_true", default=S, help="tie the input and output embeddings")
    loop = t.add_argument_group("training")
    loop.add_argument("--steps", type=int, default=S, help="train up to this global step")
    loop.add_argument("--epochs", type=float, default=S, help="passes over the training text")
    loop.add_argument("--batch-size", type=int, default=S, help="parallel token streams")
    loop.add_argument("--bptt", type=int, default=S, help="tokens per truncated-backpropagation window")
    loop.add_argument("--optimizer", choices=("sgd", "adam", "momentum"), default=S, help="optimizer")
    loop.add_argument("--lr", type=float, default=S, help="learning rate")
    loop.add_argument("--schedule", choices=("plateau", "constant", "cosine"), default=S,
                      help="plateau: divide by 1/--plateau-factor when validation stops improving")
    loop.add_argument("--plateau-factor", type=float, default=S, help="learning-rate factor on a plateau")
    loop.add_argument("--clip-norm", type=float, default=S, help="clip the gradient's global L2 norm")
    loop.add_argument("--valid-fraction", type=float, default=S, help="share of a one-file corpus for validation")
    loop.add_argument("--test-fraction", type=float, default=S, help="share of a one-file corpus for test")
    loop.add_argument("--eval-batch-size", dest="eval_streams", type=int, default=S, help="evaluation streams")
    run = t.add_argument_group("run")
    run.add_argument("--seed", type=int, default=S, help="random seed")
    run.add_argument("--deterministic", action="store_true", default=S, help="deterministic kernels")
    run.add_argument("--device", default=S, help="auto, cpu, cuda, cuda:N or mps")
    run.add_argument("--precision", choices=("fp32", "bf16", "auto"), default=S, help="fp32 or bf16 autocast")
    run.add_argument("--log-every", type=int, default=S, help="steps between progress lines")
    run.add_argument("--checkpoint-every", type=int, default=S, help="steps between checkpoints")
    run.add_argument("--json", action="store_true", help="print the final evaluation as one JSON line")
    t.set_defaults(run=cmd_train)

    e = commands.add_parser("evaluate", help="loss, perplexity and bits per token of a split")
    e.add_argument("--model-dir", required=True)
    e.add_argument("--split", choices=("valid", "test", "train"), default="valid")
    e.add_argument("--corpus", default=None, help="read this corpus instead of the one the model was trained on")
    e.add_argument("--device", default="auto")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(run=cmd_evaluate)

    s = commands.add_parser("sample", help="generate text after a prompt")
    s.add_argument("--model-dir", required=True)
    s.add_argument("--prompt", default="", help="text to continue (words or characters of the vocabulary)")
    s.add_argument("--length", type=int, default=200, help="tokens to generate")
    s.add_argument("--temperature", type=float, default=1.0, help="softmax temperature (lower: more likely text)")
    s.add_argument("--top-k", type=int, default=None, help="draw from the k likeliest tokens only")
    s.add_argument("--seed", type=int, default=0, help="the same seed gives the same text")
    s.add_argument("--device", default="cpu")
    s.set_defaults(run=cmd_sample)


def cmd_train(args: argparse.Namespace) -> int:
    from ..lm.training import train_lm

    skip = {"command", "lm_command", "run", "corpus", "model_dir", "level", "model", "json"}
    overrides = {k: v for k, v in vars(args).items() if k not in skip}
    outcome = train_lm(args.corpus, args.model_dir, args.level, overrides)
    results = {split: r.to_dict() for split, r in (("valid", outcome.valid), ("test", outcome.test)) if r is not None}
    if args.json:
        print(json.dumps({"model_dir": args.model_dir, "global_step": outcome.global_step,
                          "tokens_per_sec": outcome.tokens_per_sec, **results}))
    elif not outcome.steps_run:
        print(f"{args.model_dir}: already at global step {outcome.global_step}; nothing to train "
              "(raise --steps or --epochs to continue)")
    else:
        print(f"trained {outcome.steps_run:,} steps ({outcome.tokens_per_sec:,.0f} tokens/s)")
        for r in (outcome.valid, outcome.test):
            if r is not None:
                print(r.line())
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..lm.inference import evaluate_model_dir

    result = evaluate_model_dir(args.model_dir, args.split, args.corpus, args.device)
    print(json.dumps(result.to_dict()) if args.json else result.line())
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from ..lm.inference import sample_model_dir

    print(sample_model_dir(args.model_dir, args.prompt, args.length, args.temperature, args.top_k, args.seed,
                           args.device))
    return 0
