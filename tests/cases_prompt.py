"""Method cases for the VPT variants (depth, location, sharing, projection, init, bias, prefix, outputs).

Same format as tests/cases_core.py; counts are computed by hand for the micro ViT: D=192, depth 6, patch 4x4,
3 input channels, 32x32 input (64 patches), 5 classes.
"""

D, DEPTH, C = 192, 6, 5
HEAD = D * C + C
CHANNELS, PATCH, SIDE = 3, 4, 32
PIXEL_PATCH = CHANNELS * PATCH * PATCH  # 48 values per pixel-space prompt patch
# every bias of the micro ViT: patch embedding 192; per block norm1 192 + qkv 576 + proj 192 + norm2 192 +
# fc1 768 + fc2 192 = 2112; final norm 192
BIASES = D + DEPTH * (D + 3 * D + D + D + 4 * D + D) + D


def _case(case_id: str, method: dict, params: int, identity: bool = False) -> dict:
    return {"id": case_id, "method": method, "params": params, "identity": identity}


PROMPT_CASES = [
    # depth
    _case("vpt-shallow-layers-all", {"name": "vpt-shallow", "prompt_length": 2, "layers": "all"}, 6 * 2 * D + HEAD),
    _case("vpt-deep-layers-first", {"name": "vpt-deep", "prompt_length": 2, "layers": "first"}, 2 * D + HEAD),
    _case("vpt-deep-bottom2", {"name": "vpt-deep", "prompt_length": 3, "layers": "bottom:2"}, 2 * 3 * D + HEAD),
    _case("vpt-deep-top3", {"name": "vpt-deep", "prompt_length": 1, "layers": "top:3"}, 3 * 1 * D + HEAD),
    _case("vpt-deep-list", {"name": "vpt-deep", "prompt_length": 2, "layers": [1, 3, 5]}, 3 * 2 * D + HEAD),
    # location
    _case("vpt-deep-add", {"name": "vpt-deep", "prompt_length": 4, "location": "add"}, 6 * 4 * D + HEAD),
    _case("vpt-shallow-pixel", {"name": "vpt-shallow", "prompt_length": 3, "location": "prepend-pixel"}, 144 + HEAD),
    _case(
        "vpt-shallow-channel",
        {"name": "vpt-shallow", "prompt_length": 2, "location": "concat-channel"},
        2 * SIDE * SIDE + (CHANNELS + 2) * PATCH * PATCH * D + D + HEAD,  # channels + new conv weight + bias
        identity=True,
    ),
    # sharing
    _case("vpt-deep-shared-intra", {"name": "vpt-deep", "prompt_length": 4, "sharing": "shared-intra"}, 6 * D + HEAD),
    _case("vpt-deep-shared-inter", {"name": "vpt-deep", "prompt_length": 4, "sharing": "shared-inter"}, 4 * D + HEAD),
    _case("vpt-deep-shared-all", {"name": "vpt-deep", "prompt_length": 4, "sharing": "shared-all"}, D + HEAD),
    _case(
        "vpt-shallow-pixel-shared-intra",
        {"name": "vpt-shallow", "prompt_length": 3, "location": "prepend-pixel", "sharing": "shared-intra"},
        PIXEL_PATCH + HEAD,
    ),
    # projection: L*p*k + k*D + D
    _case(
        "vpt-deep-proj16",
        {"name": "vpt-deep", "prompt_length": 3, "projection_dim": 16},
        6 * 3 * 16 + 16 * D + D + HEAD,
    ),
    _case(
        "vpt-deep-proj16-shared-all",
        {"name": "vpt-deep", "prompt_length": 3, "projection_dim": 16, "sharing": "shared-all"},
        16 + 16 * D + D + HEAD,
    ),
    # init (the data-dependent step is not run here; tests/test_prompt_variants.py checks it)
    _case("vpt-shallow-proto", {"name": "vpt-shallow", "prompt_length": 5, "init": "class-prototype"}, 5 * D + HEAD),
    # VPT + bias
    _case("vpt-shallow-bias", {"name": "vpt-shallow", "prompt_length": 5, "train_bias": True}, 5 * D + BIASES + HEAD),
    _case("vpt-shallow-p0-bias", {"name": "vpt-shallow", "prompt_length": 0, "train_bias": True}, BIASES + HEAD, True),
    _case(
        "vpt-shallow-channel-bias",  # the frozen conv's bias is superseded by the new conv's (counted once)
        {"name": "vpt-shallow", "prompt_length": 2, "location": "concat-channel", "train_bias": True},
        2 * SIDE * SIDE + (CHANNELS + 2) * PATCH * PATCH * D + BIASES + HEAD,
        identity=True,
    ),
    # outputs with every location
    _case(
        "vpt-shallow-pixel-promptpool",
        {"name": "vpt-shallow", "prompt_length": 3, "location": "prepend-pixel", "output": "prompt-pool"},
        144 + HEAD,
    ),
    _case(
        "vpt-deep-add-globalpool",
        {"name": "vpt-deep", "prompt_length": 2, "location": "add", "output": "global-pool"},
        6 * 2 * D + HEAD,
    ),
    _case(
        "vpt-deep-add-imagepool",
        {"name": "vpt-deep", "prompt_length": 2, "location": "add", "output": "image-pool"},
        6 * 2 * D + HEAD,
    ),
    _case(
        "vpt-shallow-channel-globalpool",
        {"name": "vpt-shallow", "prompt_length": 1, "location": "concat-channel", "output": "global-pool"},
        SIDE * SIDE + (CHANNELS + 1) * PATCH * PATCH * D + D + HEAD,
        identity=False,  # the backbone itself pools by [CLS]
    ),
    _case("vpt-deep-promptpool", {"name": "vpt-deep", "prompt_length": 2, "output": "prompt-pool"}, 6 * 2 * D + HEAD),
    # VPT-prefix
    _case("vpt-prefix-p3", {"name": "vpt-prefix", "prompt_length": 3}, 6 * 3 * D + HEAD),
    _case("vpt-prefix-p0", {"name": "vpt-prefix", "prompt_length": 0}, HEAD, identity=True),
    _case("vpt-prefix-bottom2", {"name": "vpt-prefix", "prompt_length": 4, "layers": "bottom:2"}, 2 * 4 * D + HEAD),
    _case(
        "vpt-prefix-globalpool",
        {"name": "vpt-prefix", "prompt_length": 2, "output": "global-pool", "dropout": 0.0},
        6 * 2 * D + HEAD,
    ),
]
