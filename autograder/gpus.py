"""NVIDIA GPUs as the sandbox sees them: which device files one leased GPU needs, and its identity.

A GPU id given to the grader (``--gpus 0,1``) is the GPU's position in PCI bus order, the order of
``nvidia-smi`` and of CUDA with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (CUDA's default order,
``FASTEST_FIRST``, may differ on a machine with mixed GPUs, so the grader sets ``PCI_BUS_ID``).
The device file of that GPU is ``/dev/nvidia<minor>``, where the minor number comes from the driver
(``/proc/driver/nvidia/gpus/<pci>/information``, "Device Minor"); it usually, but not always, equals
the position. Everything is read from files, never from CUDA, so the grader itself needs no GPU
context; the roots are parameters so tests can point them at a fake tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Device files every CUDA process needs besides its GPU's own ``/dev/nvidiaN`` (when present).
SHARED_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")
#: Read-only views the CUDA driver and NVML read (bound when present).
DRIVER_VIEWS = ("/proc/driver/nvidia", "/sys/bus/pci", "/sys/devices", "/sys/dev/char",
                "/sys/module/nvidia", "/sys/module/nvidia_uvm")


@dataclass(frozen=True)
class GpuInfo:
    """One NVIDIA GPU as the driver describes it.

    Attributes:
        index: position in PCI bus order (the grader's GPU id).
        pci: PCI address, e.g. ``"0000:18:00.0"``.
        minor: device minor number: the GPU's device file is ``/dev/nvidia<minor>``.
        uuid: ``"GPU-…"`` or ``""`` when the driver does not say.
        model: e.g. ``"NVIDIA H200"`` or ``""``.
    """

    index: int
    pci: str
    minor: int
    uuid: str
    model: str


def list_gpus(proc_root: Path = Path("/proc/driver/nvidia")) -> list[GpuInfo]:
    """The GPUs the NVIDIA driver reports, in PCI bus order (``[]`` without the driver)."""
    gpus_dir = Path(proc_root) / "gpus"
    try:
        pcis = sorted(p.name for p in gpus_dir.iterdir())
    except OSError:
        return []
    out = []
    for i, pci in enumerate(pcis):
        fields = {}
        try:
            for line in (gpus_dir / pci / "information").read_text().splitlines():
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
        except OSError:
            pass
        try:
            minor = int(fields.get("Device Minor", i))
        except ValueError:
            minor = i
        out.append(GpuInfo(i, pci, minor, fields.get("GPU UUID", ""), fields.get("Model", "")))
    return out


def gpu_for(index: int, proc_root: Path = Path("/proc/driver/nvidia")) -> GpuInfo:
    """The GPU with grader id ``index``; without driver information, one whose minor is ``index``."""
    for g in list_gpus(proc_root):
        if g.index == index:
            return g
    return GpuInfo(index, "", index, "", "")


def device_nodes(index: int, dev_root: Path = Path("/dev"),
                 proc_root: Path = Path("/proc/driver/nvidia")) -> list[Path]:
    """The device files a sandbox leased GPU ``index`` gets: its own ``nvidia<minor>`` and the shared
    control files, only those that exist. Never another GPU's file.

    Raises:
        FileNotFoundError: the GPU's own device file is missing (no such GPU, or no driver).
    """
    dev_root = Path(dev_root)
    own = dev_root / f"nvidia{gpu_for(index, proc_root).minor}"
    if not own.exists():
        raise FileNotFoundError(f"GPU {index}: {own} does not exist (no NVIDIA driver, or no such GPU)")
    return [own] + [dev_root / n for n in SHARED_NODES if (dev_root / n).exists()]


def visible_devices(index: int, proc_root: Path = Path("/proc/driver/nvidia")) -> str:
    """``CUDA_VISIBLE_DEVICES`` for the sandbox of GPU ``index``.

    Its UUID when the driver gives one: that names exactly this GPU whatever CUDA's numbering, and
    the job sees it as ``cuda:0``. Otherwise ``"0"``: only this GPU's device file exists inside the
    sandbox, so CUDA finds just one device and numbers it 0.
    """
    return gpu_for(index, proc_root).uuid or "0"
