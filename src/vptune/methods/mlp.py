"""Mlp-k: the backbone frozen, a k-layer MLP classification head instead of a single Linear layer."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn

from .base import Method, MethodConfig, register_method
from .heads import LinearHead


class MlpConfig(MethodConfig):
    """Mlp-k options (the paper's Table 1 reports Mlp-3)."""

    name: Literal["mlp"] = "mlp"
    layers: int = Field(3, ge=1, le=64, description="Linear layers in the head, the last one the classifier (k)")
    hidden_dim: int | None = Field(None, ge=1, description="width of the hidden layers; default: embed dim D")
    activation: Literal["relu", "gelu"] = Field("relu", description="non-linearity after each hidden layer")
    norm: Literal["batchnorm", "none"] = Field(
        "batchnorm", description="BatchNorm1d after each hidden activation (the official mlp.py)"
    )
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout after each hidden layer (official: 0.1)")


class MlpHead(nn.Sequential):
    """``layers - 1`` blocks of Linear -> activation (-> BatchNorm1d) (-> dropout), then a :class:`LinearHead`.

    As the official ``mlp.py``: hidden Linear weights kaiming-normal (fan-out), BatchNorm1d after the activation,
    dropout last; the classifier is initialised as every other head.

    Args:
        dim: Input feature width (D).
        num_classes: Output classes.
        layers: Total Linear layers (1 is a plain linear head).
        hidden_dim: Width of the hidden layers.
        activation: ``relu`` or ``gelu``.
        dropout: Dropout probability after each hidden layer.
        norm: ``batchnorm`` (BatchNorm1d after each hidden activation) or ``none``.
        init: Classifier init (``official`` or ``small``, see :func:`vptune.methods.heads.init_linear`).
    """

    def __init__(
        self,
        dim: int,
        num_classes: int,
        layers: int,
        hidden_dim: int,
        activation: str = "relu",
        dropout: float = 0.0,
        init: str = "official",
        norm: str = "batchnorm",
    ) -> None:
        modules: list[nn.Module] = []
        width = dim
        for _ in range(layers - 1):
            linear = nn.Linear(width, hidden_dim)
            nn.init.kaiming_normal_(linear.weight, a=0, mode="fan_out")
            modules += [linear, nn.ReLU() if activation == "relu" else nn.GELU()]
            if norm == "batchnorm":
                modules.append(nn.BatchNorm1d(hidden_dim))
            if dropout > 0:
                modules.append(nn.Dropout(dropout))
            width = hidden_dim
        modules.append(LinearHead(width, num_classes, init=init))
        super().__init__(*modules)


@register_method
class Mlp(Method):
    """A k-layer MLP head on the frozen backbone's pooled features (features identical to Linear's)."""

    name = "mlp"
    summary = "Mlp-k: k-layer MLP head, backbone frozen"
    default_optim = {"optimizer": "sgd", "lr": 0.4, "weight_decay": 0.0}  # docs/default-optim.md
    config_cls = MlpConfig
    shares_backbone_pass = True
    config: MlpConfig

    def frozen_prefix_blocks(self) -> int:
        """Only the head trains: pooled features are cached per image when there is no augmentation."""
        return self.info.depth

    def build_head(self, dim: int, num_classes: int) -> nn.Module:
        cfg = self.config
        return MlpHead(
            dim,
            num_classes,
            layers=cfg.layers,
            hidden_dim=cfg.hidden_dim or dim,
            activation=cfg.activation,
            dropout=cfg.dropout,
            init=cfg.head_init,
            norm=cfg.norm,
        )
