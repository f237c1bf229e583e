"""SETR-PUP on a prompted ViT: output sizes, parameter accounting, methods, aux heads, artifacts, mixed batches."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from conftest import TINY, tiny_model
from PIL import Image

from vptune.backbones import weights_hash, wrap_backbone
from vptune.errors import ConfigError
from vptune.methods import build_method
from vptune.model import AdaptedModel
from vptune.seg.decoder import SegmentationHead
from vptune.tasks import load_task, save_task
from vptune.tasks.multitask import MultiTaskModel

pytestmark = pytest.mark.usefixtures("one_thread")
PRE = {"input_size": [32, 32], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear", "augment": "none"}
SRC = {"pretrained": False, "weights": None, "img_size": None}
DEC = {"channels": 8}


def seg_model(method: dict, num_classes: int = 4, **decoder) -> AdaptedModel:
    return tiny_model(method, num_classes, task="segmentation", decoder={**DEC, **decoder})


@pytest.mark.parametrize(("img_size", "patch"), [(32, 4), (48, 8), (40, 8), (28, 14), (64, 16), (24, 2)])
def test_output_size_equals_input_size(img_size, patch):
    torch.manual_seed(0)
    vit = timm.create_model(TINY, pretrained=False, img_size=img_size, patch_size=patch, num_classes=0)
    info = wrap_backbone(vit, TINY).info
    model = AdaptedModel(
        vit, info, build_method({"name": "vpt-deep", "prompt_length": 3}, info), 5, task="segmentation", decoder=DEC
    ).eval()
    out = model(torch.randn(2, 3, img_size, img_size))
    assert out.shape == (2, 5, img_size, img_size)


def test_decoder_parameters_for_vit_large_at_512():
    """ViT-L/16 (D=1024), 150 classes, SETR-PUP: 4 stages + 3 auxiliary heads (blocks 9, 14, 19) of 2 stages."""
    head = SegmentationHead(1024, 150, (16, 16), channels=256, num_convs=4, aux_layers=[9, 14, 19])
    ln, bn, cls = 2 * 1024, 2 * 256, 256 * 150 + 150  # LayerNorm on tokens, BatchNorm, 1x1 classifier
    conv_in, conv_mid = 1024 * 256 * 9, 256 * 256 * 9  # conv 3x3 without bias (followed by a norm)
    main = ln + conv_in + bn + 3 * (conv_mid + bn) + cls
    aux = ln + conv_in + bn + conv_mid + bn + cls
    assert sum(p.numel() for p in head.decode.parameters()) == main == 4_171_414
    assert sum(p.numel() for p in head.parameters()) == main + 3 * aux == 13_143_640


@pytest.mark.parametrize(
    "method",
    [
        {"name": "linear"},
        {"name": "bias"},
        {"name": "vpt-shallow", "prompt_length": 4},
        {"name": "vpt-deep", "prompt_length": 3},
        {"name": "full"},
        {"name": "lora", "rank": 2},
        {"name": "adapter", "reduction": 16},
        {"name": "partial", "k": 1},
        {"name": "vpt-prefix", "prompt_length": 3},
    ],
    ids=lambda m: m["name"],
)
def test_methods_train_a_segmentation_head(method):
    model = seg_model(method)
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 4, (2, 32, 32))
    y[0, :4] = -100
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    trained = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is not None]
    assert any(n.startswith("head.decode.") for n in trained)
    backbone_methods = {"bias", "full", "lora", "adapter", "partial"}
    assert all(not n.startswith("backbone.") for n in trained) or method["name"] in backbone_methods


@pytest.mark.parametrize(
    ("method", "match"),
    [
        ({"name": "mlp"}, "MLP head"),
        ({"name": "sidetune", "width": 8}, "side network"),
        ({"name": "vpt-deep", "prompt_length": 4, "init": "class-prototype"}, "class-prototype"),
    ],
)
def test_methods_that_can_not_segment_are_refused(method, match):
    with pytest.raises(ConfigError, match=match):
        seg_model(method)


def test_aux_heads_read_intermediate_blocks_through_the_same_block_loop():
    model = seg_model({"name": "vpt-deep", "prompt_length": 3}, aux_layers=[1, 3])
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        plain = model(x)
    model.train()
    model.head.eval()  # BatchNorm statistics fixed: the main output must not depend on the segmented loop
    model.method.eval()  # no prompt dropout
    with torch.no_grad():
        main, aux = model(x)
    assert len(aux) == 2 and all(a.shape == (2, 4, 32, 32) for a in aux)
    torch.testing.assert_close(main, plain)
    with pytest.raises(ConfigError, match="aux_layers"):
        seg_model({"name": "linear"}, aux_layers=[6])


def test_artifact_stores_prompts_and_decoder_and_loads_bit_identically(tmp_path):
    model = seg_model({"name": "vpt-deep", "prompt_length": 3}, aux_layers=[2])
    with torch.no_grad():
        for p in model.head.parameters():
            p.add_(0.01 * torch.randn_like(p))
        model.head.decode.stages[0][1].running_mean.add_(0.5)
    meta = {"type": "segmentation", "decoder": {**DEC, "num_convs": 4, "aux_layers": [2]}, "base_size": 48}
    save_task(tmp_path / "t", model, classes=list("abcd"), preprocessing=PRE, backbone_source=SRC, task_info=meta)
    loaded, task = load_task(tmp_path / "t")
    assert task.task_type == "segmentation"
    saved = model.trainable_state_dict()
    assert any(k.startswith("method.") for k in saved) and any(k.startswith("head.decode.") for k in saved)
    assert any(k.startswith("head.aux.2.") for k in saved)
    for k, v in loaded.trainable_state_dict().items():
        assert torch.equal(v, saved[k]), k
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))


def images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(n)]


def test_mixed_batch_of_classification_and_segmentation_equals_each_alone(tmp_path):
    tasks = {
        "segdeep": (seg_model({"name": "vpt-deep", "prompt_length": 2}), "segmentation"),
        "seglin": (seg_model({"name": "linear"}, 3), "segmentation"),
        "segbias": (seg_model({"name": "bias"}), "segmentation"),  # isolated: changes backbone weights
        "clsdeep": (tiny_model({"name": "vpt-deep", "prompt_length": 5}, 3), "classification"),
    }
    for name, (model, kind) in tasks.items():
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(0.02 * torch.randn_like(p))
        info = {"type": kind, "decoder": {**DEC, "num_convs": 4, "aux_layers": []}} if kind == "segmentation" else None
        classes = [f"c{i}" for i in range(model.num_classes)]
        save_task(tmp_path / name, model, classes=classes, preprocessing=PRE, backbone_source=SRC, task_info=info)
    bank = MultiTaskModel.from_dirs({n: tmp_path / n for n in tasks})
    assert {t["name"]: t["task_type"] for t in bank.tasks}["segdeep"] == "segmentation"
    assert weights_hash(bank.backbone) == bank.digest
    names = ["segdeep", "clsdeep", "seglin", "segbias", "segdeep", "clsdeep"]
    batch = bank.preprocess(images(len(names)))
    with torch.no_grad():
        out = bank(batch, names)
        for name in tasks:
            alone, _ = load_task(tmp_path / name)
            rows = [i for i, n in enumerate(names) if n == name]
            want = alone(batch[rows])
            torch.testing.assert_close(torch.stack([out[i] for i in rows]), want, atol=1e-4, rtol=1e-4)
    preds = bank.predict(batch[:2], ["segdeep", "clsdeep"], top_k=2)
    assert preds[0].shape == (32, 32) and len(preds[1]) == 2


def test_non_vit_backbones_are_refused():
    from vptune.model import build_model

    with pytest.raises(ConfigError, match="needs a ViT backbone"):
        build_model("vptune_micro_swin", {"name": "linear"}, 3, pretrained=False, task="segmentation")
