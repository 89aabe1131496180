"""Whether a run's precision is one the CPU it trains on runs natively.

bfloat16 is fast on a CPU with AVX512-BF16 or AMX only; elsewhere (AVX2 machines: AMD EPYC before Zen 4,
most Intel desktops, ARM without BF16) PyTorch emulates it, and a ``bf16-mixed`` training step is many times
slower than float32 (``benchmarks/cpu_precision.py``: 15-17x for the MedMNIST v2 ResNet-18 on a 2-core AMD
EPYC). The numbers would still be right, only days late, so a run that asks for it is told at its start and a
grid's ``--dry_run`` says so before it launches anything."""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

HALF_PRECISIONS = ("bf16-mixed", "bf16-true", "16-mixed", "bf16", "16")  # on a CPU, Lightning runs bf16


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX tiles). PyTorch's probes are private
    (``torch.cpu._is_*_supported``): a build without them is taken as native, so nothing is said."""
    names = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    probes = [getattr(torch.cpu, name, None) for name in names]
    if None in probes:
        return True
    return any(probe() for probe in probes)


def emulated_half_precision(precision: object, device_type: str) -> bool:
    """Whether ``precision`` (``trainer.precision`` as given) on ``device_type`` is emulated bfloat16."""
    return device_type == "cpu" and str(precision) in HALF_PRECISIONS and not native_bf16()


def planned_device_type(accelerator: object) -> str:
    """The device kind a Trainer with ``accelerator`` (``trainer.accelerator`` as given) would use here."""
    name = str(accelerator or "auto")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    return "cpu" if name == "cpu" else name


def warn_if_emulated(trainer) -> None:
    """Log ``slow_precision_advice`` when ``trainer`` (built) will run bfloat16 on a CPU that emulates it."""
    if emulated_half_precision(trainer.precision, trainer.strategy.root_device.type):
        log.warning("%s; set trainer.precision: 32-true to train on this machine",
                    slow_precision_advice(trainer.precision))


def slow_precision_advice(precision: object) -> str:
    """Why ``precision`` is slow here (the warning's and the dry run's note's first part)."""
    capability = torch.backends.cpu.get_cpu_capability()
    return (f"trainer.precision {precision} on this CPU ({capability}, no AVX512-BF16 or AMX) runs bfloat16 "
            "in software, many times slower than 32-true (15-17x for a ResNet-18 training step, "
            "benchmarks/cpu_precision.py)")
