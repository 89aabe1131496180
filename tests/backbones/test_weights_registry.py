"""Registry-wide tests: every entry is well formed, and loads a file written in its source's exact layout,
by name and by ``format: auto``, reproducing the parameters, buffers and embeddings exactly."""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from urllib.parse import urlparse

import pytest
import timm
import torch

from medtransfer.backbones import REGISTRY, Backbone, create_backbone
from medtransfer.backbones.backbone import state_dict_fingerprint
from medtransfer.backbones.embedding import RECIPES
from medtransfer.backbones.layouts import LAYOUTS
from medtransfer.verbs.weights import main as weights_main

from .source_layouts import WRITERS

ENTRIES = list(REGISTRY.values())
NAMES = [entry.name for entry in ENTRIES]


def expected_state(reference: torch.nn.Module, filled: list[str]) -> dict[str, torch.Tensor]:
    state = {k: v.clone() for k, v in reference.state_dict().items()}
    for key in filled:
        state[key] = torch.zeros_like(state[key])
    return state


def timm_kwarg_args(kwargs: dict) -> list[str]:
    """``--timm_kwarg KEY=VALUE`` options of ``medtransfer weights check`` (values in YAML/JSON syntax)."""
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}
    return [arg for k, v in values.items() for arg in ("--timm_kwarg", f"{k}={json.dumps(v)}")]


def assert_same_state(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert actual.keys() == expected.keys()
    different = [k for k in expected if not torch.equal(actual[k], expected[k])]
    assert not different, f"tensors differ after loading: {different[:5]}"


@pytest.mark.parametrize("entry", ENTRIES, ids=NAMES)
def test_entry_is_well_formed(entry):
    assert entry.arch in timm.list_models()
    assert entry.layout in LAYOUTS
    assert entry.embedding in RECIPES
    assert entry.licence and entry.homepage.startswith("https://")
    assert len(entry.preprocessing.mean) == 3 and len(entry.preprocessing.std) == 3
    assert entry.preprocessing.interpolation in ("bilinear", "bicubic")
    if entry.url is None:
        assert entry.instructions, "an entry without a download must say how to make the file"
    else:
        assert urlparse(entry.url).scheme == "https"
        assert PurePosixPath(urlparse(entry.url).path).name == entry.file_name
    if entry.sha256 is not None:
        assert all(c in "0123456789abcdef" for c in entry.sha256) and len(entry.sha256) >= 8


def test_registry_covers_the_issue_and_file_names_are_unique():
    assert set(NAMES) >= {
        "resnet50.tv_in1k", "resnet50.tv2_in1k", "resnet50.simclr_in1k", "resnet50.simclr_bolts_in1k",
        "resnet50.swav_in1k", "resnet50.dino_in1k", "vit_small_patch16_224.dino", "vit_small_patch8_224.dino",
        "vit_base_patch16_224.dino", "resnet50.mocov2_in1k", "resnet50.mocov3_in1k",
        "vit_small_patch16_224.mocov3", "resnet50.byol_in1k", "resnet50.barlowtwins_in1k",
    }
    assert len({entry.file_name for entry in ENTRIES}) == len(ENTRIES)


def test_embed_dims_and_recipes():
    dims = {entry.name: entry.embed_dim() for entry in ENTRIES}
    assert dims["vit_small_patch16_224.dino"] == 4 * 384  # DINO's linear eval: CLS of the last 4 blocks
    assert dims["vit_base_patch16_224.dino"] == 4 * 768
    assert dims["vit_small_patch16_224.mocov3"] == 384
    assert dims["resnet50.swav_in1k"] == 2048
    assert REGISTRY["vit_small_patch16_224.mocov3"].timm_kwargs == {"num_heads": 12}


@pytest.mark.parametrize("entry", ENTRIES, ids=NAMES)
def test_entry_loads_its_source_layout_exactly(entry, references, images, tmp_path, capsys):
    reference, small = references.for_entry(entry)
    path = tmp_path / entry.file_name
    non_backbone = WRITERS[entry.layout](reference.state_dict(), path)

    backbone = create_backbone(entry.name, checkpoint=str(path), **small)

    report = backbone.load_report

    assert sorted(report.dropped) == sorted(non_backbone)
    assert report.layout == entry.layout
    expected = expected_state(reference, report.filled)
    assert_same_state(backbone.model.state_dict(), expected)
    assert backbone.fingerprint == state_dict_fingerprint(expected)
    assert backbone.embed_dim == entry.embed_dim()
    assert backbone.preprocessing == entry.preprocessing
    if entry.layout == "byol_converted":
        assert report.filled and all(k.endswith("num_batches_tracked") for k in report.filled)
    else:
        assert report.filled == []

    # the same through `medtransfer weights check NAME --checkpoint PATH`
    assert weights_main(["check", entry.name, "--checkpoint", str(path), *timm_kwarg_args(small)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["exact"] and summary["fingerprint"] == backbone.fingerprint
    assert summary["keys_dropped"] == report.dropped and summary["embed_dim"] == entry.embed_dim()

    reference_backbone = Backbone(reference, "reference", entry.preprocessing, embedding=entry.embedding)
    reference_backbone.eval()
    with torch.no_grad():
        embeddings = backbone.eval()(images)
        assert embeddings.shape == (2, entry.embed_dim())
        assert torch.equal(embeddings, reference_backbone(images))


# one entry per (layout, architecture family): DINO and MoCo v3 files differ between ResNets and ViTs
AUTO_CASES = list({(e.layout, e.arch.split("_")[0]): e for e in reversed(ENTRIES)}.values())


@pytest.mark.parametrize("entry", AUTO_CASES, ids=[e.name for e in AUTO_CASES])
def test_format_auto_reads_every_source_layout(entry, references, tmp_path):
    """The plain architecture plus the file, with no layout named, loads the same weights."""
    reference, small = references.for_entry(entry)
    path = tmp_path / entry.file_name
    non_backbone = WRITERS[entry.layout](reference.state_dict(), path)

    backbone = create_backbone(entry.arch, checkpoint=str(path), **entry.timm_kwargs, **small)

    report = backbone.load_report

    assert sorted(report.dropped) == sorted(non_backbone)
    assert_same_state(backbone.model.state_dict(), expected_state(reference, report.filled))


def test_dino_vit_embedding_recipes(references, images, tmp_path):
    """cls_last4 by default (DINO's linear evaluation), the plain CLS token on request."""
    entry = REGISTRY["vit_small_patch16_224.dino"]
    reference, small = references.for_entry(entry)
    path = tmp_path / entry.file_name
    WRITERS["dino"](reference.state_dict(), path)
    last4 = create_backbone(entry.name, checkpoint=str(path), **small).eval()
    plain = create_backbone(entry.name, checkpoint=str(path), embedding="pre_logits", **small).eval()
    with torch.no_grad():
        concatenated, cls = last4(images), plain(images)
    assert concatenated.shape == (2, 1536) and cls.shape == (2, 384)
    # the last of the four normed CLS tokens is the model's own (normed) CLS embedding
    torch.testing.assert_close(concatenated[:, -384:], cls)
    assert last4.fingerprint == plain.fingerprint
