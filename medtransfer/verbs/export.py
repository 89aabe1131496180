"""``medtransfer export``: write a trained checkpoint as an ONNX or TorchScript model taking uint8 images,
check that it computes what the checkpoint computes, and write its model card beside it."""

from __future__ import annotations

import argparse
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from ..export.card import build_card, card_paths, write_card
from ..export.model import OUTPUTS, DeployedModel, ExportError, load_trained_model
from ..runtime.checkpoints import CHECKPOINT_DATA_KEY
from ..runtime.lightning_compat import lightning_tracing
from ..utils.atomic import atomic_path, check_writable
from ..utils.flags import VerbParser

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
TOLERANCE = 1e-4  # largest |exported - checkpoint| accepted on the verification batch
VERIFY_BATCH = 3  # another batch size than the traced example's, to exercise the dynamic batch axis
INPUT_NAME = "image"


def yes_or_no(value: str) -> bool:
    """A true/false flag that refuses a word it cannot read (``--verify ture`` switched verification off)."""
    words = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
    if value.strip().lower() not in words:
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return words[value.strip().lower()]


def build_parser() -> argparse.ArgumentParser:
    parser = VerbParser(
        prog="medtransfer export",
        description="Export a trained model (a `medtransfer fit` checkpoint) as ONNX or TorchScript. The "
                    "model takes uint8 RGB images B x 3 x S x S (S: the training image size) and normalises "
                    "them inside; it returns B x C probabilities (or logits). A model card (JSON, Markdown) "
                    "is written beside it. Takes no fit options: everything comes from the checkpoint (and "
                    "the run's results.json next to it, for the card's metrics).")
    parser.add_argument("--ckpt_path", required=True, help="the checkpoint to export")
    parser.add_argument("--format", choices=sorted(FORMATS), default="onnx",
                        help="onnx (default) or torchscript")
    parser.add_argument("--output", default=None,
                        help="the exported file (default: the checkpoint's name with .onnx / .pt, beside it)")
    parser.add_argument("--output_kind", choices=OUTPUTS, default="probabilities",
                        help="what the model returns: probabilities (default) or logits")
    parser.add_argument("--image_size", type=int, default=None,
                        help="input side S (default: the training size the checkpoint records)")
    parser.add_argument("--seed", type=int, default=0,
                        help="the run's seed_everything: rebuilds randomly initialised frozen backbones "
                             "(default 0)")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset version (default 18)")
    parser.add_argument("--verify", type=yes_or_no, default=True,
                        help="compare the exported model with the checkpoint on a random batch "
                             "(default true)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ckpt_path = Path(args.ckpt_path).resolve()
    model, checkpoint = load_trained_model(ckpt_path, args.seed)
    deployed = DeployedModel(model, args.output_kind).eval()
    data = dict(checkpoint.get(CHECKPOINT_DATA_KEY) or {})
    if args.image_size is not None:
        data["image_size"] = args.image_size
    if data.get("image_size") is None:
        raise ExportError(f"{ckpt_path} does not record the image size its model was trained at (written "
                          "by an older medtransfer): give --image_size (results.json of the run: "
                          "data.image_size)")
    output = Path(args.output) if args.output else ckpt_path.with_suffix(FORMATS[args.format])
    for path in (output, *card_paths(output)):  # refused before the export's work, not after
        check_writable(path)
    example = random_images(2, data["image_size"], seed=0)
    output_name = args.output_kind
    if args.format == "onnx":
        exporter = export_onnx(deployed, example, output, args.opset, output_name)
    else:
        exporter = export_torchscript(deployed, example, output)
    verification = "not checked (--verify false)"
    if args.verify:
        verification = verify(deployed, output, args.format, data["image_size"])
    export = {"format": args.format, "file": str(output), "exporter": exporter, "input_name": INPUT_NAME,
              "output_name": output_name, "verification": verification}
    json_card, markdown_card = write_card(build_card(deployed, checkpoint, ckpt_path, export, data, output),
                                          output)
    print(f"exported: {output}\nmodel card: {json_card}, {markdown_card}\nverified: {verification}")
    return 0


def random_images(batch: int, size: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=generator)


def export_onnx(deployed: DeployedModel, example: torch.Tensor, output: Path, opset: int,
                output_name: str) -> str:
    """ONNX through torch's tracing exporter, with a dynamic batch axis: seconds, where the torch.export-based
    exporter took 25 s for a tiny ResNet on a CPU."""
    try:
        import onnx  # noqa: F401 - torch's exporter needs it
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install 'medtransfer[export]'") from None
    with quiet_tracing(), atomic_path(output) as tmp:
        torch.onnx.export(deployed, (example,), str(tmp), input_names=[INPUT_NAME],
                          output_names=[output_name],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, output_name: {0: "batch"}},
                          opset_version=opset, dynamo=False)
    return f"torch.onnx (tracing) {torch.__version__}, opset {opset}"


def export_torchscript(deployed: DeployedModel, example: torch.Tensor, output: Path) -> str:
    """TorchScript by tracing (torch marks ``torch.jit`` deprecated, but it is the format's only writer)."""
    with quiet_tracing(), torch.no_grad(), lightning_tracing(deployed.model):
        traced = torch.jit.trace(deployed, example, check_trace=False)
    with quiet_tracing(), atomic_path(output) as tmp, tmp.open("wb") as handle:
        torch.jit.save(traced, handle)  # through Python's file: a refused write is an OSError, named
    return f"torch.jit.trace {torch.__version__}"


@contextmanager
def quiet_tracing():
    """Without the tracer's warnings about Python values it fixes (the input size, fixed by design) and
    torch's deprecation notices for the tracing exporters this module chose on purpose."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*torch.jit.* is deprecated.*")
        yield


def verify(deployed: DeployedModel, output: Path, form: str, size: int) -> str:
    """The largest difference between the exported model and the checkpoint's on a random batch; an export
    that differs by more than ``TOLERANCE`` is an error (and removed)."""
    images = random_images(VERIFY_BATCH, size, seed=1)
    with torch.no_grad():
        expected = deployed(images).numpy()
    if form == "onnx":
        try:
            import onnxruntime
        except ImportError:
            return "not checked: onnxruntime is not installed (pip install onnxruntime)"
        session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
        got = session.run(None, {INPUT_NAME: images.numpy()})[0]
        runtime = f"onnxruntime {onnxruntime.__version__}"
    else:
        with torch.no_grad(), quiet_tracing():
            got = torch.jit.load(str(output)).eval()(images).numpy()
        runtime = "torch.jit.load"
    difference = float(np.abs(got - expected).max())
    if not difference <= TOLERANCE:
        output.unlink(missing_ok=True)
        raise ExportError(f"the exported model differs from the checkpoint by up to {difference:.2e} (> "
                          f"{TOLERANCE}) on a batch of {VERIFY_BATCH} images with {runtime}; nothing written")
    return f"max |exported - checkpoint| = {difference:.2e} on {VERIFY_BATCH} random uint8 images ({runtime})"
