"""Attention over a mixed batch without padding: which kernel wins on this machine, side by side in one run.

    .venv/bin/python benchmarks/varlen_attention.py --threads 1 --batch 64 8
    .venv/bin/python benchmarks/varlen_attention.py --dim 768 --heads 12 --base 197 --batch 64 --device cuda

The attention of one block for T tasks with prompt lengths spread 1..max (``--base`` prefix + patch tokens each),
``batch / T`` samples per task, five ways (outputs checked against ``segments``):
  padded      SDPA on (B, H, N_max, hd) with a boolean key mask hiding the padding (the padded pass)
  segments    SDPA per task on (count, H, N_t, hd), no mask (the packed pass of vptune.tasks.varlen)
  njt         SDPA on nested jagged tensors (B, H, j, hd), one call
  dense-mask  SDPA on all packed tokens (1, H, T, hd) with a block-diagonal (T, T) mask
  flex        FlexAttention on the packed tokens with a block-diagonal block mask (eager unless --compile)
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from multitask import call_times  # benchmarks/ is on sys.path when run as a script


def seconds(fn: Callable[[], torch.Tensor], device: torch.device, min_seconds: float) -> float:
    """Median seconds per call of ``fn`` (the timing loop of benchmarks/multitask.py)."""
    return float(np.median(call_times(fn, device, min_seconds)))


def variants(q: list[torch.Tensor], compile_flex: bool) -> dict[str, Callable[[], object]]:
    """The five ways, over per-task queries ``q[t]`` (count_t, H, N_t, hd) used as q, k and v."""
    device, heads, hd = q[0].device, q[0].shape[1], q[0].shape[-1]
    rows = [x for t in q for x in t.unbind(0)]  # per sample (H, N, hd)
    lengths = torch.tensor([r.shape[1] for r in rows], device=device)
    n_max = int(lengths.max())
    padded = torch.zeros(len(rows), heads, n_max, hd, device=device, dtype=q[0].dtype)  # (B, H, N_max, hd)
    for i, r in enumerate(rows):
        padded[i, :, : r.shape[1]] = r
    key_mask = (torch.arange(n_max, device=device)[None, :] < lengths[:, None])[:, None, None, :]  # (B, 1, 1, N)
    njt = torch.nested.nested_tensor([r.transpose(0, 1) for r in rows], layout=torch.jagged).transpose(1, 2)
    packed = torch.cat([r for r in rows], dim=1)[None]  # (1, H, T, hd)
    doc = torch.repeat_interleave(torch.arange(len(rows), device=device), lengths)  # (T,) sample of each token
    dense = (doc[:, None] == doc[None, :])[None, None]  # (1, 1, T, T)
    out = {
        "padded": lambda: F.scaled_dot_product_attention(padded, padded, padded, attn_mask=key_mask),
        "segments": lambda: [F.scaled_dot_product_attention(t, t, t) for t in q],
        "njt": lambda: F.scaled_dot_product_attention(njt, njt, njt),
        "dense-mask": lambda: F.scaled_dot_product_attention(packed, packed, packed, attn_mask=dense),
    }
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        total = packed.shape[2]
        block = create_block_mask(lambda b, h, i, j: doc[i] == doc[j], None, None, total, total, device=str(device))
        flex = torch.compile(flex_attention) if compile_flex else flex_attention
        out["flex"] = lambda: flex(packed, packed, packed, block_mask=block)
    except Exception as err:  # noqa: BLE001  (reported, the other kernels still run)
        print(f"flex attention unavailable: {type(err).__name__}: {err}")
    return out


def as_rows(name: str, result: object, q: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per-sample outputs (H, N, hd) of a variant, to compare them."""
    lengths = [t.shape[2] for t in q for _ in range(t.shape[0])]
    if name == "segments":
        return [x for t in result for x in t.unbind(0)]
    if name == "padded":
        return [x[:, :n] for x, n in zip(result.unbind(0), lengths)]
    if name == "njt":
        return [x for x in result.unbind(0)]
    return list(result[0].split(lengths, dim=1))  # packed (1, H, T, hd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dim", type=int, default=192, help="embedding width (micro ViT: 192, ViT-B: 768)")
    parser.add_argument("--heads", type=int, default=3)
    parser.add_argument("--base", type=int, default=65, help="prefix + patch tokens per sample")
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 8])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--compile", action="store_true", help="torch.compile FlexAttention (needs a C compiler)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    lengths = np.linspace(1, args.max_len, args.tasks).round().astype(int).tolist()
    report = {"dim": args.dim, "heads": args.heads, "base": args.base, "prompt_lengths": lengths, "batches": []}
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for batch in args.batch:
            count = max(batch // args.tasks, 1)
            hd = args.dim // args.heads
            q = [torch.randn(count, args.heads, args.base + p, hd, generator=gen).to(device, dtype) for p in lengths]
            runs = variants(q, args.compile)
            ref = as_rows("segments", runs["segments"](), q)
            entry: dict = {"batch": count * args.tasks, "ms": {}, "max_abs_diff": {}, "vs_segments": {}}
            for name, fn in runs.items():
                try:
                    got = as_rows(name, fn(), q)
                    entry["max_abs_diff"][name] = max(float((a - b).abs().max()) for a, b in zip(got, ref))
                    entry["ms"][name] = round(1000 * seconds(fn, device, args.seconds), 3)
                except Exception as err:  # noqa: BLE001  (a kernel this build lacks is reported, not fatal)
                    entry["ms"][name] = f"error: {type(err).__name__}: {str(err)[:120]}"
            base = entry["ms"]["segments"]
            entry["vs_segments"] = {k: round(base / v, 3) for k, v in entry["ms"].items() if isinstance(v, float)}
            print(f"batch {entry['batch']}: " + ", ".join(f"{k} {v}" for k, v in entry["ms"].items()), flush=True)
            report["batches"].append(entry)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
