"""Steps as data: for each case, facts + probed state -> exact commands, or a no-op note."""


import pytest
import yaml

from provision import steps, wheels
from provision.errors import StepError
from provision.roles.accounts import steps as account_steps
from provision.roles.pypiserver import FAMILIES, family_vars
from provision.roles.pypiserver import steps as rh_steps

from .conftest import DATA, distro_facts

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
    probed = {k: "" for k in step.probes()} | case["probed"]
    facts = distro_facts(case["facts"])
    if "error" in case:
        with pytest.raises(StepError, match=case["error"].replace("(", r"\(").replace(")", r"\)")):
            step.plan(facts, probed)
        return
    plan = step.plan(facts, probed)
    if "noop" in case:
        assert not plan.changed, shell_of(plan)
        assert plan.note == case["noop"]
    else:
        assert shell_of(plan) == case["commands"]
        if "note" in case:
            assert plan.note == case["note"]


def test_every_factory_has_cases():
    assert {p.stem for p in (DATA / "steps").glob("*.yml")} == set(FACTORIES)


def test_file_step_plans_atomic_write_then_reload_and_diff():
    f = steps.File("/etc/systemd/system/x.service", "new\n", on_change=("systemctl daemon-reload",),
                   diff=True)
    probe = f.probes()["file"]
    assert "base64 <" in probe  # old content fetched in the same round trip for --diff
    import base64
    old = base64.b64encode(b"old\n").decode()
    plan = f.plan(distro_facts("debian-12"),
                  {"file": f"root root 644\n{'0' * 64}  -\n__content__\n{old}"})
    write, reload = plan.actions
    assert isinstance(write, steps.WriteFile) and write.content == b"new\n" and write.old == b"old\n"
    assert reload.sh == "systemctl daemon-reload"
    import hashlib
    same = hashlib.sha256(b"new\n").hexdigest()
    assert not f.plan(distro_facts("debian-12"), {"file": f"root root 644\n{same}  -"}).changed


def test_secret_file_content_is_never_probed_and_kept():
    f = steps.File("/etc/pypiserver/htpasswd", None, "root", "pypi", 0o640, secret=True, diff=True)
    assert "base64" not in f.probes()["file"]
    kept = f.plan(distro_facts("debian-12"), {"file": "root pypi 640\n" + "a" * 64 + "  -"})
    assert not kept.changed and kept.note == "present, content kept"
    created = f.plan(distro_facts("debian-12"), {"file": ""})
    (write,) = created.actions
    assert (write.content, write.owner, write.group, write.mode) == (b"", "root", "pypi", 0o640)


def test_venv_rebuilt_when_python_changes():
    v = steps.Venv("/opt/pypiserver/venv", lambda facts: ("3.11", "/usr/bin/python3.11"))
    fresh = v.plan(distro_facts("debian-12"), {"cfg": ""})
    assert shell_of(fresh) == ["/usr/bin/python3.11 -m venv /opt/pypiserver/venv"]
    old = v.plan(distro_facts("debian-12"), {"cfg": "home = /usr/bin\nversion = 3.9.2\n__exe__"})
    assert shell_of(old) == ["rm -rf /opt/pypiserver/venv && /usr/bin/python3.11 -m venv /opt/pypiserver/venv"]
    ok = v.plan(distro_facts("debian-12"), {"cfg": "home = /usr/bin\nversion = 3.11.2\n__exe__"})
    assert not ok.changed


def test_pip_requirements_upgrade_pip_first_offline():
    pins = ["bcrypt==4.0.1", "pip==21.3.1", "pypiserver==2.0.1"]
    p = steps.PipRequirements("/opt/pypiserver/venv", lambda f: pins, "/opt/pypiserver/requirements.txt",
                              lambda f: "/opt/pypiserver/wheels")
    plan = p.plan(distro_facts("debian-12"), {"dists": "pip-9.0.3.dist-info\nsetuptools-39.0.1.dist-info"})
    write, pip, rest = plan.actions
    assert write.path == "/opt/pypiserver/requirements.txt" and write.content.decode().splitlines() == pins
    opts = "--disable-pip-version-check --no-input -q --only-binary=:all: --no-index --find-links /opt/pypiserver/wheels"
    assert pip.sh == f"/opt/pypiserver/venv/bin/python -m pip install {opts} pip==21.3.1"
    assert rest.sh == f"/opt/pypiserver/venv/bin/python -m pip install {opts} -r /opt/pypiserver/requirements.txt"
    done = "bcrypt-4.0.1.dist-info\npip-21.3.1.dist-info\npypiserver-2.0.1.dist-info"
    assert not p.plan(distro_facts("centos-7"), {"dists": done}).changed


