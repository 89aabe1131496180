"""``medtransfer weights list|check|download``: what the registry holds, whether a file loads exactly, and
fetching files into the cache."""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from .download import cached_path, checksum_matches, download, file_sha256, resolve_weights_file
from .errors import WeightsError
from .factory import build_backbone
from .registry import REGISTRY, get_entry


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medtransfer weights", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)

    listing = verbs.add_parser("list", help="the registry: names, sources, dims, local presence")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(run=run_list)

    check = verbs.add_parser("check", help="load weights, print a JSON summary (exit 0 only if exact)")
    check.add_argument("name", help="a registry name, or a timm architecture together with --checkpoint")
    check.add_argument("--checkpoint", help="a local file (default: the cached file of a registry entry)")
    check.add_argument("--timm-kwarg", action="append", default=[], metavar="KEY=VALUE",
                       help="extra timm.create_model argument (YAML value), e.g. num_heads=12; repeatable")
    check.set_defaults(run=run_check)

    fetch = verbs.add_parser("download", help="download registry weights into the cache (checksum verified)")
    fetch.add_argument("names", nargs="*", help="registry names")
    fetch.add_argument("--all", action="store_true", help="every entry that has a download URL")
    fetch.add_argument("--force", action="store_true", help="download again even when the file is cached")
    fetch.set_defaults(run=run_download)
    return parser


def run_list(args: argparse.Namespace) -> int:
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
    return 0


def run_check(args: argparse.Namespace) -> int:
    entry = get_entry(args.name)
    summary: dict = {"name": args.name, "exact": False}
    try:
        kwargs = parse_kwargs(args.timm_kwarg)
        path = resolve_weights_file(entry, args.checkpoint) if (entry or args.checkpoint) else None
        if path is None:
            raise ValueError(f"{args.name} is not a registry name: pass the weights file with --checkpoint")
        backbone, report = build_backbone(args.name, checkpoint=str(path), **kwargs)
    except (WeightsError, ValueError, TypeError) as err:
        summary["error"] = str(err)
        print(json.dumps(summary, indent=2))
        return 1
    digest = file_sha256(path)
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
    names = [e.name for e in REGISTRY.values() if e.url] if args.all else args.names
    if not names:
        print("name at least one registry entry, or --all", file=sys.stderr)
        return 2
    failed = 0
    for name in names:
        entry = get_entry(name)
        try:
            if entry is None:
                raise ValueError(f"{name} is not a registry name (medtransfer weights list)")
            print(f"{name}: {download(entry, force=args.force)}")
        except (WeightsError, ValueError) as err:
            print(f"{name}: FAILED: {err}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def parse_kwargs(pairs: list[str]) -> dict:
    kwargs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--timm-kwarg expects KEY=VALUE, got {pair!r}")
        kwargs[key] = yaml.safe_load(value)
    return kwargs
