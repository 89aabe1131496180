"""``medtransfer feature-map``: a 2-D map (t-SNE, or UMAP) of each backbone's stored features per dataset and
split, coloured by class, with the class separation measured on the full-dimensional features.

It reads feature stores only (no backbone runs): a features root such as a grid's ``<output_dir>/features``,
or store directories. Writes ``feature_map_<dataset>_<split>_<method>.png`` per (dataset, split) and
``feature_separation.csv`` into --out; with --tensorboard, the figures (and with --projector the embeddings)
to a TensorBoard log dir. See docs/feature-maps.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..runtime.logs import configure_logging
from ..task import SPLITS
from ..utils.flags import VerbParser

# numpy, matplotlib and scikit-learn are imported when the verb runs: ``--help`` answers at once.

EPILOG = """examples:
  medtransfer feature-map runs/benchmark/paper/features --out maps
  medtransfer feature-map runs/benchmark/paper/features --split val --method tsne umap --max_points 1000
  medtransfer feature-map features/PCam/resnet50.tv_in1k/test-0123abcd --tensorboard tb_logs --projector
  tensorboard --logdir tb_logs      # the figures under IMAGES, the embeddings under PROJECTOR"""


def build_parser() -> argparse.ArgumentParser:
    parser = VerbParser(prog="medtransfer feature-map", description=__doc__, epilog=EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="a folder of feature stores (e.g. a grid's <output_dir>/features) or store "
                        "folders")
    parser.add_argument("--split", default="test", choices=SPLITS, help="the split drawn (default test)")
    parser.add_argument("--method", nargs="+", default=["tsne"], choices=("tsne", "umap"),
                        help="tsne (default) and/or umap (needs umap-learn; skipped with a note without it)")
    parser.add_argument("--max_points", type=int, default=2000,
                        help="rows drawn per store at most, stratified by class (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsample and the map (default 0)")
    parser.add_argument("--class_index", type=int,
                        help="multilabel stores: colour by this class against the rest (default: by the "
                        "number of findings)")
    parser.add_argument("--out", default="feature_maps", help="output folder (default ./feature_maps)")
    parser.add_argument("--tensorboard", metavar="DIR",
                        help="also write the figures to this TensorBoard log dir")
    parser.add_argument("--projector", action="store_true",
                        help="with --tensorboard: also the drawn rows' features for the embedding projector")
    return parser


def main(argv: list[str]) -> int:
    configure_logging()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_points < 3:
        parser.error(f"--max_points must be at least 3, got {args.max_points}")
    if args.projector and not args.tensorboard:
        parser.error("--projector writes to the TensorBoard log dir: give --tensorboard DIR too")
    missing = [p for p in args.paths if not Path(p).is_dir()]
    if missing:
        found = " (a file: give the folder of its stores)" if Path(missing[0]).exists() else ""
        parser.error(f"no such folder: {missing[0]}{found}; e.g. runs/benchmark/<grid>/features")

    from ..errors import MedTransferError

    try:
        return draw(args)
    except MedTransferError as error:
        parser.error(str(error))


def draw(args: argparse.Namespace) -> int:
    """Draw and write every (dataset, split)'s maps; print each panel's separation."""
    import pandas as pd

    from ..features import maps

    grouped = maps.open_stores(args.paths, args.split)
    if not grouped:
        raise maps.FeatureMapError(f"no {args.split} feature stores under {', '.join(args.paths)} "
                                   "(a store is a folder holding store.json; see `medtransfer extract`)")
    methods = [m for m in args.method if m != "umap" or maps.umap_available()]
    if len(methods) < len(args.method):
        print("note: umap skipped: umap-learn is not installed (pip install umap-learn)", file=sys.stderr)
    if not methods:
        raise maps.FeatureMapError("no map method left to draw: pip install umap-learn, or use --method tsne")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for (dataset, split), stores in sorted(grouped.items()):
        for method in methods:
            drawn = [maps.feature_map(store, label, method, args.max_points, args.seed,
                                      class_index=args.class_index)
                     for store, label in zip(stores, maps.folder_labels(stores), strict=True)]
            figure = maps.maps_figure(drawn, f"{dataset} ({split})", method)
            (out / f"feature_map_{dataset}_{split}_{method}.png").write_bytes(maps.figure_png(figure))
            if args.tensorboard:
                maps.log_to_tensorboard(args.tensorboard, f"feature_map/{dataset}/{split}/{method}", figure,
                                        drawn, args.projector)
        rows += maps.separation_rows(drawn, dataset, split)
        print(maps.caption(drawn, methods[-1], args.max_points, args.seed))
    table = pd.DataFrame(rows)
    table.to_csv(out / "feature_separation.csv", index=False, lineterminator="\n")
    print(table.drop(columns="store").to_string(index=False, float_format="%.3f"))
    print(f"\nwrote {out}" + (f" and TensorBoard logs to {args.tensorboard}" if args.tensorboard else ""))
    return 0
