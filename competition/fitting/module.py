"""The LightningModule: one for every registry model. It owns the step logic; the Trainer owns the loop."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
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


@dataclass(frozen=True, kw_only=True)
class NetSpec:
    """The network: a registry or timm model and the images it reads."""
    model: str
    num_classes: int
    in_chans: int
    image_size: tuple[int, int]         # the stored images' (height, width)
    input_size: int | None = None       # the side the network sees, where the stored size is another
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    weights: str = ""                   # the pretrained file a fine-tuned backbone starts from
    # channels_last: the oneDNN (CPU) and cuDNN convolutions run faster on NHWC (measured in
    # benchmarks/levers.py); the arithmetic is unchanged
    channels_last: bool = True


@dataclass(frozen=True, kw_only=True)
class InputSpec:
    """How uint8 batches become the network's input: normalisation and the training warps."""
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augmentation: dict[str, Any] | None = None      # config.Augmentation's fields; None: no warps


@dataclass(frozen=True, kw_only=True)
class Optimisation:
    """AdamW and its schedule over a member's steps."""
    lr: float                           # peak learning rate (a fine-tuned head's)
    weight_decay: float
    label_smoothing: float
    schedule: str
    epochs: int
    steps_per_epoch: int
    backbone_lr: float = 1.0            # a pretrained backbone's peak rate as a share of `lr`
    seed: int = 0


@dataclass(frozen=True, kw_only=True)
class ConsistencySpec:
    """Training on unlabelled images too (config.Consistency): FixMatch's `confidence` threshold, or a
    mean teacher whose weights decay by `teacher_decay` a step."""
    method: str = "none"
    weight: float = 1.0
    confidence: float = 1.0
    teacher_decay: float = 0.0


def _as(kind: type, value: Any) -> Any:
    """A spec from itself or from the dict a checkpoint saved it as."""
    if isinstance(value, kind):
        return value
    value = dict(value)
    if kind is NetSpec:
        value["image_size"] = tuple(value["image_size"])
    if kind is InputSpec:
        value["mean"], value["std"] = tuple(value["mean"]), tuple(value["std"])
    return kind(**value)


