"""The LightningModule: one for every registry model. It owns the step logic; the Trainer owns the loop."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from ..config import Augmentation, RunConfig
from .data import augment, cutout, normalize, strong, to_unit
from ..errors import ConfigError
from .models import create_model, head_parameters, normalisation
from .pseudo_label import confidence_cap


def ema_decay(half_life_epochs: float, steps_per_epoch: int) -> float:
    """Per-step EMA decay whose weights halve after `half_life_epochs` epochs, so the same
    setting means the same averaging window on 4,000 images and on 60,000."""
    return 0.5 ** (1.0 / max(1.0, half_life_epochs * steps_per_epoch))


def loss_of(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy of class indices (N,); for multi-label 0/1 rows (N, L), each label's own binary
    cross-entropy (sigmoid outputs), smoothed towards 1/2 alike."""
    if labels.ndim == 2:
        targets = labels.float() * (1 - label_smoothing) + label_smoothing / 2
        return F.binary_cross_entropy_with_logits(logits.float(), targets)
    return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)


def hit_rate(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The share right: the most probable class; for multi-label, each label decided at probability
    1/2 (logit 0), averaged over every image's every label."""
    if labels.ndim == 2:
        return ((logits > 0) == labels.bool()).float().mean()
    return (logits.argmax(1) == labels).float().mean()


class Classifier(L.LightningModule):
    """Wraps a registry model with the project's single preprocessing path.

    Batches arrive as uint8 images on the device; `preprocess` scales, augments (training
    only) and normalises them with the training set's statistics, for every split alike.
    Build it with `Classifier.from_config`; every argument is a keyword, saved in checkpoints.
    """

    def __init__(self, *, model: str, num_classes: int, in_chans: int, image_size: tuple[int, int],
                 mean: tuple[float, ...], std: tuple[float, ...],
                 lr: float, weight_decay: float, label_smoothing: float, schedule: str, epochs: int,
                 steps_per_epoch: int, augmentation: dict[str, Any] | None = None,
                 model_kwargs: dict[str, Any] | None = None, channels_last: bool = True, seed: int = 0,
                 weights: str = "", backbone_lr: float = 1.0, consistency: str = "none",
                 consistency_weight: float = 1.0, confidence: float = 1.0, teacher_decay: float = 0.0,
                 input_size: int | None = None) -> None:
        """`weights`: the pretrained file a fine-tuned backbone starts from; `backbone_lr` its peak
        learning rate as a share of `lr`, the new head's. `consistency` (config.Consistency): train
        on unlabelled images too (`attach_unlabelled`), with FixMatch's `confidence` threshold or a
        mean teacher whose weights decay by `teacher_decay` a step. `input_size`: the side the
        network sees, where the images are stored at another (a pretrained backbone's own size)."""
        super().__init__()
        self.save_hyperparameters()
        self.input_size = None if input_size is None or tuple(image_size) == (input_size, input_size) else \
            int(input_size)
        net = create_model(model, num_classes=num_classes, in_chans=in_chans,
                           image_size=tuple(image_size) if self.input_size is None else (input_size, input_size),
                           weights=weights, **(model_kwargs or {}))
        # channels_last: the oneDNN (CPU) and cuDNN convolutions run faster on NHWC (measured in
        # benchmarks/levers.py); the arithmetic is unchanged.
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net = net.to(memory_format=self.memory_format)
        self.augmentation = Augmentation(**augmentation) if augmentation else Augmentation(enabled=False)
        self.mean, self.std = tuple(mean), tuple(std)
        self.unlabelled: torch.Tensor | None = None     # not a buffer: never saved in a checkpoint
        if consistency == "mean-teacher":
            # the teacher is an EMA of the student's weights and batch-norm statistics; it is saved
            # with the student, so a resumed fit continues the same average
            self.teacher = torch.optim.swa_utils.AveragedModel(
                self.net, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(teacher_decay), use_buffers=True)

    @classmethod
    def from_config(cls, cfg: RunConfig, *, model: str, num_classes: int, image_shape: tuple[int, int, int],
                    mean: tuple[float, ...], std: tuple[float, ...], steps_per_epoch: int,
                    **overrides: Any) -> "Classifier":
        """The one place a run's settings become a module. `image_shape` is (channels, height, width);
        `cfg` as `policy.resolve` made it: its augmentation has no `auto` left."""
        if not cfg.is_resolved:
            raise ConfigError("a module is made from a config policy.resolve made concrete (its `auto` settings "
                              "depend on the competition)")
        channels, height, width = image_shape
        if cfg.weights:
            # a pretrained backbone sees images normalised as in its own training, not by this data's statistics
            mean, std = normalisation(model, cfg.normalise, channels)
        settings = dict(model=model, num_classes=num_classes, in_chans=channels, image_size=(height, width),
                        mean=tuple(mean), std=tuple(std), lr=cfg.lr, weight_decay=cfg.weight_decay,
                        label_smoothing=cfg.label_smoothing, schedule=cfg.schedule, epochs=cfg.epochs,
                        steps_per_epoch=steps_per_epoch, augmentation=asdict(cfg.augment),
                        model_kwargs=cfg.model_kwargs, weights=cfg.weights,
                        backbone_lr=cfg.backbone_lr if cfg.weights else 1.0, consistency=cfg.consistency,
                        consistency_weight=cfg.consistency_weight,
                        confidence=cfg.pseudo_threshold * confidence_cap(num_classes, cfg.label_smoothing),
                        teacher_decay=ema_decay(cfg.ema_half_life, steps_per_epoch), input_size=int(cfg.input_size))
        return cls(**{**settings, **overrides})

    def attach_unlabelled(self, images: torch.Tensor | None) -> None:
        """The unlabelled (test) images consistency training draws a batch from every step."""
        if self.hparams.get("consistency", "none") == "none":
            raise ConfigError("unlabelled images are for consistency training (consistency = fixmatch or "
                              "mean-teacher)")
        if images is None or not len(images):
            raise ConfigError(f"consistency = {self.hparams.consistency} trains on unlabelled images; none were given")
        self.unlabelled = images

    def preprocess(self, images: torch.Tensor, train: bool) -> torch.Tensor:
        # warps and normalisation stay in float32 under bf16 autocast: sampling coordinates in
        # bfloat16 would be off by a tenth of a pixel; only the network runs in the lower precision
        with torch.autocast(images.device.type, enabled=False):
            x = to_unit(images)
            return self.to_input(augment(x, self.augmentation) if train else x)

    def to_input(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] images -> what the network reads: at its input size, normalised, in its memory format."""
        if self.input_size is not None:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", antialias=True,
                              align_corners=False)
        return normalize(x, self.mean, self.std).contiguous(memory_format=self.memory_format)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images (B, C, H, W) -> logits (B, K), without augmentation."""
        return self.net(self.preprocess(images, train=False))

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # augmentation and dropout draw from the global generator: seeding it from (seed, step)
        # makes every step's randomness the same whether or not the fit was resumed before it
        torch.manual_seed(self.hparams.seed * 1_000_003 + self.global_step)
        if self.hparams.get("weights"):
            # a fine-tuned backbone keeps ImageNet's batch-norm statistics: batches of a few dozen
            # photos would replace them with noisy ones. Set here, per
            # step, because Lightning restores each layer's train/eval mode around validation.
            for layer in self.net.modules():
                if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
                    layer.eval()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        if self.unlabelled is None:
            logits = self.net(self.preprocess(images, train=True))
            loss = loss_of(logits, labels, self.hparams.label_smoothing)
        else:
            # as many unlabelled images as labelled ones, drawn from the step-seeded generator
            rows = torch.randint(len(self.unlabelled), (len(images),), device=self.unlabelled.device)
            unlabelled = self.unlabelled[rows].to(images.device, non_blocking=True)
            # one forward pass for the labelled and the strong views: batch norm sees them together
            both = self.net(torch.cat([self.preprocess(images, train=True), self.strong_view(unlabelled)]))
            logits, strong_logits = both[:len(images)], both[len(images):]
            loss = loss_of(logits, labels, self.hparams.label_smoothing)
            unsupervised = self.consistency_loss(self.preprocess(unlabelled, train=True), strong_logits)
            self.log("consistency_loss", unsupervised, on_step=False, on_epoch=True)
            loss = loss + self.hparams.consistency_weight * unsupervised
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def strong_view(self, images: torch.Tensor) -> torch.Tensor:
        """Warps at twice the training ranges, then a cutout square: the view learnt from."""
        with torch.autocast(images.device.type, enabled=False):
            return self.to_input(cutout(augment(to_unit(images), strong(self.augmentation))))

    def consistency_loss(self, weak: torch.Tensor, strong_logits: torch.Tensor) -> torch.Tensor:
        """FixMatch: the weak view's class, where its probability reaches `confidence`, is the strong
        view's target. Mean teacher: the teacher's probabilities on the weak view are soft targets,
        their weight ramped up over the first quarter of training while the teacher is still poor."""
        hp = self.hparams
        with torch.no_grad():
            if hp.consistency == "fixmatch":
                confidence, targets = self.net(weak).float().softmax(1).max(1)
            else:
                self.teacher.eval()
                targets = self.teacher(weak).float().softmax(1)
        if hp.consistency == "fixmatch":
            losses = F.cross_entropy(strong_logits.float(), targets, reduction="none")
            return (losses * (confidence >= hp.confidence)).mean()
        ramp = min(1.0, self.global_step / max(1.0, 0.25 * hp.epochs * hp.steps_per_epoch))
        soft = -(targets * strong_logits.float().log_softmax(1)).sum(1).mean()
        return ramp * soft

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.hparams.get("consistency") == "mean-teacher":
            self.teacher.update_parameters(self.net)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        logits = self(images)
        self.log("val_loss", loss_of(logits, labels), on_epoch=True)
        self.log("val_acc", hit_rate(logits, labels), on_epoch=True, prog_bar=True)

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        # no weight decay on batch-norm parameters and biases; a pretrained backbone at a share of
        # the new head's learning rate, so fine-tuning does not wash out what it learnt on ImageNet
        backbone_lr = hp.get("backbone_lr", 1.0)
        head = {id(p) for p in head_parameters(self.net)} if backbone_lr != 1.0 else set()

        def by_decay(params: list[torch.nn.Parameter], lr: float) -> list[dict[str, Any]]:
            return [{"params": [p for p in params if p.ndim > 1], "weight_decay": hp.weight_decay, "lr": lr},
                    {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0, "lr": lr}]

        if head:
            groups = by_decay([p for p in self.parameters() if id(p) in head], hp.lr) + \
                by_decay([p for p in self.parameters() if id(p) not in head], hp.lr * backbone_lr)
        else:
            groups = by_decay(list(self.parameters()), hp.lr)
        groups = [g for g in groups if g["params"]]
        optimizer = torch.optim.AdamW(groups, lr=hp.lr)
        total_steps = max(hp.epochs * hp.steps_per_epoch, 4)
        if hp.schedule == "onecycle":
            # a quarter warming up, but at least two steps: a few-step fit (tiny data) needs both phases
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in groups],
                                                            total_steps=total_steps,
                                                            pct_start=max(0.25, 2 / total_steps))
        elif hp.schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
        else:
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
