"""The reference models, built in code (no downloads): an MLP classifier, 16 features -> 4 classes.

Variant 1 comes from a fixed seed; variant K > 1 is variant 1 plus a small seeded perturbation,
so canary and shadow comparisons compare two close but different models.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

FEATURES = 16
CLASSES = 4


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but no CUDA device is available")
    return torch.device(requested)


def build_mlp(variant: int, device: torch.device) -> nn.Module:
    torch.manual_seed(1234)
    model = nn.Sequential(nn.Linear(FEATURES, 32), nn.ReLU(), nn.Linear(32, CLASSES), nn.Softmax(dim=-1))
    if variant > 1:
        generator = torch.Generator().manual_seed(1000 + variant)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=generator) * 0.05 * (variant - 1))
    return model.to(device).eval()


class Classifier:
    """Runs the MLP on a batch: [n, 16] float32 -> probabilities [n, 4], labels [n]."""

    def __init__(self, variant: int, device: torch.device) -> None:
        self.device = device
        self.variant = variant
        self.model = build_mlp(variant, device)

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
            probabilities = self.model(x)
            labels = probabilities.argmax(dim=-1)
            return probabilities.cpu().numpy(), labels.cpu().numpy().astype(np.int64)
