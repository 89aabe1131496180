"""Feature maps: the class separation on full features (ordered, as scikit-learn computes it), seeded
stratified subsampling, multilabel colours, the figure, TensorBoard, and the errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from medtransfer.features import maps
from medtransfer.features.store import FeatureStore

from .map_fixtures import class_store


def test_separation_orders_separated_above_mixed_and_agrees_with_scikit_learn(tmp_path):
    from sklearn.metrics import balanced_accuracy_score, silhouette_score
    from sklearn.model_selection import LeaveOneOut, cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler

    found = {}
    for separated in (True, False):
        store = class_store(tmp_path / f"b/{separated}", separated)
        x, y = np.asarray(store.features, dtype=np.float32), store.labels
        found[separated] = maps.separation(x, y)
        scaled = StandardScaler().fit_transform(x.astype(np.float64))
        knn = KNeighborsClassifier(n_neighbors=maps.KNN_K, metric="cosine")
        direct = balanced_accuracy_score(y, cross_val_predict(knn, scaled, y, cv=LeaveOneOut()))
        assert found[separated].knn_balanced_accuracy == pytest.approx(direct)
        assert found[separated].silhouette == pytest.approx(silhouette_score(scaled, y))
    assert found[True].knn_balanced_accuracy > 0.95 and found[False].knn_balanced_accuracy < 0.75
    assert found[True].silhouette > found[False].silhouette + 0.2
    assert found[True].chance == 0.5 and found[True].n == 60


def test_one_class_has_no_separation_number():
    result = maps.separation(np.random.default_rng(0).normal(size=(10, 4)), np.zeros(10, dtype=int))
    assert np.isnan(result.knn_balanced_accuracy) and np.isnan(result.silhouette)


def test_large_stores_are_subsampled_stratified_and_seeded(tmp_path):
    labels = (np.arange(100) >= 70).astype(np.int64)  # 70 / 30
    store = class_store(tmp_path / "b/test-1", True, n=100, labels=labels)
    first = maps.feature_map(store, "b", max_points=40, seed=3, class_names=["normal", "lesion"])
    again = maps.feature_map(store, "b", max_points=40, seed=3)
    assert np.bincount(first.groups).tolist() == [28, 12] and first.group_names == ["normal", "lesion"]
    np.testing.assert_array_equal(first.rows, again.rows)
    np.testing.assert_allclose(first.points, again.points)
    assert first.points.shape == (40, 2) and first.total == 100
    assert "subsampled to 40" in maps.caption([first], "tsne", 40, 3) and "b 40 of 100" in maps.caption(
        [first], "tsne", 40, 3)


def test_multilabel_rows_are_coloured_by_findings_or_by_one_class():
    labels = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=np.float32)
    groups, names = maps.class_groups(labels)
    assert groups.tolist() == [0, 1, 2, 3]
    assert names == ["no finding", "1 finding", "2 findings", "3+ findings"]
    groups, names = maps.class_groups(labels, ["a", "b", "c", "d"], class_index=1)
    assert groups.tolist() == [0, 0, 1, 1] and names == ["no b", "b"]
    with pytest.raises(maps.FeatureMapError, match="class index 7"):
        maps.class_groups(labels, class_index=7)


def test_the_figure_has_a_panel_per_backbone_titled_with_its_numbers_and_is_a_png(tmp_path):
    drawn = [maps.feature_map(class_store(tmp_path / f"{name}/test-1", separated), name, max_points=40)
             for name, separated in (("good", True), ("poor", False))]
    figure = maps.maps_figure(drawn, "Toy (test)")
    assert [ax.get_title().splitlines()[0] for ax in figure.axes] == ["good", "poor"]
    assert "kNN bal. acc" in figure.axes[0].get_title()
    png = maps.figure_png(figure)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png == maps.figure_png(figure)

    maps.log_to_tensorboard(tmp_path / "tb", "feature_map/Toy/test", figure, drawn, projector=True)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert list((tmp_path / "tb").rglob("projector_config.pbtxt"))


def test_empty_stores_unknown_methods_and_a_missing_scikit_learn_are_one_line_errors(tmp_path, monkeypatch):
    empty = FeatureStore.write(tmp_path / "b/test-0", np.zeros((0, 4), np.float16), [], np.zeros(0, np.int64),
                               {"split": "test"})
    with pytest.raises(maps.FeatureMapError, match="is empty"):
        maps.feature_map(empty, "b")
    with pytest.raises(maps.FeatureMapError, match="unknown map method 'pca'"):
        maps.embed_2d(np.random.default_rng(0).normal(size=(10, 4)), "pca")
    monkeypatch.setitem(sys.modules, "sklearn.neighbors", None)
    with pytest.raises(maps.FeatureMapError, match="pip install scikit-learn") as error:
        maps.separation(np.random.default_rng(0).normal(size=(10, 4)), np.arange(10) % 2)
    assert "\n" not in str(error.value)


@pytest.mark.skipif(maps.umap_available(), reason="umap-learn is installed")
def test_umap_without_umap_learn_says_how_to_install_it():
    with pytest.raises(maps.FeatureMapError, match="pip install umap-learn"):
        maps.embed_2d(np.random.default_rng(0).normal(size=(10, 4)), "umap")


def test_stores_are_found_grouped_by_dataset_and_split_and_labelled_by_folder(tmp_path):
    class_store(tmp_path / "A/r50/test-1", True, n=10)
    class_store(tmp_path / "A/r50/test-2", True, n=10, weights="w1")
    class_store(tmp_path / "A/vit/val-1", True, n=10, split="val")
    (tmp_path / "A/vit/.tmp-test-x").mkdir()
    grouped = maps.open_stores([tmp_path], "test")
    assert list(grouped) == [("Toy", "test")]
    assert maps.folder_labels(grouped["Toy", "test"]) == ["r50/test-1", "r50/test-2"]
