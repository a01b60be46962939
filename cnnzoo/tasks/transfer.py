"""``TimmClassifier``: transfer learning on any timm backbone, by feature extraction or fine-tuning."""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from typing_extensions import override

from .base import ClassificationTask, Strategy, TransferFinetuning

__all__ = ["TimmClassifier", "TransferFinetuning"]


def _timm() -> Any:
    import timm

    return timm


def check_backbone(name: str) -> None:
    timm = _timm()
    if name in timm.list_models():
        return
    from ..models import is_model, unknown_name_error

    if is_model(name):  # one of cnnzoo's own nets, which ImageClassifier trains; timm's near names would mislead
        raise ValueError(
            f"unknown timm backbone {name!r}. {name} is a cnnzoo model, which cnnzoo trains with ImageClassifier: "
            f"cnnzoo.ImageClassifier(model={name!r}) in Python, --model ImageClassifier --model.model {name} on the "
            "command line"
        )
    raise unknown_name_error("timm backbone", name, timm.list_models(), "timm.list_models()")


class PretrainedUnavailableError(OSError):
    """timm's pretrained weights are neither in the local cache nor downloadable (offline)."""


def create_timm_model(backbone: str, pretrained: bool, num_classes: int, in_chans: int, drop_rate: float) -> Any:
    """``timm.create_model``; offline without cached weights, one line that says so and what to do instead."""
    timm = _timm()
    if not pretrained:
        return timm.create_model(backbone, num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate)
    # huggingface_hub logs every retry of every request (some 60 lines over a minute offline); its final error is
    # what matters, and it is reported below.
    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.CRITICAL)
    try:
        return timm.create_model(
            backbone, pretrained=True, num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate
        )
    except (OSError, RuntimeError) as err:
        from huggingface_hub.constants import HF_HUB_CACHE

        raise PretrainedUnavailableError(
            f"{backbone}: timm's pretrained weights are not in the local cache ({HF_HUB_CACHE}) and could not be "
            f"downloaded ({type(err).__name__}). Connect once to fill the cache, give pretrained a local weights "
            "file or URL with #sha256=, or set pretrained: false"
        ) from err
    finally:
        hub_log.setLevel(level)


def classifier_prefix(net: Any) -> str:
    head = net.get_classifier()
    for name, module in net.named_modules():
        if module is head:
            return name
    raise ValueError("the classifier returned by get_classifier() is not a submodule of the network")


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
        class_weights: one weight per class, in label order, for the cross-entropy of training and evaluation
            (``F.cross_entropy``'s ``weight``); ``None``: every class weighs 1. With imbalanced training data, the
            data module's set-up line gives balancing weights (``n / (classes x count)``).
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
        class_weights: list[float] | None = None,
    ) -> None:
        super().__init__(
            num_classes=num_classes,
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            lr_scheduler_interval=lr_scheduler_interval,
            label_smoothing=label_smoothing,
            class_weights=class_weights,
            class_names=class_names,
            mean=mean,
            std=std,
            strategy=strategy,
            unfreeze_at_epoch=unfreeze_at_epoch,
            unfreeze_top=unfreeze_top,
            backbone_lr_ratio=backbone_lr_ratio,
            train_bn=train_bn,
            in_chans=in_chans,
        )
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        if img_size is not None and img_size < 1:  # 0 was read as "not set", without a word
            raise ValueError(f"img_size must be >= 1 (leave it unset for the backbone's own), got {img_size}")
        check_backbone(backbone)
        self.net = create_timm_model(backbone, pretrained is True, num_classes, in_chans, drop_rate)
        timm_cfg = self.net.pretrained_cfg
        self._started_from: tuple[list[float], list[float]] | None = (
            (list(timm_cfg["mean"]), list(timm_cfg["std"])) if pretrained is True and "mean" in timm_cfg else None
        )
        self._started_classes: list[str] | None = None  # set below from weights of ours; timm's carry no class names
        if isinstance(pretrained, str) and pretrained:
            from ..models import load_weights_into, weights_source
            from .classification import kept_classifier_classes, published_weights

            source = weights_source(backbone, pretrained)
            published_weights(backbone, source, "backbone")
            head = classifier_prefix(self.net) + "."
            found = load_weights_into(self.net, source, head_prefix=head, new_head=new_head)
            self._started_from = (list(found.mean), list(found.std)) if found is not None else None
            self._started_classes = kept_classifier_classes(found, num_classes, new_head)
        size = img_size if img_size is not None else self.net.pretrained_cfg.get("input_size", (in_chans, 224, 224))[-1]
        self.example_input_array = torch.zeros(1, in_chans, size, size)

    @override
    def pretrained_normalization(self) -> tuple[list[float], list[float]] | None:
        return self._started_from

    @override
    def pretrained_class_names(self) -> list[str] | None:
        return self._started_classes

    @property
    def data_config(self) -> dict[str, Any]:
        """Timm's preprocessing for this backbone (input size, mean/std, interpolation, crop_pct)."""
        return _timm().data.resolve_data_config({}, model=self.net)

    # --- parts of the network ------------------------------------------------------------------------------------
    @override
    def block_groups(self) -> list[list[nn.Module]]:
        """The backbone's blocks by timm's coarse ``group_matcher``: ``layer4`` for a ResNet, a stage for ConvNeXt."""
        from timm.models import group_parameters

        head = classifier_prefix(self.net) + "."
        groups = group_parameters(self.net, self.net.group_matcher(coarse=True))
        blocks = [names for names in groups.values() if not all(n.startswith(head) for n in names)]
        return [
            [
                self.net.get_submodule(name)
                for name in sorted({n.rsplit(".", 1)[0] for n in names if not n.startswith(head)})
            ]
            for names in blocks
        ]
