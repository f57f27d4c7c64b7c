"""`fastnet`: a speed-record network in the class of airbench94 (Jordan, 2024), as a visionflow model.

    whitening conv 2×2 (2·C·4 channels, frozen, initialised from the training data) → GELU
    → 3 conv groups of widths 64 / 256 / 256: conv 3×3 → max-pool 2 → BN → GELU → conv 3×3 → BN → GELU
    → global max-pool → dense (no bias) → × 1/9

BatchNorms learn only their bias (scale frozen at 1; eps 1e-12, fast statistics momentum), conv
filters start as identities on their first input channels (dirac), the whitening layer's bias
trains for the first `whiten_bias_epochs` epochs only, and BatchNorm biases get 64× the learning
rate (with 1/64 the weight decay, so the decay per step is unchanged).  The rest of the recipe —
label smoothing, nesterov SGD with a triangular schedule, lookahead, alternating flip and
translation, test-time augmentation, bf16, channels-last — is training configuration: `RECIPE`.

The hooks `init_from_data` (the whitening), `set_epoch` (the bias freeze) and `optimizer_groups`
(the BatchNorm-bias learning rate) are called by the engine's one training loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model

WHITEN_EPS = 5e-4

#: airbench94's recipe in visionflow's units: its summed loss with lr 11.5 / weight decay 0.0153
#: "per 1024 examples" and momentum 0.85 is, for a mean loss at batch 1024, nesterov SGD with
#: lr 11.5 / (1 + 1 / 0.15) = 1.5 and decay coefficient 0.0153 · 1024 / 7850.7 / 1.5 = 1.33e-3;
#: lr triangle 0.2 → 1 (at 23%) → 0.07; lookahead every 5 steps from epoch 3; label smoothing 0.2;
#: 2-pixel reflect translation + alternating flip; evaluated with flip + translate TTA; trained
#: on all 50,000 training images, as airbench is (no validation split).
RECIPE = {"epochs": 9.9, "validation_size": 0, "batch_size": 1024, "optimizer": "nesterov", "momentum": 0.85,
          "lr": 1.5, "weight_decay": 0.0153 * 1024 / (1024 * (1 + 1 / 0.15)) / 1.5, "schedule": "linear",
          "warmup": 0.23, "lr_start_factor": 0.2, "lr_end_factor": 0.07, "label_smoothing": 0.2,
          "lookahead_every": 5, "lookahead_decay": 0.95, "lookahead_start_epoch": 3,
          "augment": {"pad": 2, "pad_mode": "reflect", "flip": "alternating", "tta": 2},
          "log_every": 50, "checkpoint_every": 1000}


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
    def __init__(self, c_in: int, c_out: int, bn_momentum: float) -> None:
        super().__init__()
        self.conv1, self.norm1 = _dirac_conv(c_in, c_out), FrozenScaleBatchNorm(c_out, bn_momentum)
        self.conv2, self.norm2 = _dirac_conv(c_out, c_out), FrozenScaleBatchNorm(c_out, bn_momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.norm1(F.max_pool2d(self.conv1(x), 2)))
        return F.gelu(self.norm2(self.conv2(x)))


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


@register_model("fastnet", recipes={"*": RECIPE})
class FastNet(nn.Module):
    """airbench94's network for (C, H, W) inputs; `widths` of the three conv groups."""

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int], widths: tuple[int, ...] = (64, 256, 256),
                 whiten_kernel: int = 2, scale: float = 1 / 9, bn_momentum: float = 0.6,
                 whiten_bias_epochs: int = 3) -> None:
        super().__init__()
        c = input_shape[0]
        whiten_width = 2 * c * whiten_kernel**2
        self.whiten = nn.Conv2d(c, whiten_width, whiten_kernel, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)
        nn.init.zeros_(self.whiten.bias)
        groups, c_in = [], whiten_width
        for width in widths:
            groups.append(ConvGroup(c_in, width, bn_momentum))
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

    def optimizer_groups(self) -> list[dict]:
        """BatchNorm biases at 64× the learning rate and 1/64 the decay coefficient; frozen
        tensors (BatchNorm scales, whitening filters) are not optimised at all."""
        norm_biases = [m.bias for m in self.modules() if isinstance(m, FrozenScaleBatchNorm)]
        chosen = {id(p) for p in norm_biases}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in chosen]
        return [{"params": norm_biases, "lr_scale": 64.0, "weight_decay_scale": 1.0 / 64.0},
                {"params": rest}]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.groups(F.gelu(self.whiten(x)))
        return self.head(x.amax(dim=(2, 3))) * self.scale
