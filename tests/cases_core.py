"""Method cases for the core methods; tests/test_methods.py runs every case through the same checks.

A case: ``id``, the method config, the expected trainable parameter count for the micro ViT (D=192, depth 6,
patch 4, 5 classes; computed by hand, not by the code under test), and whether the method is an identity
at initialisation (reproduces the frozen backbone's features before training).
"""

D, DEPTH, C = 192, 6, 5
HEAD = D * C + C
BACKBONE = 2_691_648

CORE_CASES = [
    {"id": "linear", "method": {"name": "linear"}, "params": HEAD, "identity": True},
    {"id": "full", "method": {"name": "full"}, "params": BACKBONE + HEAD, "identity": True},
    {
        "id": "vpt-shallow-p5",
        "method": {"name": "vpt-shallow", "prompt_length": 5},
        "params": 5 * D + HEAD,
        "identity": False,
    },
    {
        "id": "vpt-deep-p3",
        "method": {"name": "vpt-deep", "prompt_length": 3},
        "params": DEPTH * 3 * D + HEAD,
        "identity": False,
    },
    {"id": "vpt-deep-p0", "method": {"name": "vpt-deep", "prompt_length": 0}, "params": HEAD, "identity": True},
    {
        "id": "vpt-deep-imagepool",
        "method": {"name": "vpt-deep", "prompt_length": 2, "output": "image-pool"},
        "params": DEPTH * 2 * D + HEAD,
        "identity": False,
    },
]
