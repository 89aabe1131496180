"""User-input errors reach the user as their own message, without a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from medtransfer.cli import main
from medtransfer.errors import MedTransferError, find_user_error

REPO = Path(__file__).resolve().parents[1]


def test_find_user_error_walks_the_chain_of_causes():
    user = MedTransferError("the data is not where data.init_args.root says")
    try:
        try:
            raise user
        except MedTransferError as cause:
            raise ValueError("Does not validate against any of the Union subtypes") from cause
    except ValueError as wrapped:
        assert find_user_error(wrapped) is user
    assert find_user_error(ValueError("a bug")) is None


def test_a_missing_dataset_ends_the_command_with_its_message_only(tmp_path, capsys):
    missing = tmp_path / "no-pcam-here"
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", "--config", str(REPO / "configs/data/pcam.yaml"),
              "--data.init_args.root", str(missing)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("medtransfer: error: PCam")
    assert "camelyonpatch_level_2_split_train_x.h5" in err and "Traceback" not in err
