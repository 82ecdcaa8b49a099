"""One-line, actionable reasons for NVML failures that leave us with no GPU at all."""

from __future__ import annotations

NO_PYNVML = (
    "nvidia-ml-py (the pynvml module) is not installed: pip install nvidia-ml-py, or try --demo"
)
NO_GPU = "NVML found no NVIDIA GPU on this machine; try --demo"

# Keyed by pynvml's class name so this module never has to import pynvml.
_INIT_REASONS = {
    "NVMLError_LibraryNotFound": (
        "NVIDIA driver library not found: is this a GPU machine? Try --demo"
    ),
    "NVMLError_DriverNotLoaded": (
        "NVIDIA driver is not loaded (NVML: Driver Not Loaded): load the kernel module, or try --demo"
    ),
    "NVMLError_NoPermission": (
        "no permission to talk to the NVIDIA driver (NVML: Insufficient Permissions): "
        "check access to /dev/nvidia*"
    ),
    "NVMLError_LibRmVersionMismatch": (
        "NVML library and NVIDIA kernel driver versions differ: reboot or reload the driver "
        "after the driver upgrade"
    ),
    "NVMLError_FunctionNotFound": (
        "this NVIDIA driver is too old for the installed nvidia-ml-py (NVML: Function Not Found)"
    ),
}


def init_failure_reason(exc: BaseException) -> str:
    """Why NVML could not start, in one line the user can act on."""
    reason = _INIT_REASONS.get(type(exc).__name__)
    if reason is not None:
        return reason
    return f"NVML failed to start: {_one_line(exc)}"


def _one_line(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # pynvml's __str__ calls into the library, which may be half-loaded
        text = ""
    text = " ".join(text.split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def error_text(exc: BaseException) -> str:
    """NVML's own words for a per-field failure ("Not Supported", "GPU is lost", ...)."""
    try:
        text = " ".join(str(exc).split())
    except Exception:
        text = ""
    return text or type(exc).__name__
