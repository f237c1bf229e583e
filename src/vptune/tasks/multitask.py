"""MultiTaskModel: one frozen backbone, many task artifacts, samples of different tasks in one batch.

Prompt tasks (prepended prompts, any depth/length/sharing), head-only tasks and LoRA, bias and adapter tasks
run on the shared backbone over ``prefix + prompt block + patches``: a pass's block is as long as its longest
prompt, each sample's prompts sit at its start (right-padded) and a boolean key mask given to every block
(``block(x, attn_mask=...)``) hides the padding. Attention is the only op mixing tokens, so real tokens equal
the task's own AdaptedModel's. LoRA, bias and adapter tasks add their terms to their own rows only
(:mod:`.row_edits`). How a batch is split into passes (one padded pass, per prompt-length bucket, per task, or
the cheapest mix) is chosen by the :mod:`.planner`. Which methods may share the backbone is declared by the
method (:meth:`Method.shared_pass_blocker`); the others (prefix, partial, full, add/pixel prompts...) run
isolated on their own backbone copy, as do all tasks on a backbone family without token prompts or masked
attention. The shared pass runs the backbone through its :class:`~vptune.backbones.Backbone` interface, like
every other forward in vptune."""

from __future__ import annotations

import copy
import dataclasses
import logging
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from safetensors import SafetensorError, safe_open
from torch import nn

from ..backbones import Backbone, weights_hash, wrap_backbone
from ..data import build_transform
from ..data.images import load_image
from ..errors import ArtifactError, VptuneError
from ..methods import Method, build_method
from .artifact import TENSOR_FILE, TaskArtifact, attach_task, check_backbone, load_backbone_for, read_task
from .calibrate import calibrate_blocks, calibrate_passes
from .delta_bank import bank_edits, row_method
from .planner import BatchPlanner, CostModel, Segment, check_mode
from .row_edits import per_sample_edits, structural_copy
from .varlen import packable, run_packed

log = logging.getLogger("vptune.multitask")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class UnknownTaskError(VptuneError):
    """A task name that the bank does not hold."""


def shared_pass_blocker(method: Method, tensor_names: Sequence[str], backbone: Backbone) -> str | None:
    """Why ``method`` can not share the backbone pass (None: it can), from what method and backbone declare."""
    if not (backbone.token_prompts and backbone.masked_attention):
        return f"the '{backbone.family}' backbone family can not pad and mask prompts in one pass"
    if method.trains_backbone or any(n.startswith("backbone.") for n in tensor_names):
        return "it changes or extends backbone weights (LoRA, adapters, biases, ...)"
    return method.shared_pass_blocker()


@dataclass
class TaskEntry:
    """A loaded task: its artifact and, for isolated tasks, its own model on a private backbone copy."""

    name: str
    artifact: TaskArtifact
    output: str
    length: int  # prompt tokens after the prefix tokens in the final sequence (0: head-only)
    isolated_reason: str | None
    kind: str = "classification"  # or "segmentation": the head reads the dense map (vptune.seg)

    def info(self) -> dict[str, Any]:
        """JSON-ready description (``mode``: batched = shares the backbone pass, isolated = own backbone)."""
        meta, classes = self.artifact.meta, self.artifact.classes
        return {
            "name": self.name,
            "task_type": self.kind,
            "classes": classes,
            "num_classes": len(classes),
            "method": meta["method"]["name"],
            "method_config": meta["method"],
            "prompt_tokens": self.length,
            "mode": "batched" if self.isolated_reason is None else "isolated",
            "isolated_reason": self.isolated_reason,
            "params": meta["params"],
        }


