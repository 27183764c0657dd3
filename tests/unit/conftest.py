"""Facts of each distro, from real outputs kept as data (tests/unit/data/facts/*.yml)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from provision.facts import parse_host_facts

DATA = Path(__file__).parent / "data"
DISTROS = sorted(p.stem for p in (DATA / "facts").glob("*.yml"))


def load_distro(name: str) -> dict:
    return yaml.safe_load((DATA / "facts" / f"{name}.yml").read_text())


def distro_facts(name: str):
    return parse_host_facts(load_distro(name)["raw"])


@pytest.fixture
def facts_of():
    return distro_facts
