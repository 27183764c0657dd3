"""Facts parsed from real outputs of CentOS 7, Rocky 8/9, Debian 12 (and one OS we refuse)."""

import subprocess

import pytest
import yaml

import provision.facts as facts_module
from provision.facts import PathInfo

from provision.facts import Output, host_fact_commands, section_script, split_sections
from provision.roles.pypiserver import choose_python
from provision.wheels import pins_for

from .conftest import DATA, DISTROS, distro_facts, load_distro


@pytest.mark.parametrize("distro", DISTROS)
def test_facts_parse_per_distro(distro):
    expected = load_distro(distro)["expected"]
    facts = distro_facts(distro)
    for attr in ("family", "os_id", "os_major", "os_pretty", "pythons", "systemd", "selinux",
                 "selinux_enabled", "firewalld", "glibc"):
        assert getattr(facts, attr) == expected[attr], attr
    chosen = choose_python(facts)
    assert (chosen[0] if chosen else None) == expected["chosen_python"]
    if chosen:
        pypiserver = next(p for p in pins_for(chosen[0]) if p.startswith("pypiserver=="))
        assert pypiserver == f"pypiserver=={expected['pypiserver']}"


def test_sections_round_trip_through_a_real_shell():
    """The gathering script runs under sh and splits back into its sections."""
    sections = {"one": "echo a; echo b", "two": "false", "three": "echo c >&2; echo d",
                "reads_stdin": "cat"}
    out = subprocess.run(["sh", "-s"], input=section_script(sections), capture_output=True,
                         text=True, timeout=10).stdout
    assert split_sections(out) == {"one": Output("a\nb", 0), "two": Output("", 1),
                                   "three": Output("d", 0), "reads_stdin": Output("", 0)}


def test_host_facts_gather_locally():
    """Every host-fact command runs on this (Debian) machine and parses."""
    out = subprocess.run(["sh", "-s"], input=section_script(host_fact_commands()),
                         capture_output=True, text=True, timeout=20).stdout
    from provision.facts import parse_host_facts

    facts = parse_host_facts(split_sections(out))
    assert facts.family == "Debian"
    assert facts.glibc and facts.arch


def _plain(value):
    """A parsed value as YAML data: dataclasses as mappings, sets sorted, modes as '0640'."""
    import dataclasses

    if isinstance(value, PathInfo):
        return {"owner": value.owner, "group": value.group, "mode": f"{value.mode:04o}"}
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode()
    return value


RESOURCE_CASES = yaml.safe_load((DATA / "resource-facts.yml").read_text())


@pytest.mark.parametrize("case", RESOURCE_CASES, ids=lambda c: f"{c['fact']} on {c['distro']}")
def test_resource_fact_parses_real_output(case):
    assert case["distro"] in DISTROS and case["source"]
    fact = eval(case["fact"], {name: getattr(facts_module, name) for name in facts_module.__all__})
    assert _plain(fact.parse(case["out"], case.get("rc", 0))) == case["value"]


def test_every_resource_fact_has_real_output():
    kinds = {c["fact"].split("(")[0] for c in RESOURCE_CASES}
    resource = {name for name in facts_module.__all__ if isinstance(getattr(facts_module, name), type)
                and issubclass(getattr(facts_module, name), facts_module.Fact)
                and getattr(facts_module, name) is not facts_module.Fact} - {
                    type(f).__name__ for f in facts_module.HOST_FACTS.values()}
    assert resource - kinds <= {"FileText", "PathExists"}   # cat and test -e: nothing to parse
