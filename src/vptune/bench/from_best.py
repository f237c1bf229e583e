"""``vptune bench --from-best``: run a suite's methods at the settings ``vptune tune`` found instead of its grid.

The tuned point replaces the grid of every suite method whose method name matches ``best.json``'s (its optimiser,
base lr, weight decay, lr scaling and searched method options); the protocol is otherwise the suite's: the
selection phase trains the single point on the selection split, the final seeds train on the final split and
test once. This is not the paper's protocol (the paper searches each task's grid on its own val split), which the
suite's protocol text then says (in every result file and the report), so a report never passes it off as one.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .suite import Grid, Suite


def apply_best(suite: Suite, best: dict[str, Any], source: str) -> list[str]:
    """Replace the grid of the suite methods tuned in ``best`` (a loaded ``best.json``); returns their labels.

    Args:
        suite: The loaded suite, edited in place.
        best: The content of ``best.json`` (:func:`vptune.tune.load_best`).
        source: Where ``best`` came from, for messages and the suite's protocol text.

    Raises:
        ConfigError: No suite method uses the tuned method, or a tuned option is not one of the method's options.
    """
    matched = [m for m in suite.methods if m.method["name"] == best["method"]]
    if not matched:
        have = sorted({m.method["name"] for m in suite.methods})
        raise ConfigError(
            f"--from-best: '{source}' was tuned for method {best['method']}, which suite {suite.name} does not run "
            f"(its methods: {', '.join(have)}); pick a suite with that method or pass --methods"
        )
    optim = best["optim"]
    options = best.get("method_options", {})
    for spec in matched:
        # options the suite searches are fixed at the tuned value; the spec's fixed options stay unless tuned
        searched = {k: [options[k]] for k in spec.grid.method if k in options}
        fixed = {k: v for k, v in options.items() if k not in searched and k in spec.method and spec.method[k] != v}
        spec.method.update(fixed)
        spec.grid = Grid(lr=[float(optim["lr"])], wd=[float(optim["weight_decay"])], method=searched)
        spec.optimizer = optim["optimizer"]
        if "scale_lr" in optim:
            spec.scale_lr = bool(optim["scale_lr"])
    note = f"methods {', '.join(m.name for m in matched)} at the settings tuned in {source} (not the paper's protocol)"
    suite.tuned_from = note
    return [m.name for m in matched]
