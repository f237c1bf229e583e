"""What ``vptune models`` lists: bundled backbones, supported timm families, and which weights are here."""

from __future__ import annotations

from typing import Any

import timm

from . import micro, micro_families
from .hub import offline_mode, weights_status

# timm model modules of the supported backbone families (docs/backbones.md), whose public seams vptune composes
FAMILIES = (
    ("vision_transformer", "vit_* (ImageNet-21k/1k, augreg, DINOv2, CLIP, MAE, SigLIP, ...)"),
    ("deit", "deit_*, deit3_* (distilled variants included)"),
    ("swin_transformer", "swin_* (Swin-T/S/B/L, ImageNet-1k/22k; vpt-shallow, vpt-deep)"),
    ("convnext", "convnext_* (vpt-pad prompts)"),
    ("resnet", "resnet*, resnext*, ... (vpt-pad prompts)"),
)
# backbones of the paper and the README's examples, always listed with their offline status
KNOWN = (
    "vit_base_patch16_224.orig_in21k",
    "vit_large_patch16_224.orig_in21k",
    "vit_huge_patch14_224.orig_in21k",
    "vit_small_patch16_224.augreg_in21k",
    "vit_tiny_patch16_224",
    "deit_small_patch16_224",
    "vit_small_patch14_reg4_dinov2.lvd142m",
    "vit_base_patch16_clip_224.openai",
    "vit_base_patch16_224.mae",
    "swin_base_patch4_window7_224.ms_in22k",
    "convnext_base.fb_in22k",
    "resnet50",
)


def bundled_models() -> list[str]:
    """Backbones whose weights ship inside the vptune package."""
    cfgs = {**micro.default_cfgs, **micro_families.default_cfgs}  # model -> timm DefaultCfg
    return sorted(name for name, cfg in cfgs.items() if cfg.default.file)


def _cached_hub_models() -> list[str]:
    """timm models whose weights are in the Hugging Face cache (``timm/NAME`` repos), read from disk only."""
    from huggingface_hub import constants, scan_cache_dir

    try:
        repos = scan_cache_dir(constants.HF_HUB_CACHE).repos
    except Exception:  # noqa: BLE001  (no cache folder yet, or one huggingface_hub cannot read: nothing cached)
        return []
    return sorted(r.repo_id.split("/", 1)[1] for r in repos if r.repo_id.startswith("timm/") and r.repo_type == "model")


def models_report() -> dict[str, Any]:
    """Bundled backbones, supported families and known/cached models with whether their weights are here."""
    bundled = bundled_models()
    names = list(dict.fromkeys([*bundled, *KNOWN, *(n for n in _cached_hub_models() if timm.is_model(n))]))
    rows = []
    for name in names:
        row = weights_status(name).to_dict()
        row["bundled"] = name in bundled
        rows.append(row)
    families = [
        {"module": module, "names": text, "count": len(timm.list_models(module=module))} for module, text in FAMILIES
    ]
    return {"offline_mode": offline_mode(), "models": rows, "families": families}


def format_models(report: dict[str, Any]) -> str:
    """The human-readable table of :func:`models_report`."""
    lines = ["model                                     weights here  source"]
    for r in report["models"]:
        here = "yes" if r["available_offline"] else "no (download)"
        lines.append(f"{r['name']:<41} {here:<13} {r['source']} {r['location'] if r['source'] != 'bundled' else ''}")
    lines.append("")
    lines.append("supported timm families (any model of them works by name; weights download on first use):")
    for f in report["families"]:
        lines.append(f"  {f['module']:<20} {f['count']:>4} models  {f['names']}")
    if report["offline_mode"]:
        lines.append("HF_HUB_OFFLINE is set: only models with weights here can load pretrained")
    return "\n".join(lines)
