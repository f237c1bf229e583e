#!/usr/bin/env bash
# The offline-seg comparison (docs/results/offline-seg/README.md): linear (head only), vpt-deep, bias and full on the
# bundled micro ViT, offline:shapes_seg, one run per method (train -> test, seed 0), the same settings for all but
# the lr of full fine-tuning. lr 0.064 is a base lr: the AdamW step is 0.064 x 16 / 256 = 4e-3 (AdamW's default
# step, 5e-4 at batch 32, learned too slowly in a 24-step probe). Full fine-tuning uses vptune's default base lr
# 0.004 (step 2.5e-4): at step 4e-3 it stayed at the all-background score after an epoch. Scale range 0.75-1.5 of
# the 48 px scene (SETR's 0.5-2.0 gave 17.5 val mIoU after 4 epochs of vpt-deep, 0.75-1.5 gave 20.2).
# Resumable: rerunning continues an interrupted run from its checkpoint and skips finished ones.
set -euo pipefail
OUT=${1:-runs/offline-seg}
EPOCHS=${EPOCHS:-8}
for method in linear vpt-deep bias full; do
  if [ -f "$OUT/$method/task.json" ]; then echo "done: $method"; continue; fi
  lr=0.064; [ "$method" = full ] && lr=0.004  # full: vptune's default base lr (step 2.5e-4)
  vptune train --model vptune_micro_vit --data offline:shapes_seg --method "$method" --optimizer adamw \
    --lr "$lr" --wd 0.05 --epochs "$EPOCHS" --batch-size 16 --set optim.warmup_epochs=0.5 --set seg.channels=64 \
    --set 'seg.scale_range=[0.75,1.5]' \
    --set train.val_every=0 --no-progress --out "$OUT/$method"
done
python -m vptune.seg.report "$OUT" docs/results/offline-seg
