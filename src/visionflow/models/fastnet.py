"""`fastnet`: a speed-record network in the class of airbench94 (Jordan, 2024), as a visionflow model.

    whitening conv 2×2 (2·C·4 channels, frozen, initialised from the training data) → GELU
    → 3 conv groups of widths 64 / 256 / 256: conv 3×3 → max-pool 2 → BN → GELU → conv 3×3 → BN → GELU
    → global max-pool → dense (no bias) → × 1/9

BatchNorms learn only their bias (scale frozen at 1; eps 1e-12, fast statistics momentum), conv
filters start as identities on their first input channels (dirac), the whitening layer's bias
trains for the first `whiten_bias_epochs` epochs only.  The default recipe (`RECIPE`) trains the
conv filters with Muon (orthogonalised updates) and the biases and head with nesterov SGD at their
own learning rates; `SGD_RECIPE` is airbench94's all-SGD recipe.  The rest — label smoothing,
the learning-rate schedule, alternating flip and translation, test-time augmentation, bf16,
channels-last — is training configuration.

The hooks `init_from_data` (the whitening), `set_epoch` (the bias freeze) and `optimizer_groups`
(which parameters each optimizer treats how) are called by the engine's one training loop.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model

WHITEN_EPS = 5e-4

#: The recipe: airbench94's network trained with Muon (the filters' updates orthogonalised, see
#: engine.muon) in visionflow's units, where the loss is a batch mean.  Filters: Muon, lr 0.24,
#: momentum 0.6, 3 Newton–Schulz steps, weights renormalised to norm sqrt(out) each step.  Biases
#: and head: nesterov SGD, momentum 0.85, at the learning rates per example in MUON_SGD_RATES
#: (× the batch size for a mean loss).  Weight decay 2.415e-3 per unit of learning rate: the head
#: loses 0.4% of its weights per step at full rate at batch 2000 (biases: 1/64 of the coefficient,
#: the same per step).  lr falls linearly from full to 0 over 8 epochs at batch 2000; label
#: smoothing 0.2; 2-pixel reflect translation + alternating flip; evaluated with flip + translate
#: TTA; trained on all 50,000 training images, as airbench is (no validation split).
RECIPE = {"epochs": 8.0, "validation_size": 0, "batch_size": 2000, "optimizer": "muon", "momentum": 0.85,
          "lr": 0.24, "weight_decay": 2.415e-3, "schedule": "linear", "warmup": 0.0,
          "lr_start_factor": 1.0, "lr_end_factor": 0.0, "label_smoothing": 0.2,
          "augment": {"pad": 2, "pad_mode": "reflect", "flip": "alternating", "tta": 2},
          "log_every": 25, "checkpoint_every": 1000}

#: airbench94's own SGD recipe, for `--optimizer nesterov` and comparison: its summed loss with lr
#: 11.5 / weight decay 0.0153 "per 1024 examples" and momentum 0.85 is, for a mean loss at batch
#: 1024, nesterov SGD with lr 11.5 / (1 + 1 / 0.15) = 1.5 and decay coefficient
#: 0.0153 · 1024 / 7850.7 / 1.5 = 1.33e-3; lr triangle 0.2 → 1 (at 23%) → 0.07; lookahead every 5
#: steps from epoch 3.  BatchNorm biases get 64× the lr and 1/64 the decay coefficient.
SGD_RECIPE = {"epochs": 9.9, "validation_size": 0, "batch_size": 1024, "optimizer": "nesterov", "momentum": 0.85,
              "lr": 1.5, "weight_decay": 0.0153 * 1024 / (1024 * (1 + 1 / 0.15)) / 1.5, "schedule": "linear",
              "warmup": 0.23, "lr_start_factor": 0.2, "lr_end_factor": 0.07, "label_smoothing": 0.2,
              "lookahead_every": 5, "lookahead_decay": 0.95, "lookahead_start_epoch": 3,
              "augment": {"pad": 2, "pad_mode": "reflect", "flip": "alternating", "tta": 2},
              "log_every": 50, "checkpoint_every": 1000}

#: fastnet96's recipe: the Muon recipe above for airbench96's wider, deeper network and its
#: stronger augmentation (4-pixel translation, 12-pixel cutout), at airbench96's batch of 1024.
#: Epochs: airbench96's 45 less the share Muon saved fastnet (9.9 → 8).
RECIPE96 = {**RECIPE, "epochs": 36.0, "batch_size": 1024, "lr": 0.24,
            "augment": {"pad": 4, "pad_mode": "reflect", "flip": "alternating", "cutout": 12, "tta": 2},
            "log_every": 50}

#: Under Muon: the filters' settings, and the SGD parameters' learning rates per example (for the
#: recipe's Muon lr of MUON_LR; they follow a different lr in proportion).  The head's: airbench's
#: 0.67 for a head scaled by 1/256 with unit-std weights, which for ours (1/9, PyTorch's default
#: init, the same initial logits) is 0.67·(9/256)² — a weight's step moves the logits by scale².
MUON_FILTERS = {"orthogonalize": True, "momentum": 0.6, "ns_steps": 3, "normalize_weights": True}
MUON_LR = 0.24
MUON_SGD_RATES = {"biases": 0.053, "head": 0.67 * (9 / 256) ** 2}
#: Under any other optimizer: BatchNorm biases at 64× the lr, 1/64 the decay coefficient.
SGD_BIAS_SCALES = {"lr_scale": 64.0, "weight_decay_scale": 1.0 / 64.0}


class FrozenScaleBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose scale stays 1 (not trained); `momentum` is the statistics' decay as in
    airbench (0.6 keeps 60% of the old running mean per step: PyTorch momentum 0.4)."""

    def __init__(self, channels: int, momentum: float = 0.6, eps: float = 1e-12) -> None:
        super().__init__(channels, eps=eps, momentum=1.0 - momentum)
        self.weight.requires_grad_(False)


