"""Where a timm model's pretrained weights are, and whether they are on this machine, without the network.

timm resolves pretrained weights from its ``pretrained_cfg``: a local ``file`` (vptune's bundled models), a
Hugging Face hub repo (``hf_hub_id``, cached under ``~/.cache/huggingface/hub``) or a URL (cached by
``torch.hub`` under ``~/.cache/torch/hub/checkpoints``). This module reads the same configuration and looks in
those caches through their public APIs (``huggingface_hub.try_to_load_from_cache``, ``torch.hub.get_dir``), so
a missing model fails in seconds with one line instead of a minute of download retries.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import timm
from timm.models import get_pretrained_cfg

from ..errors import DataError

ASSETS = Path(__file__).resolve().parent.parent / "assets"
PROBE_TIMEOUT_S = 3.0
HF_DEFAULT_FILE = "pytorch_model.bin"
# (option, advice) pairs: commands print those whose option they have (see WeightsUnavailableError.ways_out)
WAYS_OUT = (
    ("--weights", "--weights FILE (a local .safetensors/.pth/.npz)"),
    ("--no-pretrained", "--no-pretrained (random init, for tests)"),
    ("--model", "--model vptune_micro_vit (bundled, offline)"),
    (None, "`vptune models` (what is available here)"),
)


@dataclass(frozen=True)
class WeightsStatus:
    """Where the pretrained weights of one timm model come from, and whether they are here.

    Attributes:
        name: the model name as given.
        source: ``bundled`` (ships with vptune), ``file``, ``hf-hub``, ``url`` or ``none`` (no pretrained weights).
        location: the file, hub repo id or URL.
        local_path: the file on this machine that holds the weights, or None when they would be downloaded.
    """

    name: str
    source: str
    location: str
    local_path: str | None

    @property
    def available_offline(self) -> bool:
        return self.local_path is not None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "available_offline": self.available_offline}


class WeightsUnavailableError(DataError):
    """Pretrained weights that are neither on this machine nor downloadable now."""

    def __init__(self, status: WeightsStatus, reason: str) -> None:
        self.status, self.reason = status, reason
        super().__init__(self.message([opt for opt, _ in WAYS_OUT if opt]))

    def message(self, options: list[str] | set[str]) -> str:
        """The one-line message, advising only the ways out whose option is in ``options``."""
        ways = [text for opt, text in WAYS_OUT if opt is None or opt in options]
        return (
            f"model '{self.status.name}': pretrained weights ({self.status.source} {self.status.location}) are not "
            f"on this machine and {self.reason}; use " + ", ".join(ways[:-1]) + f" or see {ways[-1]}"
        )


def _hf_candidates(filename: str | None) -> list[str]:
    """The files timm asks a hub repo for, in its order: the safetensors alternative first."""
    name = filename or HF_DEFAULT_FILE
    if name.endswith(".safetensors"):
        return [name]
    safe = {HF_DEFAULT_FILE: "model.safetensors", "open_clip_pytorch_model.bin": "open_clip_model.safetensors"}
    alternative = safe.get(name) or (name[: -len(".bin")] + ".safetensors" if name.endswith(".bin") else None)
    return [alternative, name] if alternative else [name]


def _hf_cached(repo: str, filename: str | None) -> str | None:
    from huggingface_hub import constants, try_to_load_from_cache

    repo_id, _, revision = repo.partition("@")
    for name in _hf_candidates(filename):
        found = try_to_load_from_cache(repo_id, name, cache_dir=constants.HF_HUB_CACHE, revision=revision or None)
        if isinstance(found, str):
            return found
    return None


def _url_cached(url: str) -> str | None:
    import torch.hub

    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
    return str(path) if path.is_file() else None


def weights_status(name: str) -> WeightsStatus:
    """Where ``name``'s pretrained weights come from and whether they are here (reads caches; no network)."""
    cfg = get_pretrained_cfg(name) if timm.is_model(name) else None
    if cfg is None:
        return WeightsStatus(name, "none", "", None)
    if cfg.file:
        path = Path(cfg.file)
        bundled = path.resolve().is_relative_to(ASSETS)
        return WeightsStatus(name, "bundled" if bundled else "file", str(path), str(path) if path.is_file() else None)
    if cfg.hf_hub_id:
        return WeightsStatus(name, "hf-hub", cfg.hf_hub_id, _hf_cached(cfg.hf_hub_id, cfg.hf_hub_filename))
    if cfg.url:
        return WeightsStatus(name, "url", cfg.url, _url_cached(cfg.url))
    return WeightsStatus(name, "none", "", None)


def offline_mode() -> bool:
    """True when the user asked for no network (``HF_HUB_OFFLINE=1``, as huggingface_hub reads it)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _probe_target(url: str) -> tuple[str, int]:
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy") or os.environ.get("ALL_PROXY")
    parsed = urlparse(proxy or url)
    return parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80)


def reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``url``'s host (or the HTTPS proxy) opens within ``timeout`` seconds."""
    host, port = _probe_target(url)
    result: list[bool] = []

    def probe() -> None:  # in a thread: name resolution ignores socket timeouts
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def local_pretrained_file(name: str) -> str | None:
    """The local file to load ``name``'s pretrained weights from, or None to let timm download them.

    Cached hub/URL weights are returned so timm loads them as a file, with no network round trip.

    Raises:
        WeightsUnavailableError: not here, and offline mode is on or the source's host cannot be reached.
    """
    status = weights_status(name)
    if status.source in ("none", "bundled", "file") or status.local_path:
        return status.local_path if status.source in ("hf-hub", "url") else None
    if offline_mode():
        raise WeightsUnavailableError(status, "HF_HUB_OFFLINE is set")
    from huggingface_hub import constants

    url = constants.ENDPOINT if status.source == "hf-hub" else status.location
    if not reachable(url):
        host, port = _probe_target(url)
        raise WeightsUnavailableError(status, f"{host}:{port} cannot be reached (offline?)")
    return None
