"""The reference models, built in code (no downloads): an MLP classifier, 16 features -> 4 classes.

Variant 1 comes from a fixed seed; variant K > 1 is variant 1 plus a small seeded perturbation,
so canary and shadow comparisons compare two close but different models. Not a serving layer.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

FEATURES = 16
CLASSES = 4
HIDDEN = 32
SEED = 1234
# Scaling the output layer makes the softmax confident enough that a small perturbation moves
# probabilities (mean |dp| ~0.01 for variant 2) but few labels (~95% agree with variant 1).
LOGIT_SCALE = 4.0
PERTURBATION = 0.05  # noise std per variant step, relative to each parameter tensor's std


def pick_device(requested: str) -> torch.device:
    """``auto`` is CUDA when present, else CPU; asking for CUDA without one is an error, not a fallback."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but no CUDA device is available")
    if requested not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {requested!r}")
    return torch.device(requested)


def build_mlp(variant: int, device: torch.device) -> nn.Module:
    """The same weights in every process for the same variant: built on CPU from fixed seeds."""
    if variant < 1:
        raise ValueError(f"variant must be 1 or more, not {variant}")
    # fork_rng: seeding must not reset the global generator of whoever builds the model.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        output = nn.Linear(HIDDEN, CLASSES)
        model = nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.ReLU(), output, nn.Softmax(dim=-1))
    with torch.no_grad():
        output.weight.mul_(LOGIT_SCALE)
        output.bias.mul_(LOGIT_SCALE)
        if variant > 1:
            generator = torch.Generator().manual_seed(SEED + variant)
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=generator) * (PERTURBATION * (variant - 1)) * p.std())
    return model.to(device).eval()


class Classifier:
    """Runs the MLP on a batch: [n, 16] float32 -> probabilities [n, 4] float32, labels [n] int64."""

    def __init__(self, variant: int, device: torch.device) -> None:
        self.device = device
        self.variant = variant
        self.model = build_mlp(variant, device)

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Decoded binary inputs are read-only views of the body; torch wants memory it may write.
        x = np.ascontiguousarray(batch, dtype=np.float32)
        if not x.flags.writeable:
            x = x.copy()
        with torch.inference_mode():
            probabilities = self.model(torch.from_numpy(x).to(self.device))
            labels = probabilities.argmax(dim=-1)
            return probabilities.cpu().numpy(), labels.cpu().numpy().astype(np.int64)
