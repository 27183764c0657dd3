"""Red Hat family branches we cannot boot here, pinned down by data and by running the
generated commands for real on copies of real files (sed, grep: same GNU tools as EL)."""

import shutil
import subprocess
from pathlib import Path

import pytest

from provision import steps, wheels
from provision.roles.pypiserver import family_vars

from .conftest import DATA, distro_facts

FILES = DATA / "files"
VAULT = "http://vault.centos.org/7.9.2009"


def probe_and_plan(step, facts, repo_dir: Path):
    """Run the step's real probe against repo_dir (as if it were /etc/yum.repos.d)."""
    probe = step.probes()["files"].replace("/etc/yum.repos.d", str(repo_dir))
    out = subprocess.run(["sh", "-c", probe], capture_output=True, text=True).stdout
    return step.plan(facts, {"files": out})


@pytest.fixture
def repos(tmp_path):
    d = tmp_path / "yum.repos.d"
    d.mkdir()
    for name in ("centos7-CentOS-Base.repo", "centos7-CentOS-SCLo-scl-rh.repo", "own-mirror.repo"):
        shutil.copy(FILES / name, d / name.removeprefix("centos7-"))
    return d


def test_centos7_dead_mirrors_point_at_the_vault_once(repos):
    step = steps.VaultRepos(VAULT)
    plan = probe_and_plan(step, distro_facts("centos-7"), repos)
    assert plan.note == f"2 repo files -> {VAULT} (mirrorlist.centos.org is gone)"
    *seds, clean = plan.actions
    assert clean.sh == "yum clean all -q" and len(seds) == 2
    for cmd in seds:
        assert subprocess.run(["sh", "-c", cmd.sh], capture_output=True).returncode == 0
    base = (repos / "CentOS-Base.repo").read_text()
    for repo in ("os", "updates", "extras", "centosplus"):
        assert f"\nbaseurl={VAULT}/{repo}/$basearch/\n" in base
    assert "\nmirrorlist=" not in base and base.count("\n#mirrorlist=http://mirrorlist.centos.org") == 4
    scl = (repos / "CentOS-SCLo-scl-rh.repo").read_text()
    assert f"\nbaseurl={VAULT}/sclo/$basearch/rh/\n" in scl and "\nmirrorlist=" not in scl
    assert (repos / "own-mirror.repo").read_text() == (FILES / "own-mirror.repo").read_text()
    assert (repos / "CentOS-Base.repo.provision-orig").read_text() == (FILES / "centos7-CentOS-Base.repo").read_text()
    again = probe_and_plan(step, distro_facts("centos-7"), repos)
    assert not again.changed and again.note == "no repo file uses the dead mirrors"


def test_vault_opt_out_and_other_distros(repos):
    kept = probe_and_plan(steps.VaultRepos(VAULT, enabled=False), distro_facts("centos-7"), repos)
    assert not kept.changed and "kept (centos7_vault: false)" in kept.note
    for distro in ("rocky-8", "rocky-9", "debian-12"):
        assert probe_and_plan(steps.VaultRepos(VAULT), distro_facts(distro), repos).note == "not CentOS 7"


def python_step():
    rh = family_vars("RedHat")
    return steps.PythonFromRepos(rh["python_candidates"], rh["current_python"],
                                 wheels.supported_pythons(), rh["install"])


