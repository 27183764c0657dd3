"""Steps as data: for each case, facts + probed state -> exact commands, or a no-op note."""


from pathlib import Path

import pytest
import yaml

from provision import steps, wheels
from provision.errors import StepError
from provision.roles.accounts import steps as account_steps
from provision.roles.pypiserver import FAMILIES, family_vars
from provision.roles.pypiserver import steps as rh_steps

from .conftest import DATA, ask, distro_facts, planned

FACTORIES = {
    "packages": lambda args: steps.Packages({f: family_vars(f)["packages"] for f in FAMILIES},
                                            {f: family_vars(f)["install"] for f in FAMILIES}),
    "system_user": lambda args: steps.SystemUser(
        args["user"], args["home"], {f: family_vars(f)["nologin"] for f in FAMILIES},
        guard=args.get("guard", False)),
    "directory": lambda args: steps.Directory(**args),
    "firewall_port": lambda args: steps.FirewallPort(**args),
    "service": lambda args: steps.Service(**args),
    "port_free": lambda args: steps.PortFree(**args),
    "port_handover": lambda args: steps.PortHandover(**args),
    "service_off": lambda args: steps.ServiceOff(**args),
    "python_from_repos": lambda args: rh_steps.PythonFromRepos(
        family_vars("RedHat")["python_candidates"], family_vars("RedHat")["current_python"],
        wheels.supported_pythons(), family_vars("RedHat")["install"]),
}


def cases():
    out = []
    for path in sorted((DATA / "steps").glob("*.yml")):
        for case in yaml.safe_load(path.read_text()):
            out.append(pytest.param(path.stem, case, id=f"{path.stem}: {case['case']}"))
    return out


def shell_of(plan):
    return [a.sh if isinstance(a, steps.Command) else f"write {a.path}: {a.content.decode().strip()}"
            for a in plan.actions]


@pytest.mark.parametrize("kind,case", cases())
def test_step_case(kind, case):
    step = FACTORIES[kind](case.get("args") or {})
    facts = distro_facts(case["facts"])
    if "error" in case:
        with pytest.raises(StepError, match=case["error"].replace("(", r"\(").replace(")", r"\)")):
            planned(step, facts, case["probed"])
        return
    plan = planned(step, facts, case["probed"])
    if "noop" in case:
        assert not plan.changed, shell_of(plan)
        assert plan.note == case["noop"]
    else:
        assert shell_of(plan) == case["commands"]
        if "note" in case:
            assert plan.note == case["note"]


def test_every_factory_has_cases():
    assert {p.stem for p in (DATA / "steps").glob("*.yml")} == set(FACTORIES)


def test_file_step_plans_atomic_write_then_reload_and_diff(tmp_path):
    path = tmp_path / "x.service"
    path.write_text("old\n")
    f = steps.File(str(path), "new\n", owner=_me()[0], group=_me()[1], mode=0o644,
                   on_change=("systemctl daemon-reload",))
    path.chmod(0o644)
    facts = distro_facts("debian-12")
    plan = f.plan(facts, {"file": ask(f.probes()["file"])})   # old content: same round trip
    write, reload = plan.actions
    assert isinstance(write, steps.WriteFile) and write.content == b"new\n" and write.old == b"old\n"
    assert reload.sh == "systemctl daemon-reload"
    path.write_text("new\n")
    assert not f.plan(facts, {"file": ask(f.probes()["file"])}).changed
    path.chmod(0o600)
    assert f.plan(facts, {"file": ask(f.probes()["file"])}).note.startswith("fix owner/mode")


def _me() -> tuple[str, str]:
    import grp
    import os
    import pwd
    return pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name


def test_secret_file_content_is_never_probed_and_kept(tmp_path):
    path = tmp_path / "htpasswd"
    f = steps.File(str(path), None, _me()[0], _me()[1], 0o640, secret=True)
    assert not f.probes()["file"].content and "base64" not in f.probes()["file"].command()
    created = f.plan(distro_facts("debian-12"), {"file": ask(f.probes()["file"])})
    (write,) = created.actions
    assert (write.content, write.group, write.mode) == (b"", _me()[1], 0o640)
    path.write_text("demo:$2b$12$hash\n")
    path.chmod(0o640)
    kept = f.plan(distro_facts("debian-12"), {"file": ask(f.probes()["file"])})
    assert not kept.changed and kept.note == "present, content kept"


