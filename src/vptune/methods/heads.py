"""Classification heads read by every method."""

from __future__ import annotations

import math

from torch import nn

# Official VPT head bias: -log((1 - 0.01) / 0.01), a prior of 1% per class. Under softmax cross-entropy a
# shift shared by all classes changes nothing; it is kept so that artifacts match the reference recipe.
HEAD_BIAS_INIT = -math.log((1 - 0.01) / 0.01)


class LinearHead(nn.Linear):
    """A fresh Linear classifier; ``official`` init: kaiming-normal (fan-out) weight, constant prior bias."""

    def __init__(self, dim: int, num_classes: int, init: str = "official") -> None:
        super().__init__(dim, num_classes)
        init_linear(self, init)


def init_linear(layer: nn.Linear, init: str) -> None:
    """``official``: kaiming-normal fan-out weight + prior bias; ``small``: normal(0.01) weight, zero bias."""
    if init == "official":
        nn.init.kaiming_normal_(layer.weight, mode="fan_out")
        nn.init.constant_(layer.bias, HEAD_BIAS_INIT)
    else:
        nn.init.normal_(layer.weight, std=0.01)
        nn.init.zeros_(layer.bias)