class Classifier(L.LightningModule):
    """Wraps a registry model with the project's single preprocessing path.

    Batches arrive as uint8 images on the device; `preprocess` scales, augments (training
    only) and normalises them with the training set's statistics, for every split alike.
    Build it with `Classifier.from_config`; its four specs are saved in checkpoints (as dicts).
    """

    def __init__(self, *, net: NetSpec | dict, inputs: InputSpec | dict, optimisation: Optimisation | dict,
                 consistency: ConsistencySpec | dict = ConsistencySpec()) -> None:
        super().__init__()
        self.spec, self.inputs = _as(NetSpec, net), _as(InputSpec, inputs)
        self.optimisation, self.consistency = _as(Optimisation, optimisation), _as(ConsistencySpec, consistency)
        self.save_hyperparameters({"net": asdict(self.spec), "inputs": asdict(self.inputs),
                                   "optimisation": asdict(self.optimisation),
                                   "consistency": asdict(self.consistency)})
        spec = self.spec
        self.input_size = None if spec.input_size is None or spec.image_size == (spec.input_size,) * 2 else \
            int(spec.input_size)
        net_module = create_model(spec.model, num_classes=spec.num_classes, in_chans=spec.in_chans,
                                  image_size=spec.image_size if self.input_size is None else (self.input_size,) * 2,
                                  weights=spec.weights, **spec.model_kwargs)
        self.memory_format = torch.channels_last if spec.channels_last else torch.contiguous_format
        self.net = net_module.to(memory_format=self.memory_format)
        augmentation = self.inputs.augmentation
        self.augmentation = Augmentation(**augmentation) if augmentation else Augmentation(enabled=False)
        self.mean, self.std = self.inputs.mean, self.inputs.std
        self.unlabelled: torch.Tensor | None = None     # not a buffer: never saved in a checkpoint
        if self.consistency.method == "mean-teacher":
            # the teacher is an EMA of the student's weights and batch-norm statistics; it is saved
            # with the student, so a resumed fit continues the same average
            self.teacher = torch.optim.swa_utils.AveragedModel(
                self.net, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(self.consistency.teacher_decay),
                use_buffers=True)

    @classmethod
    def from_config(cls, cfg: RunConfig, *, model: str, num_classes: int, image_shape: tuple[int, int, int],
                    mean: tuple[float, ...], std: tuple[float, ...], steps_per_epoch: int, seed: int = 0,
                    channels_last: bool = True) -> "Classifier":
        """The one place a run's settings become a module. `image_shape` is (channels, height, width);
        `cfg` as `policy.resolve` made it: its augmentation has no `auto` left."""
        if not cfg.is_resolved:
            raise ConfigError("a module is made from a config policy.resolve made concrete (its `auto` settings "
                              "depend on the competition)")
        channels, height, width = image_shape
        if cfg.weights:
            # a pretrained backbone sees images normalised as in its own training, not by this data's statistics
            mean, std = normalisation(model, cfg.normalise, channels)
        return cls(
            net=NetSpec(model=model, num_classes=num_classes, in_chans=channels, image_size=(height, width),
                        input_size=int(cfg.input_size), model_kwargs=dict(cfg.model_kwargs), weights=cfg.weights,
                        channels_last=channels_last),
            inputs=InputSpec(mean=tuple(mean), std=tuple(std), augmentation=asdict(cfg.augment)),
            optimisation=Optimisation(lr=cfg.lr, weight_decay=cfg.weight_decay, label_smoothing=cfg.label_smoothing,
                                      schedule=cfg.schedule, epochs=cfg.epochs, steps_per_epoch=steps_per_epoch,
                                      backbone_lr=cfg.backbone_lr if cfg.weights else 1.0, seed=seed),
            consistency=ConsistencySpec(method=cfg.consistency, weight=cfg.consistency_weight,
                                        confidence=cfg.pseudo_threshold * confidence_cap(num_classes,
                                                                                         cfg.label_smoothing),
                                        teacher_decay=ema_decay(cfg.ema_half_life, steps_per_epoch)))

    def attach_unlabelled(self, images: torch.Tensor | None) -> None:
        """The unlabelled (test) images consistency training draws a batch from every step."""
        if self.consistency.method == "none":
            raise ConfigError("unlabelled images are for consistency training (consistency = fixmatch or "
                              "mean-teacher)")
        if images is None or not len(images):
            raise ConfigError(f"consistency = {self.consistency.method} trains on unlabelled images; none were given")
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
        torch.manual_seed(self.optimisation.seed * 1_000_003 + self.global_step)
        if self.spec.weights:
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
            loss = loss_of(logits, labels, self.optimisation.label_smoothing)
        else:
            # as many unlabelled images as labelled ones, drawn from the step-seeded generator
            rows = torch.randint(len(self.unlabelled), (len(images),), device=self.unlabelled.device)
            unlabelled = self.unlabelled[rows].to(images.device, non_blocking=True)
            # one forward pass for the labelled and the strong views: batch norm sees them together
            both = self.net(torch.cat([self.preprocess(images, train=True), self.strong_view(unlabelled)]))
            logits, strong_logits = both[:len(images)], both[len(images):]
            loss = loss_of(logits, labels, self.optimisation.label_smoothing)
            unsupervised = self.consistency_loss(self.preprocess(unlabelled, train=True), strong_logits)
            self.log("consistency_loss", unsupervised, on_step=False, on_epoch=True)
            loss = loss + self.consistency.weight * unsupervised
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
        consistency, opt = self.consistency, self.optimisation
        with torch.no_grad():
            if consistency.method == "fixmatch":
                confidence, targets = self.net(weak).float().softmax(1).max(1)
            else:
                self.teacher.eval()
                targets = self.teacher(weak).float().softmax(1)
        if consistency.method == "fixmatch":
            losses = F.cross_entropy(strong_logits.float(), targets, reduction="none")
            return (losses * (confidence >= consistency.confidence)).mean()
        ramp = min(1.0, self.global_step / max(1.0, 0.25 * opt.epochs * opt.steps_per_epoch))
        soft = -(targets * strong_logits.float().log_softmax(1)).sum(1).mean()
        return ramp * soft

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.consistency.method == "mean-teacher":
            self.teacher.update_parameters(self.net)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        logits = self(images)
        self.log("val_loss", loss_of(logits, labels), on_epoch=True)
        self.log("val_acc", hit_rate(logits, labels), on_epoch=True, prog_bar=True)

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.optimisation
        # no weight decay on batch-norm parameters and biases; a pretrained backbone at a share of
        # the new head's learning rate, so fine-tuning does not wash out what it learnt on ImageNet
        backbone_lr = hp.backbone_lr
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