def test_wheelhouse_sends_only_missing_or_different(tmp_path):
    a, b = tmp_path / "a-1-py3-none-any.whl", tmp_path / "b-1-py3-none-any.whl"
    a.write_bytes(b"x" * 10)
    b.write_bytes(b"y" * 20)
    w = steps.Wheelhouse("/opt/pypiserver/wheels", lambda f: [a, b])
    w.prepare(distro_facts("debian-12"))   # the runner's step before planning
    plan = w.plan(distro_facts("debian-12"), {"ls": f"{a.name} 10\n{b.name} 19"})
    (up,) = plan.actions
    assert up.files == [b] and up.dest == "/opt/pypiserver/wheels"
    assert not w.plan(distro_facts("debian-12"), {"ls": f"{a.name} 10\n{b.name} 20"}).changed


def test_half_built_venv_is_rebuilt():
    v = steps.Venv("/opt/pypiserver/venv", lambda facts: ("3.11", "/usr/bin/python3.11"))
    # ensurepip died: pyvenv.cfg and bin/python exist, bin/pip does not (no __exe__ marker)
    plan = v.plan(distro_facts("debian-12"), {"cfg": "home = /usr/bin\nversion = 3.11.2"})
    assert shell_of(plan) == ["rm -rf /opt/pypiserver/venv && /usr/bin/python3.11 -m venv /opt/pypiserver/venv"]


def test_pins_reinstalled_when_the_venv_is_rebuilt_for_another_python():
    pins = ["pip==26.3", "pypiserver==2.4.2"]
    p = steps.PipRequirements("/v", lambda f: pins, "/r.txt", lambda f: None,
                              python_version=lambda f: "3.12")
    same_pins_old_python = "version = 3.11.2\npip-26.3.dist-info\npypiserver-2.4.2.dist-info"
    assert p.plan(distro_facts("debian-12"), {"dists": same_pins_old_python}).changed
    current = "version = 3.12.1\npip-26.3.dist-info\npypiserver-2.4.2.dist-info"
    assert not p.plan(distro_facts("debian-12"), {"dists": current}).changed


def test_rpm_probe_asks_by_capability():
    """EL 8's python3 is provided by the python36 package: ask rpm what provides it."""
    probe = steps.Packages({"RedHat": ["python3"]}, {"RedHat": "yum install -y -q {packages}"}).probes()["pkgs"]
    assert 'rpm -q --whatprovides "$p"' in probe


def _htpasswd_probe(text: str, owner="root pypi 640") -> dict:
    import base64
    return {"file": f"{owner}\n__content__\n{base64.b64encode(text.encode()).decode()}"}


def test_htpasswd_entry_add_update_remove_keep_owner_and_mode():
    from provision import htpasswd

    facts = distro_facts("debian-12")
    existing = "other:" + htpasswd.hash_password("x", rounds=4) + "\n"
    add = account_steps.HtpasswdEntry("/etc/pypiserver/htpasswd", "demo", "pw", lambda: "$2b$12$NEWHASH")
    (write,) = add.plan(facts, _htpasswd_probe(existing)).actions
    assert (write.owner, write.group, write.mode, write.secret) == ("root", "pypi", 0o640, True)
    assert write.content.decode() == existing + "demo:$2b$12$NEWHASH\n"
    same = "demo:" + htpasswd.hash_password("pw", rounds=4) + "\n"
    assert not add.plan(facts, _htpasswd_probe(same)).changed  # same password: nothing to do
    assert add.plan(facts, _htpasswd_probe("demo:{SHA}old=\n")).note == "change the password of demo"
    rm = account_steps.HtpasswdEntry("/etc/pypiserver/htpasswd", "other")
    (write,) = rm.plan(facts, _htpasswd_probe(existing + same)).actions
    assert write.content.decode() == same
    assert rm.plan(facts, _htpasswd_probe(same)).note == "no account other"
    with pytest.raises(StepError, match="deploy pypiserver first"):
        add.plan(facts, {"file": ""})


def test_htpasswd_names_lists_names_only():
    found = []
    names = account_steps.HtpasswdNames("/etc/pypiserver/htpasswd", found.append)
    assert "cut -d: -f1" in names.probes()["names"]
    assert names.plan(distro_facts("debian-12"), {"names": "__file__\nalice\nbob"}).note == "2 accounts"
    assert found == [["alice", "bob"]]  # printed by the task, one per line
    with pytest.raises(StepError):
        names.plan(distro_facts("debian-12"), {"names": ""})
