"""timm ConvNets (ResNet, ConvNeXt) behind the backbone interface: feature maps, no tokens.

Features are maps ``(B, C_s, h, w)``. ResNet: the stem (``conv1``, ``bn1``, ``act1``, ``maxpool``) embeds, its
blocks are the residual blocks of ``layer1``..``layer4`` (each carries its own downsampling). ConvNeXt: the
``stem`` embeds, the blocks are ``stages[s].blocks[j]`` and ``stages[s].downsample`` runs before a stage's first
block (:meth:`Backbone.transition`), then ``norm_pre``. Pooling is timm's own ``forward_head(pre_logits=True)``:
global average pooling (+ ConvNeXt's final norm). Prompts for this family live in pixel space (``vpt-pad``).
"""

from __future__ import annotations

import torch
from timm.models.convnext import ConvNeXt
from timm.models.resnet import ResNet
from torch import nn

from ..errors import ConfigError
from .interface import Backbone, BackboneInfo, Stage, TokenLayout, register_family

POOLED_OUTPUTS = ("global-pool", "image-pool")  # without tokens both mean the global average pool


class TimmConvNet(Backbone):
    """Shared layout code; subclasses name the stages and the stem."""

    family = "convnet"

    def stage_blocks(self) -> list[list[nn.Module]]:
        """The blocks of each stage, in forward order."""
        raise NotImplementedError

    def _where(self) -> list[tuple[int, int]]:
        return [(s, j) for s, blocks in enumerate(self.stage_blocks()) for j in range(len(blocks))]

    def describe(self) -> BackboneInfo:
        conv = self.input_projection()
        stages = self.stage_blocks()
        return BackboneInfo(
            name=self.name,
            embed_dim=int(self.module.num_features),
            depth=sum(len(blocks) for blocks in stages),
            num_prefix_tokens=0,
            patch_size=(1, 1),
            in_chans=int(conv.in_channels),
            num_patches=0,
            num_params=sum(p.numel() for p in self.module.parameters()),
            input_size=self.input_size(),
            family=self.family,
        )

    def stages(self) -> list[Stage]:
        out, start = [], 0
        for blocks in self.stage_blocks():
            width = next(m.out_channels for m in reversed(list(blocks[-1].modules())) if isinstance(m, nn.Conv2d))
            out.append(Stage(start, start + len(blocks), TokenLayout(0, (0, 0), int(width), tokens=False)))
            start += len(blocks)
        return out

    def block(self, index: int) -> nn.Module:
        s, j = self._where()[index]
        return self.stage_blocks()[s][j]

    def default_output(self) -> str:
        return "global-pool"

    def pool(self, x: torch.Tensor, output: str, num_prompts: int = 0) -> torch.Tensor:
        if output not in POOLED_OUTPUTS:
            raise ConfigError(f"method.output: '{output}' needs tokens; a ConvNet pools globally (use auto)")
        return self.module.forward_head(x, pre_logits=True)  # (B, C, h, w) -> (B, C)

    def dense(self, x: torch.Tensor, num_prompts: int = 0) -> torch.Tensor:
        return x

    def input_size(self) -> tuple[int, int] | None:
        """The size timm's data config gives (the preprocessing resizes to it; pad prompts frame it)."""
        size = self.module.pretrained_cfg.get("input_size", (3, 224, 224))
        return int(size[-2]), int(size[-1])

    def set_input_projection(self, module: nn.Module) -> None:
        raise ConfigError(f"backbone family '{self.family}' does not swap its first convolution yet")


@register_family
class TimmResNet(TimmConvNet):
    """timm ``ResNet`` (resnet*, resnext*, wide_resnet*...): stem, then the residual blocks of layer1..layer4."""

    @classmethod
    def accepts(cls, module: nn.Module) -> bool:
        return isinstance(module, ResNet)

    def stage_blocks(self) -> list[list[nn.Module]]:
        return [list(getattr(self.module, f"layer{i}")) for i in range(1, 5)]

    def embed(self, images: torch.Tensor, insert: torch.Tensor | None = None) -> torch.Tensor:
        if insert is not None:
            raise ValueError("a ConvNet takes no inserted tokens")
        net = self.module
        return net.maxpool(net.act1(net.bn1(net.conv1(images))))  # (B, C0, H/4, W/4)

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def final_norms(self) -> list[nn.Module]:
        return []

    def input_projection(self) -> nn.Module:
        conv1 = self.module.conv1
        return conv1 if isinstance(conv1, nn.Conv2d) else conv1[0]  # deep stems: the first conv


@register_family
class TimmConvNeXt(TimmConvNet):
    """timm ``ConvNeXt``: stem, four stages (downsample + blocks), ``norm_pre``, head norm after pooling."""

    @classmethod
    def accepts(cls, module: nn.Module) -> bool:
        return isinstance(module, ConvNeXt)

    def stage_blocks(self) -> list[list[nn.Module]]:
        return [list(stage.blocks) for stage in self.module.stages]

    def transition(self, index: int) -> nn.Module | None:
        s, j = self._where()[index]
        down = self.module.stages[s].downsample
        return None if j or isinstance(down, nn.Identity) else down

    def enter_stage(self, x: torch.Tensor, stage: int) -> torch.Tensor:
        return self.module.stages[stage].downsample(x)  # (B, C_s-1, h, w) -> (B, C_s, h/2, w/2)

    def embed(self, images: torch.Tensor, insert: torch.Tensor | None = None) -> torch.Tensor:
        if insert is not None:
            raise ValueError("a ConvNet takes no inserted tokens")
        return self.module.stem(images)  # (B, C0, H/4, W/4)

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        return self.module.norm_pre(x)

    def final_norms(self) -> list[nn.Module]:
        norm = getattr(self.module.head, "norm", None)
        return [norm] if isinstance(norm, nn.Module) and any(True for _ in norm.parameters()) else []

    def input_projection(self) -> nn.Module:
        return self.module.stem[0]
