"""Issue 14: a command line a newcomer cannot hurt themselves with, driven as a user would
(`invoke ...` in a subprocess) against real hosts.

Help, --dry and typos are checked against a TCP listener on loopback that counts the
connections it accepts: a command that would reach a host is seen there (the controls
prove it), so "no connection" is a real observation. The settings, the "deploy first"
refusals and the failed health check run on booted test hosts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.external import write_inventory
from tests.helpers import REPO, invoke, invoke_on_tty, recap, sh

pytestmark = pytest.mark.integration


class Listener:
    """A TCP port on 127.0.0.1 that accepts and counts connections (and closes them)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.count += 1
            conn.close()

    def close(self):
        self.sock.close()


@pytest.fixture
def trap(tmp_path):
    """(listener, inventory naming one host `trap` that is the listener)."""
    listener = Listener()
    inv = tmp_path / "inventory.yml"
    inv.write_text(yaml.safe_dump({"all": {"vars": {"known_hosts": str(tmp_path / "kh")}, "hosts": {
        "trap": {"ssh_host": "127.0.0.1", "ssh_port": listener.port, "ssh_user": "root"}}}}))
    yield listener, str(inv)
    listener.close()


def run_invoke(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


# -- 1. help never touches a host ------------------------------------------------------
def test_help_prints_help_and_never_connects(trap):
    listener, inv = trap
    control = invoke("deploy", "--inventory", inv, timeout=60)   # no help: it does connect
    assert control.returncode == 2 and listener.count >= 1, control.stdout + control.stderr
    listener.count = 0
    cases = [("deploy", "-h"), ("deploy", "--help"), ("deploy", "-H", "trap", "-h"),
             ("remove-user", "--help"), ("remove-user", "demouser", "-h"), ("add-user", "-h"),
             ("mirror", "--help"), ("mirror", "-r", "x.txt", "-h"), ("list-users", "-h"),
             ("client-config", "-h")]
    for args in cases:
        res = invoke(*args, "--inventory", inv, timeout=60)
        task = args[0]
        assert res.returncode == 0, (args, res.stdout, res.stderr)
        assert res.stdout.startswith(f"Usage: inv[oke] [--core-opts] {task} "), (args, res.stdout)
        assert "Options:" in res.stdout and res.stderr == "", (args, res.stderr)
    assert listener.count == 0
    usage = invoke("deploy", "--help").stdout
    assert re.search(r"^  -H, --host ", usage, re.M) and "-h, --host" not in usage
    assert "-p INT, --port=INT" in usage


def test_provision_binary_help_and_version(trap):
    listener, inv = trap
    binary = Path(sys.executable).parent / "provision"
    res = subprocess.run([str(binary), "deploy", "-h", "--inventory", inv], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.startswith("Usage: provision "), res.stdout + res.stderr
    ver = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60)
    from provision import __version__
    assert ver.stdout.strip() == f"provision {__version__}"
    ver = invoke("version")
    assert ver.returncode == 0 and ver.stdout.startswith(f"provision-pypiserver {__version__} ")
    assert listener.count == 0


# -- 2. --dry is refused ---------------------------------------------------------------
@pytest.mark.parametrize("how", ["flag", "env"])
def test_dry_is_refused_before_any_host(trap, how):
    listener, inv = trap
    for task in (["deploy"], ["remove-user", "demouser"], ["list-users"]):
        if how == "flag":
            res = run_invoke("--dry", *task, "--inventory", inv)
        else:
            res = run_invoke(*task, "--inventory", inv, env={"INVOKE_RUN_DRY": "1"})
        assert res.returncode == 2, res.stdout + res.stderr
        assert res.stderr.startswith("error: --dry") and "use --check" in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and res.stdout == ""
    assert listener.count == 0


# -- 8. typos: exit 2 with a suggestion, nothing reached ----------------------------------
def test_typos_exit_2_with_a_suggestion(trap):
    listener, inv = trap
    empty_host = ("error: -H needs a host ([USER@]HOST[:SSHPORT], an inventory host or group); "
                  "leave it out to run on every inventory host")
    for args, line in [
        (("deplyo",), "error: no task named 'deplyo' (did you mean deploy?); `invoke --list` lists them"),
        (("deploy", "--prot", "8080"),
         "error: unknown option --prot for deploy (did you mean --port?); `invoke deploy --help` lists them"),
        (("deploy", "--port", "80a"), "error: --port takes a number, got '80a'"),
        (("deploy", "-H", "trapp"),
         f"error: 'trapp' is not a host or group in {inv} (did you mean trap?) and does not resolve "
         "as a host name"),
        # `-H $UNSET` must not mean "every host of the inventory"
        (("remove-user", "alice", "-H"), empty_host), (("deploy", "-H", "--check"), empty_host),
    ]:
        res = invoke(*args, "--inventory", inv, timeout=60)   # every case could reach `trap`
        assert (res.returncode, res.stderr.strip()) == (2, line), res.stdout + res.stderr
    assert listener.count == 0


def test_client_config_refuses_an_answer_that_is_not_http(trap):
    """The listener accepts and hangs up: not an index, said in one line."""
    listener, _ = trap
    res = invoke("client-config", "--url", f"http://127.0.0.1:{listener.port}/", timeout=60)
    assert res.returncode == 2 and listener.count == 1, res.stderr
    assert res.stderr.startswith(f"error: no index answers at http://127.0.0.1:{listener.port}/simple/ (")
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_no_color_on_a_terminal(trap):
    """Colour on a terminal by default; none with --no-color or NO_COLOR."""
    listener, inv = trap
    _, coloured = invoke_on_tty(["deploy", "--inventory", inv], [])
    assert "\x1b[31m" in coloured                     # the failed line (nothing speaks SSH there)
    _, plain = invoke_on_tty(["deploy", "--inventory", inv, "--no-color"], [])
    assert "failed" in plain and "\x1b[" not in plain
    os.environ["NO_COLOR"] = "1"
    try:
        _, plain = invoke_on_tty(["deploy", "--inventory", inv], [])
    finally:
        del os.environ["NO_COLOR"]
    assert "failed" in plain and "\x1b[" not in plain


# -- 4-6, 9: on real hosts ----------------------------------------------------------------
@pytest.fixture(scope="module")
def pair(testhost_factory, tmp_path_factory):
    """Two fresh hosts and an inventory naming them (no port set in it)."""
    hosts = testhost_factory(2)
    tmp = tmp_path_factory.mktemp("newcomer")
    inv = write_inventory(hosts, tmp / "inventory.yml", known_hosts=str(tmp / "known_hosts"))
    yield hosts, str(inv), tmp
    for h in hosts:
        h.destroy()


def steps_of(output: str, host: str) -> list[str]:
    """The step names of a run, in the order printed."""
    out = []
    for line in output.splitlines():
        m = re.match(rf"^{re.escape(host)}\s+(ok|changed|failed|skipped)\s+(.*?)(?:  \[.*)?$", line)
        if m:
            out.append(m[2])
    return out


def test_before_deploy_every_other_task_says_deploy_first(pair):
    """mirror, add-user, list-users, client-config on a bare host: one line, nothing created."""
    (bare, _), inv, tmp = pair
    req = tmp / "req.txt"
    req.write_text("six\n")
    for args, inp in [(("mirror", "-r", str(req)), None),
                      (("add-user", "demouser", "--password-stdin"), "pw-123456\n"),
                      (("list-users",), None), (("remove-user", "demouser"), None)]:
        res = invoke(*args, "--inventory", inv, "-H", bare.name, input=inp)
        assert res.returncode == 2, res.stdout + res.stderr
        out = res.stdout + res.stderr     # list-users reports on stderr (names go to stdout)
        assert (f"failed   pypiserver is not deployed on {bare.name}: deploy first "
                f"(invoke deploy -H {bare.name})") in out, out
        assert recap(out, bare.name) == (0, 0, 1)
    res = invoke("client-config", "--inventory", inv, "-H", bare.name)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip() == (f"error: {bare.name} has no record of a deploy "
                                  f"(/var/lib/provision/pypiserver.json): deploy first "
                                  f"(invoke deploy -H {bare.name}), or give the index's --url")
    left = sh(bare, "ls -d /srv/pypi /etc/pypiserver /opt/pypiserver /var/lib/provision 2>&1; "
                    "getent passwd pypi || echo no-user", check=False).stdout
    assert "No such file" in left and left.count("No such file") == 4 and "no-user" in left


def test_check_diff_on_a_fresh_host_shows_content_in_order_and_skips_the_health_check(pair):
    (_, host), inv, _ = pair
    res = invoke("deploy", "--inventory", inv, "-H", host.name, "--check", "--diff")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "old content not read" not in res.stdout
    assert "+pypiserver==" in res.stdout                         # requirements.txt, from nothing
    assert '+  "service": "pypiserver",' in res.stdout            # the record a deploy leaves
    assert re.search(rf"^{re.escape(host.name)} ok=\d+ changed=\d+ failed=0 skipped=1$",
                     res.stdout, re.M)
    planned = steps_of(res.stdout, host.name)
    # the real deploy reports the same steps in the same order (ok and changed interleaved)
    done = invoke("deploy", "--inventory", inv, "-H", host.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert steps_of(done.stdout, host.name) == planned
    assert sh(host, "stat -c '%U %G %a' /var/lib/provision/pypiserver.json").stdout.split() == \
        ["root", "root", "644"]


def test_settings_never_revert_silently(pair):
    (_, host), inv, tmp = pair
    name = host.name
    moved = invoke("deploy", "--inventory", inv, "-H", name, "--port", "8081")
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert f"https://{host.address}:8081/" in moved.stdout
    # a plain deploy keeps 8081: the host's record fills what the inventory does not set
    plain = invoke("deploy", "--inventory", inv, "-H", name)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert recap(plain.stdout, name)[1:] == (0, 0), plain.stdout
    assert "pypiserver_port 8081 from the host's record of its last deploy" in plain.stdout
    # client-config reads the record and checks the index answers
    cfg = invoke("client-config", "--inventory", inv, "-H", name)
    assert cfg.returncode == 0, cfg.stderr
    assert f"index-url = https://{host.address}:8081/simple/" in cfg.stdout
    assert cfg.stderr.startswith(f"index: HTTP 200 from https://{host.address}:8081/simple/")
    # an inventory that sets the port explicitly, and a flag that contradicts it: refused
    explicit = tmp / "explicit.yml"
    doc = yaml.safe_load(Path(inv).read_text())
    doc["all"]["hosts"][name]["pypiserver_port"] = 8081
    explicit.write_text(yaml.safe_dump(doc))
    refused = invoke("deploy", "--inventory", str(explicit), "-H", name, "--port", "8082")
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.strip() == (
        f"error: {name}: --port 8082 differs from pypiserver_port: 8081 in {explicit}: change it "
        "there instead (a deploy without --port would put 8081 back)")
    # (nginx serves the public port; pypiserver stays on its loopback port)
    assert "listen 0.0.0.0:8081 ssl;" in sh(host, "cat /etc/nginx/conf.d/pypiserver.conf").stdout


def test_client_config_verifies_the_index(pair, tmp_path):
    (_, host), inv, _ = pair
    pip_conf = tmp_path / "pip.conf"
    res = invoke("client-config", "--url", "http://127.0.0.1:9/", "--write", "--pip-conf",
                 str(pip_conf), "--pypirc", str(tmp_path / "pypirc"))
    assert res.returncode == 2 and not pip_conf.exists()
    assert res.stderr.strip() == ("error: no index answers at http://127.0.0.1:9/simple/ (Connection "
                                  "refused): deploy first, check the address and the firewall, or "
                                  "pass --no-verify")
    res = invoke("client-config", "--url", "http://127.0.0.1:9/", "--no-verify")
    assert res.returncode == 0 and "index-url = http://127.0.0.1:9/simple/" in res.stdout
    res = invoke("client-config", "--inventory", inv, "-H", "nosuch-host-x")
    assert res.returncode == 2 and "'nosuch-host-x' is not a host or group in" in res.stderr


def test_list_users_prints_names_and_json(pair):
    (_, host), inv, _ = pair
    for user in ("bob", "alice"):
        res = invoke("add-user", user, "--password-stdin", "--inventory", inv, "-H", host.name,
                     input="pw-123456\n")
        assert res.returncode == 0, res.stdout + res.stderr
    res = invoke("list-users", "--inventory", inv, "-H", host.name)
    assert res.returncode == 0 and res.stdout == "bob\nalice\n", res.stdout + res.stderr
    assert "2 accounts" in res.stderr and "RECAP" in res.stderr
    res = invoke("list-users", "--inventory", inv, "-H", host.name, "--json")
    assert json.loads(res.stdout) == {host.name: ["bob", "alice"]}


def test_owner_and_mode_fix_shows_old_and_new(pair):
    (_, host), inv, _ = pair
    sh(host, "chown root:root /srv/pypi/packages && chmod 0700 /srv/pypi/packages")
    res = invoke("deploy", "--inventory", inv, "-H", host.name)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "[fix owner/mode root:root 0700 \u2192 pypi:pypi 0755]" in res.stdout


def test_a_failed_health_check_shows_the_service_and_its_journal(pair):
    (_, host), inv, _ = pair
    sh(host, "rm /opt/pypiserver/venv/bin/pypi-server && systemctl restart pypiserver || :")
    t0 = time.monotonic()
    res = invoke("deploy", "--inventory", inv, "-H", host.name)
    spent = time.monotonic() - t0
    assert res.returncode == 2, res.stdout + res.stderr
    out = res.stdout
    failed = next(l for l in out.splitlines() if "failed   Ensure the index answers" in l)
    # Restart=on-failure: it crash-loops (or, past systemd's start limit, fails): no 30 s wait
    # (nginx in front answers 502 while pypiserver is down)
    assert re.search(r"\[pypiserver (keeps crashing: systemd restarted it \d+ times in|failed "
                     r"after) \d+ s \((Connection refused|HTTP 502 from nginx[^)]*)\)\]$", failed), failed
    assert "-- last journal lines:" in out
    assert re.search(r"pypi-server.*(No such file|203/EXEC)|203/EXEC|Failed to (execute|locate)", out), out
    assert "-- more: journalctl -u pypiserver -e   (on the host)" in out
    assert spent < 25
    sh(host, "rm -rf /opt/pypiserver/venv")                 # the next deploy repairs it
    res = invoke("deploy", "--inventory", inv, "-H", host.name)
    assert res.returncode == 0, res.stdout + res.stderr


# -- 3 and the README: its first command, twice -------------------------------------------
def test_readme_first_command_twice(testhosts_available, external_testhosts, tmp_path):
    """The README's first command ends in `invoke testhost-up deploy`: run that twice in a
    fresh checkout directory; both succeed, the second changes nothing."""
    if external_testhosts:
        pytest.skip("drives the local nspawn harness (testhost-up)")
    readme = (REPO / "README.md").read_text()
    first = re.search(r"^    (.+)$", readme, re.M)[1]
    tail = first.rsplit("&&", 1)[1].split()
    assert tail[0] == ".venv/bin/invoke", first
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    shutil.copy(REPO / "tasks.py", checkout / "tasks.py")
    shutil.copytree(REPO / "testing", checkout / "testing")    # the checkout's test-host tasks
    argv = [str(Path(sys.executable).parent / "invoke"), *tail[1:]]
    try:
        runs = [subprocess.run(argv, cwd=checkout, capture_output=True, text=True, timeout=600)
                for _ in range(2)]
        for res in runs:
            assert res.returncode == 0, res.stdout + res.stderr
        name = runs[0].stdout.split()[0]
        assert runs[1].stdout.split()[0] == name and "already up" in runs[1].stdout
        assert recap(runs[0].stdout, name)[1] > 0 and recap(runs[1].stdout, name)[1:] == (0, 0)
    finally:
        subprocess.run([str(Path(sys.executable).parent / "invoke"), "testhost-down"], cwd=checkout,
                       capture_output=True, timeout=120)
    assert not (checkout / ".testhost" / "inventory.yml").exists()
