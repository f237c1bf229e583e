#!/usr/bin/env bash
# The offline-seg comparison (docs/results/offline-seg/README.md): linear (head only), vpt-deep, bias and full on the
# bundled micro ViT, offline:shapes_seg, one run per method (train -> test, seed 0), the same settings for all.
# lr 0.016 is a base lr: the step size is 0.016 x 32 / 256 = 2e-3 (AdamW); 5e-4 (AdamW's default base lr 4e-3)
# learned too slowly in a 24-step probe. Resumable: rerunning continues an interrupted run from its checkpoint and skips finished ones.
set -euo pipefail
OUT=${1:-runs/offline-seg}
EPOCHS=${EPOCHS:-3}
for method in vpt-deep linear bias full; do  # vpt-deep first: the README figure
  if [ -f "$OUT/$method/task.json" ]; then echo "done: $method"; continue; fi
  vptune train --model vptune_micro_vit --data offline:shapes_seg --method "$method" --optimizer adamw \
    --lr 0.016 --wd 0.05 --epochs "$EPOCHS" --batch-size 32 --set optim.warmup_epochs=0.5 --set seg.channels=64 \
    --set train.val_every=0 --no-progress --out "$OUT/$method"
done
python -m vptune.seg.report "$OUT" docs/results/offline-seg
