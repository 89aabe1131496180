"""The model card of an export (JSON for tools, Markdown for people): what the model predicts, from what
input, how well (the test metrics and confidence intervals of the run that wrote the checkpoint, where its
results.json is found), from which weights under which licence, and which checkpoint (sha256) it is."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__
from ..backbones.registry import get_entry
from ..backbones.timm_weights import find_timm_weights
from ..utils.atomic import atomic_path
from ..utils.hashing import file_digest

INTENDED_USE = ("Research use. Not a medical device and not validated for clinical decisions; check the "
                "metrics below on data from your own site before relying on it.")
PATHS_NOTE = ("relative to this card; a file or folder outside the card's folder and the folder above it is "
              "given by its name only")
PATH_SECTIONS = ("checkpoint", "export", "model", "data", "evaluation")  # the parts that can hold paths
EVAL_TRANSFORM = {
    "none": "resize to image_size x image_size (OpenCV INTER_AREA)",
    "fundus": "crop the black border around the retina, then resize to image_size x image_size "
              "(OpenCV INTER_AREA)",
}


def weights_licence(name: str) -> dict:
    """What the registry (or timm's pretrained config) says about a backbone's pretrained weights."""
    entry = get_entry(name)
    if entry is not None:
        return {"source": "medtransfer registry", "method": entry.method, "licence": entry.licence,
                "homepage": entry.homepage, "url": entry.url}
    try:
        timm_weights = find_timm_weights(name) if "." in name or name.startswith("hf-hub:") else None
    except Exception:  # a Hub name whose config is not cached: the licence stays unknown, said so
        timm_weights = None
    if timm_weights is not None:
        cfg = timm_weights.pretrained_cfg
        return {"source": "timm pretrained config", "licence": cfg.get("license") or "unknown",
                "url": timm_weights.url or timm_weights.hub_id}
    return {"source": "none", "licence": "unknown: random initialisation or a local weights file; state the "
                                         "licence of the weights you started from"}


def find_results(ckpt_path: Path) -> Path | None:
    """results.json of the run that wrote the checkpoint: in its folder or the folder above
    (``<run>/checkpoints/<file>.ckpt``)."""
    for folder in (ckpt_path.parent, ckpt_path.parent.parent):
        if (folder / "results.json").is_file():
            return folder / "results.json"
    return None


def run_metrics(ckpt_path: Path) -> dict | None:
    """The test metrics with their confidence intervals from the run's results.json, and whether they were
    measured on this very checkpoint."""
    path = find_results(ckpt_path)
    if path is None:
        return None
    results = json.loads(path.read_text())
    test = results.get("metrics", {}).get("test")
    if not test:
        return None
    bounds = results.get("intervals", {}).get("test", {})
    measured_on = results.get("checkpoint")
    same = measured_on is not None and Path(measured_on).resolve() == ckpt_path.resolve()
    return {
        "results": str(path),
        "split": "test",
        "measured_on_checkpoint": measured_on,
        "measured_on_this_checkpoint": same,
        "metrics": {name: {"value": value, **{k: v for k, v in bounds.get("metrics", {}).get(name, {}).items()
                                             if k in ("low", "high")}}
                    for name, value in test.items()},
        "interval_method": bounds.get("method"),
        "confidence": bounds.get("confidence"),
        "resamples": bounds.get("resamples"),
        "samples": bounds.get("samples"),
        "data": results.get("data"),
    }


def build_card(deployed, checkpoint: dict, ckpt_path: Path, export: dict, data: dict, output: Path) -> dict:
    """The card's content (``export``: format, file, exporter, input/output names, verification) for the
    model exported to ``output``, beside which the card is written: it holds no absolute path of this
    machine (``portable``)."""
    card = _card_content(deployed, checkpoint, ckpt_path, export, data)
    return {**card, **portable({key: card[key] for key in PATH_SECTIONS}, output.parent), "paths": PATHS_NOTE}


def portable(value, folder: Path):
    """``value`` (nested dicts and lists) with each absolute path in it made relative to ``folder``
    (``portable_path``)."""
    if isinstance(value, dict):
        return {key: portable(item, folder) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(item, folder) for item in value]
    if isinstance(value, str) and (os.path.isabs(value) or value.startswith("~")):
        return portable_path(value, folder)
    return value


def portable_path(path: str, folder: Path) -> str:
    """``path`` relative to ``folder`` where it lies inside ``folder`` or the folder above (the run folder of
    a card beside its checkpoint: ``best.ckpt``, ``../results.json``); elsewhere its name alone, which says
    which file it was without saying where a machine keeps it."""
    target = Path(path).expanduser().resolve()
    base = folder.expanduser().resolve()
    for root in (base, base.parent):
        if root.parent != root and target.is_relative_to(root):
            return Path(os.path.relpath(target, base)).as_posix()
    return target.name


def _card_content(deployed, checkpoint: dict, ckpt_path: Path, export: dict, data: dict) -> dict:
    """The card with the paths as this machine has them."""
    model = deployed.model
    task = deployed.task
    preparation = EVAL_TRANSFORM.get(data.get("augmentation"), EVAL_TRANSFORM["none"])
    backbones = []
    for description in model.backbone_descriptions():
        backbones.append({**description, "weights": weights_licence(description["name"])})
    hparams = {k: v for k, v in (checkpoint.get("hyper_parameters") or {}).items()
               if not k.startswith("_") and k != "task"}
    return {
        "medtransfer_version": __version__,
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "intended_use": INTENDED_USE,
        "checkpoint": {"path": str(ckpt_path), "sha256": file_digest(ckpt_path),
                       "epoch": checkpoint.get("epoch"), "global_step": checkpoint.get("global_step")},
        "export": export,
        "task": task.to_dict(),
        "input": {
            "name": export["input_name"], "dtype": "uint8", "shape": ["batch", 3, data["image_size"],
                                                                     data["image_size"]],
            "layout": "RGB, channels first, values 0-255 (grey images repeated to 3 channels)",
            "preprocessing_before_the_model": preparation,
            "normalisation": "inside the model (each backbone's mean and std, below)",
        },
        "output": {"name": export["output_name"], "kind": deployed.output,
                   "columns": deployed.output_names(),
                   "meaning": _output_meaning(deployed)},
        "model": {"class": type(model).__name__, "hyperparameters": hparams, "backbones": backbones},
        "data": data,
        "evaluation": run_metrics(ckpt_path),
    }


def _output_meaning(deployed) -> str:
    kind = deployed.task.kind
    if deployed.output == "logits":
        return {"binary": "logit of the positive class (sigmoid: its probability)",
                "multiclass": "logits (softmax: class probabilities)",
                "multilabel": "one logit per label (sigmoid: each label's probability)"}[kind]
    return {"binary": "probabilities of both classes (sum to 1)",
            "multiclass": "class probabilities (softmax, sum to 1)",
            "multilabel": "independent probability per label (sigmoid)"}[kind]


def card_paths(output: Path) -> tuple[Path, Path]:
    """``<output>.card.json`` and ``<output>.card.md``, beside the exported model."""
    return output.with_name(output.name + ".card.json"), output.with_name(output.name + ".card.md")


def write_card(card: dict, output: Path) -> tuple[Path, Path]:
    """The card as JSON and Markdown (``card_paths``)."""
    json_path, markdown_path = card_paths(output)
    with atomic_path(json_path) as tmp:
        Path(tmp).write_text(json.dumps(card, indent=2, default=str) + "\n")
    with atomic_path(markdown_path) as tmp:
        Path(tmp).write_text(card_markdown(card))
    return json_path, markdown_path


def card_markdown(card: dict) -> str:
    task, inputs, output = card["task"], card["input"], card["output"]
    lines = [
        f"# Model card: {card['model']['class']} ({task['kind']}, {task['num_classes']} classes)", "",
        card["intended_use"], "",
        "## Task", "",
        f"- kind: {task['kind']}{' (ordinal)' if task.get('ordinal') else ''}",
        f"- classes (output column order): {', '.join(task['class_names'])}",
        f"- primary metric: {task['primary_metric']}", "",
        "## Input and output", "",
        f"- input `{inputs['name']}`: uint8 tensor {' x '.join(map(str, inputs['shape']))}, "
        f"{inputs['layout']}",
        f"- prepare each image as in training: {inputs['preprocessing_before_the_model']}",
        f"- normalisation: {inputs['normalisation']}",
        f"- output `{output['name']}`: {output['meaning']}; columns: {', '.join(output['columns'])}", "",
        "## Model", "",
    ]
    for backbone in card["model"]["backbones"]:
        weights = backbone["weights"]
        lines.append(f"- backbone `{backbone['name']}` (weights fingerprint {backbone['fingerprint']}, "
                     f"embedding {backbone['embedding']}, {backbone['embed_dim']} dims); weights licence: "
                     f"{weights['licence']} ({weights['source']})")
        pre = backbone["preprocessing"]
        lines.append(f"  - normalisation inside: mean {pre['mean']}, std {pre['std']}")
    lines += ["", "## Evaluation", ""]
    evaluation = card["evaluation"]
    if evaluation is None:
        lines.append("No results.json with test metrics next to the checkpoint: evaluate it with "
                     "`medtransfer test --ckpt_path ...` before use.")
    else:
        confidence = evaluation.get("confidence")
        level = f"{confidence:.0%} " if confidence else ""
        lines.append(f"Test split of {evaluation['results']} ({evaluation.get('samples') or '?'} samples; "
                     f"{level}intervals: {evaluation.get('interval_method') or 'none'}).")
        if not evaluation["measured_on_this_checkpoint"]:
            lines.append(f"**Measured on checkpoint {evaluation['measured_on_checkpoint']}, not on the "
                         "exported one.**")
        lines += ["", "| metric | value | interval |", "|---|---|---|"]
        for name, entry in evaluation["metrics"].items():
            interval = f"[{entry['low']:.4f}, {entry['high']:.4f}]" if "low" in entry else ""
            lines.append(f"| {name} | {entry['value']:.4f} | {interval} |")
    data = card["data"]
    lines += ["", "## Data", "", f"- trained on: {data.get('dataset', 'unknown')}, images resized to "
              f"{data['image_size']} px, augmentation preset {data.get('augmentation')}, grey: "
              f"{data.get('grey')}"]
    export, checkpoint = card["export"], card["checkpoint"]
    lines += ["", "## Provenance", "",
              f"- checkpoint: {checkpoint['path']} (sha256 {checkpoint['sha256']}, epoch "
              f"{checkpoint['epoch']})",
              f"- export: {export['format']} ({export['exporter']}), {export['file']}",
              f"- verified: {export['verification']}",
              f"- paths: {card['paths']}",
              f"- medtransfer {card['medtransfer_version']}, {card['created_utc']}", ""]
    return "\n".join(lines)
