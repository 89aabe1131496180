"""bfloat16 on a CPU that emulates it: said at a run's start and in a grid's --dry_run, never silently
slow."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch

from medtransfer.runtime import cpu_precision
from medtransfer.runtime.cpu_precision import (
    emulated_half_precision,
    native_bf16,
    planned_device_type,
    warn_if_emulated,
)


@pytest.fixture
def cpu_without_bf16(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)


@pytest.fixture
def cpu_with_amx(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)


def trainer(precision: str, device: str) -> SimpleNamespace:
    return SimpleNamespace(precision=precision, strategy=SimpleNamespace(root_device=torch.device(device)))


@pytest.mark.usefixtures("cpu_without_bf16")
@pytest.mark.parametrize(("precision", "device", "emulated"), [
    ("bf16-mixed", "cpu", True),
    ("bf16-true", "cpu", True),
    ("16-mixed", "cpu", True),  # Lightning runs bf16 autocast for it on a CPU
    ("32-true", "cpu", False),
    ("64-true", "cpu", False),
    ("bf16-mixed", "cuda", False),  # a GPU's bfloat16 is its own
])
def test_which_precisions_a_cpu_without_bf16_emulates(precision, device, emulated):
    assert not native_bf16()
    assert emulated_half_precision(precision, device) is emulated


@pytest.mark.usefixtures("cpu_with_amx")
def test_a_cpu_with_bf16_hardware_is_left_alone():
    assert native_bf16()
    assert not emulated_half_precision("bf16-mixed", "cpu")


def test_a_torch_without_the_probes_is_taken_as_native(monkeypatch):
    # the probes are private: if a release drops them, say nothing rather than warn on every machine
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert native_bf16()


def test_the_planned_device_of_an_accelerator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert planned_device_type("auto") == planned_device_type(None) == "cpu"
    assert planned_device_type("cpu") == "cpu"
    assert planned_device_type("gpu") == "gpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert planned_device_type("auto") == "cuda"


@pytest.mark.usefixtures("cpu_without_bf16")
def test_a_run_in_emulated_bf16_is_warned_with_the_setting_to_change(caplog):
    with caplog.at_level(logging.WARNING, logger=cpu_precision.__name__):
        warn_if_emulated(trainer("bf16-mixed", "cpu"))
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    capability = torch.backends.cpu.get_cpu_capability()
    assert f"trainer.precision bf16-mixed on this CPU ({capability}, no AVX512-BF16 or AMX)" in message
    assert "benchmarks/cpu_precision.py" in message
    assert message.endswith("set trainer.precision: 32-true to train on this machine")


@pytest.mark.parametrize(("fixture", "precision", "device"), [
    ("cpu_without_bf16", "32-true", "cpu"),
    ("cpu_without_bf16", "bf16-mixed", "cuda"),
    ("cpu_with_amx", "bf16-mixed", "cpu"),
])
def test_runs_that_are_not_slow_say_nothing(request, caplog, fixture, precision, device):
    request.getfixturevalue(fixture)
    with caplog.at_level(logging.WARNING, logger=cpu_precision.__name__):
        warn_if_emulated(trainer(precision, device))
    assert not caplog.records
