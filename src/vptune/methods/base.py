"""The one interface every adaptation method implements, and the registry that names them."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from ..backbones import Backbone, BackboneInfo
from ..errors import ConfigError

Output = Literal["auto", "cls", "image-pool", "prompt-pool", "global-pool", "mean-pool"]


HeadInit = Literal["official", "small"]


def small_head_init() -> Any:
    """The ``head_init`` field of methods that train modules inside the backbone: ``small`` by default.

    Measured on offline digits (docs/default-optim.md): with the official init the large first gradients flow
    into the trained backbone modules and wreck the features (BitFit 0.33 vs 0.62 val top-1). The paper suites
    set ``head_init: official`` explicitly.
    """
    return Field(
        "small",
        description="official: kaiming-normal fan-out weight + 1%-prior bias (reference VPT code); small (this "
        "method's default, measured in docs/default-optim.md): normal(0.01) weight, zero bias",
    )


class MethodConfig(BaseModel):
    """Options shared by every method. Subclasses add their own fields and a ``name`` literal."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    output: Output = Field(
        "auto",
        description="tokens the head reads: cls, image-pool (mean of patch tokens), prompt-pool, global-pool "
        "(all tokens), mean-pool (all after the prefix, prompts included); auto: the family's default (ViT: cls "
        "when timm pools by class token; MAE: mean-pool; Swin and ConvNets: global-pool)",
    )
    head_init: Literal["official", "small"] = Field(
        "official",
        description="official: kaiming-normal fan-out weight + 1%-prior bias (reference VPT code); "
        "small: normal(0.01) weight, zero bias (calmer start on few-class tasks)",
    )

    def check(self, info: BackboneInfo) -> None:
        """Reject combinations that need the backbone to judge (override to add checks)."""
        if self.output == "cls" and info.num_prefix_tokens == 0:
            raise ConfigError("method.output: 'cls' needs a backbone with a class token; use 'image-pool'")


