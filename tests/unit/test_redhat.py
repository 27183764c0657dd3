"""Red Hat family branches we cannot boot here, pinned down by data and by running the
generated commands for real on copies of real files (sed, grep: same GNU tools as EL)."""

import shutil
import subprocess
from pathlib import Path

import pytest

from provision import steps, wheels
from provision.errors import StepError
from provision.runner import apply_script
from provision.roles.pypiserver import family_vars
from provision.roles.pypiserver import steps as rh_steps

from .conftest import DATA, distro_facts, planned

FILES = DATA / "files"
VAULT = "http://vault.centos.org/7.9.2009"
ALTARCH = "http://vault.centos.org/altarch/7.9.2009"


def vault_step(enabled=True):
    return rh_steps.VaultRepos(VAULT, ALTARCH, enabled=enabled)


def test_vault_urls_are_the_role_vars():
    rh = family_vars("RedHat")
    assert (rh["vault_url"], rh["vault_altarch_url"]) == (VAULT, ALTARCH)


def probe_and_plan(step, facts, repo_dir: Path):
    """Run the step's real probes against repo_dir (as if it were /etc/yum.repos.d)."""
    probed = {}
    for key, fact in step.probes().items():
        probe = fact.command().replace("/etc/yum.repos.d", str(repo_dir))
        res = subprocess.run(["sh", "-c", probe], capture_output=True, text=True)
        probed[key] = fact.parse(res.stdout.strip("\n"), res.returncode)
    return step.plan(facts, probed)


@pytest.fixture
def repos(tmp_path):
    d = tmp_path / "yum.repos.d"
    d.mkdir()
    for name in ("centos7-CentOS-Base.repo", "centos7-CentOS-SCLo-scl-rh.repo", "own-mirror.repo"):
        shutil.copy(FILES / name, d / name.removeprefix("centos7-"))
    return d


def test_centos7_dead_mirrors_point_at_the_vault_once(repos):
    step = vault_step()
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
    kept = probe_and_plan(vault_step(enabled=False), distro_facts("centos-7"), repos)
    assert not kept.changed and "kept (centos7_vault: false)" in kept.note
    for distro in ("rocky-8", "rocky-9", "debian-12"):
        assert probe_and_plan(vault_step(), distro_facts(distro), repos).note == "not CentOS 7"


def aarch64_facts():
    facts = distro_facts("centos-7")
    facts.arch = "aarch64"
    facts.os["PRETTY_NAME"] = "CentOS Linux 7 (AltArch)"
    return facts


def run_sh(cmd: str):
    return subprocess.run(["sh", "-c", cmd], capture_output=True, text=True)


# tests/unit/data/files/centos7-altarch-CentOS-Base.repo is reconstructed (not copied from a
# host) from the CentOS-Base.repo of the CentOS 7 altarch centos-release package (aarch64):
# mirrorlist on, baseurl commented out under mirror.centos.org/altarch/$releasever/.
def test_centos7_altarch_repos_point_at_the_vault_altarch_tree(tmp_path):
    repos = tmp_path / "yum.repos.d"
    repos.mkdir()
    shutil.copy(FILES / "centos7-altarch-CentOS-Base.repo", repos / "CentOS-Base.repo")
    step = vault_step()
    plan = probe_and_plan(step, aarch64_facts(), repos)
    assert plan.note == f"1 repo files -> {ALTARCH} (mirrorlist.centos.org is gone)"
    sed, clean = plan.actions
    assert clean.sh == "yum clean all -q"
    res = run_sh(sed.sh)
    assert res.returncode == 0 and res.stdout == "", res.stdout
    base = (repos / "CentOS-Base.repo").read_text()
    for repo in ("os", "updates", "extras", "centosplus"):
        assert f"\nbaseurl={ALTARCH}/{repo}/$basearch/\n" in base
    assert "mirror.centos.org" not in base and "\nmirrorlist=" not in base
    # every repo, enabled or not, has an active URL line again
    assert base.count("\nbaseurl=") == base.count("\n[") == 4
    assert run_sh(f"awk {rh_steps.q(step.NO_URL)} {repos}/CentOS-Base.repo").stdout == ""
    again = probe_and_plan(step, aarch64_facts(), repos)
    assert not again.changed and again.note == "no repo file uses the dead mirrors"


