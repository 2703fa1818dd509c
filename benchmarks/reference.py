"""The usual way, for comparison: a DataLoader over a TensorDataset-like dataset that augments one
image at a time in __getitem__, and the default Lightning loop. Same models, same augmentation."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from competition.config import Augmentation
from competition.fitting.data import augment, normalize, to_unit
from competition.fitting.models import create_model


class PerSampleAugmented(Dataset):
    """Images stay uint8 on the CPU; each item is scaled, augmented and normalised on its own."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, aug: Augmentation | None,
                 mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.images, self.labels, self.aug, self.mean, self.std = images, labels, aug, mean, std

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = to_unit(self.images[i:i + 1])
        if self.aug is not None:
            x = augment(x, self.aug)
        return normalize(x, self.mean, self.std)[0], self.labels[i]


class ReferenceModule(L.LightningModule):
    """Plain cross-entropy with Adam at a constant rate (seed 001's recipe)."""

    def __init__(self, model: str, num_classes: int, image_size: int, lr: float = 1e-3) -> None:
        super().__init__()
        self.net = create_model(model, num_classes=num_classes, image_size=image_size)
        self.lr = lr

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_acc", (self.net(x).argmax(1) == y).float().mean(), on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def loaders(train_images, train_labels, val_images, val_labels, aug, mean, std, batch_size=128):
    train = DataLoader(PerSampleAugmented(train_images, train_labels, aug, mean, std), batch_size=batch_size,
                       shuffle=True)
    val = DataLoader(PerSampleAugmented(val_images, val_labels, None, mean, std), batch_size=1024)
    return train, val
