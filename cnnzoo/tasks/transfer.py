"""``TimmClassifier``: transfer learning on any timm backbone, by feature extraction or fine-tuning."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.distributed as dist
from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import BaseFinetuning
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torch.optim import Optimizer
from typing_extensions import override

from .._compat import attached_trainer
from .base import ClassificationTask

__all__ = ["TimmClassifier", "TransferFinetuning"]

Strategy = Literal["feature_extraction", "finetune", "freeze_unfreeze"]


def _timm() -> Any:
    import timm

    return timm


def check_backbone(name: str) -> None:
    timm = _timm()
    if name in timm.list_models():
        return
    from ..models import unknown_name_error

    raise unknown_name_error("timm backbone", name, timm.list_models(), "timm.list_models()")


def classifier_prefix(net: Any) -> str:
    head = net.get_classifier()
    for name, module in net.named_modules():
        if module is head:
            return name
    raise ValueError("the classifier returned by get_classifier() is not a submodule of the network")


class TransferFinetuning(BaseFinetuning):
    """Freezing and unfreezing for :class:`TimmClassifier`, on Lightning's ``BaseFinetuning``.

    Unlike ``BackboneFinetuning`` it never adds parameter groups: the task creates the head and backbone groups
    up front (with the backbone's smaller learning rate), and unfreezing only flips ``requires_grad``. Adding
    groups mid-run is what broke OneCycleLR and ReduceLROnPlateau (Lightning Flash #1321, Lightning #8720) and
    let Flash give the backbone the head's rate. ``finetune_function`` unfreezes for every epoch at or after
    ``unfreeze_at_epoch``, so a resumed run re-applies the unfreeze that ``freeze_before_training`` undid.
    """

    def __init__(self, strategy: Strategy, unfreeze_at_epoch: int, unfreeze_top: int | None, train_bn: bool) -> None:
        super().__init__()
        self.strategy, self.unfreeze_at_epoch = strategy, unfreeze_at_epoch
        self.unfreeze_top, self.train_bn = unfreeze_top, train_bn
        self.unfrozen = False

    @override
    def freeze_before_training(self, pl_module: LightningModule) -> None:
        if self.strategy in ("feature_extraction", "freeze_unfreeze"):
            self.freeze(pl_module.backbone_modules(), train_bn=self.train_bn)  # type: ignore[operator]
        self.unfrozen = False

    @override
    def finetune_function(self, pl_module: LightningModule, epoch: int, optimizer: Optimizer) -> None:
        if self.strategy == "freeze_unfreeze" and epoch >= self.unfreeze_at_epoch and not self.unfrozen:
            self.make_trainable(pl_module.top_blocks(self.unfreeze_top))  # type: ignore[operator]
            self.unfrozen = True


class TimmClassifier(ClassificationTask):
    """Transfer learning on a timm backbone: a new head, then feature extraction or fine-tuning.

    Args:
        backbone: any ``timm.list_models()`` name, e.g. ``resnet18`` or ``efficientnet_b0``.
        pretrained: ``True`` for timm's own pretrained weights (a download); a path (``.safetensors``, ``.pt``,
            ``.pth``, ``.ckpt``), an ``https://...#sha256=<hex>`` URL or a cnnzoo weights name for a weights file
            (always loaded without unpickling code); ``False`` for random initialisation.
        num_classes: classes of the new head; the CLI links it from the data module.
        in_chans: input channels (timm adapts the first convolution); the CLI links it from the data module.
        img_size: input size, linked from the data module (for the model summary; timm CNNs pool globally).
        class_names: class names, linked from the data module and stored in checkpoints.
        new_head: start the classifier from scratch even when the weights carry one of the right size (transfer to
            a new label set that happens to have as many classes); a head of another size is always new.
        mean: data normalisation mean, linked and stored so checkpoints carry their transforms.
        std: data normalisation std, likewise.
        strategy: ``feature_extraction`` (backbone frozen throughout, BatchNorm statistics too unless
            ``train_bn``), ``finetune`` (everything trains from the start) or ``freeze_unfreeze`` (head first, then
            the top blocks from ``unfreeze_at_epoch``).
        unfreeze_at_epoch: epoch at which ``freeze_unfreeze`` unfreezes.
        unfreeze_top: how many of the backbone's top blocks to unfreeze (timm's ``group_matcher``); ``None``: all.
        backbone_lr_ratio: the backbone's learning rate relative to the head's (0.1 = ten times slower).
        train_bn: let BatchNorm layers of a frozen backbone keep training.
        drop_rate: dropout before the classifier.
        optimizer: optimiser factory; its learning rate is the head's.
        lr_scheduler: scheduler factory. OneCycleLR gets a per-group ``max_lr`` that keeps the ratio.
        lr_scheduler_interval: ``"epoch"`` or ``"step"``.
        label_smoothing: cross-entropy label smoothing.
    """

    # A timm network: typed loosely because its API (get_classifier, group_matcher, pretrained_cfg) is timm's,
    # not nn.Module's.
    net: Any

    def __init__(
        self,
        backbone: str = "resnet18",
        pretrained: bool | str = False,
        num_classes: int = 10,
        in_chans: int = 3,
        img_size: int | None = None,
        class_names: list[str] | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        new_head: bool = False,
        strategy: Strategy = "freeze_unfreeze",
        unfreeze_at_epoch: int = 1,
        unfreeze_top: int | None = None,
        backbone_lr_ratio: float = 0.1,
        train_bn: bool = False,
        drop_rate: float = 0.0,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_scheduler_interval: Literal["epoch", "step"] = "epoch",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(
            num_classes=num_classes,
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            lr_scheduler_interval=lr_scheduler_interval,
            label_smoothing=label_smoothing,
            class_names=class_names,
            mean=mean,
            std=std,
        )
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        check_backbone(backbone)
        if not 0 < backbone_lr_ratio <= 1:
            raise ValueError(f"backbone_lr_ratio must be in (0, 1], got {backbone_lr_ratio}")
        if unfreeze_top is not None and unfreeze_top < 1:
            raise ValueError(f"unfreeze_top must be >= 1 or None (all blocks), got {unfreeze_top}")
        self.net = _timm().create_model(
            backbone, pretrained=pretrained is True, num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate
        )
        if isinstance(pretrained, str) and pretrained:
            from ..models import load_weights_into

            load_weights_into(self.net, pretrained, head_prefix=classifier_prefix(self.net) + ".", new_head=new_head)
        self.strategy, self.backbone_lr_ratio = strategy, backbone_lr_ratio
        self.finetuning = TransferFinetuning(strategy, unfreeze_at_epoch, unfreeze_top, train_bn)
        size = img_size or self.net.pretrained_cfg.get("input_size", (in_chans, 224, 224))[-1]
        self.example_input_array = torch.zeros(1, in_chans, size, size)
        self._late_params: list[nn.Parameter] = []

    @property
    def data_config(self) -> dict[str, Any]:
        """Timm's preprocessing for this backbone (input size, mean/std, interpolation, crop_pct)."""
        return _timm().data.resolve_data_config({}, model=self.net)

    # --- parts of the network ------------------------------------------------------------------------------------
    def head_parameters(self) -> list[nn.Parameter]:
        """The parameters of the new classifier head."""
        return list(self.net.get_classifier().parameters())

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Every parameter that is not the head's."""
        head = {id(p) for p in self.head_parameters()}
        return [p for p in self.net.parameters() if id(p) not in head]

    def backbone_modules(self) -> list[nn.Module]:
        """The backbone's leaf modules (what freezing and unfreezing act on)."""
        head = set(self.net.get_classifier().modules())
        return [m for m in self.net.modules() if not list(m.children()) and m not in head]

    def top_blocks(self, k: int | None) -> list[nn.Module]:
        """The backbone's top ``k`` blocks (all when ``None``), by timm's coarse ``group_matcher``."""
        if k is None:
            return self.backbone_modules()
        from timm.models import group_parameters

        head = classifier_prefix(self.net) + "."
        groups = group_parameters(self.net, self.net.group_matcher(coarse=True))
        blocks = [names for names in groups.values() if not all(n.startswith(head) for n in names)]
        chosen = {n.rsplit(".", 1)[0] for names in blocks[-k:] for n in names if not n.startswith(head)}
        return [self.net.get_submodule(name) for name in sorted(chosen)]

    # --- optimisation -------------------------------------------------------------------------------------------
    @override
    def configure_callbacks(self) -> list[Any]:
        return [self.finetuning]

    def param_groups(self) -> list[dict[str, Any]]:
        """Head and backbone parameter groups.

        Both from the start (frozen parameters join when unfrozen without a new
        optimiser); the backbone learns at ``backbone_lr_ratio`` times the head's rate.
        """
        return [
            {"params": self.head_parameters(), "name": "head"},
            {"params": self.backbone_parameters(), "name": "backbone", "lr_scale": self.backbone_lr_ratio},
        ]

    # --- DDP ----------------------------------------------------------------------------------------------------
    @override
    def on_train_start(self) -> None:
        # DDP registers only the parameters that required grad when it wrapped the model; the ones unfrozen later
        # would be updated from each rank's own gradient and drift apart (the DDP failure of Lightning #20340).
        # Their gradients are averaged here instead.
        self._late_params = [p for p in self.net.parameters() if not p.requires_grad]

    @override
    def on_after_backward(self) -> None:
        trainer = attached_trainer(self)
        if not self._late_params or trainer is None or trainer.world_size < 2 or not dist.is_initialized():
            return
        for p in self._late_params:
            if p.grad is not None:
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad.div_(trainer.world_size)
