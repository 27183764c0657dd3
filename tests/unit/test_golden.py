"""Whole plans as data: the deploy a fresh host of each distro gets (golden files), and a
converged host (real outputs captured from a deployed test host) on which no step changes.

A golden file is every step of both phases, planned against the distro's facts file with
nothing found by any probe, and every action it would run. A change to a step shows up here
as a diff to review; to accept it: PROVISION_UPDATE_GOLDEN=1 pytest tests/unit/test_golden.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from provision.facts import Output
from provision.inventory import Target
from provision.roles.pypiserver import PypiserverRole
from provision.steps import Command, Upload, Wheelhouse, WriteFile

from .conftest import DATA, DISTROS, distro_facts, load_distro, plan_role, probed

SUPPORTED = [d for d in DISTROS if load_distro(d)["expected"].get("chosen_python")
             and d not in ("centos-8", "centos-stream-8")]
UPDATE = os.environ.get("PROVISION_UPDATE_GOLDEN") == "1"


def render_plan(plans) -> str:
    """Every step, its note and actions; certificates (issued fresh each time), the
    session's CA folder and the programs shipped from provision/hostside as placeholders."""
    from provision import hostside, tls

    shipped = {p.read_bytes(): f"provision/hostside/{p.name}" for p in Path(hostside.__file__).parent.glob("*.py")}
    out = []
    for step, plan in plans:
        note = plan.note.replace(str(tls.ca_dir()), "$PROVISION_CA_DIR")
        out.append(f"{'changed' if plan.changed else 'ok':8}{step.name}  [{note}]")
        for a in plan.actions:
            if isinstance(a, Command):
                out += ["    $ " + line for line in a.sh.splitlines()]
            elif isinstance(a, WriteFile):
                size = "PEM" if b"-----BEGIN" in a.content else shipped.get(a.content, f"{len(a.content)} bytes")
                out.append(f"    write {a.path} ({a.owner}:{a.group} {a.mode:04o}, {size})")
                if b"-----BEGIN" in a.content:
                    out.append("    | (PEM)")
                elif a.content in shipped:
                    pass
                elif not a.secret:
                    out += ["    | " + line for line in a.content.decode().splitlines()]
            elif isinstance(a, Upload):
                out.append(f"    upload {len(a.files)} files to {a.dest}")
    return "\n".join(out) + "\n"


def fresh(distro: str) -> str:
    target = Target(name="pypi1", ssh_host="192.0.2.10", vars={})
    return render_plan(plan_role(PypiserverRole(), target, distro_facts(distro)))


@pytest.mark.parametrize("distro", SUPPORTED)
def test_fresh_host_plan_is_the_golden_file(distro):
    path = DATA / "plans" / f"{distro}.txt"
    got = fresh(distro)
    if UPDATE or not path.exists():
        path.write_text(got)
    assert got == path.read_text(), f"the plan for a fresh {distro} host changed: review the diff"


CACHE_VARS = {"pypi_cache": True, "pypi_cache_deny": ["evil-*", "typo?quest"], "pypi_cache_min_age": "3d"}


@pytest.mark.parametrize("distro", ["centos-7", "rocky-9", "debian-12"])
def test_fresh_host_plan_with_the_pull_through_cache(distro):
    """pypi_cache on: the Red Hat family (which cannot boot here) as data: SELinux's cache
    label, nginx's own user on the cache directories, the origin's unit on systemd 219."""
    path = DATA / "plans" / f"{distro}-cache.txt"
    target = Target(name="pypi1", ssh_host="192.0.2.10", vars=dict(CACHE_VARS))
    got = render_plan(plan_role(PypiserverRole(), target, distro_facts(distro)))
    if UPDATE or not path.exists():
        path.write_text(got)
    assert got == path.read_text(), f"the plan with pypi_cache for a fresh {distro} host changed: review the diff"


def test_every_supported_distro_has_a_golden_file():
    assert sorted(p.stem for p in (DATA / "plans").glob("*.txt") if not p.stem.endswith("-cache")) == sorted(SUPPORTED)
    # the README's claims, each with a facts file and a golden plan
    for claimed in ("debian-11", "debian-12", "debian-13", "ubuntu-20.04", "ubuntu-22.04",
                    "ubuntu-24.04", "centos-7", "rocky-8", "rocky-9", "alma-8", "alma-9"):
        assert claimed in SUPPORTED, claimed


def converged_outputs(name: str) -> tuple[dict, dict]:
    data = yaml.safe_load((DATA / "hosts" / f"{name}.yml").read_text())
    return data, {fact: Output(v.get("out", ""), v.get("rc")) for fact, v in data["outputs"].items()}


def test_converged_host_plans_nothing(tmp_path, monkeypatch):
    """Outputs captured from a deployed test host (testing/capture.py): every step is ok.

    A change meant to alter what a deploy writes (the unit, the record...) fails here: every
    deployed host would change too. If that is intended, say so in the change and recapture:
    python -m testing.capture tests/unit/data/hosts/debian-12-converged.yml"""
    data, outputs = converged_outputs("debian-12-converged")
    # the CA that signed the host's certificate (its key is not needed: nothing is issued)
    ca = tmp_path / "ca"
    ca.mkdir()
    (ca / "ca.crt").write_text(data["ca_cert"])
    (ca / "ca.key").write_text("not kept: a converged host needs no new certificate\n")
    monkeypatch.setenv("PROVISION_CA_DIR", str(ca))
    facts = distro_facts("debian-12")
    facts.ssh_user = data["ssh_user"]
    target = Target(name="pypi1", ssh_host=data["ssh_host"], vars=data["vars"])

    def prepare(step, facts):
        if not isinstance(step, Wheelhouse):
            return step.prepare(facts)
        # the control side's download, replaced by files of the recorded names and sizes
        step.prepared = []
        for name, size in data["wheels"].items():
            (tmp_path / name).write_bytes(b"\0" * size)
            step.prepared.append(tmp_path / name)

    def raw_for(step):
        raw = {}
        for key, fact in step.probes().items():
            got = outputs[repr(fact)]
            raw[key] = {"out": got.text, "rc": got.rc}
        return raw

    role = PypiserverRole()
    parsed = {key: fact.parse(*outputs[repr(fact)]) for key, fact in role.probes(target).items()}
    assert role.settle(target, parsed) == (False, [])     # the record says what the inventory says
    plans = plan_role(role, target, facts, raw_for, prepare)
    changed = [(s.name, p.note) for s, p in plans if p.changed]
    assert not changed
    assert len(plans) >= 15
    for handler in role.handlers(target).values():        # no restart owed
        assert not handler.pending(probed(handler, raw_for(handler)))
