"""jsonargparse's errors as one line that names the key, what was given and what would do.

A typo'd key or a value of the wrong type makes jsonargparse raise an ``ArgumentError`` whose message nests
every alternative it tried ("Does not validate against any of the Union subtypes ... Expected a <class
'NoneType'>"), and the command used to print the whole usage text above it. The reason is one of a few shapes;
``config_error`` picks it out of the nesting and says it in the user's terms (``data.init_args.batch_sise``,
not ``Parser key "data"``), with the closest accepted name when a name was misspelt."""

from __future__ import annotations

import difflib
import importlib
import inspect
import re

from ..errors import MedTransferError

PARSER_KEY = re.compile(r'Parser key "([^"]+)"')
CLASS_PATH = re.compile(r"Problem with given class_path '([^']+)'")
NOT_ACCEPTED = re.compile(r"Option '([^']+)' is not accepted")
EXPECTED = re.compile(r"Expected an? (?:<class '([^']+)'>|([\w. ]+?))(?:\. Got value: (.*))?$")
GIVEN_VALUE = re.compile(r"^\s*Given value: (.*)$", re.MULTILINE)
UNRECOGNIZED = re.compile(r"unrecognized arguments: (.*)")
MISSING_FILE = re.compile(r"File does not exist: '([^']+)'")
NOT_A_CLASS = re.compile(r"Expected a dot import path string: (\S+)")
SUBTYPES = re.compile(r"^\s*Subtypes: \[(.*)\]$", re.MULTILINE)
LITERAL = re.compile(r"Literal\[([^\]]*)\]")
# a class's literal-typed argument (``data.init_args.kind``): "Expected a typing.Literal[...]. Got value: x"
EXPECTED_LITERAL = re.compile(r"Expected an? typing\.Literal\[([^\]]*)\]\. Got value: (.*)$", re.MULTILINE)
NONE_TYPE = "NoneType"
YAML_PREFIX = "Problems parsing config:"
YAML_MARK = re.compile(r'^\s+in "([^"]+)", line (\d+), column (\d+):$', re.MULTILINE)
NOT_A_MAPPING = re.compile(r"^Unexpected config:\s*(.*)$", re.DOTALL)


class ConfigError(MedTransferError, ValueError):
    """A command line or config file that the parser refuses."""


def config_error(error: Exception, verb: str, known_keys: list[str]) -> ConfigError:
    """The one-line ``ConfigError`` for a jsonargparse error raised while parsing ``verb``'s arguments;
    ``known_keys``: the parser's dotted keys, for suggestions."""
    return ConfigError(f"{config_reason(str(error), known_keys)} (see `medtransfer {verb} --help`)")


def config_reason(text: str, known_keys: list[str]) -> str:
    """What is wrong, in one line, from the text of a jsonargparse error (also the benchmark's, which words a
    grid's runs with it)."""
    text = text.strip()
    return (_unrecognized(text, known_keys) or _missing_file(text) or _yaml_syntax(text)
            or _not_a_mapping(text) or _not_accepted(text) or _not_a_class(text) or _not_a_choice(text)
            or _wrong_type(text) or _first_line(text))


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else "the arguments do not parse"


def _key_path(text: str) -> str:
    """The dotted key the message is about: the nested ``Parser key`` names joined, a subclass group's
    ``init_args`` spelled out as in a config."""
    keys = PARSER_KEY.findall(text)
    if not keys:
        return ""
    path = keys[0]
    for key in keys[1:]:
        path = f"{path}.init_args.{key}" if CLASS_PATH.search(text) else f"{path}.{key}"
    return path


def _unrecognized(text: str, known_keys: list[str]) -> str | None:
    match = UNRECOGNIZED.search(text)
    if match is None:
        return None
    flag = match.group(1).split()[0]
    key = flag.lstrip("-").split("=")[0]
    close = difflib.get_close_matches(key, known_keys, n=1, cutoff=0.75)
    hint = f"; did you mean --{close[0]}?" if close else ""
    return f"unknown option {flag}{hint}"


def _missing_file(text: str) -> str | None:
    match = MISSING_FILE.search(text)
    if match is None:
        return None
    key = PARSER_KEY.search(text)
    where = f"--{key.group(1)}" if key else "a path"
    return f"{where}: no such file {match.group(1)}"


