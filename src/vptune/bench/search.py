"""The one selection engine shared by ``vptune tune`` and ``vptune bench``: grids, tie-breaking, storage.

- **Grids** (:func:`grid_points`): the paper's learning rates and weight decays (vpt-method.md section 7); any
  method option (the prompt length p, the adapter's reduction r, ...) can be an extra axis.
- **Ties**: with 200 validation images equal scores are common; :func:`tie_key` orders equally scored points
  toward the cheaper, more regularised choice: smaller lr, then larger weight decay, then shorter prompt.
- **Storage**: :func:`open_storage` opens Optuna's RDB storage (SQLite for one machine, PostgreSQL or MySQL for
  many) with heartbeats, so that a run whose worker died (``kill -9``) is failed after the grace period and
  queued again (Optuna's retry callback). SQLite transactions begin ``IMMEDIATE``, so that claiming
  a queued run (WAITING -> RUNNING) is atomic between processes, as ``SELECT ... FOR UPDATE`` makes it on
  PostgreSQL and MySQL.
"""

from __future__ import annotations

import itertools
import random
import time
import warnings
from typing import Any

from ..errors import VptuneError

# The paper's grids (vpt-method.md section 7): base lr (scaled by batch/256) x weight decay.
SGD_LRS: tuple[float, ...] = (50.0, 25.0, 10.0, 5.0, 2.5, 1.0, 0.5, 0.25, 0.1, 0.05)
ADAMW_LRS: tuple[float, ...] = (0.001, 5e-4, 1e-4, 0.005)
WDS: tuple[float, ...] = (0.01, 0.001, 1e-4, 0.0)
PAPER_PROMPT_LENGTHS: tuple[int, ...] = (1, 5, 10, 50, 100, 200)
ADAPTER_REDUCTIONS: tuple[int, ...] = (8, 64, 256)

OPEN_ATTEMPTS = 6
PREFER_HIGH = frozenset({"wd", "weight_decay", "reduction"})  # larger is more regularised / cheaper


def grid_points(axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the axes' values, the first axis outermost, values in listed order."""
    names = list(axes)
    return [dict(zip(names, values)) for values in itertools.product(*(axes[n] for n in names))]


def tie_key(point: dict[str, Any], order: dict[str, list[Any]] | None = None) -> tuple[Any, ...]:
    """Sort key among equally scored grid points: smaller lr, then larger wd, then shorter prompt, then others.

    ``point`` holds ``lr``, ``wd`` (or ``weight_decay``) and any searched method options. Options with a natural
    cost order follow :data:`PREFER_HIGH` (the adapter's ``reduction``: larger is a smaller bottleneck); any other
    option is ordered by its position in ``order`` (the grid as listed), else by value.
    """
    wd = point.get("wd", point.get("weight_decay", 0.0))
    key: list[Any] = [point["lr"], -wd]
    options = {k: v for k, v in point.items() if k not in ("lr", "wd", "weight_decay")}
    for name in sorted(options, key=lambda n: (n != "prompt_length", n)):
        value = options[name]
        if name in PREFER_HIGH and isinstance(value, (int, float)):
            key.append(-value)
        elif order and name in order and value in order[name]:
            key.append(order[name].index(value))
        elif isinstance(value, (int, float)):
            key.append(value)
        else:
            key.append(str(value))
    return tuple(key)


def import_optuna() -> Any:
    """Optuna, quiet, or a clear error naming the install command."""
    try:
        import optuna
    except ModuleNotFoundError:
        raise VptuneError("this command needs Optuna: pip install 'optuna>=3.5'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeat API
    return optuna


def open_storage(url: str | None, heartbeat_s: int = 60, grace_s: int = 180, retry: bool = True) -> Any:
    """Optuna storage: in memory (``None``, one process) or an RDB URL with heartbeats and automatic retry.

    Args:
        url: ``sqlite:///PATH``, ``postgresql://USER@HOST:PORT/DB``, ``mysql+pymysql://...`` or None.
        heartbeat_s: How often a worker records that its run is alive.
        grace_s: A run whose last heartbeat is older than this is failed (and queued again with ``retry``).
        retry: Queue a copy of every stale run that this process fails (Optuna's retry callback).

    Raises:
        VptuneError: the database driver is missing or the database cannot be reached.
    """
    optuna = import_optuna()
    if url is None:
        return optuna.storages.InMemoryStorage()
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 120}}
    for attempt in range(OPEN_ATTEMPTS):
        try:
            storage = optuna.storages.RDBStorage(
                url,
                engine_kwargs=kwargs,
                heartbeat_interval=heartbeat_s,
                grace_period=grace_s,
                heartbeat_stale_trial_callback=_retry_callback(optuna) if retry else None,
            )
            break
        except ImportError:
            raise VptuneError(
                f"--storage {url}: the database driver is not installed (PostgreSQL: pip install 'vptune[postgres]', "
                "i.e. psycopg2-binary; MySQL: pip install pymysql)"
            ) from None
        except Exception as err:  # OperationalError & co: unreachable server, bad credentials, bad path
            # workers that start together race to create Optuna's tables (a unique-constraint error for the
            # losers): wait and open the tables the winner made
            if attempt + 1 == OPEN_ATTEMPTS:
                raise VptuneError(f"--storage {url}: cannot open the database: {str(err).splitlines()[0]}") from None
            time.sleep(0.5 + random.random() * (attempt + 1))
    if storage.engine.name == "sqlite":
        _immediate_transactions(storage.engine)
    return storage


def _retry_callback(optuna: Any) -> Any:
    """Optuna's callback that queues a copy of a stale trial (renamed in Optuna 4.9)."""
    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    return cls()


def _immediate_transactions(engine: Any) -> None:
    """SQLite: every transaction takes the write lock when it begins, so read-then-update is atomic.

    Python's sqlite3 driver otherwise begins a transaction only at the first write, so two processes could both
    read a run as WAITING and both claim it (SQLAlchemy's documented pysqlite recipe).
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _autocommit_driver(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy, not the driver, issues BEGIN

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections made before the listeners reconnect with them