class Method(nn.Module):
    """An adaptation technique: owns its trainable modules and hooks into the backbone's forward path.

    The backbone (its :class:`~vptune.backbones.Backbone` interface) is passed to the hooks, never stored
    here, so that ``state_dict`` of a method holds only what the method adds (prompts, adapters, ...).

    What a method can do is declared, never detected: the class attributes below are read by the trainer,
    the feature cache and the multi-task bank.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    families: ClassVar[tuple[str, ...] | None] = None
    """Backbone families (:attr:`BackboneInfo.family`) the method supports; None: every family."""
    config_cls: ClassVar[type[MethodConfig]]
    default_optim: ClassVar[dict[str, Any]] = {"optimizer": "sgd", "lr": 0.5, "weight_decay": 0.0}
    """Optimiser settings for optim keys the user leaves unset (lr is a base lr, x batch/256 by default)."""
    trains_backbone: ClassVar[bool] = False
    """True when backbone weights train too (full): the backbone then follows ``train()``."""
    shares_backbone_pass: ClassVar[bool] = False
    """True when the method leaves backbone weights and compute alone except for prepended prompt tokens
    (:meth:`prompts_for_block`) and :meth:`after_pool`, so its samples can share one backbone pass with other
    tasks' samples in a mixed batch. A config can still opt out through :meth:`shared_pass_blocker`."""
    reads_images_after_pool: ClassVar[bool] = False
    """True when :meth:`after_pool` reads the input images (a side network): the pooled features alone do not
    determine the logits, so they can not be cached."""

    def __init__(self, config: MethodConfig, info: BackboneInfo) -> None:
        super().__init__()
        if self.families is not None and info.family not in self.families:
            raise ConfigError(
                f"method.name: '{self.name}' does not support the {info.family} backbone '{info.name}' (it supports "
                f"{', '.join(self.families)}); on this backbone use one of {', '.join(methods_for(info.family))}"
            )
        config.check(info)
        self.config = config
        self.info = info

    @property
    def prompt_tokens(self) -> int:
        """Number of prompt tokens that sit after the prefix tokens in the final sequence."""
        return 0

    def frozen_prefix_blocks(self) -> int | None:
        """How many leading blocks compute a fixed function of the image (for feature caching).

        Return k when nothing trainable acts in the embedding or the first k blocks and they stay in eval mode;
        the trainer may then compute their output once per image and reuse it across epochs (when the data
        is not augmented). Return the depth when the whole backbone, final norm and pooling are frozen (only
        the head trains). Default None: no caching (prompts, adapters, ... act from the first block).
        """
        return None

    def shared_pass_blocker(self) -> str | None:
        """Why this method's samples can not share the backbone pass in a mixed batch; None when they can."""
        if self.trains_backbone:
            return "it trains backbone weights"
        if not self.shares_backbone_pass:
            return f"method '{self.name}' changes the backbone's weights or compute"
        return None

    def attach(self, backbone: Backbone) -> None:
        """Make backbone parameters trainable or wrap backbone modules (default: leave it frozen)."""

    def embed(self, backbone: Backbone, images: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> features entering block 0 (default: the backbone's own embedding)."""
        return backbone.embed(images)

    def prompts_for_block(self, index: int, batch: int) -> torch.Tensor | None:
        """Prompt tokens (batch, p, D) that enter block ``index`` after the prefix tokens; None: no prompts.

        The single-task forward (:meth:`before_block`) and the multi-task bank's shared pass both read the
        prompts through this one method.
        """
        return None

    def before_block(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """Edit the features entering block ``index`` (0-based); default: unchanged."""
        return x

    def after_pool(self, features: torch.Tensor, images: torch.Tensor | None) -> torch.Tensor:
        """Edit pooled features (B, D) before the head (e.g. a side network); default: unchanged."""
        return features

    def initialize(self, model: nn.Module, loader: Any, device: torch.device) -> None:
        """Data-dependent initialisation run once before training starts (e.g. class prototypes)."""

    def build_head(self, dim: int, num_classes: int) -> nn.Module:
        """The classifier on pooled features (default: one fresh Linear layer)."""
        from .heads import LinearHead

        return LinearHead(dim, num_classes, init=self.config.head_init)


METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method selectable by its ``name``."""
    if cls.name in METHODS:
        raise RuntimeError(f"method name '{cls.name}' registered twice")
    METHODS[cls.name] = cls
    return cls


def method_names() -> list[str]:
    """All registered method names, sorted."""
    return sorted(METHODS)


def methods_for(family: str) -> list[str]:
    """The registered methods that support backbone ``family``, sorted."""
    return sorted(n for n, cls in METHODS.items() if cls.families is None or family in cls.families)


def get_method(name: str) -> type[Method]:
    """The method class registered under ``name``."""
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"method.name: unknown method '{name}'; choose one of {', '.join(method_names())}") from None


def format_validation_error(err: ValidationError, prefix: str) -> str:
    """One line per problem, each naming the dotted field, the value and what is allowed."""
    lines = []
    for e in err.errors():
        field = ".".join(str(p) for p in (prefix, *e["loc"]) if p != "")
        if e["type"] == "extra_forbidden":
            lines.append(f"{field}: not an option here")
        else:
            lines.append(f"{field}: {e['msg']} (got {e.get('input')!r})")
    return "; ".join(lines)


def parse_method_config(data: dict[str, Any] | MethodConfig) -> MethodConfig:
    """Validate a ``method:`` mapping against the named method's own config class."""
    if isinstance(data, MethodConfig):
        return data
    if "name" not in data:
        raise ConfigError(f"method.name is missing; choose one of {', '.join(method_names())}")
    cls = get_method(str(data["name"]))
    try:
        return cls.config_cls(**data)
    except ValidationError as err:
        msg = format_validation_error(err, "method")
        options = ", ".join(f for f in cls.config_cls.model_fields if f != "name")
        raise ConfigError(f"{msg}. Options of method '{cls.name}': {options}") from None


def build_method(config: MethodConfig | dict[str, Any], info: BackboneInfo) -> Method:
    """Instantiate the method that ``config`` names."""
    config = parse_method_config(config)
    return get_method(config.name)(config, info)
