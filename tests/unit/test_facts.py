"""Facts parsed from real outputs of CentOS 7, Rocky 8/9, Debian 12 (and one OS we refuse)."""

import subprocess

import pytest

from provision.facts import Output, host_fact_commands, section_script, split_sections
from provision.roles.pypiserver import choose_python
from provision.wheels import pins_for

from .conftest import DISTROS, distro_facts, load_distro


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
