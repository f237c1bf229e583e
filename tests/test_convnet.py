"""ConvNet families (timm ResNet, ConvNeXt) and the pad prompt (vpt-pad) against plain references."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from vptune.errors import ConfigError
from vptune.model import build_model

MICROS = ["vptune_micro_resnet", "vptune_micro_convnext"]  # 32x32 inputs, random init


def micro(name: str, method: dict, classes: int = 3):
    torch.manual_seed(0)
    return build_model(name, method, classes, pretrained=False)


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def raw_copy(model, name):
    raw = timm.create_model(name, pretrained=False, num_classes=0).eval()
    raw.load_state_dict(model.backbone.state_dict())
    return raw


@pytest.mark.parametrize("name", MICROS)
@pytest.mark.parametrize("method", [{"name": "linear"}, {"name": "vpt-pad", "prompt_length": 0}])
def test_frozen_forward_equals_timm(name, method, images):
    model = micro(name, method).eval()
    with torch.no_grad():
        assert torch.equal(model.forward_features(images), raw_copy(model, name)(images))


def pad_reference(model, images: torch.Tensor) -> torch.Tensor:
    """The image framed by the four prompt strips, built pixel by pixel from the definition."""
    m, p = model.method, model.method.length
    b, c, s, _ = images.shape
    out = torch.empty(b, c, s + 2 * p, s + 2 * p)
    for i in range(s + 2 * p):
        for j in range(s + 2 * p):
            if i < p:
                out[:, :, i, j] = m.top[:, i, j]
            elif i >= s + p:
                out[:, :, i, j] = m.bottom[:, i - s - p, j]
            elif j < p:
                out[:, :, i, j] = m.left[:, i - p, j]
            elif j >= s + p:
                out[:, :, i, j] = m.right[:, i - p, j - s - p]
            else:
                out[:, :, i, j] = images[:, :, i - p, j - p]
    return out


@pytest.mark.parametrize("name", MICROS)
def test_pad_prompt_frames_the_image(name, images):
    model = micro(name, {"name": "vpt-pad", "prompt_length": 3}).eval()
    framed = pad_reference(model, images)
    assert framed.shape == (2, 3, 38, 38)
    with torch.no_grad():
        assert torch.equal(model.method.frame(images), framed)
        assert torch.equal(model.forward_features(images), raw_copy(model, name)(framed))


def test_pad_prompt_init_is_normalised_uniform():
    strips = micro("vptune_micro_resnet", {"name": "vpt-pad", "prompt_length": 9}).method
    pixels = torch.cat(
        [strips.top.flatten(1), strips.bottom.flatten(1), strips.left.flatten(1), strips.right.flatten(1)], 1
    )
    raw = pixels * torch.tensor(IMAGENET_DEFAULT_STD)[:, None] + torch.tensor(IMAGENET_DEFAULT_MEAN)[:, None]
    assert raw.min() >= 0 and raw.max() <= 1 and 0.4 < raw.mean() < 0.6


@pytest.mark.parametrize("p,size,count", [(5, 224, 13_740), (1, 32, 3 * 1 * 34 * 2 + 3 * 32 * 1 * 2), (0, 32, 0)])
def test_pad_counts(p, size, count):
    name = "resnet18" if size == 224 else "vptune_micro_resnet"
    assert micro(name, {"name": "vpt-pad", "prompt_length": p}).parameter_summary()["method_params"] == count


@pytest.mark.parametrize("name", MICROS)
def test_pad_gradients_reach_the_frame_and_head_only(name, images):
    model = micro(name, {"name": "vpt-pad", "prompt_length": 2})
    model.train()
    assert not model.backbone.training
    model(images).sum().backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads == {"method.top", "method.bottom", "method.left", "method.right", "head.weight", "head.bias"}


def trained(model) -> set[str]:
    return {
        n.removeprefix("backbone.").rsplit(".", 1)[0]
        for n, p in model.named_parameters()
        if p.requires_grad and n.startswith("backbone.")
    }


@pytest.mark.parametrize(
    "name,k,prefixes",
    [
        ("vptune_micro_resnet", 1, ("layer4.0",)),
        ("vptune_micro_resnet", 2, ("layer3.0", "layer4.0")),
        ("vptune_micro_convnext", 1, ("stages.3.blocks.0", "head.norm")),
        ("vptune_micro_convnext", 2, ("stages.2.blocks.1", "stages.3.downsample", "stages.3.blocks.0", "head.norm")),
    ],
)
def test_partial_k(name, k, prefixes):
    names = trained(micro(name, {"name": "partial", "k": k}))
    assert names and all(n.startswith(prefixes) for n in names)
    assert all(any(n.startswith(pre) for n in names) for pre in prefixes)


@pytest.mark.parametrize("name", MICROS)
def test_bias_and_full_counts(name):
    raw = timm.create_model(name, pretrained=False, num_classes=0)
    biases = sum(m.bias.numel() for m in raw.modules() if isinstance(getattr(m, "bias", None), torch.nn.Parameter))
    assert micro(name, {"name": "bias"}).parameter_summary()["method_params"] == biases
    assert micro(name, {"name": "full"}).parameter_summary()["method_params"] == sum(
        p.numel() for p in raw.parameters()
    )


@pytest.mark.parametrize(
    "name,method,message",
    [
        ("vptune_micro_resnet", {"name": "vpt-deep"}, "does not support the convnet backbone"),
        ("vptune_micro_convnext", {"name": "adapter"}, "does not support the convnet backbone"),
        ("vptune_micro_resnet", {"name": "linear", "output": "cls"}, "class token"),
        ("vptune_micro_vit", {"name": "vpt-pad"}, "does not support the vit backbone"),
    ],
)
def test_unsupported_methods_are_refused(name, method, message):
    with pytest.raises(ConfigError, match=message):
        micro(name, method)
