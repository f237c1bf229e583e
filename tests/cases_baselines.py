"""Method cases for the paper's baselines (partial, mlp, bias, adapter, sidetune, lora); same format as cases_core.

Counts are computed by hand from the micro ViT's shapes (D=192, depth 6, MLP ratio 4, qkv bias, 5 classes):
- one block: norm1 2D + qkv (3D*D + 3D) + proj (D*D + D) + norm2 2D + fc1 (4D*D + 4D) + fc2 (4D*D + D) = 12D^2 + 13D
- final norm: 2D; biases per block: norm1 D + qkv 3D + proj D + norm2 D + fc1 4D + fc2 D = 11D; patch-embed bias D
- adapter per block (bottleneck h = D/r): down D*h + h, up h*D + D
- LoRA per adapted Linear(in, out): A r*in + B out*r (qkv: 4rD, proj: 2rD, fc1: 5rD, fc2: 5rD)
- side ConvNet (width w): convs 3*9*w + 9*(w*2w + 2w*4w + 4w*8w) (no bias), GroupNorm affine 2*(w+2w+4w+8w),
  Linear 8w*D + D, plus the blend logit 1
"""

D, DEPTH, C = 192, 6, 5
HEAD = D * C + C
BLOCK = 12 * D * D + 13 * D  # 444,864
NORM = 2 * D


def _adapter(r: int) -> int:
    h = D // r
    return DEPTH * (D * h + h + h * D + D)


def _side(w: int) -> int:
    convs = 3 * 9 * w + 9 * (w * 2 * w + 2 * w * 4 * w + 4 * w * 8 * w)
    return convs + 2 * (w + 2 * w + 4 * w + 8 * w) + 8 * w * D + D


BASELINE_CASES = [
    {"id": "partial-1", "method": {"name": "partial", "k": 1}, "params": BLOCK + NORM + HEAD, "identity": True},
    {"id": "partial-2", "method": {"name": "partial", "k": 2}, "params": 2 * BLOCK + NORM + HEAD, "identity": True},
    # Mlp-k as the official mlp.py: Linear -> ReLU -> BatchNorm1d (weight + bias: 2 x width) -> Dropout per layer
    {"id": "mlp-3", "method": {"name": "mlp", "layers": 3}, "params": 2 * (D * D + D + 2 * D) + HEAD, "identity": True},
    {
        "id": "mlp-2-h64-dropout",
        "method": {"name": "mlp", "layers": 2, "hidden_dim": 64, "dropout": 0.1, "activation": "gelu"},
        "params": (D * 64 + 64 + 2 * 64) + (64 * C + C),
        "identity": True,
    },
    {"id": "mlp-1", "method": {"name": "mlp", "layers": 1}, "params": HEAD, "identity": True},
    {"id": "bias", "method": {"name": "bias"}, "params": D + DEPTH * 11 * D + D + HEAD, "identity": True},
    {"id": "adapter-r8", "method": {"name": "adapter", "reduction": 8}, "params": _adapter(8) + HEAD, "identity": True},
    {
        "id": "adapter-r64-gelu",
        "method": {"name": "adapter", "reduction": 64, "activation": "gelu"},
        "params": _adapter(64) + HEAD,
        "identity": True,
    },
    {"id": "lora-r8-qkv", "method": {"name": "lora"}, "params": DEPTH * 4 * 8 * D + HEAD, "identity": True},
    {
        "id": "lora-r4-all-dropout",
        "method": {"name": "lora", "rank": 4, "alpha": 8, "targets": ["qkv", "proj", "fc1", "fc2"], "dropout": 0.1},
        "params": DEPTH * (4 + 2 + 5 + 5) * 4 * D + HEAD,
        "identity": True,
    },
    {"id": "sidetune", "method": {"name": "sidetune"}, "params": _side(32) + 1 + HEAD, "identity": False},
    {
        "id": "sidetune-fixed-alpha",
        "method": {"name": "sidetune", "width": 8, "alpha": 0.8, "learn_alpha": False},
        "params": _side(8) + HEAD,
        "identity": False,
    },
]
