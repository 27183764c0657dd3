"""Upload accounts and client configuration on real deployed hosts, with real pip and twine.

The service is never restarted by account changes: pypiserver re-reads its htpasswd file.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.external import write_inventory
from tests.helpers import ca_file, clean_env, index, invoke, invoke_on_tty, make_wheel, recap, sh

pytestmark = pytest.mark.integration

PORT = 8000
PW1 = "first-Secret-7781"
PW2 = "second-Secret-9902"
HTPASSWD = "/etc/pypiserver/htpasswd"


@pytest.fixture(scope="module")
def hosts(testhost_factory, tmp_path_factory):
    booted = testhost_factory(2)
    tmp = tmp_path_factory.mktemp("acc")
    inv = str(write_inventory(booted, tmp / "inventory.yml", known_hosts=str(tmp / "known_hosts")))
    res = invoke("deploy", "--inventory", inv)  # both, in parallel
    assert res.returncode == 0, res.stdout + res.stderr
    return booted, inv


def main_pid(host) -> str:
    return sh(host, "systemctl show -p MainPID pypiserver").stdout.strip()


def digest(host) -> str:
    return hashlib.sha256(sh(host, f"cat {HTPASSWD}").stdout.encode()).hexdigest()


def add(inv, name, password, *extra):
    return invoke("add-user", name, "--password-stdin", "--inventory", inv, *extra, input=password + "\n")


def upload(host, wheel, user, password):
    env = {**clean_env(), "TWINE_USERNAME": user, "TWINE_PASSWORD": password}
    return subprocess.run([sys.executable, "-m", "twine", "upload", "--non-interactive",
                           "--disable-progress-bar", "--repository-url", index(host),
                           "--cert", ca_file(), str(wheel)],
                          capture_output=True, text=True, env=env, timeout=120)


def test_add_use_change_remove_without_restart(hosts, tmp_path):
    (host, other), inv = hosts
    pid = main_pid(host)
    res = add(inv, "alice", PW1, "--host", host.name)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "[add alice]" in res.stdout and recap(res.stdout, host.name)[1:] == (1, 0)
    assert upload(host, make_wheel(tmp_path, "alice-pkg", "1.0"), "alice", PW1).returncode == 0
    again = add(inv, "alice", PW1, "--host", host.name)
    assert recap(again.stdout, host.name)[1:] == (0, 0) and "has this password already" in again.stdout
    change = add(inv, "alice", PW2, "--host", host.name)
    assert "[change the password of alice]" in change.stdout
    refused = upload(host, make_wheel(tmp_path, "alice-pkg", "1.1"), "alice", PW1)
    assert refused.returncode != 0 and "403" in refused.stdout + refused.stderr
    assert upload(host, make_wheel(tmp_path, "alice-pkg", "1.2"), "alice", PW2).returncode == 0
    listed = invoke("list-users", "--inventory", inv, "--host", host.name)
    assert listed.stdout == "alice\n" and "[1 account]" in listed.stderr  # names only: no hash
    assert "$2b$" not in listed.stdout + listed.stderr
    gone = invoke("remove-user", "alice", "--inventory", inv, "--host", host.name)
    assert "[remove alice]" in gone.stdout and recap(gone.stdout, host.name)[1:] == (1, 0)
    refused = upload(host, make_wheel(tmp_path, "alice-pkg", "1.3"), "alice", PW2)
    assert refused.returncode != 0
    missing = invoke("remove-user", "alice", "--inventory", inv, "--host", host.name)
    assert missing.returncode == 0 and recap(missing.stdout, host.name)[1:] == (0, 0)
    assert main_pid(host) == pid  # never restarted
    assert sh(host, f"stat -c '%U:%G %a' {HTPASSWD}").stdout.strip() == "root:pypi 640"


def test_check_mode_changes_nothing(hosts):
    (host, _), inv = hosts
    before = digest(host)
    res = add(inv, "carol", PW1, "--host", host.name, "--check")
    assert res.returncode == 0 and "[add carol (check mode: not done)]" in res.stdout
    assert digest(host) == before


@pytest.mark.parametrize("name,password,error", [
    ("bad:name", PW1, "has a ':', whitespace or a control character"),
    ("bad name", PW1, "has a ':', whitespace or a control character"),
    ("bad\tname", PW1, "has a ':', whitespace or a control character"),
    ("", PW1, "user name is empty"),
    ("bob", "", "password is empty"),
])
def test_bad_names_and_passwords_are_refused_untouched(hosts, name, password, error):
    (host, _), inv = hosts
    before = digest(host)
    res = add(inv, name, password, "--host", host.name)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert error in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert digest(host) == before


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_prompted_twice_on_a_terminal_and_mismatch_refused(hosts):
    (host, _), inv = hosts
    before = digest(host)
    code, out = invoke_on_tty(["add-user", "dave", "--inventory", inv, "--host", host.name],
                              [PW1, PW1 + "typo"])
    assert code == 2 and "the two passwords differ: nothing changed" in out
    assert digest(host) == before
    code, out = invoke_on_tty(["add-user", "dave", "--inventory", inv, "--host", host.name], [PW1, PW1])
    assert code == 0 and "[add dave]" in out
    assert PW1 not in out  # no echo
    assert "dave:" in sh(host, f"cat {HTPASSWD}").stdout


def test_every_host_of_the_group_gets_the_same_change(hosts):
    (h1, h2), inv = hosts
    res = add(inv, "erin", PW1)
    assert res.returncode == 0, res.stdout + res.stderr
    assert recap(res.stdout, h1.name)[1:] == (1, 0) and recap(res.stdout, h2.name)[1:] == (1, 0)
    line1 = [ln for ln in sh(h1, f"cat {HTPASSWD}").stdout.splitlines() if ln.startswith("erin:")]
    line2 = [ln for ln in sh(h2, f"cat {HTPASSWD}").stdout.splitlines() if ln.startswith("erin:")]
    assert line1 == line2 and line1[0].startswith("erin:$2b$12$")


def test_passwords_never_reach_the_host_in_clear(hosts):
    for host in hosts[0]:
        journal = sh(host, "journalctl --no-pager -o cat").stdout
        files = sh(host, f"grep -rlF -e {PW1} -e {PW2} /etc /srv /opt /var/log /tmp /root /var/lib "
                         f"2>/dev/null || true").stdout
        procs = sh(host, "ps -eo args").stdout
        assert PW1 not in journal and PW2 not in journal and PW1 not in procs
        assert files.strip() == ""


def test_client_config_write_then_plain_pip_and_twine(hosts, tmp_path):
    (host, _), inv = hosts
    assert add(inv, "frank", PW1, "--host", host.name).returncode == 0
    dist = tmp_path / "dist"
    dist.mkdir()
    published = make_wheel(dist, "frank-pkg", "0.3")
    home = tmp_path / "home"
    (home / ".config" / "pip").mkdir(parents=True)
    (home / ".config" / "pip" / "pip.conf").write_text("# mine\n[install]\nno-compile = yes\n")
    (home / ".pypirc").write_text("[distutils]\nindex-servers =\n    pypi\n\n[pypi]\nusername = __token__\n")
    # a user's environment: no pip/twine settings, no CA bundle variables (this machine's
    # would override what client-config writes; client-config warns about them)
    env = {k: v for k, v in clean_env().items()
           if k not in ("PIP_CONFIG_FILE", "XDG_CONFIG_HOME")} | {"HOME": str(home)}
    res = subprocess.run([sys.executable, "-m", "invoke", "client-config", "--inventory", inv, "--host",
                          host.name, "--username", "frank", "--password-stdin", "--write", "--uv"],
                         input=PW1 + "\n", capture_output=True, text=True, env=env,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))), timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert PW1 not in res.stdout + res.stderr
    pip_conf = (home / ".config" / "pip" / "pip.conf").read_text()
    pypirc = (home / ".pypirc").read_text()
    assert "no-compile = yes" in pip_conf and f"index-url = {index(host)}simple/" in pip_conf
    bundle = home / ".config" / "pip" / "provision-ca.pem"
    assert f"cert = {bundle}" in pip_conf and "trusted-host" not in pip_conf
    assert f"ca_cert = {bundle}" in pypirc
    assert open(ca_file()).read().strip() in bundle.read_text()   # the server's CA, in the bundle
    assert "[pypi]" in pypirc and "username = __token__" in pypirc and "[private]" in pypirc
    assert stat.S_IMODE((home / ".pypirc").stat().st_mode) == 0o600
    assert len(list(home.glob(".pypirc.bak-*"))) == 1
    # twine and pip with no extra flags at all
    up = subprocess.run([sys.executable, "-m", "twine", "upload", "--non-interactive",
                         "--disable-progress-bar", "-r", "private", str(published)],
                        capture_output=True, text=True, env=env, timeout=120)
    assert up.returncode == 0, up.stdout + up.stderr
    target = tmp_path / "target"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--target", str(target), "frank-pkg"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert (target / "frank_pkg" / "__init__.py").read_text() == "VERSION = '0.3'\n"
    assert f"{host.address}:{PORT}" in pip.stdout  # it came from our index
    # uv reads no pip.conf: the uv.toml written by --uv, and SSL_CERT_FILE as printed
    assert f"uv: export SSL_CERT_FILE={bundle}" in res.stdout
    uv_toml = (home / ".config" / "uv" / "uv.toml").read_text()
    assert f'url = "{index(host)}simple/"' in uv_toml
    import shutil
    uv_bin = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    venv = tmp_path / "uv-venv"
    made = subprocess.run([uv_bin, "venv", "--no-config", "-q", str(venv)], capture_output=True,
                          text=True, env=env, timeout=120)
    assert made.returncode == 0, made.stderr
    uv = subprocess.run([uv_bin, "pip", "install", "--python", str(venv / "bin" / "python"),
                         "frank-pkg"], capture_output=True, text=True, timeout=120,
                        env=env | {"SSL_CERT_FILE": str(bundle), "UV_CACHE_DIR": str(tmp_path / "uvc")})
    assert uv.returncode == 0, uv.stdout + uv.stderr
    assert "frank-pkg==0.3" in uv.stderr


def test_client_config_prints_and_warns_on_extra(hosts):
    (host, _), inv = hosts
    res = invoke("client-config", "--inventory", inv, "--host", host.name, "--extra")
    assert res.returncode == 0
    assert f"extra-index-url = {index(host)}simple/" in res.stdout
    assert "dependency confusion" in res.stderr
    plain = invoke("client-config", "--inventory", inv, "--host", host.name)
    assert f"index-url = {index(host)}simple/" in plain.stdout
    assert "trusted-host" not in plain.stdout and "password" not in plain.stdout
    assert "cert = " in plain.stdout and "export SSL_CERT_FILE=" in plain.stdout
