"""The installed tool holds no test harness: `testing/` (nspawn hosts, testhost tasks) is this
checkout's, added by its tasks.py; the product's inventory lookup knows only a fallback hook."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from provision import inventory
from provision.errors import InventoryError

REPO = Path(__file__).resolve().parents[2]


def test_the_package_imports_nothing_of_the_harness():
    code = ("import sys, provision.tasks, provision.cli, provision.runner, provision.inventory; "
            "print(sorted(m for m in sys.modules if m == 'testing' or m.startswith('testing.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/",
                         check=True).stdout
    assert out.strip() == "[]"
    assert not list((REPO / "provision").glob("testhost*"))
    assert 'packages = ["provision"]' in (REPO / "pyproject.toml").read_text()


def test_the_provision_binary_has_no_testhost_tasks():
    binary = Path(sys.executable).parent / "provision"
    listed = subprocess.run([str(binary), "--list"], capture_output=True, text=True, cwd="/",
                            check=True).stdout
    assert "deploy" in listed and "testhost" not in listed


def test_a_checkouts_fallback_inventory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(inventory, "FALLBACKS", [(".testhost/inventory.yml", "boot one")])
    with pytest.raises(InventoryError, match=r"\(see inventory.example.yml\), or boot one$"):
        inventory.select(None, None, {})
    (tmp_path / ".testhost").mkdir()
    (tmp_path / ".testhost" / "inventory.yml").write_text(
        "all:\n  vars: {known_hosts: /tmp/kh-test}\n  hosts:\n    pt1: {ssh_host: 192.0.2.1}\n")
    assert [t.name for t in inventory.select(None, None, {})] == ["pt1"]
    (literal,) = inventory.select(["root@192.0.2.9"], None, {})
    assert literal.known_hosts is None          # a fallback's all.vars are not inherited
    (tmp_path / "inventory.yml").write_text("all:\n  hosts:\n    mine: {ssh_host: 192.0.2.5}\n")
    assert [t.name for t in inventory.select(None, None, {})] == ["mine"]   # inventory.yml first
