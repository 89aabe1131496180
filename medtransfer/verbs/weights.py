"""``medtransfer weights list|check|download``: what the registry (and timm) holds, whether a file loads
exactly, and fetching files into the cache. Every timm pretrained tag and hf-hub: name works as a backbone
name too."""

from __future__ import annotations

import argparse
import json
import sys

from ..runtime.logs import configure_logging
from ..utils.flags import VerbParser, underscore_flags

# The work of each verb imports what it needs (timm, torch) when it runs: ``--help`` answers at once.

TIMM_NOTE = ("Any timm pretrained tag (arch.tag, e.g. resnet50.a1_in1k) and any timm model on the Hugging "
             "Face Hub (hf-hub:org/name) is a backbone name too: medtransfer weights list --timm [PATTERN]")


RENAMED = ("--timm_kwarg",)  # was --timm-kwarg (still accepted, with a warning)


def main(argv: list[str]) -> int:
    configure_logging()
    args = build_parser().parse_args(underscore_flags(argv, RENAMED, "medtransfer weights"))
    return args.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = VerbParser(
        prog="medtransfer weights", description=__doc__,
        epilog="Takes no fit options (--config, --data.*, --model.*, --trainer.*): only the weights named.")
    verbs = parser.add_subparsers(dest="verb", required=True)

    listing = verbs.add_parser("list", help="the registry: names, sources, dims, local presence",
                               epilog=TIMM_NOTE)
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.add_argument("--timm", nargs="?", const="*", metavar="PATTERN",
                         help="list timm's pretrained tags instead (matching PATTERN, e.g. 'resnet50.*')")
    listing.set_defaults(run=run_list)

    check = verbs.add_parser("check", help="load weights, print a JSON summary (exit 0 only if exact)")
    check.add_argument("name", help="a registry name, a timm pretrained tag or hf-hub: name, or a timm "
                       "architecture together with --checkpoint")
    check.add_argument("--checkpoint", help="a local file (default: the cached file of the named weights)")
    check.add_argument("--timm_kwarg", action="append", default=[], metavar="KEY=VALUE",
                       help="extra timm.create_model argument (YAML value), e.g. num_heads=12; repeatable")
    check.set_defaults(run=run_check)

    fetch = verbs.add_parser("download", help="download weights into the cache (registry: checksum verified)")
    fetch.add_argument("names", nargs="*", help="registry names, timm pretrained tags or hf-hub: names")
    fetch.add_argument("--all", action="store_true", help="every registry entry that has a download URL")
    fetch.add_argument("--force", action="store_true",
                       help="download registry files again even when they are cached")
    fetch.set_defaults(run=run_download)
    return parser


