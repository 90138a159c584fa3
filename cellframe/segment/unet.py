"""U-Net (Ronneberger et al. 2015) as a small PyTorch module, with checkpoints (DOMAIN.md §4).

Encoder-decoder with skip connections: ``depth`` down levels (two 3x3
convolutions with batch norm and ReLU, then 2x2 max pooling), a bottleneck, and
``depth`` up levels (2x2 transposed convolution, concatenation with the encoder
feature map, two convolutions). Channels double at each level from ``width``.
The head is a 1x1 convolution to ``out_channels`` logits: 1 = foreground,
3 = background / interior / boundary.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cellframe.errors import InvalidChoiceError, InvalidInputError

__all__ = [
    "CheckpointError",
    "UNet",
    "UNetConfig",
    "create_unet",
    "load_unet",
    "pretrained_checkpoint",
    "resolve_device",
    "save_unet",
]

CHECKPOINT_FORMAT = "cellframe-unet"
CHECKPOINT_VERSION = 1

#: Checkpoints shipped in ``cellframe/segment/weights`` (see the README there).
PRETRAINED = {"dsb2018-nuclei": "unet_dsb2018_nuclei.pt"}


class CheckpointError(InvalidInputError):
    """A checkpoint file is unreadable or was made for another architecture."""


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of a :class:`UNet`; stored in every checkpoint."""

    in_channels: int = 1
    out_channels: int = 1
    depth: int = 4
    width: int = 16

    def __post_init__(self) -> None:
        if self.in_channels < 1 or self.width < 1 or self.depth < 1:
            raise InvalidInputError(
                f"U-Net needs in_channels, width and depth >= 1; got {asdict(self)}"
            )
        if self.out_channels not in (1, 3):
            raise InvalidInputError(
                f"out_channels must be 1 (foreground) or 3 (background/interior/boundary), "
                f"not {self.out_channels}"
            )


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net returning logits of shape ``(N, out_channels, H, W)`` for any ``H, W``.

    Inputs whose sides are not multiples of ``2 ** depth`` are padded (reflect)
    and the output cropped back, so every image size works.

    Parameters
    ----------
    config : UNetConfig
        Architecture.
    """

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or UNetConfig()
        c = self.config
        widths = [c.width * 2**i for i in range(c.depth + 1)]
        self.down = nn.ModuleList()
        prev = c.in_channels
        for w in widths[:-1]:
            self.down.append(_double_conv(prev, w))
            prev = w
        self.bottleneck = _double_conv(widths[-2], widths[-1])
        self.upsample = nn.ModuleList()
        self.up = nn.ModuleList()
        for w_hi, w in zip(widths[:0:-1], widths[-2::-1], strict=True):
            self.upsample.append(nn.ConvTranspose2d(w_hi, w, 2, stride=2))
            self.up.append(_double_conv(2 * w, w))
        self.head = nn.Conv2d(widths[0], c.out_channels, 1)

    @property
    def out_channels(self) -> int:
        return self.config.out_channels

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map before the 1x1 head, ``(N, width, H', W')`` on the padded input."""
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        for upsample, block, skip in zip(self.upsample, self.up, reversed(skips), strict=True):
            x = block(torch.cat([upsample(x), skip], dim=1))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise InvalidInputError(
                f"U-Net expects input (N, {self.config.in_channels}, H, W), got {tuple(x.shape)}"
            )
        h, w = x.shape[-2:]
        m = 2**self.config.depth
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        return self.head(self.forward_features(x))[..., :h, :w]


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run on: the one given, else CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pretrained_checkpoint(name: str = "dsb2018-nuclei") -> Path:
    """Path of a checkpoint shipped with cellframe.

    Raises
    ------
    ValueError
        For an unknown name; the message lists the shipped ones.
    """
    if name not in PRETRAINED:
        raise InvalidChoiceError(
            f"unknown pretrained U-Net {name!r}; available: {sorted(PRETRAINED)}"
        )
    return Path(__file__).parent / "weights" / PRETRAINED[name]


def create_unet(
    *,
    in_channels: int = 1,
    out_channels: int = 1,
    depth: int = 4,
    width: int = 16,
    pretrained: bool | str = False,
    device: str | torch.device | None = None,
) -> UNet:
    """Make a U-Net, optionally with the weights of a shipped checkpoint.

    Parameters
    ----------
    in_channels : int, default 1
        Image channels the network reads.
    out_channels : {1, 3}, default 1
        1 = foreground probability; 3 = background / interior / boundary.
    depth : int, default 4
        Number of down (and up) levels (DOMAIN.md §4: 4).
    width : int, default 16
        Channels of the first level; doubled at each level down.
    pretrained : bool or str, default False
        ``True`` or a name of :data:`PRETRAINED` loads a shipped checkpoint; its
        architecture then wins over the other arguments.
    device : str or torch.device, optional
        Where to put the model (default: CUDA if available, else CPU).

    Returns
    -------
    UNet
    """
    if pretrained:
        name = "dsb2018-nuclei" if pretrained is True else str(pretrained)
        return load_unet(pretrained_checkpoint(name), device=device)
    model = UNet(UNetConfig(in_channels, out_channels, depth, width))
    return model.to(resolve_device(device))


def save_unet(model: UNet, path: str | os.PathLike[str], **meta: Any) -> Path:
    """Save a U-Net's architecture, weights and free-form metadata to one file.

    Parameters
    ----------
    model : UNet
    path : str or os.PathLike
        Output file (``.pt``); its folder is created.
    **meta
        JSON-like values stored beside the weights (training data, epochs, ...).
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "config": asdict(model.config),
            "state_dict": state,
            # plain JSON types only, so the file loads with torch.load(weights_only=True)
            "meta": json.loads(json.dumps(meta, default=str)),
        },
        out,
    )
    return out


def load_unet(
    path: str | os.PathLike[str],
    *,
    device: str | torch.device | None = None,
    expect: UNetConfig | dict[str, int] | None = None,
) -> UNet:
    """Load a U-Net saved by :func:`save_unet`, in eval mode.

    Parameters
    ----------
    path : str or os.PathLike
        Checkpoint file.
    device : str or torch.device, optional
        Where to put the model (default: CUDA if available, else CPU).
    expect : UNetConfig or dict, optional
        Architecture the caller needs (e.g. ``{"in_channels": 1}``); a checkpoint
        that differs raises instead of failing later on the first image.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    CheckpointError
        If the file is not a cellframe U-Net checkpoint (another model's
        weights, a damaged file) or its architecture differs from ``expect``.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no checkpoint file at {p}")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise CheckpointError(
            f"cannot read {p} as a PyTorch checkpoint ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        keys = list(ckpt)[:5] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"{p} is not a cellframe U-Net checkpoint (found {keys!r}); it was made for "
            "another architecture. Train a U-Net with cellframe.segment.train_unet or "
            "pass a file written by save_unet"
        )
    config = UNetConfig(**ckpt["config"])
    if expect is not None:
        wanted = asdict(expect) if isinstance(expect, UNetConfig) else dict(expect)
        diff = {k: (getattr(config, k), v) for k, v in wanted.items() if getattr(config, k) != v}
        if diff:
            detail = ", ".join(f"{k}: checkpoint {a}, needed {b}" for k, (a, b) in diff.items())
            raise CheckpointError(f"{p} holds a U-Net with another architecture ({detail})")
    model = UNet(config)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"{p}: the weights do not fit the stored architecture {asdict(config)} ({exc})"
        ) from exc
    model.checkpoint_meta = dict(ckpt.get("meta", {}))  # type: ignore[assignment]
    return model.to(resolve_device(device)).eval()
