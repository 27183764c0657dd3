"""A venv with exact pins, and the wheels shipped for an offline install."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..facts import DirListing, FileText, HostFacts, VenvState
from ..wheels import canonical_name
from .base import Command, Plan, Step, Upload, WriteFile, q


class Venv(Step):
    """A virtualenv made by the chosen interpreter; rebuilt if its Python changed."""

    def __init__(self, path: str, python: Callable[[HostFacts], tuple[str, str]], notify=(),
                 without_pip: bool = False):
        self.path, self.python, self.notify = path, python, notify
        # offline, the pinned pip wheel installs pip and everything else in one go: saves
        # ensurepip's install and the upgrade after it (~2.5 s of a fresh deploy)
        self.without_pip = without_pip
        self.name = f"Ensure the virtualenv {path} exists."

    def probes(self):
        return {"venv": VenvState(self.path)}

    def plan(self, facts, probed):
        version, interpreter = self.python(facts)
        venv = probed["venv"]
        # bin/pip is the last thing `python -m venv` makes: without it (ensurepip died
        # half-way) the venv is rebuilt rather than trusted
        if venv.complete and venv.version == version:
            return Plan(note=f"python {version}")
        cmd = f"{q(interpreter)} -m venv{' --without-pip' if self.without_pip else ''} {q(self.path)}"
        if venv.present:
            cmd = f"rm -rf {q(self.path)} && {cmd}"
        if facts.selinux_enabled:
            cmd += f" && restorecon -R {q(self.path)}"
        why = f"python {venv.version} -> {version}" if venv.version else f"create with python {version}"
        return Plan([Command(cmd)], why)


class PipRequirements(Step):
    """Exact pins installed in a venv (pip itself first: old pips cannot read new wheels)."""

    def __init__(self, venv: str, pins: Callable[[HostFacts], list[str]], requirements: str,
                 find_links: Callable[[HostFacts], str | None], notify=(),
                 python_version: Callable[[HostFacts], str] | None = None):
        self.venv, self.pins, self.requirements = venv, pins, requirements
        self.find_links, self.notify = find_links, notify
        self.python_version = python_version
        self.name = f"Ensure the pinned packages are installed in {venv}."

    def probes(self):
        return {"venv": VenvState(self.venv), "requirements": FileText(self.requirements)}

    def plan(self, facts, probed):
        pins = self.pins(facts)
        venv = probed["venv"]
        # a venv about to be rebuilt for another Python has none of its packages
        rebuilt = self.python_version and venv.version != self.python_version(facts)
        have = {} if rebuilt else venv.dists
        wanted = {canonical_name(p.split("==")[0]): p.split("==")[1] for p in pins}
        wrong = sorted(n for n, v in wanted.items() if have.get(n) != v)
        if not wrong:
            return Plan(note=f"{len(wanted)} pins match")
        py = f"{q(self.venv)}/bin/python -m pip"
        # wheels only: every pin has one (checked per Python); a source build would need a
        # compiler on the server and fail late and obscurely
        opts = "--disable-pip-version-check --no-input -q --only-binary=:all:"
        links = self.find_links(facts)
        if links:
            opts += f" --no-index --find-links {q(links)}"
        pip_pin = next((p for p in pins if canonical_name(p.split("==")[0]) == "pip"), None)
        text = "".join(p + "\n" for p in pins).encode()
        old = probed["requirements"]
        actions = [WriteFile(self.requirements, text, mode=0o644,
                             old=(old + "\n").encode() if old else b"")]
        if links and pip_pin and "pip" not in have:
            # a venv made --without-pip: pip runs from its own wheel and installs all pins
            wheel = f"{links}/pip-{wanted['pip']}-py3-none-any.whl/pip"
            actions.append(Command(f"{q(self.venv)}/bin/python {q(wheel)} install {opts} "
                                   f"-r {q(self.requirements)}"))
            note = f"install {len(wanted)} pins"
        else:
            if pip_pin and have.get("pip") != wanted["pip"]:
                actions.append(Command(f"{py} install {opts} {q(pip_pin)}"))
            actions.append(Command(f"{py} install {opts} -r {q(self.requirements)}"))
            note = ""
        if facts.selinux_enabled:  # new files under the venv get their default labels
            actions.append(Command(f"restorecon -R {q(self.venv)}"))
        if note:
            return Plan(actions, note)
        shown = ", ".join(f"{n}=={wanted[n]}" for n in wrong[:4]) + (" ..." if len(wrong) > 4 else "")
        return Plan(actions, f"install {shown}")


class Wheelhouse(Step):
    """Wheels shipped from the control machine, so an offline host can install."""

    def __init__(self, dest: str, files: Callable[[HostFacts], list[Path] | None]):
        self.dest, self.files = dest, files
        self.prepared: list[Path] | None = None
        self.name = f"Ensure the wheelhouse {dest} holds the pinned wheels."

    def prepare(self, facts):
        self.prepared = self.files(facts)   # downloads the pinned wheels here (cached)

    def probes(self):
        return {"ls": DirListing(self.dest)}

    def plan(self, facts, probed):
        files = self.prepared
        if files is None:
            return Plan(note="online: the host installs from its index")
        missing = [f for f in files if probed["ls"].get(f.name) != f.stat().st_size]
        if not missing:
            return Plan(note=f"{len(files)} wheels present")
        size = sum(f.stat().st_size for f in missing)
        return Plan([Upload(missing, self.dest)], f"send {len(missing)} wheels, {size / 1e6:.1f} MB")
