"""A language model's loss over a whole split, streamed with its state carried (the tutorial's
`run_epoch` on the validation and test data), and text sampled from it.

The split is laid out as `streams` rows (data/token_batches.py) and read `bptt` tokens at a time,
the last window shorter rather than dropped, so every token after each row's first is predicted
once.  Loss is in nats per token; perplexity = exp(loss); bits per token = loss / ln 2 (bits
per character at char level).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data.text import EOS, Vocabulary
from ..errors import InputError

#: The longest text `sample` generates (tokens): a typo'd --length must not run for hours.
MAX_SAMPLE_TOKENS = 100_000


@dataclass(frozen=True)
class LMResult:
    split: str
    loss: float
    tokens: int
    global_step: int
    level: str

    @property
    def perplexity(self) -> float:
        return math.exp(min(self.loss, 700.0))

    @property
    def bits_per_token(self) -> float:
        return self.loss / math.log(2)

    def to_dict(self) -> dict[str, Any]:
        unit = "bits_per_char" if self.level == "char" else "bits_per_word"
        return {"split": self.split, "loss": self.loss, "perplexity": self.perplexity, unit: self.bits_per_token,
                "tokens": self.tokens, "global_step": self.global_step, "level": self.level}

    def line(self) -> str:
        unit = "bits/char" if self.level == "char" else "bits/word"
        return (f"{self.split}: loss {self.loss:.4f}  perplexity {self.perplexity:.2f}  {self.bits_per_token:.3f} {unit}  "
                f"({self.tokens:,} tokens, global step {self.global_step})")


@torch.no_grad()
def evaluate_lm(model: torch.nn.Module, ids: np.ndarray, streams: int, bptt: int, device: torch.device,
                step: int, split: str, level: str) -> LMResult:
    """Mean next-token cross-entropy over `ids`, read as `streams` rows with the state carried."""
    per_row = len(ids) // streams
    if per_row < 2:
        raise InputError(f"{split}: {len(ids):,} tokens are too few for {streams} evaluation streams")
    data = torch.from_numpy(np.ascontiguousarray(ids[: per_row * streams])).view(streams, per_row).to(device)
    was_training = model.training
    model.eval()
    state, total, count = None, torch.zeros((), dtype=torch.float64, device=device), 0
    try:
        for i in range(0, per_row - 1, bptt):
            n = min(bptt, per_row - 1 - i)
            logits, state = model.step(data[:, i:i + n], state)
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), data[:, i + 1:i + 1 + n].reshape(-1),
                                     reduction="sum").double()
            count += n * streams
    finally:
        model.train(was_training)
    return LMResult(split, float(total) / count, count, step, level)


@torch.no_grad()
def sample(model: torch.nn.Module, vocab: Vocabulary, prompt: str, length: int, temperature: float = 1.0,
           top_k: int | None = None, seed: int = 0, device: torch.device | str = "cpu") -> str:
    """`prompt` and `length` tokens drawn after it: softmax(logits / temperature) over the `top_k`
    likeliest tokens (all when None).  The same seed gives the same text."""
    if not 0 < length <= MAX_SAMPLE_TOKENS:
        raise InputError(f"--length must be between 1 and {MAX_SAMPLE_TOKENS:,}, got {length}")
    if temperature <= 0:
        raise InputError(f"--temperature must be positive, got {temperature}")
    if top_k is not None and top_k < 1:
        raise InputError(f"--top-k must be at least 1, got {top_k}")
    tokens = list(prompt) if vocab.level == "char" else prompt.split()
    if not tokens:  # start as after a line
        start = EOS if vocab.level == "word" else "\n"
        if vocab.id_of(start) is None:
            raise InputError("--prompt is empty and the vocabulary has no line end to start from")
        tokens = [start]
    known = [t for t in tokens if vocab.id_of(t) is None]
    if known:
        raise InputError(f"--prompt: {known[0]!r} is not in the model's vocabulary ({len(vocab):,} {vocab.level} tokens)")
    model.eval()
    ids = torch.tensor([[vocab.id_of(t) for t in tokens]], device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    logits, state = model.step(ids)
    drawn = []
    for _ in range(length):
        last = logits[0, -1].float() / temperature
        if top_k is not None and top_k < last.numel():
            kth = torch.topk(last, top_k).values[-1]
            last = last.masked_fill(last < kth, float("-inf"))
        token = torch.multinomial(torch.softmax(last, dim=-1), 1, generator=generator)
        drawn.append(int(token))
        logits, state = model.step(token.view(1, 1), state)
    continuation = vocab.decode(drawn)
    if vocab.level == "char":
        return prompt + continuation
    return (prompt.rstrip() + " " + continuation).strip() if prompt.strip() else continuation
