"""Which GPU a jail gets: its UUID (the jail's ``CUDA_VISIBLE_DEVICES``), its
``/dev/nvidia<minor>`` (the one device node the jail shows, beside the shared ones), and the
machine's only GPU read from the driver's files without torch (a jail started before torch's
import; torch's own answer is checked when the job is handed over).

torch is imported inside the two functions that need it: a jail can be started before torch is
imported (:mod:`runner.sandbox.warm`), and this module is imported on that path.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

from runner import environment

DRIVER_GPUS = Path("/proc/driver/nvidia/gpus")
SHARED_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")


def nodes(minor: Optional[int], dev: Path = Path("/dev")) -> List[str]:
    """The device nodes of one GPU (or of every GPU where its minor is unknown)."""
    found = [dev / n for n in SHARED_NODES if (dev / n).exists()]
    if minor is not None and (dev / f"nvidia{minor}").exists():
        found.append(dev / f"nvidia{minor}")
    elif minor is None:
        found += sorted(p for p in dev.glob("nvidia[0-9]*") if p.name[6:].isdigit())
    caps = dev / "nvidia-caps"
    if caps.is_dir():
        found.append(caps)
    return [str(n) for n in found]


def minor_of_bus(pci_bus_id: str, root: Path = DRIVER_GPUS,
                 dev: Path = Path("/dev")) -> Optional[int]:
    """/dev/nvidia<minor> of the GPU at ``pci_bus_id`` (from the driver's /proc files)."""
    try:
        for folder in root.iterdir():
            if folder.name.lower().endswith(pci_bus_id.lower()[-7:]):
                for line in (folder / "information").read_text().splitlines():
                    if line.startswith("Device Minor:"):
                        return int(line.split(":")[1])
    except (OSError, ValueError):
        pass
    numbered = [p for p in dev.glob("nvidia[0-9]*") if p.name[6:].isdigit()]
    return int(numbered[0].name[6:]) if len(numbered) == 1 else None


def minor_of(device) -> Optional[int]:
    """/dev/nvidia<minor> of a torch device, None for the CPU."""
    import torch   # lazy: see the module's docstring

    if device.type != "cuda":
        return None
    props = torch.cuda.get_device_properties(device.index or 0)
    bus = getattr(props, "pci_bus_id", None)
    if bus is None:
        return minor_of_bus("")
    return minor_of_bus(f"{getattr(props, 'pci_domain_id', 0):04x}:{bus:02x}:"
                        f"{getattr(props, 'pci_device_id', 0):02x}.0")


def uuid_of(device: str) -> str:
    """The UUID of a CUDA device ("cuda", "cuda:1"), as ``CUDA_VISIBLE_DEVICES`` takes it."""
    import torch   # lazy: see the module's docstring

    index = torch.device(device).index or 0
    uuid = str(getattr(torch.cuda.get_device_properties(index), "uuid", "") or "")
    if not uuid:
        return str(index)
    return uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"


def only_gpu(root: Path = DRIVER_GPUS) -> Optional[Tuple[str, int]]:
    """(UUID, /dev/nvidia minor) of the machine's GPU, read from the driver's /proc files
    without torch, where there is exactly one and CUDA_VISIBLE_DEVICES does not narrow it."""
    if environment.visible_devices() not in (None, "0"):
        return None
    try:
        folders = [f for f in root.iterdir() if f.is_dir()]
        if len(folders) != 1:
            return None
        info = dict(line.split(":", 1) for line in
                    (folders[0] / "information").read_text().splitlines() if ":" in line)
        uuid, minor = info["GPU UUID"].strip(), int(info["Device Minor"].strip())
    except (OSError, KeyError, ValueError):
        return None
    return (uuid, minor) if uuid.startswith("GPU-") else None
