"""Learning-rate grids the official VPT code uses for particular backbone families (``tune_vtab.py``).

A suite method without its own ``grid`` gets the paper's default grid for its optimiser; these replace the lr
list for the cases where the official code searched a different one (weight decays stay the paper's).
"""

from __future__ import annotations

PROMPT_CONVNET_LRS: tuple[float, ...] = (5.0, 2.5, 1.0, 0.5, 0.25, 0.1, 0.05, 0.025, 0.01)
"""Official ``prompt_resnet``: pad prompts on ResNet / ConvNeXt."""
LINEAR_MAE_LRS: tuple[float, ...] = (50.0, 25.0, 10.0, 5.0, 2.5, 1.0, 0.5, 0.25, 0.1, 0.05, 0.025, 0.005, 0.0025)
"""Official ``linear_mae``: the linear probe on MAE features extends the SGD grid down to 0.0025."""


def family_lrs(model_name: str, method_name: str) -> tuple[float, ...] | None:
    """The official lr grid for ``method_name`` on ``model_name`` when it differs from the default; else None."""
    if method_name == "vpt-pad":
        return PROMPT_CONVNET_LRS
    if method_name == "linear" and model_name.endswith(".mae"):
        return LINEAR_MAE_LRS
    return None
