"""Linear probing: the whole backbone frozen, only a fresh head trains."""

from typing import Literal

from .base import Method, MethodConfig, register_method


class LinearConfig(MethodConfig):
    name: Literal["linear"] = "linear"


@register_method
class Linear(Method):
    name = "linear"
    summary = "Linear: head only, backbone frozen"
    config_cls = LinearConfig
    shares_backbone_pass = True

    def frozen_prefix_blocks(self) -> int:
        """Everything up to the head is frozen: features are cached per image when there is no augmentation."""
        return self.info.depth