def test_a_repo_file_left_without_urls_fails_the_step_naming_it(tmp_path):
    """What the rewrite without altarch left on aarch64: mirrorlist commented, no baseurl.
    yum fails on it, so it must not be reported ok (disabled centosplus is no matter)."""
    repos = tmp_path / "yum.repos.d"
    repos.mkdir()
    broken = repos / "CentOS-Base.repo"
    broken.write_text((FILES / "centos7-altarch-CentOS-Base.repo").read_text()
                      .replace("\nmirrorlist=", "\n#mirrorlist="))
    shutil.copy(FILES / "own-mirror.repo", repos / "own-mirror.repo")
    for enabled in (True, False):  # kept repos too: yum cannot work either way
        with pytest.raises(StepError) as exc:
            probe_and_plan(vault_step(enabled), aarch64_facts(), repos)
        assert str(exc.value) == (
            f"{broken} [base] [updates] [extras]: enabled repos with no baseurl, mirrorlist or "
            f"metalink, yum cannot work: give them one (or put back the file's .provision-orig "
            f"copy if an earlier run left it so) and run again")
    assert probe_and_plan(vault_step(), distro_facts("rocky-9"), repos).note == "not CentOS 7"


def test_a_rewrite_that_would_leave_a_repo_without_url_is_undone(tmp_path):
    """A repo whose fallback baseurl is under a path the rewrite does not know (SIG repo
    files such as centos-release-gluster's use $contentdir): after the sed its mirrorlist is
    commented and nothing else is active, so the file is put back and the step fails."""
    repos = tmp_path / "yum.repos.d"
    repos.mkdir()
    sig = repos / "CentOS-Gluster-9.repo"
    original = ("[centos-gluster9]\n"
                "name=CentOS-$releasever - Gluster 9\n"
                "mirrorlist=http://mirrorlist.centos.org?arch=$basearch&release=$releasever&repo=storage-gluster-9\n"
                "#baseurl=http://mirror.centos.org/$contentdir/$releasever/storage/$basearch/gluster-9/\n"
                "gpgcheck=1\n"
                "enabled=1\n"
                "gpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-CentOS-SIG-Storage\n")
    sig.write_text(original)
    shutil.copy(FILES / "centos7-CentOS-Base.repo", repos / "CentOS-Base.repo")
    plan = probe_and_plan(vault_step(), distro_facts("centos-7"), repos)
    *seds, clean = plan.actions
    assert len(seds) == 2 and clean.sh == "yum clean all -q"
    # as the runner sends it: the step's commands under set -e, its last line the report
    res = run_sh(apply_script([(0, plan)]).replace("yum clean all -q", "echo not reached"))
    lines = [ln for ln in res.stdout.splitlines() if ln]
    assert res.returncode == 1 and lines[-1] == "@@@provision:done 0 1" and "not reached" not in res.stdout
    assert lines[-2] == (
        f"{sig} [centos-gluster9]: enabled repos left with no baseurl, mirrorlist or metalink "
        f"by the vault rewrite: original put back, give them a baseurl by hand")
    assert sig.read_text() == original
    assert f"\nbaseurl={VAULT}/os/$basearch/\n" in (repos / "CentOS-Base.repo").read_text()  # fine: kept
    assert sorted(p.name for p in repos.iterdir()) == [
        "CentOS-Base.repo", "CentOS-Base.repo.provision-orig", "CentOS-Gluster-9.repo"]


