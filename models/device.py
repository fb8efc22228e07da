"""Where a stage runs and in what precision: one rule for every stage.

    placement = resolve(config.device, config.dtype)   # "auto", "auto" unless the config says
    model.to(placement.device)
    with placement.autocast():                          # training: float32 weights, bf16 matmuls
        loss = model(x, y)
    model = placement.for_inference(model)              # sampling: the weights themselves in bf16

The rule:
- device "auto" is the GPU when there is one (under torchrun, the local rank's), else the CPU;
  anything else ("cpu", "cuda", "cuda:1", "mps") is taken as written: the config wins.
- dtype "auto" is bfloat16 on a GPU that has it (Ampere and later; MPS has it too) and
  float32 everywhere else (a CPU, or an older GPU, where float16 would need loss scaling).
  "float32" or "bfloat16" force it; bfloat16 on a CPU is allowed and is how the tests
  exercise the reduced-precision path without a GPU.

Training keeps float32 master weights and runs the forward pass under autocast (the
optimizer's small updates would vanish in bf16 weights). Inference has no updates, so the
model is cast whole: half the bytes read per decoded token, no cast kernels per step. The
checkpoint stays float32 either way: it is the source of truth, and the HF export writes it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # torch is imported where it is used: configs import this module's names, and a
    import torch  # curate worker that never runs a model should not pay torch's ~400 MB for them

Device = str  # "auto", "cpu", "cuda", "cuda:N", "mps"
Dtype = Literal["auto", "float32", "bfloat16"]
DEVICE_HELP = "auto: the GPU (the local rank's under torchrun) when there is one, else cpu; or cpu, cuda, cuda:N, mps"
DTYPE_HELP = "auto: bfloat16 on a GPU that has it, else float32; or float32, bfloat16"
DTYPES = ("float32", "bfloat16")  # torch's names for them
# Dense (not 2:4-sparse) bf16 tensor-core peak FLOP/s by GPU name, from NVIDIA's datasheets,
# for MFU. The first key contained in the device's name counts, so variants come first.
PEAK_BF16_FLOPS = {
    "H100 PCIe": 756e12,
    "H100 NVL": 835e12,
    "H100": 989e12,
    "H200": 989e12,
    "GH200": 989e12,
    "H20": 148e12,
    "B200": 2250e12,
    "A100": 312e12,
    "A800": 312e12,
    "L40S": 362e12,
    "L40": 181e12,
    "L4": 121e12,
    "A10G": 70e12,
    "A10": 125e12,
    "RTX 4090": 165e12,
    "RTX 3090": 71e12,
}


@dataclass(frozen=True)
class Placement:
    device: torch.device
    dtype: torch.dtype  # the compute dtype: bfloat16 or float32

    @property
    def reduced(self) -> bool:
        return self.dtype.itemsize < 4  # bfloat16 (or float16): not float32

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The training forward's precision: bf16 matmuls over float32 weights, or nothing."""
        if not self.reduced:
            return contextlib.nullcontext()
        import torch

        return torch.autocast(self.device.type, dtype=self.dtype)

    def for_inference(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model on this device in this dtype, in eval mode (cast in place)."""
        return model.to(device=self.device, dtype=self.dtype).eval()

    def describe(self) -> str:
        import torch

        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else self.device.type
        return f"{self.device} ({name}), {str(self.dtype).removeprefix('torch.')}"


def peak_flops(device: torch.device) -> float | None:
    """The GPU's dense bf16 peak FLOP/s looked up by its name; None on a CPU or an unknown card."""
    if device.type != "cuda":
        return None
    import torch

    return peak_flops_of(torch.cuda.get_device_name(device))


def peak_flops_of(name: str) -> float | None:
    return next((flops for key, flops in PEAK_BF16_FLOPS.items() if key in name), None)


def default_device() -> torch.device:
    """The GPU when there is one (the local rank's under torchrun), else the CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return torch.device("cpu")


def bf16_supported(device: torch.device) -> bool:
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return device.type == "mps"


def resolve(device: Device = "auto", dtype: Dtype = "auto") -> Placement:
    """The placement a config asks for (see the module's docstring for the rule)."""
    import torch

    chosen = default_device() if device == "auto" else torch.device(device)
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"the config asks for device {device!r} but torch sees no CUDA device")
    if chosen.type == "cuda" and chosen.index is None:
        chosen = torch.device("cuda", torch.cuda.current_device())
    if dtype == "auto":
        return Placement(chosen, torch.bfloat16 if bf16_supported(chosen) else torch.float32)
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose auto, float32 or bfloat16")
    return Placement(chosen, getattr(torch, dtype))
