"""The ``seg:`` section of the run configuration (decoder, augmentation and evaluation settings)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SEGMENTATION = "segmentation"
CLASSIFICATION = "classification"
IGNORE_INDEX = 255  # the ignore label in mask files (ADE20K after reducing labels, segfolder masks)
TORCH_IGNORE = -100  # what ignore pixels become in label tensors (cross_entropy's default ignore_index)


class SegConfig(BaseModel):
    """Segmentation settings; read only when the task is ``segmentation``."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    channels: int = Field(256, ge=1, le=4096, description="decoder width (SETR-PUP: 256)")
    num_convs: int = Field(4, ge=1, le=8, description="conv3x3+norm+ReLU stages of the decoder (SETR-PUP: 4)")
    aux_layers: tuple[int, ...] = Field(
        (),
        description="0-based blocks whose output feeds an auxiliary PUP head (2 stages) during training "
        "(SETR-PUP on ViT-L/16: [9, 14, 19]); empty: none",
    )
    aux_weight: float = Field(0.4, ge=0.0, description="weight of each auxiliary head's cross-entropy")
    scale_range: tuple[float, float] = Field(
        (0.5, 2.0),
        description="random resize of the training images: short side = r x the evaluation size (the data's "
        "base size, else the crop), r uniform in this range (SETR: 0.5-2.0)",
    )
    photometric: bool = Field(True, description="random brightness / contrast / saturation / hue on train images")
    eval_mode: Literal["slide", "multiscale"] = Field(
        "slide", description="slide: single scale, sliding window at the crop size; multiscale: + scales and flip"
    )
    eval_scales: tuple[float, ...] = Field(
        (0.5, 0.75, 1.0, 1.25, 1.5, 1.75),
        min_length=1,
        description="image scales of the multi-scale evaluation (the paper's 0.5-1.75)",
    )
    eval_stride: float = Field(2 / 3, gt=0.0, le=1.0, description="sliding-window stride as a fraction of the crop")

    @model_validator(mode="after")
    def _ranges(self) -> SegConfig:
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must be 0 < low <= high, got {self.scale_range}")
        if any(s <= 0 for s in self.eval_scales):
            raise ValueError(f"eval_scales must be > 0, got {self.eval_scales}")
        if any(i < 0 for i in self.aux_layers):
            raise ValueError(f"aux_layers must be block indices >= 0, got {self.aux_layers}")
        return self

    def decoder_meta(self) -> dict[str, object]:
        """What a task artifact records to rebuild the decoder."""
        return {"channels": self.channels, "num_convs": self.num_convs, "aux_layers": list(self.aux_layers)}


class DecoderMeta(BaseModel):
    """The decoder a segmentation artifact was trained with (bounded: task.json may come from elsewhere)."""

    model_config = ConfigDict(extra="forbid")

    channels: int = Field(256, ge=1, le=4096)
    num_convs: int = Field(4, ge=1, le=8)
    aux_layers: list[int] = Field(default_factory=list, max_length=64)


class TaskKindMeta(BaseModel):
    """``task.json`` field ``task``: the task type and, for segmentation, what inference needs."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["classification", "segmentation"] = CLASSIFICATION
    decoder: DecoderMeta = Field(default_factory=DecoderMeta)
    base_size: int | None = Field(None, ge=1, le=16384, description="short side at evaluation scale 1.0")
    eval_stride: float = Field(2 / 3, gt=0.0, le=1.0)
    eval_scales: list[float] = Field(default_factory=lambda: [0.5, 0.75, 1.0, 1.25, 1.5, 1.75], max_length=32)
    ignore_index: int = IGNORE_INDEX
    reduce_labels: bool = False
