"""Facts of each distro, from real outputs kept as data (tests/unit/data/facts/*.yml), and
the two ways a unit test feeds a step its probes: outputs kept as data (`planned`), or the
fact's own command run here under sh against real files (`ask`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from provision.facts import MISSING, Output, parse_host_facts

DATA = Path(__file__).parent / "data"
DISTROS = sorted(p.stem for p in (DATA / "facts").glob("*.yml"))


def load_distro(name: str) -> dict:
    return yaml.safe_load((DATA / "facts" / f"{name}.yml").read_text())


def distro_facts(name: str):
    return parse_host_facts({k: Output(str(v).strip("\n"), 0) for k, v in load_distro(name)["raw"].items()})


def output(raw) -> Output:
    """A section's output as data: text (exit 0), {out: TEXT, rc: N}, or None (never ran:
    the state of a host that has none of it)."""
    if raw is None:
        return MISSING
    if isinstance(raw, dict):
        return Output(str(raw.get("out", "")).strip("\n"), raw.get("rc", 0))
    return Output(str(raw).strip("\n"), 0)


def probed(step, raw: dict | None = None) -> dict:
    """The step's probes parsed from outputs kept as data; a key not given never ran."""
    raw = raw or {}
    return {key: fact.parse(*output(raw.get(key))) for key, fact in step.probes().items()}


def planned(step, facts, raw: dict | None = None):
    """step.plan(facts, ...) from outputs kept as data (see `probed`)."""
    return step.plan(facts, probed(step, raw))


def ask(fact):
    """A fact's command run here under sh (as the gather script runs it), parsed."""
    res = subprocess.run(["sh", "-c", f"exec 2>/dev/null; export LC_ALL=C; {fact.command()}"],
                         capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    return fact.parse(res.stdout.strip("\n"), res.returncode)


@pytest.fixture
def facts_of():
    return distro_facts


def plan_role(role, target, facts, raw_for=None, prepare=None) -> list:
    """(step, plan) for every step of every phase, each planned from outputs kept as data:
    ``raw_for(step) -> {key: output}``, or none (a fresh host: no probe found anything).
    ``prepare(step, facts)`` replaces the steps' own control-side work when given."""
    out = []
    for phase in role.phases(target):
        for step in phase:
            (prepare or (lambda s, f: s.prepare(f)))(step, facts)
            out.append((step, planned(step, facts, raw_for(step) if raw_for else None)))
    return out