class MultiTaskModel(nn.Module):
    """A frozen backbone shared by many task artifacts.

    Args:
        backbone: An already loaded backbone (``model_name`` is then required); None: load it from the first
            task added (with the ``model_name``/``weights``/``pretrained`` overrides).
        model_name: Backbone name every task must record (default: the first task's).
        weights: Local weights file for the backbone (when it is loaded from the first task).
        pretrained: Override whether timm's pretrained weights are loaded.
        device: Where the backbone and tasks live.
        plan: How mixed batches are split into backbone passes (:data:`~vptune.tasks.planner.PLANS`; auto: the
            cheapest under the cost model).
        cost: The planner's cost model; None: measured by :meth:`calibrate` (called by ``vptune serve`` at
            start-up, else at the first batch that needs a choice).
    """

    def __init__(
        self,
        backbone: nn.Module | None = None,
        *,
        model_name: str | None = None,
        weights: str | None = None,
        pretrained: bool | None = None,
        device: str | torch.device = "cpu",
        plan: str = "auto",
        cost: CostModel | None = None,
    ) -> None:
        super().__init__()
        if backbone is not None and not model_name:
            raise ArtifactError("MultiTaskModel: pass model_name together with a backbone")
        self._load = {"weights": weights, "pretrained": pretrained}
        self.model_name, self.device, self.digest = model_name, torch.device(device), ""
        self.backbone: nn.Module | None = None
        self.preprocessing: dict[str, Any] | None = None
        self.transform: Any = None  # the tasks' shared eval preprocessing (PIL -> tensor)
        self.task_modules = nn.ModuleDict()  # name -> ModuleDict(method, head) or an isolated AdaptedModel
        self.entries: dict[str, TaskEntry] = {}
        self.lock = threading.RLock()
        self.planner: BatchPlanner | None = None  # built with the backbone (it needs the token count)
        self._plan = (check_mode(plan), cost)
        if backbone is not None:
            self._set_backbone(backbone, model_name)

    def _set_backbone(self, vit: nn.Module, name: str) -> None:
        self.backbone = vit.to(self.device).eval().requires_grad_(False)
        self.arch = wrap_backbone(self.backbone, name)  # the interface the shared pass runs through
        self.model_name, self.digest, self.info = name, weights_hash(vit), self.arch.info
        mode, cost = self._plan
        cost = cost or CostModel.from_flops(self.info.embed_dim, self.arch.depth)  # until calibrated
        self.planner = BatchPlanner(
            self.info.num_prefix_tokens + self.info.num_patches, cost, mode, packable(self.arch)
        )

    def set_plan(self, mode: str) -> None:
        """Use the planner mode ``mode`` (one of :data:`~vptune.tasks.planner.PLANS`) from the next batch on."""
        with self.lock:
            self._plan = (check_mode(mode), self._plan[1])
            if self.planner is not None:
                # what it learnt online (corrections, races) carries over: the dicts are shared, not copied
                self.planner = dataclasses.replace(self.planner, mode=mode)

    def calibrate(self, **kwargs: Any) -> CostModel:
        """Measure the planner's cost model on this machine (logged): real passes over the loaded tasks
        (:func:`~vptune.tasks.calibrate.calibrate_passes`), or the blocks alone when no two tasks sharing the
        backbone differ in prompt length (:func:`~vptune.tasks.calibrate.calibrate_blocks`). Predictions wait."""
        if self.planner is None or self.preprocessing is None:
            raise ArtifactError("no task loaded: add a task before calibrating the planner")
        dtype, planner, cache = next(self.backbone.parameters()).dtype, self.planner, {}

        def run(segments: Sequence[Segment], packed: bool) -> None:
            n = sum(s.count for s in segments)
            size = (n, self.info.in_chans, *self.preprocessing["input_size"])  # (n, C, H, W)
            images = cache.setdefault(n, torch.randn(size, device=self.device, dtype=dtype))
            (self._forward_packed if packed else self._forward_shared)(images, [(s.name, s.count) for s in segments])
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)

        with self.lock:
            tasks = [
                Segment(n, 1, e.length, "edits" not in self.task_modules[n])
                for n, e in self.entries.items()
                if e.isolated_reason is None
            ]
            if len({t.length for t in tasks}) > 1:
                packed = planner.packable and sum(t.packable for t in tasks) > 1
                kw = {"depth": self.arch.depth, "base_tokens": planner.base_tokens, "packed": packed}
                cost = calibrate_passes(run, tasks, **kw, **kwargs)
            else:
                cost = calibrate_blocks(self.arch, planner.base_tokens, device=self.device, dtype=dtype, **kwargs)
            self.planner = planner.recalibrated(cost)
        return cost

    @classmethod
    def from_dirs(cls, tasks: dict[str, str | Path], **kwargs: Any) -> MultiTaskModel:
        """A bank holding ``{name: task folder}`` (keyword arguments as in the constructor)."""
        bank = cls(**kwargs)
        for name, path in tasks.items():
            bank.add_task(name, path)
        return bank

    def train(self, mode: bool = True) -> MultiTaskModel:
        """The bank only serves: it stays in eval mode (no dropout on prompts)."""
        return super().train(False)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    @property
    def task_names(self) -> list[str]:
        return list(self.entries)

    @property
    def tasks(self) -> list[dict[str, Any]]:
        """Per task: name, classes, method, prompt tokens, serving mode and parameter counts."""
        return [e.info() for e in list(self.entries.values())]

    def add_task(self, name: str, path: str | Path) -> dict[str, Any]:
        """Load the task folder ``path`` under ``name`` (backbone name, hash and preprocessing must agree).

        Raises:
            ArtifactError: Bad name, name taken, damaged artifact, other backbone or other preprocessing.
        """
        if not NAME_RE.fullmatch(name):
            raise ArtifactError(f"task name '{name}' is invalid: use 1-64 letters, digits, '_' or '-'")
        task = read_task(path)
        with self.lock:  # the first task fixes the backbone; later adds only read it
            self._check_new(name, task)
            if self.backbone is None:
                vit, _ = load_backbone_for(task, **self._load)
                self._set_backbone(vit, self.model_name or task.backbone["name"])
            check_backbone(task, self.model_name, self.digest)
            backbone, digest = self.backbone, self.digest
        # the costly part (tensor reads and checks, a private backbone copy) runs without the lock, so
        # predictions on the loaded tasks go on meanwhile
        try:
            with safe_open(str(task.path / TENSOR_FILE), framework="pt") as f:
                tensor_names = list(f.keys())
        except (SafetensorError, OSError) as err:
            raise ArtifactError(f"'{task.path / TENSOR_FILE}' cannot be read ({err}); the file is damaged") from None
        method = build_method(task.method, self.info)
        blocker = shared_pass_blocker(method, tensor_names, self.arch)
        rows = row_method(method, self.arch) if blocker is not None else None  # per sample on the shared backbone
        names = [n.removeprefix("backbone.") for n in tensor_names if n.startswith("backbone.")]
        vit = backbone if blocker is None else structural_copy(backbone, names) if rows else copy.deepcopy(backbone)
        model = attach_task(task, vit, digest).to(self.device).eval()
        edits = bank_edits(rows, self.arch, model, names) if rows else None
        if isinstance(edits, str):  # it changes more than per-sample edits can add: a private backbone copy
            log.info("task '%s' keeps a private backbone copy: %s", name, edits)
            blocker = f"{blocker}; {edits}"
            edits, model = None, attach_task(task, copy.deepcopy(backbone), digest).to(self.device).eval()
        modules = {"method": model.method, "head": model.head}
        if edits is not None:  # LoRA, bias or adapter terms added per sample; the structural copy is dropped
            blocker, modules["edits"] = None, edits
            backbone.requires_grad_(False)  # the method flagged tensors of the copy, some shared: the bank serves
        with self.lock:
            self._check_new(name, task)  # another add may have won the name or fixed the preprocessing meanwhile
            self.task_modules[name] = model if blocker else nn.ModuleDict(modules)
            length = int(model.method.prompt_tokens)
            self.entries[name] = TaskEntry(name, task, model.output, length, blocker, task.task_type)
            if self.preprocessing is None:
                self.preprocessing = task.preprocessing
                self.transform = build_transform(task.preprocessing, train=False)
        return self.entries[name].info()

    def _check_new(self, name: str, task: TaskArtifact) -> None:
        """Refuse a taken name or preprocessing other than the loaded tasks' (call with the lock held)."""
        if name in self.entries:
            raise ArtifactError(f"task name '{name}' is already loaded; remove it first or pick another name")
        if self.preprocessing is not None and task.preprocessing != self.preprocessing:
            raise ArtifactError(
                f"task '{name}' ({task.path}) preprocesses images with {task.preprocessing}, but the loaded "
                f"tasks use {self.preprocessing}; serve it from a separate bank"
            )

    def remove_task(self, name: str) -> None:
        """Unload a task (waits for a running forward pass)."""
        with self.lock:
            self.resolve([name])
            del self.entries[name], self.task_modules[name]

    def resolve(self, task_ids: Sequence[str | int]) -> list[str]:
        """Task names for names or indices into :attr:`task_names` (raises :class:`UnknownTaskError`)."""
        names = self.task_names
        out = []
        for t in task_ids:
            name = names[t] if isinstance(t, int) and 0 <= t < len(names) else t
            if name not in self.entries:
                raise UnknownTaskError(f"unknown task '{t}'; loaded tasks: {', '.join(self.entries) or '(none)'}")
            out.append(str(name))
        return out

    def forward(self, images: torch.Tensor, task_ids: Sequence[str | int]) -> list[torch.Tensor]:
        """Images (B, C, H, W) and one task per sample -> per-sample logits, each (num_classes of its task,)."""
        if images.shape[0] != len(task_ids):
            raise ValueError(f"{images.shape[0]} images but {len(task_ids)} task ids")
        with self.lock:
            names = self.resolve(task_ids)
            groups: dict[str, list[int]] = {}
            for i, name in enumerate(names):
                groups.setdefault(name, []).append(i)
            isolated = [n for n in groups if self.entries[n].isolated_reason is not None]  # own backbone copy
            shared = [
                Segment(n, len(g), self.entries[n].length, "edits" not in self.task_modules[n])
                for n, g in groups.items()
                if n not in isolated
            ]
            plan = self._planner(shared).plan(shared) if shared else None
            passes, packed = (plan.passes, plan.kind == "varlen") if plan else ((), False)  # segments per pass
            order = [i for n in [s.name for p in passes for s in p] + isolated for i in groups[n]]
            out: list[torch.Tensor] = []
            start = time.perf_counter()
            for segments in passes:  # each pass pads its tasks to its own longest prompt
                rows = [i for s in segments for i in groups[s.name]]
                run = self._forward_packed if packed else self._forward_shared
                out.extend(run(images[rows], [(s.name, s.count) for s in segments]))
            if plan is not None and self.planner.observing:  # auto learns from the seconds its plan took
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                self.planner.observe(plan, time.perf_counter() - start)
            for name in isolated:  # a private backbone copy: one sub-batch per task
                out.extend(self.task_modules[name](images[groups[name]]).unbind(0))
        by_sample = dict(zip(order, out))
        return [by_sample[i] for i in range(len(names))]

    def _planner(self, segments: Sequence[Segment]) -> BatchPlanner:
        """The planner, calibrated on this machine first if its choice for ``segments`` needs a measured model."""
        assert self.planner is not None
        choice = len({s.length for s in segments}) > 1  # one prompt length: one padded pass, nothing to price
        if choice and self.planner.mode == "auto" and self.planner.cost.source == "flops":
            self.calibrate()
        return self.planner

    def _forward_shared(self, images: torch.Tensor, segments: list[tuple[str, int]]) -> list[torch.Tensor]:
        """One backbone pass over task-contiguous segments ``(name, count)`` of ``images``."""
        if len(segments) == 1:
            return self._forward_alone(images, segments[0][0])
        arch, n = self.arch, self.info.num_prefix_tokens
        entries = [self.entries[name] for name, _ in segments]
        methods = [self.task_modules[name]["method"] for name, _ in segments]
        counts = [c for _, c in segments]
        width = max(e.length for e in entries)  # P: the batch's prompt block
        valid = [0] * len(segments)  # prompt tokens in place per segment at the current block
        mask: list[torch.Tensor | None] = [None]  # the key mask of the block about to run

        def insert_prompts(x: torch.Tensor, index: int) -> torch.Tensor:
            """Each segment's prompts for block ``index`` (insert or replace the first p positions)."""
            parts, starts, changed, touched = [], [0], index == 0, False
            for s, (e, method, count) in enumerate(zip(entries, methods, counts)):
                seg = x[starts[-1] : starts[-1] + count, n : n + width]  # (count, P, D)
                prompts = method.prompts_for_block(index, count) if e.length else None  # (count, p, D)
                if prompts is not None:  # the whole block when p == P (no copy of the padding)
                    prompts = prompts.to(x.dtype)
                    seg = prompts if e.length == width else torch.cat([prompts, seg[:, e.length :]], dim=1)
                    changed, touched, valid[s] = changed or valid[s] != e.length, True, e.length
                parts.append(seg)
                starts.append(starts[-1] + count)
            if touched:  # one copy of the features per block, as in a task's own forward
                block = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)  # (b, P, D)
                x = torch.cat([x[:, :n], block, x[:, n + width :]], dim=1)  # (b, n + P + patches, D)
            if changed:  # a task inserted its prompts: recompute the key mask
                rows = torch.tensor([v for v, c in zip(valid, counts) for _ in range(c)], device=x.device)  # (b,)
                keys = torch.arange(x.shape[1], device=x.device)  # (N,)
                keep = (keys < n) | (keys >= n + width) | (keys - n < rows[:, None])  # (b, N): True = attend
                mask[0] = None if min(valid) == width else keep[:, None, None, :]  # (b, 1, 1, N)
            return x

        edits = [self._edits(name) for name, _ in segments]
        starts = [sum(counts[:k]) for k in range(len(counts))]
        with per_sample_edits(arch, list(zip(starts, counts, edits))):  # LoRA/bias/adapter terms on their own rows
            x = arch.embed(images)  # (b, n + patches, D)
            b, _, dim = x.shape
            x = torch.cat([x[:, :n], x.new_zeros(b, width, dim), x[:, n:]], dim=1)  # (b, n + P + patches, D)
            x = arch.finish(arch.run_blocks(x, before_block=insert_prompts, attn_mask=lambda _index: mask[0]))
        parts = [x[s : s + c] for s, c in zip(starts, counts)]
        tokens = [
            xs if e.length == width else torch.cat([xs[:, : n + e.length], xs[:, n + width :]], dim=1)
            for xs, e in zip(parts, entries)
        ]
        return self._heads(images, segments, tokens)  # padding dropped: (count, n + p + patches, D) per task

    def _forward_alone(self, images: torch.Tensor, name: str) -> list[torch.Tensor]:
        """One task's pass, the way its own AdaptedModel runs (no padding, no mask, no bookkeeping)."""
        arch, method = self.arch, self.task_modules[name]["method"]
        with per_sample_edits(arch, [(0, images.shape[0], self._edits(name))]):
            x = arch.finish(arch.run_blocks(method.embed(arch, images), before_block=method.before_block))
        return self._heads(images, [(name, images.shape[0])], [x])

    def _edits(self, name: str) -> nn.Module | None:
        """The task's per-sample edits of the shared backbone (LoRA, bias, adapter), if any."""
        modules = self.task_modules[name]
        return modules["edits"] if "edits" in modules else None

    def _forward_packed(self, images: torch.Tensor, segments: list[tuple[str, int]]) -> list[torch.Tensor]:
        """One pass without padding (:func:`~vptune.tasks.varlen.run_packed`) over task-contiguous segments."""
        packed = [(self.task_modules[name]["method"], self.entries[name].length, c) for name, c in segments]
        return self._heads(images, segments, run_packed(self.arch, self.arch.embed(images), packed))

    def _heads(self, images: torch.Tensor, segments: list[tuple[str, int]], tokens: list[torch.Tensor]) -> list:
        """Per task segment: pool its final features (count, n + p + patches, D), after_pool, head -> logits."""
        out: list[torch.Tensor] = []
        start = 0
        for (name, count), x in zip(segments, tokens):
            e, modules = self.entries[name], self.task_modules[name]
            if e.kind == "segmentation":  # SETR-PUP on the patch-token map: (count, K, H, W) per task
                size = (int(images.shape[-2]), int(images.shape[-1]))
                out.extend(modules["head"](self.arch.dense(x, e.length), size).unbind(0))
                start += count
                continue
            with per_sample_edits(self.arch, [(0, count, self._edits(name))]):  # e.g. a bias task's fc_norm
                feats = self.arch.pool(x, e.output, e.length)  # (count, D)
            feats = modules["method"].after_pool(feats, images[start : start + count])
            out.extend(modules["head"](feats).unbind(0))
            start += count
        return out

    def preprocess(self, images: Sequence[str | Path | Image.Image | Any]) -> torch.Tensor:
        """Paths, PIL images or (H, W, 3) uint8 arrays -> (N, C, H, W) on the bank's device."""
        if self.transform is None:
            raise ArtifactError("no task loaded: add a task before predicting")
        pil = [im if isinstance(im, Image.Image) else load_image(im) for im in images]
        return torch.stack([self.transform(im.convert("RGB")) for im in pil]).to(self.device)

    @torch.inference_mode()
    def predict(self, images: Any, task_names: Sequence[str | int], top_k: int = 5) -> list[list[dict[str, Any]]]:
        """Per image (a (B, C, H, W) batch, or paths/PIL/arrays), its task's top-k ``{"label", "index", "score"}``."""
        batch = images.to(self.device) if isinstance(images, torch.Tensor) else self.preprocess(images)
        names = self.resolve(task_names)
        return [self.top_k(name, logits, top_k) for name, logits in zip(names, self(batch, names))]

    def top_k(self, name: str, logits: torch.Tensor, k: int) -> Any:
        """Top-k ``{"label", "index", "score"}`` of one sample's logits for task ``name``; a segmentation task:
        its (H, W) label map at the bank's input size."""
        if self.entries[name].kind == "segmentation":
            return logits.argmax(0)
        probs = logits.float().softmax(dim=0)
        scores, idx = probs.topk(min(k, probs.shape[0]))
        classes = self.entries[name].artifact.classes
        return [
            {"label": classes[i], "index": int(i), "score": float(s)} for s, i in zip(scores.tolist(), idx.tolist())
        ]

    def memory_bytes(self) -> dict[str, int]:
        """Bytes of unique parameters and buffers: backbone, tasks and the total held by the bank."""
        seen: dict[int, int] = {}  # data_ptr -> bytes: tensors shared by several modules count once

        def size(module: nn.Module | None) -> int:
            new = {t.data_ptr(): t.numel() * t.element_size() for t in module.state_dict().values()} if module else {}
            new = {k: v for k, v in new.items() if k not in seen}
            seen.update(new)
            return sum(new.values())

        backbone, tasks = size(self.backbone), size(self.task_modules)
        return {"backbone": backbone, "tasks": tasks, "total": backbone + tasks}
