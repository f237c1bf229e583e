"""Segmentation metrics and inference: confusion matrix vs hand-computed values, sliding window, flip / scales."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vptune.seg.evaluate import segment_image, slide_logits, window_starts
from vptune.seg.metrics import ConfusionMatrix

IGN = -100


def test_miou_on_a_hand_computed_matrix():
    # true \ pred     0  1  2
    #   0             3  1  0
    #   1             0  2  2
    #   2             1  0  1
    target = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    pred = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 0, 2])
    cm = ConfusionMatrix(3)
    cm.update(pred, target)
    assert cm.matrix.tolist() == [[3, 1, 0], [0, 2, 2], [1, 0, 1]]
    # IoU_c = TP / (row + col - TP): 3/(4+4-3), 2/(4+3-2), 1/(2+3-1)
    expected = [3 / 5, 2 / 5, 1 / 4]
    out = cm.summary(["a", "b", "c"])
    assert out["per_class_iou"] == pytest.approx(dict(zip("abc", expected)))
    assert out["miou"] == pytest.approx(sum(expected) / 3)
    assert out["pixel_acc"] == pytest.approx(6 / 10)


@pytest.mark.parametrize("ignored_pred", [0, 1, 2])
def test_ignore_pixels_never_count(ignored_pred):
    target = torch.tensor([[0, 1], [IGN, IGN]])
    pred = torch.tensor([[0, 1], [ignored_pred, 2]])
    cm = ConfusionMatrix(3)
    cm.update(pred, target)
    assert int(cm.matrix.sum()) == 2
    out = cm.summary()
    assert out["pixel_acc"] == 1.0 and out["miou"] == 1.0  # class 2 absent from labels and predictions: left out
    assert out["per_class_iou"]["2"] is None


def test_streaming_equals_one_shot_and_rejects_bad_labels():
    torch.manual_seed(0)
    target = torch.randint(0, 4, (6, 8, 8))
    target[0, :2] = IGN
    pred = torch.randint(0, 4, (6, 8, 8))
    whole, parts = ConfusionMatrix(4), ConfusionMatrix(4)
    whole.update(pred, target)
    for p, t in zip(pred, target):
        parts.update(p, t)
    assert torch.equal(whole.matrix, parts.matrix)
    with pytest.raises(ValueError, match="lie in"):
        whole.update(torch.zeros(2), torch.tensor([0, 4]))


@pytest.mark.parametrize(
    ("size", "crop", "stride", "expected"),
    [(32, 32, 21, [0]), (48, 32, 21, [0, 16]), (100, 32, 21, [0, 21, 42, 63, 68]), (20, 32, 21, [0])],
)
def test_window_starts_cover_the_image(size, crop, stride, expected):
    starts = window_starts(size, crop, stride)
    assert starts == expected
    assert starts[-1] + crop >= size


class PixelModel(nn.Module):
    """A per-pixel model (1x1 conv): sliding-window logits must equal running it on the whole image."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-2:] == (16, 16), "windows are always crop-sized"
        return self.conv(x)


@pytest.mark.parametrize("hw", [(16, 16), (40, 23), (10, 30)])
def test_sliding_window_equals_whole_image_for_a_per_pixel_model(hw):
    model = PixelModel()
    image = torch.randn(3, *hw)
    got = slide_logits(model, image, (16, 16), (11, 11), 4)
    with torch.no_grad():
        want = model.conv(image[None])[0]
    assert got.shape == (4, *hw)
    assert torch.allclose(got, want, atol=1e-5)


def test_multiscale_flip_averages_softmax_and_keeps_the_size():
    model = PixelModel()
    image = torch.randn(3, 24, 36)
    single = segment_image(model, image, (16, 16), 4, base_size=24)
    assert torch.allclose(single, model.conv(image[None])[0].detach(), atol=1e-5)  # scale 1, no flip: logits
    multi = segment_image(model, image, (16, 16), 4, base_size=24, scales=(0.5, 1.0, 1.5), flip=True)
    assert multi.shape == (4, 24, 36)
    assert torch.allclose(multi.sum(0), torch.full((24, 36), 6.0), atol=1e-4)  # 3 scales x 2 flips of softmax
    assert not math.isnan(float(multi.sum()))