def test_packages_probe_asks_rpm_and_installs_tar(tmp_path):
    """The real probe under sh, on a host with rpm and no dpkg, then the plan."""
    packages = family_vars("RedHat")["packages"]
    assert packages == ["tar"]
    step = steps.Packages({"RedHat": packages, "Debian": family_vars("Debian")["packages"]},
                          {"RedHat": family_vars("RedHat")["install"]})
    rpm = tmp_path / "rpm"
    for have_tar, expected in ((False, ["yum install -y -q tar"]), (True, [])):
        # rpm -q --whatprovides tar: exit 0 if some package provides it
        rpm.write_text(f'#!/bin/sh\necho "$*" >> "{tmp_path}/log"\nexit {0 if have_tar else 1}\n')
        rpm.chmod(0o755)
        fact = step.probes()["pkgs"]
        out = subprocess.run(["/bin/sh", "-c", fact.command()], capture_output=True,
                             text=True, env={"PATH": str(tmp_path)}).stdout
        plan = step.plan(distro_facts("rocky-9"), {"pkgs": fact.parse(out, 0)})
        assert [a.sh for a in plan.actions] == expected
        assert plan.note == ("tar installed" if have_tar else "install tar")
    assert (tmp_path / "log").read_text().splitlines() == ["-q --whatprovides tar"] * 2


def test_a_failed_tar_install_is_not_blamed_on_python():
    from provision.roles.pypiserver import PypiserverRole

    facts = distro_facts("rocky-9")
    facts.pythons = {}
    packages = steps.Packages({"RedHat": ["tar"]}, {"RedHat": "yum install -y -q {packages}"})
    why = "Error: Unable to find a match: tar"
    assert PypiserverRole().explain_failure(packages, why, facts) == f"installing OS packages failed: {why}"
    assert PypiserverRole().explain_failure(python_step(), why, facts).startswith("no Python 3 obtainable")


def python_step():
    rh = family_vars("RedHat")
    return rh_steps.PythonFromRepos(rh["python_candidates"], rh["current_python"],
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
    plan = planned(python_step(), facts, {"marker": marker} if marker else {})
    if plan.changed:
        assert [a.sh for a in plan.actions] == [expected]
    else:
        assert plan.note == expected


def test_python_install_loop_really_picks_the_first_offered(tmp_path):
    """The generated loop under a real sh with a fake yum offering only python3.11."""
    facts = distro_facts("rocky-9")
    facts.pythons = {"3.9": "/usr/bin/python3.9"}
    cmd = planned(python_step(), facts).actions[0].sh
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
    d = planned(steps.Directory("/srv/pypi/packages", "pypi", "pypi", 0o755), facts)
    v = planned(steps.Venv("/opt/pypiserver/venv", lambda f: ("3.6", "/usr/bin/python3.6")), facts)
    p = planned(steps.PipRequirements("/opt/pypiserver/venv", lambda f: ["pip==21.3.1"],
                                      "/opt/pypiserver/requirements.txt", lambda f: None), facts)
    shells = [a.sh for plan in (d, v, p) for a in plan.actions if isinstance(a, steps.Command)]
    relabels = [s for s in shells if "restorecon -R" in s]
    assert bool(relabels) == selinux_cmds
    if selinux_cmds:
        assert relabels == ["install -d -o pypi -g pypi -m 0755 /srv/pypi/packages && restorecon -R /srv/pypi/packages",
                            "/usr/bin/python3.6 -m venv /opt/pypiserver/venv && restorecon -R /opt/pypiserver/venv",
                            "restorecon -R /opt/pypiserver/venv"]
    assert not any("setenforce" in s for s in shells)


def test_nginx_missing_from_the_repositories_says_what_to_do():
    from provision.roles.pypiserver import PypiserverRole

    packages = steps.Packages({"Debian": ["nginx"]}, {"Debian": "apt-get install -y -q {packages}"})
    why = PypiserverRole().explain_failure(packages, "E: Unable to locate package nginx",
                                           distro_facts("debian-12"))
    assert why.startswith("nginx (the HTTPS front) could not be installed: E: Unable to locate")
    assert "tls: false" in why