def _venv(root: Path, version="3.11.2", pip=True, dists=()) -> Path:
    """A venv's shape on disk: what the VenvState fact reads."""
    (root / "bin").mkdir(parents=True)
    (root / "pyvenv.cfg").write_text(f"home = /usr/bin\nversion = {version}\n")
    for exe in ("python",) + (("pip",) if pip else ()):
        (root / "bin" / exe).write_text("")
        (root / "bin" / exe).chmod(0o755)
    site = root / "lib" / f"python{version.rsplit('.', 1)[0]}" / "site-packages"
    site.mkdir(parents=True)
    for d in dists:
        (site / f"{d}.dist-info").mkdir()
    return root


def test_venv_rebuilt_when_python_changes(tmp_path):
    v = steps.Venv(str(tmp_path / "v"), lambda facts: ("3.11", "/usr/bin/python3.11"))
    plan = lambda: v.plan(distro_facts("debian-12"), {"venv": ask(v.probes()["venv"])})  # noqa: E731
    assert shell_of(plan()) == [f"/usr/bin/python3.11 -m venv {tmp_path}/v"]
    _venv(tmp_path / "v", "3.9.2")
    assert shell_of(plan()) == [f"rm -rf {tmp_path}/v && /usr/bin/python3.11 -m venv {tmp_path}/v"]
    assert plan().note == "python 3.9 -> 3.11"
    (tmp_path / "v" / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 3.11.2\n")
    assert not plan().changed


def test_half_built_venv_is_rebuilt(tmp_path):
    # ensurepip died: pyvenv.cfg and bin/python exist, bin/pip does not
    v = steps.Venv(str(_venv(tmp_path / "v", pip=False)), lambda facts: ("3.11", "/usr/bin/python3.11"))
    plan = v.plan(distro_facts("debian-12"), {"venv": ask(v.probes()["venv"])})
    assert shell_of(plan) == [f"rm -rf {tmp_path}/v && /usr/bin/python3.11 -m venv {tmp_path}/v"]


def test_pip_requirements_upgrade_pip_first_offline(tmp_path):
    pins = ["bcrypt==4.0.1", "pip==21.3.1", "pypiserver==2.0.1"]
    venv = _venv(tmp_path / "old", "3.6.8", dists=("pip-9.0.3", "setuptools-39.0.1"))
    p = steps.PipRequirements(str(venv), lambda f: pins, "/opt/pypiserver/requirements.txt",
                              lambda f: "/opt/pypiserver/wheels")
    plan = p.plan(distro_facts("debian-12"), {"venv": ask(p.probes()["venv"]), "requirements": None})
    write, pip, rest = plan.actions
    assert write.path == "/opt/pypiserver/requirements.txt" and write.content.decode().splitlines() == pins
    py = f"{venv}/bin/python -m pip install --disable-pip-version-check --no-input -q " \
         "--only-binary=:all: --no-index --find-links /opt/pypiserver/wheels"
    assert pip.sh == f"{py} pip==21.3.1"
    assert rest.sh == f"{py} -r /opt/pypiserver/requirements.txt"
    done = _venv(tmp_path / "done", "3.6.8", dists=("bcrypt-4.0.1", "pip-21.3.1", "pypiserver-2.0.1"))
    p.venv = str(done)
    assert not p.plan(distro_facts("debian-12"), {"venv": ask(p.probes()["venv"]), "requirements": None}).changed


def test_wheelhouse_sends_only_missing_or_different(tmp_path):
    a, b = tmp_path / "a-1-py3-none-any.whl", tmp_path / "b-1-py3-none-any.whl"
    a.write_bytes(b"x" * 10)
    b.write_bytes(b"y" * 20)
    host = tmp_path / "host"
    host.mkdir()
    (host / a.name).write_bytes(b"x" * 10)
    (host / b.name).write_bytes(b"y" * 19)
    w = steps.Wheelhouse(str(host), lambda f: [a, b])
    w.prepare(distro_facts("debian-12"))   # the runner's step before planning
    (up,) = w.plan(distro_facts("debian-12"), {"ls": ask(w.probes()["ls"])}).actions
    assert up.files == [b] and up.dest == str(host)
    (host / b.name).write_bytes(b"y" * 20)
    assert not w.plan(distro_facts("debian-12"), {"ls": ask(w.probes()["ls"])}).changed


def test_pins_reinstalled_when_the_venv_is_rebuilt_for_another_python(tmp_path):
    pins = ["pip==26.3", "pypiserver==2.4.2"]
    old = _venv(tmp_path / "old", "3.11.2", dists=("pip-26.3", "pypiserver-2.4.2"))
    p = steps.PipRequirements(str(old), lambda f: pins, "/r.txt", lambda f: None,
                              python_version=lambda f: "3.12")
    assert p.plan(distro_facts("debian-12"), {"venv": ask(p.probes()["venv"]), "requirements": None}).changed
    p.venv = str(_venv(tmp_path / "new", "3.12.1", dists=("pip-26.3", "pypiserver-2.4.2")))
    assert not p.plan(distro_facts("debian-12"), {"venv": ask(p.probes()["venv"]), "requirements": None}).changed


def test_rpm_probe_asks_by_capability():
    """EL 8's python3 is provided by the python36 package: ask rpm what provides it."""
    probe = steps.Packages({"RedHat": ["python3"]}, {"RedHat": "yum install -y -q {packages}"}).probes()["pkgs"]
    assert 'rpm -q --whatprovides "$p"' in probe.command()


def _htpasswd(tmp_path, text: str):
    """A real htpasswd file here, read by the step's own fact (root pypi 0640 on a host)."""
    path = tmp_path / "htpasswd"
    path.write_text(text)
    path.chmod(0o640)
    return path


def test_htpasswd_entry_add_update_remove_keep_owner_and_mode(tmp_path):
    from provision import htpasswd

    facts = distro_facts("debian-12")
    path = str(tmp_path / "htpasswd")

    def plan(step, text):
        _htpasswd(tmp_path, text)
        return step.plan(facts, {"file": ask(step.probes()["file"])})

    existing = "other:" + htpasswd.hash_password("x", rounds=4) + "\n"
    add = account_steps.HtpasswdEntry(path, "demo", "pw", lambda: "$2b$12$NEWHASH")
    (write,) = plan(add, existing).actions
    assert (write.owner, write.group, write.mode, write.secret) == (_me()[0], _me()[1], 0o640, True)
    assert write.content.decode() == existing + "demo:$2b$12$NEWHASH\n"
    import hashlib
    assert write.expect_sha256 == hashlib.sha256(existing.encode()).hexdigest()
    same = "demo:" + htpasswd.hash_password("pw", rounds=4) + "\n"
    assert not plan(add, same).changed  # same password: nothing to do
    assert plan(add, "demo:{SHA}old=\n").note == "change the password of demo"
    rm = account_steps.HtpasswdEntry(path, "other")
    (write,) = plan(rm, existing + same).actions
    assert write.content.decode() == same
    assert plan(rm, same).note == "no account other"
    (tmp_path / "htpasswd").unlink()
    with pytest.raises(StepError, match="deploy pypiserver first"):
        add.plan(facts, {"file": ask(add.probes()["file"])})


def test_htpasswd_names_lists_names_only(tmp_path):
    found = []
    names = account_steps.HtpasswdNames(str(tmp_path / "htpasswd"), found.append)
    assert "cut -d: -f1" in names.probes()["names"].command()
    _htpasswd(tmp_path, "alice:$2y$05$abc\nbob:{SHA}xyz=\n")
    got = ask(names.probes()["names"])
    assert got == ["alice", "bob"]     # names only: no hash left the host
    assert names.plan(distro_facts("debian-12"), {"names": got}).note == "2 accounts"
    assert found == [["alice", "bob"]]  # printed by the task, one per line
    (tmp_path / "htpasswd").unlink()
    with pytest.raises(StepError):
        names.plan(distro_facts("debian-12"), {"names": ask(names.probes()["names"])})
