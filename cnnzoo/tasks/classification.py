"""``ImageClassifier``: a LightningModule that trains any registered cnnzoo model by name."""

from __future__ import annotations

from typing import Any, Literal

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from typing_extensions import override

from ..data.tensor_ops import convert_stats
from ..models import Weights, ZooModel, create_model, load_weights_into, split_weights_name, weights_source
from .base import TTA, ClassificationTask, Strategy

__all__ = ["ImageClassifier"]


class ImageClassifier(ClassificationTask):
    """Train any model from `cnnzoo.list_models` as an image classifier.

    Args:
        model: registered model name, e.g. ``"lenet5"`` or ``"vgg11_bn"``. A weights name (``"lenet5.mnist"``)
            is read as ``create_model`` reads it: the architecture, with ``pretrained`` set to those weights.
        pretrained: weights to start from: ``True`` for the model's default weights, a weights name
            (``"lenet5.mnist"``), a folder that ``cnnzoo publish`` wrote (or its ``.json`` / ``.safetensors``), an
            ``https://...#sha256=<hex>`` URL, ``hf-hub:org/repo``, or a bare weights or checkpoint file (read
            without unpickling). A classifier of another size starts fresh, and the run says so. Class names,
            mean and std the data does not give come from the weights. ``False``: random initialisation.
        new_head: start the classifier fresh even when the weights have as many classes (a new label set).
        num_classes: number of classes; the CLI links it from the data module.
        in_chans: input channels; the CLI links it from the data module.
        img_size: input size the model is built for; the CLI links it from the data module. ``None`` keeps the
            model's default.
        drop_rate: dropout probability for models that have dropout (``None``: the model's default).
        class_names: class names in label order, stored in checkpoints so predictions carry names.
        mean: per-channel mean the data was normalised with; the CLI links it from the data module. It is not
            used in ``forward``: it is stored so that a checkpoint carries its own inference transforms.
        std: per-channel std, like ``mean``.
        strategy: ``finetune`` (everything trains), ``feature_extraction`` (only the classifier trains; BatchNorm
            statistics stay frozen unless ``train_bn``) or ``freeze_unfreeze`` (the classifier first, then the top
            blocks from ``unfreeze_at_epoch``), as for `TimmClassifier`.
        unfreeze_at_epoch: epoch at which ``freeze_unfreeze`` unfreezes.
        unfreeze_top: how many top blocks ``freeze_unfreeze`` unfreezes (a block is a conv or linear layer with
            what follows it, `cnnzoo.models.ZooModel.blocks`); ``None``: all.
        backbone_lr_ratio: the learning rate of everything below the classifier relative to the classifier's.
        train_bn: let BatchNorm layers of a frozen backbone keep training.
        optimizer: optimiser factory; from YAML, ``class_path: torch.optim.SGD`` with ``init_args``.
        lr_scheduler: learning-rate scheduler factory, or ``None`` for a constant rate.
        lr_scheduler_interval: step the scheduler every ``"epoch"`` or every optimiser ``"step"``.
        label_smoothing: cross-entropy label smoothing in [0, 1).
        class_weights: one weight per class, in label order, for the cross-entropy of training and evaluation
            (``F.cross_entropy``'s ``weight``); ``None``: every class weighs 1. With imbalanced training data, the
            data module's set-up line gives balancing weights (``n / (classes x count)``).
        tta: test-time augmentation for ``validate``, ``test`` and ``predict``: ``none``, ``mirror`` (the image and
            its mirror image) or ``mirror_translate`` (also two one-pixel shifts; 6 forward passes). Fit's per-epoch
            validation runs without it. Published weights record the setting their metrics were measured with.
        norm_bias_lr_scale: learning-rate factor for BatchNorm biases (airbench: 64). Like the two below, it puts
            the parameters into named groups whose weight decay is divided by the same factor, so that the decay per
            step stays the same across groups.
        whiten_bias_lr_scale: learning-rate factor for a whitening stem's bias.
        head_lr_scale: learning-rate factor for the classifier.
        whiten_bias_epochs: train a whitening stem's bias for this many epochs, then freeze it (``None``: never
            frozen). The stem's filters are set from the training images when ``fit`` starts.

    Optimiser and scheduler are training settings, not part of the model, so they are not stored as
    hyperparameters: checkpoints then hold primitives only and load with ``weights_only=True``. The CLI's saved
    ``config.yaml`` records them.
    """

    # Set by from_pretrained: the metadata of the weights the network started from.
    pretrained_cfg: Weights | None = None

    def __init__(
        self,
        model: str = "lenet5",
        pretrained: bool | str = False,
        new_head: bool = False,
        num_classes: int = 10,
        in_chans: int = 1,
        img_size: int | None = None,
        drop_rate: float | None = None,
        class_names: list[str] | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        strategy: Strategy = "finetune",
        unfreeze_at_epoch: int = 1,
        unfreeze_top: int | None = None,
        backbone_lr_ratio: float = 1.0,
        train_bn: bool = False,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_scheduler_interval: Literal["epoch", "step"] = "epoch",
        label_smoothing: float = 0.0,
        class_weights: list[float] | None = None,
        tta: TTA = "none",
        norm_bias_lr_scale: float = 1.0,
        whiten_bias_lr_scale: float = 1.0,
        head_lr_scale: float = 1.0,
        whiten_bias_epochs: int | None = None,
    ) -> None:
        if "." in model:  # "arch.tag", read as create_model reads it; False is this option's default, not a refusal
            model, pretrained = split_weights_name(model, None if pretrained is False else pretrained)
        source = weights_source(model, pretrained) if pretrained else None
        weights = published_weights(model, source, "model") if source else None
        if weights is not None and kept_classifier_classes(weights, num_classes, new_head) is not None:
            # Plain-Python fine-tuning or evaluation without a data module keeps the weights' own metadata; the
            # CLI links these from the data, which wins. Statistics follow the channels the first convolution was
            # adapted to, as the data modules convert theirs: a gray mean repeated for RGB.
            class_names = class_names if class_names is not None else list(weights.class_names)
            mean = mean if mean is not None else list(convert_stats(weights.mean, in_chans))
            std = std if std is not None else list(convert_stats(weights.std, in_chans))
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
            tta=tta,
            norm_bias_lr_scale=norm_bias_lr_scale,
            whiten_bias_lr_scale=whiten_bias_lr_scale,
            head_lr_scale=head_lr_scale,
            whiten_bias_epochs=whiten_bias_epochs,
            in_chans=in_chans,
        )
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        kwargs: dict[str, Any] = {} if img_size is None else {"img_size": img_size}
        net = create_model(model, num_classes=num_classes, in_chans=in_chans, **kwargs)
        # A plain nn.Module from register_model trains too; what needs ZooModel's interface says so when asked.
        if drop_rate is not None:
            if not isinstance(net, ZooModel):
                raise TypeError(f"drop_rate needs a cnnzoo ZooModel; {model!r} builds a {type(net).__name__}")
            net.set_drop_rate(drop_rate)
        self.net = net
        if source:
            found = load_weights_into(
                net,
                source,
                head_prefix=_classifier_name(net) + ".",
                first_conv=getattr(net, "first_conv", None),
                new_head=new_head,
            )
            self.pretrained_cfg = found or weights
        size = getattr(net, "input_size", None) or ((in_chans, img_size, img_size) if img_size else None)
        if size is not None:
            self.example_input_array = torch.zeros(1, *size)

    @override
    def pretrained_normalization(self) -> tuple[list[float], list[float]] | None:
        w = self.pretrained_cfg
        return (list(w.mean), list(w.std)) if w is not None else None

    @override
    def pretrained_class_names(self) -> list[str] | None:
        new_head = bool(self.hparams.get("new_head"))
        return kept_classifier_classes(self.pretrained_cfg, self.hparams["num_classes"], new_head)

    @override
    def block_groups(self) -> list[list[nn.Module]]:
        """A ZooModel's blocks (`blocks`): each weight layer and what follows it."""
        if not isinstance(self.net, ZooModel):
            raise NotImplementedError(f"{type(self.net).__name__} has no blocks(); use unfreeze_top: null (all)")
        return self.net.blocks()

    @classmethod
    def from_pretrained(
        cls,
        name: str,
        num_classes: int | None = None,
        class_names: list[str] | None = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> ImageClassifier:
        """An ImageClassifier initialised from published weights (see `cnnzoo.list_pretrained`).

        With ``num_classes`` (and ``class_names``) different from the weights', only the final layer is reset, to
        fine-tune on a new label set; the class names of the weights are kept otherwise.
        """
        from ..models import get_weights

        w = get_weights(name)
        n = num_classes if num_classes is not None else w.num_classes
        if class_names is not None and len(class_names) != n:
            raise ValueError(f"class_names has {len(class_names)} names but the model has {n} classes")
        return cls(
            model=w.arch,
            pretrained=name,
            # Other class names are a new label set, even when they are as many: the weights' classifier starts fresh.
            new_head=n == w.num_classes and class_names is not None and list(class_names) != list(w.class_names),
            num_classes=n,
            in_chans=w.in_chans,
            img_size=w.model_kwargs.get("img_size"),
            class_names=class_names,
            mean=list(w.mean),
            std=list(w.std),
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
        )


def _classifier_name(net: nn.Module) -> str:
    """The classifier's module name: ZooModel's ``classifier_name``, or the module ``get_classifier()`` returns."""
    name = getattr(net, "classifier_name", None)
    if isinstance(name, str):
        return name
    head = net.get_classifier() if callable(getattr(net, "get_classifier", None)) else None  # type: ignore[operator]
    found = next((n for n, m in net.named_modules() if m is head and n), None)
    if found is None:
        raise TypeError(
            f"{type(net).__name__} has no classifier_name or get_classifier(): subclass cnnzoo.models.ZooModel so "
            "that pretrained weights know which layer to replace"
        )
    return found


def kept_classifier_classes(weights: Weights | None, num_classes: int, new_head: bool) -> list[str] | None:
    """The classes of the weights' classifier when a task keeps it (as many classes, no ``new_head``), else ``None``."""
    if weights is None or new_head or weights.num_classes != num_classes:
        return None
    return list(weights.class_names)


def published_weights(arch: str, source: str, key: str) -> Weights | None:
    """The metadata of ``source`` when it names published weights (not a bare file), checked against ``arch``.

    ``key`` is the task's option that names the architecture: ``model`` (ImageClassifier) or ``backbone``
    (TimmClassifier). Weights of another architecture are refused before anything is loaded.
    """
    from ..models import get_weights, is_weights_entry

    if not is_weights_entry(source):
        return None
    w = get_weights(source)
    if w.arch != arch:
        own = "backbone" if w.builder == "timm" else "model"
        task = "TimmClassifier" if w.builder == "timm" else "ImageClassifier"
        fix = f"set {key}: {w.arch}" if own == key else f"train them with cnnzoo.tasks.{task} ({own}: {w.arch})"
        raise ValueError(f"pretrained={source!r} holds {w.arch} weights, but {key} is {arch!r}; {fix}")
    return w
