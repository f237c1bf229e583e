"""The typed settings of ``vptune serve``: limits, keys, task management and which hosts may be named.

Keys come from a file or the environment, never from the command line (argv is visible to every local user).
"""

from __future__ import annotations

import ipaddress
import os
import stat
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from ..errors import ConfigError

MiB = 1024 * 1024
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
KEY_ENV = "VPTUNE_API_KEY"
ADMIN_KEY_ENV = "VPTUNE_ADMIN_KEY"


class ServeConfig(BaseModel):
    """Everything ``create_app`` needs besides the task bank; each limit is a ``vptune serve`` flag."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: SecretStr | None = Field(None, description="required in x-api-key on /v1 and the docs (None: open)")
    admin_key: SecretStr | None = Field(
        None, description="enables POST/DELETE /v1/tasks, required in x-admin-key (None: task management is off)"
    )
    task_root: Path | None = Field(None, description="POST /v1/tasks only loads folders under this one")
    max_tasks: int = Field(32, ge=1, description="most tasks loaded at once")
    max_isolated: int = Field(
        2, ge=0, description="most tasks with a private backbone copy (vpt-prefix, partial, full, ...)"
    )
    plan: Literal["auto", "padded", "buckets", "per-task", "varlen"] = Field(
        "auto",
        description="how a mixed batch is split into backbone passes: auto (cheapest under a cost model measured "
        "at start-up; a recurring batch composition runs the plan measured fastest), padded (one pass), buckets "
        "(per prompt-length bucket), per-task, varlen (one packed pass without padding where the tasks allow it)",
    )
    trusted_hosts: tuple[str, ...] = Field(
        ("127.0.0.1", "localhost", "::1"), description="Host header values accepted (DNS-rebinding guard); '*': any"
    )
    docs: bool = Field(False, description="serve /docs and /openapi.json (behind the API key when one is set)")
    max_batch: int = Field(32, ge=1, description="most images per forward pass")
    max_wait_ms: float = Field(5.0, ge=0, description="longest wait for more images before a forward pass")
    max_queue: int = Field(1024, ge=1, description="most images waiting for the model (503 beyond)")
    max_files: int = Field(32, ge=1, description="most images per request")
    max_image_bytes: int = Field(10 * MiB, ge=1, description="largest image file")
    max_body_bytes: int = Field(64 * MiB, ge=1, description="largest request body, checked before it is read")
    max_pixels: int = Field(16_000_000, ge=1, description="largest image (width x height) decoded")
    max_request_pixels: int = Field(64_000_000, ge=1, description="most pixels over all images of one request")
    max_decodes: int = Field(2, ge=1, description="images decoded at the same time (each holds its pixels)")
    formats: tuple[str, ...] = Field(("PNG", "JPEG", "WEBP"), description="Pillow formats accepted")

    def __init__(self, **fields: object) -> None:
        try:
            super().__init__(**fields)
        except ValidationError as err:  # one ConfigError naming the field, as for every other config
            first = err.errors()[0]
            loc = ".".join(str(p) for p in first.get("loc", ()))
            msg = str(first.get("msg", "")).removeprefix("Value error, ")
            raise ConfigError(f"serve: field '{loc}': {msg}" if loc else msg) from None

    @model_validator(mode="after")
    def _consistent(self) -> ServeConfig:
        if self.admin_key is not None and self.task_root is None:
            raise ConfigError("serve: an admin key enables POST /v1/tasks, which needs --task-root DIR too")
        if self.task_root is not None and not self.task_root.is_dir():
            raise ConfigError(f"serve: --task-root '{self.task_root}' is not a folder")
        if self.api_key is not None and self.admin_key is not None:
            if self.api_key.get_secret_value() == self.admin_key.get_secret_value():
                raise ConfigError("serve: the admin key must differ from the API key")
        for key, name in ((self.api_key, "API key"), (self.admin_key, "admin key")):
            if key is not None and len(key.get_secret_value()) < 16:
                raise ConfigError(f"serve: the {name} is shorter than 16 characters; use a long random string")
        unknown = [f for f in self.formats if f.upper() not in _pillow_formats()]
        if unknown:
            raise ConfigError(f"serve: image formats {unknown} are not Pillow formats (e.g. PNG, JPEG, WEBP)")
        return self

    def check_bind(self, host: str) -> None:
        """Refuse a non-loopback address without an API key, and one whose Host header would be refused.

        Raises:
            ConfigError: Names the address and the fix.
        """
        if is_loopback(host):
            return
        if self.api_key is None:
            raise ConfigError(
                f"serve: refusing to listen on '{host}' without an API key: set {KEY_ENV} or --api-key-file FILE "
                "(or bind 127.0.0.1)"
            )
        if "*" not in self.trusted_hosts and (host in ("0.0.0.0", "::") or host not in self.trusted_hosts):
            named = [h for h in self.trusted_hosts if not is_loopback(h)]
            if host in ("0.0.0.0", "::") and named:
                return
            raise ConfigError(
                f"serve: clients reaching '{host}' send a Host header this server does not trust yet: add the "
                "name or address they use with --trusted-host NAME (repeatable; '*' trusts any)"
            )


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_key(file: str | Path | None, env: str) -> SecretStr | None:
    """A key from ``file`` (first line, stripped) or else the environment variable ``env``; None when neither.

    Raises:
        ConfigError: The file is missing, empty or readable by other users.
    """
    if file is not None:
        path = Path(file)
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="utf-8").strip().splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"key file '{path}' cannot be read ({err})") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"key file '{path}' is readable by other users: chmod 600 '{path}'")
        if not text or not text[0].strip():
            raise ConfigError(f"key file '{path}' is empty: write the key on its first line")
        return SecretStr(text[0].strip())
    value = os.environ.get(env, "").strip()
    return SecretStr(value) if value else None


def _pillow_formats() -> set[str]:
    from PIL import Image

    Image.init()
    return set(Image.OPEN)
