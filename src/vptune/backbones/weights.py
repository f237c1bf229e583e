"""Local backbone weight files, read without ever unpickling code.

``.safetensors`` is read with safetensors; ``.pth``/``.pt``/``.bin`` with ``torch.load(weights_only=True)``
(tensors and plain containers only: a pickle that names any other callable is refused); ``.npz`` (big_vision /
JAX checkpoints) through timm's own npz reader, which uses ``numpy.load`` with pickles disabled. The tensors are
applied with ``load_state_dict`` and the exact set of missing and unexpected keys is checked.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from ..errors import DataError
from .moco import is_moco_checkpoint, load_moco_v3

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".npz", ".tar")  # .pth.tar: MoCo-v3 (moco.py)
NESTED_KEYS = ("state_dict", "model", "state_dict_ema", "model_ema")  # training checkpoints wrap the weights


def check_weights_path(path: str | Path) -> Path:
    """The weights file as a path, after checking it exists and has a known suffix.

    Raises:
        DataError: Missing file or unknown format (the message names the file and the accepted suffixes).
    """
    file = Path(path)
    if not file.is_file():
        raise DataError(f"weights file '{file}' does not exist: pass an existing file to --weights")
    if file.suffix not in WEIGHT_SUFFIXES:
        raise DataError(f"weights file '{file}' has an unknown format; use one of {', '.join(WEIGHT_SUFFIXES)}")
    return file


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors``/``.pth``/``.pt``/``.bin`` file (on CPU), never executing pickled code.

    Raises:
        DataError: The file is damaged, holds something other than tensors, or is a pickle of other objects.
    """
    file = check_weights_path(path)
    if file.suffix == ".npz":
        raise DataError(f"weights file '{file}': .npz files are applied with apply_weights, not read as tensors")
    try:
        if file.suffix == ".safetensors":
            state = load_file(str(file), device="cpu")
        else:
            state = torch.load(str(file), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(
            f"weights file '{file}' holds more than tensors and was refused (vptune never unpickles code): {first}. "
            "Re-save it as .safetensors or as a plain state_dict"
        ) from None
    except (SafetensorError, OSError, RuntimeError, EOFError, ValueError) as err:
        raise DataError(
            f"weights file '{file}' cannot be read ({type(err).__name__}: {err}); the file is damaged"
        ) from None
    for key in NESTED_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"weights file '{file}' does not hold a state_dict of tensors (name -> tensor)")
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def apply_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local weights file into a freshly created timm ViT (no classifier head).

    The classifier's own keys (``pretrained_cfg["classifier"]``) may be in the file and are dropped; any other
    missing or unexpected key is an error.

    Raises:
        DataError: Unreadable file, or keys/shapes that do not fit the model (the message lists them).
    """
    file = check_weights_path(path)
    if file.suffix == ".npz":
        loader = getattr(model, "load_pretrained", None)
        if loader is None:
            raise DataError(f"weights file '{file}': this model has no .npz loader; convert it to .safetensors")
        try:
            loader(str(file))  # timm's big_vision reader: numpy arrays only (np.load, allow_pickle=False)
        except (ValueError, KeyError, RuntimeError, OSError) as err:
            raise DataError(f"weights file '{file}' does not fit this model ({type(err).__name__}: {err})") from None
        return
    if is_moco_checkpoint(file):
        load_moco_v3(model, file)
        return
    state = read_state_dict(file)
    state = _timm_filter(model, state)
    classifier = str(getattr(model, "pretrained_cfg", {}).get("classifier", "head"))
    own = set(model.state_dict())
    state = {k: v for k, v in state.items() if k in own or not k.startswith(f"{classifier}.")}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise DataError(f"weights file '{file}' does not fit this model: {err}") from None
    if missing or unexpected:
        raise DataError(
            f"weights file '{file}' does not fit this model: missing keys {sorted(missing)[:5]}, unexpected keys "
            f"{sorted(unexpected)[:5]}; pass the weights of the same architecture (--model)"
        )


def _timm_filter(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's own checkpoint adapter for the model's family (position-embedding resampling, renamed keys)."""
    from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

    if isinstance(model, VisionTransformer):
        return checkpoint_filter_fn(state, model)
    return state