@pytest.mark.parametrize("distro,pythons,marker,expected", [
    # EL 9 ships 3.9: try 3.12, then 3.11, then keep python3 and remember
    ("rocky-9", {"3.9": "/usr/bin/python3.9"}, "",
     "if yum install -y -q python3.12 >/dev/null 2>&1; then echo 'installed python3.12'; exit 0; fi\n"
     "if yum install -y -q python3.11 >/dev/null 2>&1; then echo 'installed python3.11'; exit 0; fi\n"
     "yum install -y -q python3\n"
     "mkdir -p /var/lib/provision && echo python3 > /var/lib/provision/python-from-repos"),
    # EL 8 with 3.11 installed: current enough, nothing to do
    ("rocky-8", {"3.6": "/usr/bin/python3.6", "3.11": "/usr/bin/python3.11"}, "", "python 3.11 installed"),
    # EL 8 bare (no python3 at all): python39 is the last candidate before python3
    ("rocky-8", {}, "",
     "if yum install -y -q python3.12 >/dev/null 2>&1; then echo 'installed python3.12'; exit 0; fi\n"
     "if yum install -y -q python3.11 >/dev/null 2>&1; then echo 'installed python3.11'; exit 0; fi\n"
     "if yum install -y -q python39 >/dev/null 2>&1; then echo 'installed python39'; exit 0; fi\n"
     "yum install -y -q python3\n"
     "mkdir -p /var/lib/provision && echo python3 > /var/lib/provision/python-from-repos"),
    # CentOS 7: the base repo's python3 (3.6) is all there is
    ("centos-7", {}, "",
     "yum install -y -q python3\n"
     "mkdir -p /var/lib/provision && echo python3 > /var/lib/provision/python-from-repos"),
    # second run on CentOS 7: the marker says the repos offer nothing newer
    ("centos-7", {"3.6": "/usr/bin/python3.6"}, "python3", "python 3.6: the repos offered nothing newer"),
    ("debian-12", {"3.11": "/usr/bin/python3.11"}, "", "not the Red Hat family"),
])
def test_python_from_repos(distro, pythons, marker, expected):
    facts = distro_facts(distro)
    facts.pythons = pythons
    plan = python_step().plan(facts, {"marker": marker})
    if plan.changed:
        assert [a.sh for a in plan.actions] == [expected]
    else:
        assert plan.note == expected


def test_python_install_loop_really_picks_the_first_offered(tmp_path):
    """The generated loop under a real sh with a fake yum offering only python3.11."""
    facts = distro_facts("rocky-9")
    facts.pythons = {"3.9": "/usr/bin/python3.9"}
    cmd = python_step().plan(facts, {"marker": ""}).actions[0].sh
    fake = tmp_path / "yum"
    fake.write_text('#!/bin/sh\necho "$@" >> "$LOG"\ncase "$*" in *python3.11*) exit 0;; *) exit 1;; esac\n')
    fake.chmod(0o755)
    log = tmp_path / "log"
    res = subprocess.run(["sh", "-c", f"({cmd})"], capture_output=True, text=True,
                         env={"PATH": f"{tmp_path}:/usr/bin:/bin", "LOG": str(log)})
    assert res.returncode == 0 and res.stdout.strip() == "installed python3.11"
    assert log.read_text().splitlines() == ["install -y -q python3.12", "install -y -q python3.11"]


@pytest.mark.parametrize("distro,selinux_cmds", [("centos-7", True), ("rocky-9", True), ("debian-12", False)])
def test_selinux_relabels_what_it_creates(distro, selinux_cmds):
    facts = distro_facts(distro)
    d = steps.Directory("/srv/pypi/packages", "pypi", "pypi", 0o755).plan(facts, {"stat": ""})
    v = steps.Venv("/opt/pypiserver/venv", lambda f: ("3.6", "/usr/bin/python3.6")).plan(facts, {"cfg": ""})
    p = steps.PipRequirements("/opt/pypiserver/venv", lambda f: ["pip==21.3.1"], "/opt/pypiserver/requirements.txt",
                              lambda f: None).plan(facts, {"dists": ""})
    shells = [a.sh for plan in (d, v, p) for a in plan.actions if isinstance(a, steps.Command)]
    relabels = [s for s in shells if "restorecon -R" in s]
    assert bool(relabels) == selinux_cmds
    if selinux_cmds:
        assert relabels == ["install -d -o pypi -g pypi -m 0755 /srv/pypi/packages && restorecon -R /srv/pypi/packages",
                            "/usr/bin/python3.6 -m venv /opt/pypiserver/venv && restorecon -R /opt/pypiserver/venv",
                            "restorecon -R /opt/pypiserver/venv"]
    assert not any("setenforce" in s for s in shells)