def run_list(args: argparse.Namespace) -> int:
    from ..backbones.download import cached_path
    from ..backbones.registry import REGISTRY

    if args.timm is not None:
        return run_list_timm(args)
    rows = [{"name": e.name, "method": e.method, "arch": e.arch, "embed_dim": e.embed_dim(),
             "embedding": e.embedding, "licence": e.licence, "present": cached_path(e).is_file(),
             "path": str(cached_path(e)), "source": e.source(), "homepage": e.homepage}
            for e in REGISTRY.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = f"{'name':<30} {'method':<36} {'dim':>5}  {'licence':<13} {'local':<6} source"
    print(header)
    for row in rows:
        source = row["source"] if row["source"].startswith("http") else "(convert by hand: see --json)"
        print(f"{row['name']:<30} {row['method']:<36} {row['embed_dim']:>5}  {row['licence']:<13} "
              f"{'yes' if row['present'] else 'no':<6} {source}")
    print(f"\ncache: {cached_path(next(iter(REGISTRY.values()))).parent}  (set TORCH_HOME to move it)")
    print(TIMM_NOTE)
    return 0


def run_list_timm(args: argparse.Namespace) -> int:
    """timm's pretrained tags: the preprocessing timm gives them, where they are published, local presence."""
    import timm
    from timm.models import get_pretrained_cfg

    from ..backbones.hub import cached_hub_file
    from ..backbones.timm_weights import TimmWeights

    rows = []
    for name in timm.list_pretrained(args.timm):
        weights = TimmWeights(name, name, get_pretrained_cfg(name).to_dict())
        cfg = weights.pretrained_cfg
        present = weights.hub_id is not None and cached_hub_file(weights.hub_id, weights.weights_filenames())
        rows.append({"name": name, "input_size": cfg["input_size"][-1], "interpolation": cfg["interpolation"],
                     "mean": cfg["mean"], "std": cfg["std"], "present": bool(present),
                     "source": f"hf-hub:{weights.hub_id}" if weights.hub_id else weights.url})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':<60} {'size':>5}  {'interpolation':<13} {'local':<6} source")
    for row in rows:
        print(f"{row['name']:<60} {row['input_size']:>5}  {row['interpolation']:<13} "
              f"{'yes' if row['present'] else 'no':<6} {row['source']}")
    print(f"\n{len(rows)} of timm {timm.__version__}'s pretrained tags. hf-hub:org/name loads any timm model "
          "on the Hugging Face Hub.")
    return 0


def run_check(args: argparse.Namespace) -> int:
    import timm

    from ..backbones.download import checksum_matches
    from ..backbones.errors import WeightsError
    from ..backbones.factory import create_backbone
    from ..backbones.registry import get_entry
    from ..utils.hashing import file_digest

    entry = get_entry(args.name)
    summary: dict = {"name": args.name, "exact": False}
    try:
        kwargs = parse_kwargs(args.timm_kwarg)
        if entry is None and args.checkpoint is None and args.name in timm.list_models():
            raise ValueError(f"{args.name} is a timm architecture without weights: pass the weights file "
                             "with --checkpoint")
        backbone = create_backbone(args.name, checkpoint=args.checkpoint, **kwargs)
        report = backbone.load_report
    except (WeightsError, ValueError, TypeError) as err:
        summary["error"] = str(err)
        print(json.dumps(summary, indent=2))
        return 1
    path = report.file
    digest = file_digest(path)
    summary.update({
        "exact": True,
        "file": str(path),
        "file_sha256": digest,
        "published_sha256": entry.sha256 if entry else None,
        "sha256_matches_published": checksum_matches(entry, digest) if entry else None,
        "layout": report.layout,
        "layout_description": report.layout_description,
        "container": report.container,
        "prefix_stripped": report.prefix,
        "keys_loaded": report.loaded,
        "keys_dropped": report.dropped,
        "keys_filled": report.filled,
        "embed_dim": backbone.embed_dim,
        "embedding": backbone.embedding,
        "preprocessing": backbone.preprocessing.to_dict(),
        "fingerprint": backbone.fingerprint,
    })
    print(json.dumps(summary, indent=2))
    if summary["sha256_matches_published"] is False:
        print(f"warning: {path} loads exactly but is not the published file of {args.name} "
              f"(sha256 {digest[:16]}..., published {entry.sha256}...)", file=sys.stderr)
    return 0


def run_download(args: argparse.Namespace) -> int:
    from ..backbones.errors import WeightsError
    from ..backbones.registry import REGISTRY

    names = [e.name for e in REGISTRY.values() if e.url] if args.all else args.names
    if not names:
        print("name at least one registry entry, or --all", file=sys.stderr)
        return 2
    failed = 0
    for name in names:
        try:
            print(f"{name}: {download_weights(name, args.force)}")
        except (WeightsError, ValueError) as err:
            print(f"{name}: FAILED: {err}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def download_weights(name: str, force: bool) -> str:
    """Fetch the file of a registry entry, a timm pretrained tag or an hf-hub: name into its cache."""
    from ..backbones.download import download
    from ..backbones.registry import get_entry
    from ..backbones.timm_weights import find_timm_weights, resolve_timm_file

    entry = get_entry(name)
    if entry is not None:
        return str(download(entry, force=force))
    weights = find_timm_weights(name)
    if weights is None:
        raise ValueError(f"{name} is not a registry name or timm pretrained tag (medtransfer weights list)")
    return str(resolve_timm_file(weights, None))


def parse_kwargs(pairs: list[str]) -> dict:
    from ..utils.yaml_files import load_yaml_text

    kwargs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--timm_kwarg expects KEY=VALUE, got {pair!r}")
        kwargs[key] = load_yaml_text(value, f"--timm_kwarg {key}")
    return kwargs
