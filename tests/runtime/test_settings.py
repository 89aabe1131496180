"""Every MEDTRANSFER_* environment variable is read in runtime/settings.py alone, documented, and refused
with one line when its value cannot be used."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from medtransfer.runtime import settings
from medtransfer.runtime.settings import SETTINGS, SettingError

REPO = Path(__file__).resolve().parents[2]
READ = re.compile(r"(?:environ(?:\.get)?\s*[\[(]|getenv\s*\()\s*[\"'](MEDTRANSFER_\w+)")


def test_no_module_but_settings_reads_a_medtransfer_variable():
    readers = {}
    for path in (REPO / "medtransfer").rglob("*.py"):
        names = READ.findall(path.read_text())
        if names and path.name != "settings.py":
            readers[str(path.relative_to(REPO))] = names
    assert readers == {}


def test_every_setting_is_documented_and_every_documented_one_exists():
    page = (REPO / "docs" / "settings.md").read_text()
    documented = set(re.findall(r"`(MEDTRANSFER_\w+)`", page))
    assert documented == {setting.name for setting in SETTINGS}


@pytest.mark.parametrize(("name", "value", "read"), [
    ("MEDTRANSFER_NUM_WORKERS", "many", settings.num_workers),
    ("MEDTRANSFER_PROGRESS", "maybe", settings.progress_forced),
    ("MEDTRANSFER_REQUEUE_GRACE_S", "soon", settings.requeue_grace_s),
    ("MEDTRANSFER_OFFLINE", "perhaps", settings.offline),
])
def test_an_unusable_value_is_a_named_error(monkeypatch, name, value, read):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingError, match=f"{name}={value!r}"):
        read()


def test_values_as_the_code_uses_them(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDTRANSFER_NUM_WORKERS", " 3 ")
    monkeypatch.setenv("MEDTRANSFER_PROGRESS", "off")
    monkeypatch.setenv("MEDTRANSFER_CACHE", str(tmp_path))
    monkeypatch.setenv("MEDTRANSFER_REQUEUE_GRACE_S", "540")
    monkeypatch.delenv("MEDTRANSFER_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert settings.num_workers() == 3 and settings.progress_forced() is False
    assert settings.cache_root() == tmp_path and settings.requeue_grace_s() == 540.0
    assert settings.offline() is True
    with pytest.raises(KeyError):
        settings.raw("MEDTRANSFER_NOT_A_SETTING")
