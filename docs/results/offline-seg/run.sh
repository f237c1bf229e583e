#!/usr/bin/env bash
# The offline-seg comparison (docs/results/offline-seg/README.md): linear (head only), vpt-deep, bias and full on the
# bundled micro ViT, offline:shapes_seg, one run per method (train -> test, seed 0), the same settings for all.
# lr 0.064 is a base lr: the step size is 0.064 x 16 / 256 = 4e-3 (AdamW); AdamW's default step (5e-4 at batch 32)
# learned too slowly in a 24-step probe, and 3 epochs at 2e-3 / batch 32 reached only 17.2 test mIoU. Resumable: rerunning continues an interrupted run from its checkpoint and skips finished ones.
set -euo pipefail
OUT=${1:-runs/offline-seg}
EPOCHS=${EPOCHS:-6}
for method in vpt-deep linear bias full; do  # vpt-deep first: the README figure
  if [ -f "$OUT/$method/task.json" ]; then echo "done: $method"; continue; fi
  vptune train --model vptune_micro_vit --data offline:shapes_seg --method "$method" --optimizer adamw \
    --lr 0.064 --wd 0.05 --epochs "$EPOCHS" --batch-size 16 --set optim.warmup_epochs=0.5 --set seg.channels=64 \
    --set train.val_every=0 --no-progress --out "$OUT/$method"
done
python -m vptune.seg.report "$OUT" docs/results/offline-seg