def _yaml_syntax(text: str) -> str | None:
    """A config file that is not YAML: the file, line and column, and what PyYAML found there (it spreads
    that over five lines, with the line quoted and a caret)."""
    if not text.startswith(YAML_PREFIX):
        return None
    lines = text[len(YAML_PREFIX):].strip().splitlines()
    said = [line.strip() for i, line in enumerate(lines) if i == 0 or not line.startswith(" ")]
    marks = YAML_MARK.findall(text)
    where = f"{marks[-1][0]} line {marks[-1][1]}, column {marks[-1][2]}" if marks else "a file"
    what = said[-1] + (f" ({said[0]})" if len(said) > 1 else "")
    tabs = "; YAML indents with spaces, never tabs" if "'\\t'" in what else ""
    return f"--config {where}: not valid YAML: {what}{tabs}"


def _not_a_mapping(text: str) -> str | None:
    """A config file that is empty, or holds a plain value instead of settings."""
    match = NOT_A_MAPPING.match(text)
    if match is None:
        return None
    return (f"a --config file holds no settings (it reads as {match.group(1).strip()!r}; an empty file reads "
            "as ''): a config is a YAML mapping such as `trainer: {max_epochs: 10}`")


def _not_accepted(text: str) -> str | None:
    match = NOT_ACCEPTED.search(text)
    if match is None:
        return None
    option = match.group(1)
    group = PARSER_KEY.search(text)
    class_path = CLASS_PATH.search(text)
    prefix = (f"{group.group(1)}.init_args." if group and class_path
              else (f"{group.group(1)}." if group else ""))
    names = _accepted_options(class_path.group(1)) if class_path else []
    close = difflib.get_close_matches(option, names, n=1, cutoff=0.6)
    owner = f"{class_path.group(1).rsplit('.', 1)[-1]} takes no option" if class_path else "no option"
    hint = f"; did you mean {prefix}{close[0]}?" if close else ""
    return f"{prefix}{option}: {owner} {option!r}{hint}"


def _not_a_class(text: str) -> str | None:
    match = NOT_A_CLASS.search(text)
    if match is None:
        return None
    group = PARSER_KEY.search(text)
    key = group.group(1) if group else "the class"
    return (f"{key}: {match.group(1)!r} names no class; give a class path, e.g. "
            + ("medtransfer.datamodules.ImageFolder" if key == "data"
               else "medtransfer.lightning_modules.Finetune"))


def _not_a_choice(text: str) -> str | None:
    """A value outside a choice of literals (``trainer.precision``, ``data.init_args.kind``): every accepted
    value, and the given."""
    literal = EXPECTED_LITERAL.search(text)
    if literal is not None:
        choices = [choice.strip() for choice in literal.group(1).split(",")]
        return (f"{_key_path(text) or 'a value'}: expected one of {', '.join(choices)}, got "
                f"{literal.group(2).strip()!r}")
    # the innermost union with literals: a class's optional choice (``data.init_args.augmentation``) sits in
    # the union of the data group's class and None
    unions = [found for found in SUBTYPES.finditer(text) if "Literal[" in found.group(1)]
    if not unions:
        return None
    choices = [c.strip() for group in LITERAL.findall(unions[-1].group(1)) for c in group.split(",")]
    value = GIVEN_VALUE.search(text, unions[-1].end())  # that union's own value, not an enclosing group's
    given = f", got {value.group(1).strip()!r}" if value else ""
    return f"{_key_path(text) or 'a value'}: expected one of {', '.join(dict.fromkeys(choices))}{given}"


def _wrong_type(text: str) -> str | None:
    """The innermost "Expected a <type>" that is not the ``None`` alternative, with the value given."""
    expectations = []
    for line in text.splitlines():
        match = EXPECTED.search(line.strip().lstrip("- "))
        if match is not None and (match.group(1) or match.group(2)) != NONE_TYPE:
            expectations.append(match)
    if not expectations:
        return None
    last = expectations[-1]
    wanted = (last.group(1) or last.group(2)).rsplit(".", 1)[-1]
    given = last.group(3)
    if given is None:
        values = GIVEN_VALUE.findall(text)
        given = values[-1] if values else None
    nullable = any((m.group(1) or m.group(2)) == NONE_TYPE
                   for m in map(EXPECTED.search, text.splitlines()) if m)
    value = f", got {given.strip()!r}" if given is not None else ""
    null = " (or null)" if nullable else ""
    return f"{_key_path(text) or 'a value'}: expected {_article(wanted)}{null}{value}"


def _article(type_name: str) -> str:
    return f"an {type_name}" if type_name[:1].lower() in "aeiou" else f"a {type_name}"


def _accepted_options(class_path: str) -> list[str]:
    """The keyword arguments a class takes, following ``**kwargs`` up its bases as jsonargparse does."""
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return []
    names: list[str] = []
    for klass in inspect.getmro(cls):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameters = inspect.signature(init).parameters.values()
        names += [p.name for p in parameters
                  if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return names
