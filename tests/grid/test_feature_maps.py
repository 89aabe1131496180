"""The report's feature-map section: stores matched to the report's runs by weights fingerprint and labelled
with the grid's labels, unmatched ones by folder; the separation table, its caption and the figures."""

from __future__ import annotations

from pathlib import Path

from medtransfer.grid.aggregate import Collection, Record
from medtransfer.grid.feature_maps import feature_map_section
from medtransfer.grid.sections import Section
from tests.features.map_fixtures import class_store


def record(root: Path, backbone: str, weights: list[str], seed: int) -> Record:
    """A finished run of the grid on dataset Toy whose backbone axis says ``backbone``."""
    results = {"model": {"backbones": [{"name": f"net{i}", "fingerprint": w} for i, w in enumerate(weights)]},
               "data": {"dataset": "Toy"}, "task": {"class_names": ["normal", "lesion"]},
               "config": {"model": {"init_args": {"features_dir": str(root / "features")}}}}
    labels = {"dataset": "toy", "backbone": backbone}
    return Record(root / f"runs/{backbone}-{seed}/results.json", results, f"f{backbone}{seed}", "g", "grid",
                  f"{backbone}-{seed}", labels, 1.0, seed, "auroc", "test", 0.5)


def test_panels_take_the_runs_labels_and_the_table_its_numbers(tmp_path):
    class_store(tmp_path / "features/Toy/net0/test-a", True, weights="wa")
    class_store(tmp_path / "features/Toy/net0/test-b", True, weights="wb", seed=1)  # the same label, seed 1
    class_store(tmp_path / "features/Toy/net1/test-c", False, weights="wc")
    class_store(tmp_path / "features/Toy/stray/test-d", False, weights="wd")  # no run names it
    records = [record(tmp_path, "simclr", ["wb"], 1), record(tmp_path, "simclr", ["wa"], 0),
               record(tmp_path, "random", ["wc"], 0), record(tmp_path, "dvme", ["wa", "wc"], 0)]
    collection = Collection(tmp_path, records, level_order={"backbone": ["random", "simclr", "dvme"]})

    section = feature_map_section(collection)
    assert isinstance(section, Section) and section.title == "Feature maps"
    table = section.tables["feature_separation"]
    assert table.backbone.tolist() == ["random", "simclr", "stray"] and set(table.dataset) == {"toy"}
    assert table.store_rows.tolist() == [60, 60, 60]
    assert table.knn_balanced_accuracy[1] > table.knn_balanced_accuracy[0]
    assert {"knn_balanced_accuracy", "silhouette", "chance", "points"} <= set(table.select_dtypes("number"))
    assert "full-dimensional" in section.captions["feature_separation"]
    assert list(section.figures) == ["feature_map_toy_test_tsne.png"]
    assert section.figures["feature_map_toy_test_tsne.png"].startswith(b"\x89PNG")
    assert "![toy tsne](plots/feature_map_toy_test_tsne.png)" in section.markdown
    assert "simclr: 2 stores of 2 different weights (one per seed, e.g. random initialisation); the lowest " \
           "seed's is drawn." in section.markdown


def test_the_same_weights_stored_twice_are_said_to_be_the_same(tmp_path):
    """Runs copied from another grid keep their own features folder: the same weights then have two stores,
    which are not seeds of a random initialisation."""
    class_store(tmp_path / "features/Toy/net0/test-a", True, weights="wa")
    class_store(tmp_path / "other/Toy/net0/test-a", True, weights="wa")
    collection = Collection(tmp_path, [record(tmp_path, "simclr", ["wa"], 0)])
    section = feature_map_section(collection, features_root=tmp_path)
    assert (f"simclr: 2 stores of the same weights (extracted into other folders or with other settings); "
            f"{Path('features/Toy/net0/test-a')} is drawn.") in section.markdown
    assert any(line.startswith("| toy | simclr |") for line in section.markdown)


def test_no_stores_no_section(tmp_path):
    assert feature_map_section(Collection(tmp_path)) is None
    assert feature_map_section(Collection(tmp_path), features_root=tmp_path / "missing") is None
