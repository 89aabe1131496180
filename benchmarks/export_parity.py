"""A real-size export: a ResNet-50 (or any timm architecture) classifier at 224 px written by ``medtransfer
export``'s code path as ONNX and TorchScript, its outputs compared with PyTorch's on a batch of uint8 images,
and its CPU inference rate under onnxruntime and TorchScript against the PyTorch model measured in the same
run (alternating, warm-up untimed). Prints each number and the ratios.

    python benchmarks/export_parity.py                       # resnet50, 224 px, a few minutes on 2 cores
    python benchmarks/export_parity.py --arch vit_small_patch16_224 --batch 4 --seconds 10

Weights are randomly initialised (nothing is downloaded): speed and parity do not depend on their values.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from medtransfer.export.model import DeployedModel
from medtransfer.lightning_modules import Finetune
from medtransfer.task import Task
from medtransfer.verbs.export import export_onnx, export_torchscript, quiet_tracing, random_images


def rate(run, batch: torch.Tensor, seconds: float) -> float:
    """Images per second of ``run(batch)`` over about ``seconds``, after one untimed call."""
    run(batch)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        run(batch)
        done += len(batch)
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15.0, help="timing per runtime and round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of the three runtimes")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = Finetune(backbone=args.arch, task=Task("multiclass", ("a", "b", "c", "d", "e")))
    deployed = DeployedModel(model).eval()
    example = random_images(2, args.size, seed=0)
    batch = random_images(args.batch, args.size, seed=1)
    with tempfile.TemporaryDirectory() as folder:
        onnx_path, script_path = Path(folder) / "model.onnx", Path(folder) / "model.pt"
        started = time.perf_counter()
        export_onnx(deployed, example, onnx_path, 18, "probabilities")
        onnx_seconds = time.perf_counter() - started
        started = time.perf_counter()
        export_torchscript(deployed, example, script_path)
        script_seconds = time.perf_counter() - started
        session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        with quiet_tracing():
            scripted = torch.jit.load(str(script_path)).eval()
        size_mb = onnx_path.stat().st_size / 2**20

        with torch.no_grad():
            expected = deployed(batch).numpy()
            onnx_diff = float(np.abs(session.run(None, {"image": batch.numpy()})[0] - expected).max())
            script_diff = float(np.abs(scripted(batch).numpy() - expected).max())

        runtimes = {
            "pytorch": lambda b: deployed(b),
            "onnxruntime": lambda b: session.run(None, {"image": b.numpy()}),
            "torchscript": lambda b: scripted(b),
        }
        rates: dict[str, list[float]] = {name: [] for name in runtimes}
        with torch.no_grad():
            for _ in range(args.rounds):
                for name, run in runtimes.items():
                    rates[name].append(rate(run, batch, args.seconds))

    print(f"{args.arch} at {args.size} px, batch {args.batch}, {torch.get_num_threads()} torch threads")
    print(f"export: onnx {onnx_seconds:.1f} s ({size_mb:.0f} MB), torchscript {script_seconds:.1f} s")
    print(f"max |exported - pytorch| probability: onnxruntime {onnx_diff:.2e}, torchscript {script_diff:.2e} "
          f"(tolerance 1e-4: {'met' if max(onnx_diff, script_diff) <= 1e-4 else 'MISSED'})")
    baseline = float(np.median(rates["pytorch"]))
    for name, values in rates.items():
        median = float(np.median(values))
        print(f"{name:>12}: {median:7.2f} images/s  ({median / baseline:.2f}x pytorch)")


if __name__ == "__main__":
    main()