def _dirac_conv(c_in: int, c_out: int) -> nn.Conv2d:
    """3×3 conv, no bias, whose first min(c_in, c_out) filters start as the identity."""
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: min(c_in, c_out)])
    return conv


class ConvGroup(nn.Module):
    """conv → pool → BN → GELU → conv → BN → GELU; with `depth` 3 a third conv → BN whose output
    is added to the first GELU's before the last GELU (airbench96's residual group)."""

    def __init__(self, c_in: int, c_out: int, bn_momentum: float, depth: int = 2) -> None:
        super().__init__()
        self.conv1, self.norm1 = _dirac_conv(c_in, c_out), FrozenScaleBatchNorm(c_out, bn_momentum)
        self.conv2, self.norm2 = _dirac_conv(c_out, c_out), FrozenScaleBatchNorm(c_out, bn_momentum)
        if depth == 3:
            self.conv3, self.norm3 = _dirac_conv(c_out, c_out), FrozenScaleBatchNorm(c_out, bn_momentum)
        self.depth = depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.norm1(F.max_pool2d(self.conv1(x), 2)))
        if self.depth == 2:
            return F.gelu(self.norm2(self.conv2(x)))
        y = F.gelu(self.norm2(self.conv2(x)))
        return F.gelu(self.norm3(self.conv3(y)) + x)


