"""The Fashion-MNIST CNN in PyTorch, and its evaluation loop. Only the functions of `fashion` that train,
export or run the network import this module, so torch loads only in those tasks."""

from __future__ import annotations

import torch
from torch import nn

PIXEL_MEAN, PIXEL_STD = 0.2860, 0.3530  # Fashion-MNIST training-set statistics


class FashionCNN(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.3),
            nn.Linear(64 * 7 * 7, 128),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Linear(128, classes),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = (image / 255.0 - PIXEL_MEAN) / PIXEL_STD
        return self.classifier(self.features(x))


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 512):
    model.eval()
    losses, logits = [], []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            out = model(images[i : i + batch])
            logits.append(out)
            losses.append(nn.functional.cross_entropy(out, labels[i : i + batch], reduction="sum"))
    all_logits = torch.cat(logits)
    loss = float(torch.stack(losses).sum()) / len(images)
    accuracy = float((all_logits.argmax(1) == labels).float().mean())
    return loss, accuracy, all_logits.numpy()
