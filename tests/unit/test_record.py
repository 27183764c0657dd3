"""The host's record of its last deploy: written by deploy, read back by every role.

Precedence, lowest first: defaults < record < inventory < flags; the record's values pass the
same validation as the inventory's; a host deployed before records keeps its unit's port.
"""

from __future__ import annotations

import json

import pytest

from provision.errors import InventoryError, ProvisionError
from provision.inventory import Target
from provision.roles import RECORD_FORMAT, RECORDED, legacy_record, parse_record, record_content
from provision.roles.accounts import AccountsRole
from provision.roles.pypiserver import PypiserverRole
from provision.validate import role_vars

from .test_validate import through_the_corpus


def target(**vars_):
    return Target(name="pypi1", ssh_host="192.0.2.10", vars=dict(vars_))


def record(**settings):
    return json.dumps({"format": RECORD_FORMAT, "service": "pypiserver", "settings": settings})


def test_deploy_writes_what_it_reads_back():
    v = role_vars(target(pypiserver_port=8081, pypiserver_extra_args="--disable-fallback"))
    text = record_content(v)
    assert record_content(v) == text                       # deterministic: a no-op stays ok
    back = parse_record(text, "pypi1:/var/lib/provision/pypiserver.json")
    assert back["pypiserver_port"] == 8081 and back["pypiserver_extra_args"] == ["--disable-fallback"]
    assert "pypiserver_service" not in back                 # it names the record, not read from it


def test_precedence_flag_inventory_record_default():
    role = PypiserverRole()
    probed = {"record": record(pypiserver_port=8081, pypiserver_packages_dir="/srv/idx"), "unit": None}
    t = target()
    changed, notes = role.settle(t, probed)
    v = role.vars(t)
    assert changed and (v["pypiserver_port"], v["pypiserver_packages_dir"]) == (8081, "/srv/idx")
    assert notes[0].startswith("pypiserver_port 8081 from the host's record of its last deploy "
                               "(/var/lib/provision/pypiserver.json)")
    assert len(notes) == 2
    t = target(pypiserver_port=9000)                        # the inventory (or a flag) wins
    changed, notes = role.settle(t, probed)
    assert role.vars(t)["pypiserver_port"] == 9000 and not any("port" in n for n in notes)
    t = target()                                            # no record: the defaults
    assert role.settle(t, {"record": None, "unit": None}) == (False, [])
    assert role.vars(t)["pypiserver_port"] == 8000 and t.deployed is False


def test_a_record_that_equals_the_defaults_changes_nothing():
    v = role_vars(target())
    t = target()
    assert PypiserverRole().settle(t, {"record": record_content(v), "unit": "ExecStart=x"}) == (False, [])
    assert t.deployed is True


@pytest.mark.parametrize("settings,why", [
    ({"pypiserver_port": 80}, "pypiserver_port"),
    ({"pypiserver_packages_dir": "/etc"}, "pypiserver_packages_dir"),
    ({"pypiserver_listen": "0.0.0.0\nExecStartPre=/bin/sh"}, "pypiserver_listen"),
])
def test_record_values_pass_the_same_validation(settings, why):
    with pytest.raises(InventoryError, match=why) as err:
        PypiserverRole().settle(target(), {"record": record(**settings), "unit": None})
    assert "(read from /var/lib/provision/pypiserver.json)" in str(err.value)


@pytest.mark.parametrize("text,why", [
    ("{not json", "is not a record this tool wrote"),
    ('{"settings": []}', "is not a record this tool wrote"),
    (json.dumps({"format": RECORD_FORMAT + 1, "settings": {}}), "newer version of this tool"),
])
def test_unreadable_records_are_one_line(text, why):
    with pytest.raises(InventoryError, match=why):
        parse_record(text, "pypi1:/var/lib/provision/pypiserver.json")


def test_a_host_deployed_before_records_keeps_its_units_port():
    unit = ('ExecStart="/opt/pypiserver/venv/bin/pypi-server" "run" "--host" "0.0.0.0" '
            '"--port" "8080" "--passwords" "/etc/pypiserver/htpasswd"')
    assert legacy_record(unit) == {"pypiserver_port": 8080}
    assert legacy_record("ExecStart=/opt/v/bin/pypi-server run --port 8090 -P x /srv") == \
        {"pypiserver_port": 8090}
    t = target()
    changed, notes = PypiserverRole().settle(t, {"record": None, "unit": unit})
    assert changed and PypiserverRole().vars(t)["pypiserver_port"] == 8080
    assert notes == ["pypiserver_port 8080 from the host's unit of its last deploy "
                     "(/etc/systemd/system/pypiserver.service); set it in the inventory to change it"]


def test_roles_that_need_a_server_refuse_a_bare_host():
    with pytest.raises(ProvisionError, match=r"^pypiserver is not deployed on pypi1: deploy first "
                                             r"\(invoke deploy -H pypi1\)$"):
        AccountsRole("list").settle(target(), {"record": None, "unit": None})
    t = target()
    AccountsRole("list").settle(t, {"record": record(pypiserver_htpasswd="/etc/idx/htpasswd",
                                                     pypiserver_config_dir="/etc/idx"), "unit": None})
    assert AccountsRole("list").phases(t)[0][0].path == "/etc/idx/htpasswd"


def test_the_probes_are_quoted():
    probes = PypiserverRole().probes(target(pypiserver_service="pypi-x"))
    assert probes["record"].command() == "cat /var/lib/provision/pypi-x.json"
    assert probes["unit"].command() == "cat /etc/systemd/system/pypi-x.service"
    assert probes["record"].parse("", 1) is None      # no record: never deployed (or before records)


@pytest.mark.parametrize("key", sorted(set(RECORDED) - {"pypiserver_service"}))
def test_the_hostile_corpus_through_the_record(key):
    through_the_corpus(key, _through_the_record)


def _through_the_record(key, value):
    """A record is read back from the host: each hostile value is refused in one line naming
    the record, or lands exactly as the same value set in the inventory would."""
    t = target()
    try:
        PypiserverRole().settle(t, {"record": record(**{key: value}), "unit": None})
    except InventoryError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith(f"pypi1: {key} ")
        assert message.endswith("(read from /var/lib/provision/pypiserver.json)")
        with pytest.raises(InventoryError):         # the inventory refuses it too
            role_vars(target(**{key: value}))
        return
    assert PypiserverRole().vars(t)[key] == role_vars(target(**{key: value}))[key]


def test_a_format_1_record_does_not_keep_the_previews_static_index_false():
    """static_index: false was the preview's default in format 1, not a choice: the static
    index (now auto) comes on at the next deploy; a format 2 false is a choice, kept."""
    old = json.dumps({"format": 1, "service": "pypiserver",
                      "settings": {"static_index": False, "pypiserver_port": 8081}})
    assert parse_record(old, "h") == {"pypiserver_port": 8081}
    assert parse_record(record(static_index=False), "h") == {"static_index": False}
