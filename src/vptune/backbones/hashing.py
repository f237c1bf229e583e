"""A stable fingerprint of a backbone's weights, recorded in every task artifact."""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def weights_hash(module: nn.Module) -> str:
    """Return a short SHA-256 of a module's parameters and buffers.

    The digest covers every tensor's name, dtype, shape and bytes in name order, so it is the same on every
    machine and device for the same weights and changes when any value changes.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.dtype == torch.bfloat16:  # numpy has no bfloat16: hash the raw 16-bit pattern
            t = t.view(torch.int16)
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()[:16]
