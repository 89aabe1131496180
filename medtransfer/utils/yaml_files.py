"""YAML as medtransfer reads it: PyYAML's safe loading, except that a key given twice in one mapping is an
error.

A YAML mapping keeps only the last value of a repeated key, and PyYAML does so without a word: a grid file
with ``backbone: {resnet: test_resnet, resnet: test_convnext}`` planned one run labelled ``resnet`` that ran
``test_convnext``, a row lost and another mislabelled. Merge keys (``<<: *defaults``) keep their YAML meaning:
the keys they bring in may be overridden by the mapping's own keys; only the keys written in one mapping must
differ.

``jsonargparse_yaml_loader`` adds the same check to the loader jsonargparse (and so LightningCLI) reads
``--config`` files and values with; the ``medtransfer`` command registers it with ``jsonargparse.set_loader``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import get_loader

from ..errors import MedTransferError

MERGE_TAG = "tag:yaml.org,2002:merge"
FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # composes nodes only: no key check of its own
# the loader jsonargparse had when this module was imported, which ``jsonargparse_yaml_loader`` wraps
JSONARGPARSE_YAML_LOAD = get_loader("yaml")


class DuplicateKeyError(MedTransferError, ValueError):
    """A YAML mapping that gives one key twice; the message names the file, the key, both lines and where the
    mapping is."""


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader that refuses a document in which one mapping gives a key twice."""

    def construct_document(self, node: yaml.Node) -> Any:
        check_unique_keys(self, node, self.name)
        return super().construct_document(node)


def load_yaml_text(text: str, source: str | None = None) -> Any:
    """The YAML document in ``text``; ``source`` (a file name) is named in every error about it."""
    loader = UniqueKeyLoader(text)
    if source is not None:
        loader.name = source  # PyYAML's syntax errors then say `in "<source>", line N`
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_yaml_file(path: str | os.PathLike) -> Any:
    """The YAML document in the file ``path``."""
    return load_yaml_text(Path(path).read_text(), str(path))


def jsonargparse_yaml_loader(text: str, path: str | os.PathLike = "") -> Any:
    """jsonargparse's own YAML loading, after checking that no mapping repeats a key. Register with
    ``set_loader("yaml", jsonargparse_yaml_loader, exceptions=(yaml.YAMLError,))``: leaving
    ``DuplicateKeyError`` out of ``exceptions`` lets it reach the user as it is (listed, jsonargparse would
    retry a command-line value as a plain string and say only that it is no mapping)."""
    check_text(text, config_file_name(path) if path else None)
    return JSONARGPARSE_YAML_LOAD(text)


def check_text(text: str, source: str | None) -> None:
    """Raise ``DuplicateKeyError`` (or PyYAML's syntax error) for ``text``. Composed by libyaml where PyYAML
    has it, seven times faster than in Python (a grid's planning loads every config piece of every run); a
    syntax error is raised again by the Python loader, whose message names ``source``."""
    loader = FAST_LOADER(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            check_unique_keys(loader, node, source)
    except yaml.MarkedYAMLError:
        load_yaml_text(text, source)
        raise
    finally:
        loader.dispose()


def syntax_error_line(error: yaml.YAMLError) -> str:
    """A YAML syntax error in one line: the line and column, what PyYAML found there and while doing what
    (PyYAML spreads it over five lines, quoting the line with a caret under it)."""
    mark = getattr(error, "problem_mark", None)
    problem, context = getattr(error, "problem", None), getattr(error, "context", None)
    if mark is None or not (problem or context):
        return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    what = problem or context
    while_doing = f" ({context})" if problem and context else ""
    tabs = "; YAML indents with spaces, never tabs" if "\\t" in what else ""
    return f"line {mark.line + 1}, column {mark.column + 1}: {what}{while_doing}{tabs}"


def config_file_name(path: str | os.PathLike) -> str:
    """The config file jsonargparse is loading, as a full path. It passes the file's base name only, while
    the working directory is the file's folder."""
    file = Path(path)
    return str(file.resolve()) if file.is_file() else str(path)


def check_unique_keys(loader: yaml.BaseLoader, root: yaml.Node, source: str | None) -> None:
    """Raise ``DuplicateKeyError`` for the first mapping under ``root`` that gives a key twice. Each node is
    visited once (an anchored node reused through aliases is checked where it is defined)."""
    pending: list[tuple[yaml.Node, str]] = [(root, "")]
    visited: set[int] = set()
    while pending:
        node, where = pending.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            children = _mapping_children(loader, node, where, source)
        elif isinstance(node, yaml.SequenceNode):
            children = [(item, f"{where}[{i}]") for i, item in enumerate(node.value)]
        else:
            children = []
        pending += reversed(children)  # depth first, in document order: the first duplicate is reported


def _mapping_children(loader: yaml.BaseLoader, node: yaml.MappingNode, where: str,
                      source: str | None) -> list[tuple[yaml.Node, str]]:
    """The values of a mapping with where they are, after checking that its own keys differ. Keys are
    compared as the loader constructs them (``1`` and ``0x1`` are one key, as are ``true`` and ``yes``); a key
    that is itself a collection is left to PyYAML, which refuses it."""
    first_line: dict[Any, int] = {}
    children = []
    for key_node, value_node in node.value:
        if key_node.tag == MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
            children.append((value_node, where))
            continue
        key, line = _key(loader, key_node), key_node.start_mark.line + 1
        if key in first_line:
            message = duplicate_message(source, key_node.value, first_line[key], line, where)
            raise DuplicateKeyError(message)
        first_line[key] = line
        children.append((value_node, f"{where}.{key_node.value}" if where else key_node.value))
    return children


def _key(loader: yaml.BaseLoader, node: yaml.ScalarNode) -> Any:
    """The key as the loader constructs it, or its tag and text where it cannot (a date that is none, such as
    ``2024-13-45``: jsonargparse, which resolves no dates, reads it as text)."""
    try:
        return loader.construct_object(node)
    except (ValueError, yaml.YAMLError):
        return node.tag, node.value


def duplicate_message(source: str | None, key: str, first: int, second: int, where: str) -> str:
    """What the user is told: the file (unless PyYAML's ``<unicode string>``), the line, the key, both lines,
    the mapping's place in the document and what to do."""
    named = "" if source is None or source.startswith("<") else f"{source} "
    place = f"under '{where}'" if where else "at the top level"
    lines = f"lines {first} and {second}" if first != second else f"both on line {second}"
    return (f"{named}line {second}: key {key!r} is given twice ({lines}) {place}; "
            "a YAML mapping keeps only the last, so one of them would be silently lost: rename or remove one")
