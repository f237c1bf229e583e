"""CPU training-step time with and without flushing denormal floats to zero, for a healthy and a diverged model.

Why: in the offline suite, VPT runs at the top of the lr grid (prompts growing large, losses of 10-50) trained at
a quarter of the usual images/s on CPU. Subnormal floats (|x| < 1.2e-38), which appear in softmax and its
gradient when attention logits are huge, take a slow path on x86 CPUs unless they are flushed to zero.

Method: one model (the bundled micro ViT with VPT) is first trained for ``--diverge-steps`` SGD steps at a large
lr on random images and labels, which drives its prompts to large values; a copy of the untouched model is the
healthy case. Then forward+backward passes (no optimiser step, so the weights stay fixed) of both models are
timed round-robin with ``torch.set_flush_denormal`` off and on, all four cells interleaved in one process, and
the medians are reported with the ratio off / on.

    python benchmarks/denormals.py                       # micro ViT, vpt-shallow p=10, batch 64, 1 thread
    python benchmarks/denormals.py --method vpt-deep --threads 2
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vptune_micro_vit")
    ap.add_argument("--method", default="vpt-shallow")
    ap.add_argument("--prompt-length", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.6, help="SGD lr of the diverging phase")
    ap.add_argument("--diverge-steps", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    from vptune.model import build_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    method = {"name": args.method, "prompt_length": args.prompt_length, "head_init": "small"}
    healthy = build_model(args.model, method, 10, pretrained=True)
    diverged = copy.deepcopy(healthy)
    size = healthy.backbone.patch_embed.img_size
    x = torch.randn(args.batch, 3, *size)
    y = torch.randint(0, 10, (args.batch,))

    trainable = [p for p in diverged.parameters() if p.requires_grad]
    opt = torch.optim.SGD(trainable, lr=args.lr, momentum=0.9)
    diverged.train()
    for _ in range(args.diverge_steps):
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(diverged(x), y).backward()
        opt.step()
    healthy.train()

    def step(model: torch.nn.Module) -> float:
        model.zero_grad(set_to_none=True)
        t = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return time.perf_counter() - t

    cells = {(name, flush): [] for name in ("healthy", "diverged") for flush in (False, True)}
    models = {"healthy": healthy, "diverged": diverged}
    for r in range(args.rounds + 1):
        for (name, flush), times in cells.items():
            torch.set_flush_denormal(flush)
            t = step(models[name])
            if r:  # round 0 is warmup
                times.append(t)
    torch.set_flush_denormal(False)
    with torch.no_grad():
        loss = {n: float(torch.nn.functional.cross_entropy(m(x), y)) for n, m in models.items()}
    print(f"{args.model} {args.method} p={args.prompt_length} batch {args.batch}, {args.threads} thread(s)")
    print("model     loss     flush off (s)  flush on (s)  off/on")
    for name in models:
        off, on = (statistics.median(cells[(name, f)]) for f in (False, True))
        print(f"{name:9} {loss[name]:8.2f} {off:14.3f} {on:13.3f} {off / on:7.2f}x")


if __name__ == "__main__":
    main()
