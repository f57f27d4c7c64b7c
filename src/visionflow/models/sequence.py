"""Recurrent networks: the tutorials' LSTM language model (`lstm`) and an image read row by row (`rnn`).

`lstm`: embedding → N LSTM layers (dropout between them) → dropout → linear over the
vocabulary, optionally tied to the embedding (Press & Wolf; then embed == hidden).  It reads
(streams, bptt) token ids and returns logits flattened to (streams·bptt, vocab), so the trainer's
cross-entropy and accuracy apply as they are.  In training mode it carries its LSTM state from one
batch to the next, detached (truncated backpropagation through time), as the PTB tutorial feeds
`final_state` back as the next `initial_state`; `reset_state()` starts afresh (each epoch), and
the carried state is part of `state_dict()` (PyTorch's extra state), so a checkpoint taken
mid-epoch resumes exactly.  `step(ids, state)` is the stateless form evaluation and sampling use.

`rnn`: an image (C, H, W) read as H steps of C·W pixels → LSTM → the last step's output → logits
(the "recurrent image classifier" of the tutorials: MNIST as 28 rows of 28 pixels).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model

State = tuple[torch.Tensor, torch.Tensor]


@register_model("lstm")
class LSTMLanguageModel(nn.Module):
    def __init__(self, num_classes: int, input_shape: tuple[int, ...] = (0,), embed: int = 200, hidden: int = 200,
                 layers: int = 2, dropout: float = 0.2, tie: bool = False) -> None:
        super().__init__()
        if tie and embed != hidden:
            raise ValueError(f"tied embeddings need embed == hidden (got {embed} and {hidden})")
        self.vocab, self.hidden, self.layers = num_classes, hidden, layers
        self.embedding = nn.Embedding(num_classes, embed)
        self.lstm = nn.LSTM(embed, hidden, layers, dropout=dropout if layers > 1 else 0.0, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        # Tied: the decoder reads the embedding's matrix (one tensor, so checkpoints hold it once).
        self.decoder_weight = None if tie else nn.Parameter(torch.empty(num_classes, hidden).uniform_(-0.1, 0.1))
        self.decoder_bias = nn.Parameter(torch.zeros(num_classes))
        self._carried: State | None = None
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)  # as the tutorials: small uniform embeddings

    def step(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Logits (B, T, vocab) for ids (B, T), and the state after the last step."""
        out, state = self.lstm(self.dropout(self.embedding(ids)), state)
        weight = self.embedding.weight if self.decoder_weight is None else self.decoder_weight
        return F.linear(self.dropout(out), weight, self.decoder_bias), state

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        state = self._carried if self.training else None
        if state is not None and state[0].shape[1] != ids.shape[0]:
            state = None  # another number of streams: start afresh
        logits, state = self.step(ids, state)
        if self.training:
            self._carried = (state[0].detach(), state[1].detach())
        return logits.reshape(-1, self.vocab)

    def reset_state(self) -> None:
        self._carried = None

    def get_extra_state(self) -> torch.Tensor:
        """The carried (h, c) as one (2, layers, streams, hidden) tensor; empty when none."""
        if self._carried is None:
            return torch.zeros(0)
        return torch.stack(self._carried).detach().clone()

    def set_extra_state(self, state: Any) -> None:
        if isinstance(state, torch.Tensor) and state.dim() == 4 and state.shape[0] == 2:
            device = self.decoder_bias.device
            self._carried = (state[0].to(device), state[1].to(device))
        else:
            self._carried = None


@register_model("rnn", recipes={"mnist": {"epochs": 6, "batch_size": 128, "lr": 3e-3},
                                "fashion-mnist": {"epochs": 10, "batch_size": 128, "lr": 3e-3},
                                "digits": {"epochs": 60, "batch_size": 64, "log_every": 50, "checkpoint_every": 200}})
class RowLSTMClassifier(nn.Module):
    """An image (C, H, W) as H steps of C·W values → LSTM(`hidden`) → last output → logits."""

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int], hidden: int = 128, layers: int = 1) -> None:
        super().__init__()
        c, h, w = input_shape
        self.lstm = nn.LSTM(c * w, hidden, layers, batch_first=True)
        self.logits = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        rows = x.permute(0, 2, 1, 3).reshape(b, h, c * w)  # row r: its C·W values, channel by channel
        out, _ = self.lstm(rows)
        return self.logits(out[:, -1])
