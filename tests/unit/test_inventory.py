"""Host selection: --host forms, inventory groups, variable precedence, clear errors."""

import pytest

from provision.errors import InventoryError
from provision.inventory import parse_host, select

INVENTORY = """
all:
  vars: {pypiserver_port: 8000, known_hosts: /tmp/kh}
  hosts:
    pypi1: {ssh_host: 192.0.2.10, ssh_user: vagrant}
  children:
    prod:
      vars: {pypiserver_port: 9000}
      hosts:
        pypi2: {}
        pypi3: {ssh_port: 2222, pypiserver_port: 9100}
"""


@pytest.fixture
def inv(tmp_path):
    p = tmp_path / "inventory.yml"
    p.write_text(INVENTORY)
    return str(p)


@pytest.mark.parametrize("spec,user,host,port", [
    ("192.168.0.105", None, "192.168.0.105", None),
    ("vagrant@192.168.56.10:2222", "vagrant", "192.168.56.10", 2222),
    ("root@pypi.example.org", "root", "pypi.example.org", None),
    ("deploy@[2001:db8::1]:22", "deploy", "2001:db8::1", 22),
])
def test_parse_host(spec, user, host, port):
    t = parse_host(spec)
    assert (t.ssh_user, t.ssh_host, t.ssh_port) == (user, host, port)


@pytest.mark.parametrize("spec", ["", "a@b@c", "host:port", "host:70000", "user@", "two words"])
def test_bad_host_specs(spec):
    with pytest.raises(InventoryError):
        parse_host(spec)


def test_groups_and_precedence(inv):
    targets = {t.name: t for t in select(None, inv, {})}
    assert list(targets) == ["pypi1", "pypi2", "pypi3"]
    assert targets["pypi1"].ssh_user == "vagrant" and targets["pypi1"].ssh_host == "192.0.2.10"
    assert targets["pypi1"].vars["pypiserver_port"] == 8000
    assert targets["pypi2"].vars["pypiserver_port"] == 9000
    assert targets["pypi3"].vars["pypiserver_port"] == 9100 and targets["pypi3"].ssh_port == 2222
    assert targets["pypi3"].known_hosts == "/tmp/kh"
    # a flag that agrees with the inventory is fine (the flag's form wins)
    (same,) = select(["pypi2"], inv, {"pypiserver_port": "9000"})
    assert same.vars["pypiserver_port"] == "9000"


def test_a_port_flag_that_contradicts_the_inventory_is_refused(inv):
    """The next deploy without the flag would silently put the inventory's port back."""
    with pytest.raises(InventoryError) as err:
        select(["prod"], inv, {"pypiserver_port": 8080})
    assert str(err.value) == (f"pypi2: --port 8080 differs from pypiserver_port: 9000 in {inv}: "
                              "change it there instead (a deploy without --port would put 9000 back)")


def test_a_port_flag_sets_what_the_inventory_leaves_unset(tmp_path):
    p = tmp_path / "inventory.yml"
    p.write_text("all:\n  hosts:\n    pypi1: {ssh_host: 192.0.2.10}\n")
    (t,) = select(None, str(p), {"pypiserver_port": 8080})
    assert t.vars["pypiserver_port"] == 8080


def test_literal_host_inherits_all_vars_of_a_chosen_inventory(inv):
    (t,) = select(["root@198.51.100.7"], inv, {})
    assert t.known_hosts == "/tmp/kh" and t.ssh_user == "root"


def test_no_hosts_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InventoryError, match="no hosts: pass --host"):
        select(None, None, {})


@pytest.mark.parametrize("text,error", [
    ("all: [1, 2\n", "cannot read inventory"),
    ("- a\n- b\n", "top level must be a mapping"),
    ("all:\n  hosts:\n    h: 3\n", "must map to variables"),
    ("all:\n  hosts: [a, b]\n", "hosts of group 'all' must be a mapping"),
    ("all:\n  vars: [a]\n", "vars of group 'all' must be a mapping"),
    ("all:\n  children:\n    g:\n      hosts: a\n", "hosts of group 'g' must be a mapping"),
])
def test_bad_inventories(tmp_path, text, error):
    p = tmp_path / "inv.yml"
    p.write_text(text)
    with pytest.raises(InventoryError, match=error):
        select(None, str(p), {})


def test_example_inventory_parses_and_documents_every_variable():
    from pathlib import Path

    import yaml

    repo = Path(__file__).resolve().parents[2]
    text = (repo / "inventory.example.yml").read_text()
    assert [t.name for t in select(None, str(repo / "inventory.example.yml"), {})] == ["pypi1", "pypi2"]
    defaults = yaml.safe_load((repo / "provision" / "roles" / "pypiserver" / "defaults.yml").read_text())
    for key in list(defaults) + ["ssh_user", "ssh_port", "ssh_key", "known_hosts"]:
        assert f"# {key}:" in text, f"{key} is not documented in inventory.example.yml"


def test_cli_bad_values_are_one_line_errors():
    """Through the real CLI: no traceback, exit 2, the reason on one line (the binary once,
    the same program in this process for the rest)."""
    from tests.helpers import invoke, invoke_here

    for args, needle in [(["--host", "127.0.0.1", "--port", "abc"], "error: --port takes a number, got 'abc'"),
                         (["--host", "127.0.0.1", "--port", "99999"], "out of range"),
                         (["--host", "bad host"], "error: bad host 'bad host'"),
                         (["--host", ""], "names no host"), (["--host", ","], "names no host"),
                         (["--host", "127.0.0.1", "--port", "80"], "below 1024")]:
        res = (invoke if args[-1] == "abc" else invoke_here)("deploy", *args)
        assert res.returncode == 2 and "Traceback" not in res.stderr, res
        assert needle in res.stderr and len(res.stderr.strip().splitlines()) == 1
