"""Where torch computes: one rule for every stage that can use a GPU. The lowest layer:
imports only :mod:`.errors` (and torch inside the functions)."""

from __future__ import annotations

import logging
import re

from .errors import ParameterError

log = logging.getLogger(__name__)


def resolve_device(device: str | None) -> str:
    """The package's one device rule (extraction, dictionary, encoding): ``None`` or ``"cpu"``
    -> the CPU; ``"auto"`` -> ``"cuda"`` when torch sees a GPU, else the CPU; ``"cuda"``,
    ``"cuda:N"`` or ``"mps"`` without that device fall back to the CPU (logged); anything else is
    a ParameterError."""
    import torch

    if device is None or device == "cpu":
        return "cpu"
    if not isinstance(device, str) or not re.fullmatch(r"auto|cuda(:\d+)?|mps", device):
        raise ParameterError("device", f"{device!r}", expected="None, 'cpu', 'auto', 'cuda' or 'cuda:N'")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        log.warning("device %s asked for but CUDA is not available: using the CPU", device)
        return "cpu"
    if device == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        log.warning("device %s asked for but MPS is not available: using the CPU", device)
        return "cpu"
    return device


def resolve_dtype(dtype, device: str):
    """float32 unless a half type is asked for on a GPU (bf16/fp16 on CPU fall back to float32)."""
    import torch

    names = {None: torch.float32, "float32": torch.float32, "fp32": torch.float32,
             "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
             "fp16": torch.float16, "float16": torch.float16, "half": torch.float16}
    if isinstance(dtype, torch.dtype):
        dt = dtype
    elif dtype in names:
        dt = names[dtype]
    else:
        raise ParameterError("dtype", f"{dtype!r}", expected="None, 'float32', 'bf16' or 'fp16'")
    if dt not in (torch.float32, torch.bfloat16, torch.float16):
        raise ParameterError("dtype", f"{dt}", expected="float32, bfloat16 or float16")
    if dt != torch.float32 and not str(device).startswith("cuda"):
        log.warning("dtype %s is for GPUs; computing in float32 on %s", dt, device)
        dt = torch.float32
    return dt