def patch_whitening(images: torch.Tensor, kernel: int, eps: float = WHITEN_EPS,
                    chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigen-decomposition of the (uncentred) covariance of all kernel×kernel patches of `images`.

    `images` (B, C, H, W) normalised floats.  Returns (eigenvalues (D,), filters (D, C, k, k)),
    D = C·k², largest eigenvalue first, each filter an eigenvector scaled by 1/sqrt(λ + eps): a
    convolution with them makes the patches' covariance (nearly) the identity.  Accumulated in
    float64 over chunks of images to bound memory.
    """
    c = images.shape[1]
    d = c * kernel * kernel
    cov = torch.zeros(d, d, dtype=torch.float64, device=images.device)
    count = 0
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk].float()
        # (B, C, H', W', k, k) → (B·H'·W', C·k·k), matching a conv weight's (C, kh, kw) order
        patches = x.unfold(2, kernel, 1).unfold(3, kernel, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, d)
        cov += (patches.T @ patches).double()
        count += len(patches)
    cov /= max(count, 1)
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.T.flip(0)
    filters = eigenvectors / torch.sqrt(eigenvalues.clamp(min=0) + eps)[:, None]
    return eigenvalues.float(), filters.float().view(d, c, kernel, kernel)


#: SVHN: translation only (no flips in training or test-time views: a mirrored digit is another symbol).
SVHN_RECIPE = {**RECIPE, "augment": {"pad": 2, "pad_mode": "reflect"}}


@register_model("fastnet", recipes={"*": RECIPE, "svhn": SVHN_RECIPE})
class FastNet(nn.Module):
    """airbench94's network for (C, H, W) inputs; `widths` of the three conv groups, each of
    `depth` convolutions (2, or 3 with a residual connection as in airbench96)."""

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int], widths: tuple[int, ...] = (64, 256, 256),
                 whiten_kernel: int = 2, scale: float = 1 / 9, bn_momentum: float = 0.6,
                 whiten_bias_epochs: int = 3, depth: int = 2) -> None:
        super().__init__()
        if depth not in (2, 3):
            raise ValueError(f"depth must be 2 or 3, got {depth}")
        c = input_shape[0]
        whiten_width = 2 * c * whiten_kernel**2
        self.whiten = nn.Conv2d(c, whiten_width, whiten_kernel, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)
        nn.init.zeros_(self.whiten.bias)
        groups, c_in = [], whiten_width
        for width in widths:
            groups.append(ConvGroup(c_in, width, bn_momentum, depth))
            c_in = width
        self.groups = nn.Sequential(*groups)
        self.head = nn.Linear(c_in, num_classes, bias=False)
        self.scale = scale
        self.whiten_bias_epochs = whiten_bias_epochs

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor) -> None:
        """Set the whitening filters from training images (B, C, H, W), normalised: the
        eigenvectors of their patch covariance, each both ways (± keeps the GELU's information)."""
        _, filters = patch_whitening(images.to(self.whiten.weight.device), self.whiten.kernel_size[0])
        self.whiten.weight.copy_(torch.cat([filters, -filters]).to(self.whiten.weight.dtype))

    def set_epoch(self, epoch: int) -> None:
        """Train the whitening bias for the first `whiten_bias_epochs` epochs, then freeze it."""
        self.whiten.bias.requires_grad_(epoch < self.whiten_bias_epochs)

    def optimizer_groups(self, config: Any = None) -> list[dict]:
        """Parameter groups for the run's `config` (its `optimizer` and `batch_size`).

        Under Muon: the conv filters orthogonalised (MUON_FILTERS); the BatchNorm and whitening
        biases and the head by nesterov SGD at MUON_SGD_RATES × batch size.  Otherwise: BatchNorm
        biases at 64× the learning rate and 1/64 the decay coefficient, the rest as configured.
        Frozen tensors (BatchNorm scales, whitening filters) are not optimised at all.
        """
        norm_biases = [m.bias for m in self.modules() if isinstance(m, FrozenScaleBatchNorm)]
        if getattr(config, "optimizer", None) == "muon":
            batch = config.batch_size
            filters = [p for p in self.groups.parameters() if p.ndim == 4]
            return [{"params": filters, **MUON_FILTERS},
                    {"params": norm_biases + [self.whiten.bias], "orthogonalize": False,
                     "lr_scale": MUON_SGD_RATES["biases"] * batch / MUON_LR, "weight_decay_scale": 1.0 / 64.0},
                    {"params": [self.head.weight], "orthogonalize": False,
                     "lr_scale": MUON_SGD_RATES["head"] * batch / MUON_LR}]
        chosen = {id(p) for p in norm_biases}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in chosen]
        return [{"params": norm_biases, **SGD_BIAS_SCALES}, {"params": rest}]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.groups(F.gelu(self.whiten(x)))
        # A max-pool rather than amax: inductor (torch 2.11–2.14) turns amax's backward after the
        # fused bf16 GELU into NaN gradients; the pool routes each gradient by its index.
        return self.head(F.adaptive_max_pool2d(x, 1).flatten(1)) * self.scale


@register_model("fastnet96", recipes={"*": RECIPE96})
def fastnet96(num_classes: int, input_shape: tuple[int, int, int], **options) -> FastNet:
    """airbench96's network: groups of widths 128 / 384 / 512, three convolutions each (residual)."""
    return FastNet(num_classes, input_shape, **{"widths": (128, 384, 512), "depth": 3, **options})
