"""YAML with a key given twice in one mapping is an error naming the file, the key, both lines and the
mapping's place; anchors and merge keys keep their YAML meaning; jsonargparse's loader gets the same check."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import yaml

from medtransfer.errors import MedTransferError
from medtransfer.grid.spec import GridSpecError, load_grid
from medtransfer.utils.yaml_files import DuplicateKeyError, load_yaml_file, load_yaml_text

TAIL = "a YAML mapping keeps only the last, so one of them would be silently lost: rename or remove one"


def test_a_repeated_grid_key_names_the_file_key_lines_and_place(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(textwrap.dedent("""\
        name: twice
        axes:
          dataset: {synthetic: configs/data/synthetic.yaml}
          backbone:
            resnet: test_resnet
            convnext: test_convnext
            resnet: test_convnext
        """))
    with pytest.raises(DuplicateKeyError) as raised:
        load_grid(grid, cwd=tmp_path)
    assert str(raised.value) == (f"{grid} line 7: key 'resnet' is given twice (lines 5 and 7) under "
                                 f"'axes.backbone'; {TAIL}")
    assert isinstance(raised.value, MedTransferError) and isinstance(raised.value, ValueError)


@pytest.mark.parametrize("text, message", [
    ("a: 1\nb: 2\na: 3\n", f"line 3: key 'a' is given twice (lines 1 and 3) at the top level; {TAIL}"),
    ("grids:\n  - {protocol: a}\n  - {protocol: b, protocol: c}\n",
     f"line 3: key 'protocol' is given twice (both on line 3) under 'grids[1]'; {TAIL}"),
    ("x:\n  - name: a\n    opts:\n      lr: 1\n      lr: 2\n",
     f"line 5: key 'lr' is given twice (lines 4 and 5) under 'x[0].opts'; {TAIL}"),
    ("1: a\n0x1: b\n", f"line 2: key '0x1' is given twice (lines 1 and 2) at the top level; {TAIL}"),
])
def test_duplicates_are_found_at_any_depth(text, message):
    with pytest.raises(DuplicateKeyError) as raised:
        load_yaml_text(text)
    assert str(raised.value) == message


def test_anchors_and_merge_keys_keep_their_meaning(tmp_path):
    text = textwrap.dedent("""\
        defaults: &defaults {lr: 0.1, epochs: 10}
        fast:
          <<: *defaults
          lr: 1.0
        both:
          <<: [*defaults, {warmup: 2}]
        same: *defaults
        """)
    path = tmp_path / "merge.yaml"
    path.write_text(text)
    assert load_yaml_file(path) == yaml.safe_load(text) == {
        "defaults": {"lr": 0.1, "epochs": 10},
        "fast": {"lr": 1.0, "epochs": 10},
        "both": {"lr": 0.1, "epochs": 10, "warmup": 2},
        "same": {"lr": 0.1, "epochs": 10},
    }
    with pytest.raises(DuplicateKeyError, match="key 'lr' is given twice .* under 'defaults'"):
        load_yaml_text("defaults: &d {lr: 1, lr: 2}\nfast:\n  <<: *d\n")


def test_syntax_errors_name_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("a: [1, 2\n")
    with pytest.raises(yaml.YAMLError, match=f'in "{path}", line 2'):
        load_yaml_file(path)


@pytest.mark.parametrize("text, line", [
    ("a: [1, 2\n", "line 2, column 1: expected ',' or ']', but got '<stream end>' (while parsing a flow "
                   "sequence)"),
    ("a:\n\tb: 1\n", "line 2, column 1: found character '\\t' that cannot start any token (while scanning "
                     "for the next token); YAML indents with spaces, never tabs"),
], ids=["unclosed bracket", "tab"])
def test_a_syntax_error_in_a_grid_file_is_one_line(tmp_path, text, line):
    grid = tmp_path / "grid.yaml"
    grid.write_text(text)
    with pytest.raises(GridSpecError) as refused:
        load_grid(grid, cwd=tmp_path)
    assert str(refused.value) == f"grid file {grid} is not valid YAML: {line}"


SCRIPT = """
import json, sys, yaml
from jsonargparse import ActionConfigFile, ArgumentParser, set_loader
from medtransfer.utils.yaml_files import jsonargparse_yaml_loader
set_loader("yaml", jsonargparse_yaml_loader, exceptions=(yaml.YAMLError,))
parser = ArgumentParser(exit_on_error=False)
parser.add_argument("--config", action=ActionConfigFile)
parser.add_argument("--lr", type=float)
parser.add_argument("--opts", type=dict)
try:
    parsed = parser.parse_args(sys.argv[1:])
    print(json.dumps({"lr": parsed.lr, "opts": parsed.opts}))
except Exception as error:
    cause = error
    while cause is not None and type(cause).__name__ != "DuplicateKeyError":
        cause = cause.__cause__ or cause.__context__
    print(json.dumps({"error": str(cause or error)}))
"""


def parse_with_the_jsonargparse_loader(tmp_path, *argv: str) -> dict:
    """Parse ``argv`` in a fresh interpreter: ``set_loader`` changes jsonargparse for the whole process."""
    done = subprocess.run([sys.executable, "-c", SCRIPT, *argv], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_jsonargparse_loader_names_the_config_file_and_loads_as_jsonargparse_does(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "twice.yaml").write_text("lr: 0.1\nlr: 1e-3\n")
    (tmp_path / "configs" / "once.yaml").write_text("opts:\n  <<: {x: 1, y: 1}\n  y: 2\nlr: 1e-3\n")
    found = parse_with_the_jsonargparse_loader(tmp_path, "--config", "configs/twice.yaml")
    assert found == {"error": f"{tmp_path / 'configs' / 'twice.yaml'} line 2: key 'lr' is given twice "
                              f"(lines 1 and 2) at the top level; {TAIL}"}
    found = parse_with_the_jsonargparse_loader(tmp_path, "--opts", "{a: 1, a: 2}")
    assert found == {"error": f"line 1: key 'a' is given twice (both on line 1) at the top level; {TAIL}"}
    (tmp_path / "configs" / "broken.yaml").write_text("lr: [1\n")
    found = parse_with_the_jsonargparse_loader(tmp_path, "--config", "configs/broken.yaml")
    assert f'in "{tmp_path / "configs" / "broken.yaml"}", line 1' in found["error"]
    # otherwise jsonargparse's own loading: 1e-3 is a float (not YAML 1.1's string), merge keys merge
    assert parse_with_the_jsonargparse_loader(tmp_path, "--config", "configs/once.yaml") == {
        "lr": 0.001, "opts": {"x": 1, "y": 2}}
