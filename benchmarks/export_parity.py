"""A real-size export: a ResNet-50 (or any timm architecture) classifier at 224 px written by ``medtransfer
export``'s code path as ONNX and TorchScript, its outputs compared with PyTorch's on a batch of uint8 images,
and its CPU inference rate under onnxruntime and TorchScript against the PyTorch model measured in the same
run. Prints each number and the ratios.

    python benchmarks/export_parity.py                       # resnet50, 224 px: about 2.5 minutes on 2 cores
    python benchmarks/export_parity.py --arch vit_small_patch16_224 --batch 4 --seconds 10

Weights are randomly initialised (nothing is downloaded): speed and parity do not depend on their values.
Target: every exported model's probabilities within 1e-4 of PyTorch's (seeded inputs: the same difference
every run). The rates have no target: each of the ``--repeats`` repeats times the three runtimes one after the
other (in reverse order every other repeat, one untimed call first), and each runtime's rate and its ratio to
PyTorch's in the same repeat are shown as median [min, max], in images/s and in images per CPU-second of the
process (all its threads: what inference costs, whatever else the cores run).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnxruntime
import torch
from verdicts import Verdicts, alternating, load_average, ratios, spread

from medtransfer.export.model import DeployedModel
from medtransfer.lightning_modules import Finetune
from medtransfer.task import Task
from medtransfer.verbs.export import export_onnx, export_torchscript, quiet_tracing, random_images

TOLERANCE = 1e-4


class Rate(NamedTuple):
    per_s: float  # wall clock
    per_cpu_s: float  # process CPU time, all threads


def rate(run, batch: torch.Tensor, seconds: float) -> Rate:
    """Images per second and per CPU-second of ``run(batch)`` for about ``seconds``, after an untimed call."""
    run(batch)
    done, started, cpu_started = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds:
        run(batch)
        done += len(batch)
    return Rate(done / (time.perf_counter() - started), done / (time.process_time() - cpu_started))


def measure_rates(runtimes: dict, batch: torch.Tensor, args) -> dict[str, list[Rate]]:
    rates: dict[str, list[Rate]] = {name: [] for name in runtimes}
    measures = {name: (lambda run=run: rate(run, batch, args.seconds)) for name, run in runtimes.items()}
    with torch.no_grad():
        for repeat, name, measured in alternating(args.repeats, measures):
            rates[name].append(measured)
            print(f"  repeat {repeat + 1} {name:>11}: {measured.per_s:6.2f} images/s, "
                  f"{measured.per_cpu_s:6.2f} per CPU-second", flush=True)
    return rates


def show_rates(rates: dict[str, list[Rate]]) -> None:
    baseline = rates["pytorch"]
    for name, values in rates.items():
        per_s, per_cpu_s = [r.per_s for r in values], [r.per_cpu_s for r in values]
        print(f"{name:>12}: images/s {spread(per_s, '.2f')}, per CPU-second {spread(per_cpu_s, '.2f')}")
        if name != "pytorch":
            print(f"{'':>12}  / pytorch: {spread(ratios(per_s, [r.per_s for r in baseline]), '.2f')} (wall), "
                  f"{spread(ratios(per_cpu_s, [r.per_cpu_s for r in baseline]), '.2f')} (CPU)")


def exported(deployed: DeployedModel, example: torch.Tensor, folder: Path) -> dict:
    """The model run by each runtime (PyTorch's own, onnxruntime on the ONNX export, the TorchScript file)."""
    onnx_path, script_path = folder / "model.onnx", folder / "model.pt"
    started = time.perf_counter()
    export_onnx(deployed, example, onnx_path, 18, "probabilities")
    onnx_seconds = time.perf_counter() - started
    started = time.perf_counter()
    export_torchscript(deployed, example, script_path)
    print(f"export: onnx {onnx_seconds:.1f} s ({onnx_path.stat().st_size / 2**20:.0f} MB), torchscript "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    with quiet_tracing():
        scripted = torch.jit.load(str(script_path)).eval()
    return {"pytorch": lambda b: deployed(b),
            "onnxruntime": lambda b: session.run(None, {"image": b.numpy()})[0],
            "torchscript": lambda b: scripted(b)}


def judge_parity(runtimes: dict, batch: torch.Tensor) -> Verdicts:
    """The largest probability difference of each export from PyTorch's, on one seeded batch."""
    verdicts = Verdicts()
    with torch.no_grad():
        expected = np.asarray(runtimes["pytorch"](batch))
        for name in ("onnxruntime", "torchscript"):
            difference = float(np.abs(np.asarray(runtimes[name](batch)) - expected).max())
            verdicts.judge(f"max |{name} - pytorch| probability", [difference], "<=", TOLERANCE,
                           "one seeded batch", ".2e")
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=6.0, help="timing per runtime and repeat")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of the three runtimes, alternating")
    args = parser.parse_args()
    print(f"export parity: {args.arch} at {args.size} px, batch {args.batch}, {torch.get_num_threads()} "
          f"torch threads; {args.repeats} repeats of {args.seconds:g} s per runtime; load average "
          f"{load_average()}")
    torch.manual_seed(0)
    model = Finetune(backbone=args.arch, task=Task("multiclass", ("a", "b", "c", "d", "e")))
    deployed = DeployedModel(model).eval()
    with tempfile.TemporaryDirectory() as folder:
        runtimes = exported(deployed, random_images(2, args.size, seed=0), Path(folder))
        batch = random_images(args.batch, args.size, seed=1)
        verdicts = judge_parity(runtimes, batch)
        rates = measure_rates(runtimes, batch, args)
    show_rates(rates)
    verdicts.show()


if __name__ == "__main__":
    main()
