"""Capture what a deployed host prints for every fact the deploy asks, as test data.

    python -m testing.capture [--inventory .testhost/inventory.yml] [--host pypi-test] OUT.yml

Runs the pypiserver role's facts script on the host (read-only: one exec channel, no lock)
and writes each fact's output and exit status, keyed by the fact's repr, with the variables
it was planned with. tests/unit/test_golden.py plans a converged host from such a file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from provision import inventory, wheels
from provision.connection import Remote
from provision.facts import parse_host_facts, section_script, split_sections, host_fact_commands
from provision.roles.pypiserver import PypiserverRole, choose_python


def capture(target) -> dict:
    role = PypiserverRole()
    steps = [s for phase in role.phases(target) for s in phase] + list(role.handlers(target).values())
    facts = {repr(f): f for f in role.probes(target).values()}   # the record, the unit
    for step in steps:
        for fact in step.probes().values():
            facts.setdefault(repr(fact), fact)
    sections = dict(host_fact_commands())
    keys = {}
    for i, (name, fact) in enumerate(facts.items()):
        keys[name] = f"p{i}"
        sections[f"p{i}"] = fact.command()
    remote = Remote(target)
    try:
        out = split_sections(remote.run_script(section_script(sections), timeout=60).stdout)
    finally:
        remote.close()
    host = parse_host_facts(out)
    wheel_names = {}
    if role.vars(target)["offline"]:
        chosen = choose_python(host)
        for f in wheels.ensure_wheelhouse(chosen[0], host.glibc, host.arch):
            wheel_names[f.name] = f.stat().st_size
    from provision import tls

    return {
        "ssh_host": target.ssh_host, "ssh_user": host.ssh_user,
        # the private CA's certificate the host's was signed by (deploy and capture with the
        # same PROVISION_CA_DIR); never its key
        "ca_cert": tls.ensure_ca().cert_pem.decode() if role.vars(target)["tls"] else "",
        "vars": {k: v for k, v in target.vars.items() if not k.startswith("ansible_")
                 and k not in ("ssh_user", "ssh_port", "ssh_key", "known_hosts")},
        "wheels": wheel_names,
        "outputs": {name: {"out": out[k].text, "rc": out[k].rc} for name, k in keys.items()},
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line outputs as literal blocks, so the captured file reads like the host's output."""


def _str(dumper, text):
    block = "\n" in text and "\0" not in text and not text.endswith((" ", "\n"))
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if block else None)


_Dumper.add_representer(str, _str)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inventory", default=".testhost/inventory.yml")
    ap.add_argument("--host", default=None)
    ap.add_argument("out", type=Path)
    args = ap.parse_args(argv)
    targets = inventory.select([args.host] if args.host else None, args.inventory, {})
    data = capture(targets[0])
    header = (f"# Captured by `python -m testing.capture` from the deployed test host {targets[0].name}\n"
              f"# (Debian 12, nspawn): each fact the deploy asks, its output and exit status.\n")
    args.out.write_text(header + yaml.dump(data, Dumper=_Dumper, sort_keys=True, width=120))
    print(f"{args.out}: {len(data['outputs'])} facts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
