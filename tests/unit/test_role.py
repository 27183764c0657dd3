"""The pypiserver role planned against a fresh host of each distro: the exact plan, as data."""

import json

import pytest

from provision.inventory import Target
from provision.render import render
from provision.roles.pypiserver import PypiserverRole
from provision.steps import Command, WriteFile

from .conftest import distro_facts, plan_role


def fresh_plan(distro, **vars_):
    return plan_role(PypiserverRole(), Target(name="h", ssh_host="192.0.2.10", vars=vars_),
                     distro_facts(distro))


def commands(plan):
    return [a.sh for _, p in plan for a in p.actions if isinstance(a, Command)]


def written(plan):
    return {a.path: a for _, p in plan for a in p.actions if isinstance(a, WriteFile)}


@pytest.mark.parametrize("distro,python,pip_pin,installers", [
    # the Red Hat family: tar (uploads unpack with it), then the Python
    ("centos-7", "/usr/bin/python3.6", "pip==21.3.1", ["yum install -y -q tar", "yum install -y -q python3\n"]),
    ("rocky-8", "/usr/bin/python3.11", "pip==26.3", ["yum install -y -q tar"]),  # 3.11 installed: current enough
    ("rocky-9", "/usr/bin/python3.9", "pip==26.0.1", ["yum install -y -q tar", "if yum install -y -q python3.12 "]),
    ("debian-12", "/usr/bin/python3.11", "pip==26.3", ["apt-get install -y -q --no-install-recommends python3 python3-venv "]),
])
def test_fresh_host_plan_per_distro(distro, python, pip_pin, installers):
    plan = fresh_plan(distro, tls=False)     # the plain http layout (tls: true is below)
    cmds = commands(plan)
    # exactly these package-manager commands, in this order
    installs = [c for c in cmds if c.startswith(("yum ", "if yum ", "apt-get "))]
    assert [c[:len(p)] for c, p in zip(installs, installers)] == installers
    assert len(installs) == len(installers)
    if distro != "debian-12":
        assert installs[0] == "yum install -y -q tar"
    relabel = " && restorecon -R /opt/pypiserver/venv" if distro_facts(distro).selinux_enabled else ""
    assert f"{python} -m venv /opt/pypiserver/venv{relabel}" in cmds
    pip = "/opt/pypiserver/venv/bin/python -m pip install --disable-pip-version-check --no-input -q --only-binary=:all:"
    assert f"{pip} {pip_pin}" in cmds
    assert f"{pip} -r /opt/pypiserver/requirements.txt" in cmds
    files = written(plan)
    assert (files["/etc/pypiserver/htpasswd"].owner, files["/etc/pypiserver/htpasswd"].group,
            files["/etc/pypiserver/htpasswd"].mode) == ("root", "pypi", 0o640)
    assert "systemctl daemon-reload" in cmds
    service = ["systemctl enable pypiserver", "systemctl start pypiserver"]
    firewall = ["firewall-cmd -q --permanent --add-port=8000/tcp", "firewall-cmd -q --add-port=8000/tcp",
                "mkdir -p /var/lib/provision"]
    assert cmds[-1].startswith("install -d -o root -g root -m 0755 /var/lib/provision")
    # rocky-9's data has firewalld stopped: the port is left alone, with a note
    assert cmds[-6:-1] == service + firewall if distro_facts(distro).firewalld \
        else cmds[-3:-1] == service
    if distro_facts(distro).firewalld:
        assert files["/var/lib/provision/firewall-port-pypiserver"].content == b"8000\n"
    # last, the settings later runs read back (client-config, mirror, a plain deploy)
    record = json.loads(files["/var/lib/provision/pypiserver.json"].content)
    assert record["service"] == "pypiserver" and record["settings"]["pypiserver_port"] == 8000
    assert list(files)[-1] == "/var/lib/provision/pypiserver.json"


def test_unit_hardening_follows_systemd_version():
    def unit(systemd):
        return render("pypiserver/pypiserver.service.j2", user="pypi", packages_dir="/p",
                      exec_start='"/v/bin/pypi-server" "run"', systemd=systemd)
    old, new = unit(219), unit(252)
    assert old.startswith("# Managed by provision")
    assert "ProtectSystem=full" in old and "strict" not in old and "RestrictSUIDSGID" not in old
    assert "ProtectSystem=strict\nReadWritePaths=/p\n" in new and "RestrictSUIDSGID=yes" in new


def test_exec_start_quotes_every_argument():
    plan = fresh_plan("debian-12", tls=False,
                      pypiserver_extra_args=["--fallback-url", "https://x.invalid/$HOME%n\"q"])
    unit = written(plan)["/etc/systemd/system/pypiserver.service"].content.decode()
    exec_line = next(ln for ln in unit.splitlines() if ln.startswith("ExecStart="))
    assert exec_line == (
        'ExecStart="/opt/pypiserver/venv/bin/pypi-server" "run" "--host" "0.0.0.0" "--port" "8000" '
        '"--passwords" "/etc/pypiserver/htpasswd" "--authenticate" "update" "--server" "auto" '
        '"--backend" "cached-dir" "--fallback-url" "https://x.invalid/$$HOME%%n\\"q" "/srv/pypi/packages"')


def test_port_flag_changes_unit_and_firewall():
    plan = fresh_plan("debian-12", pypiserver_port=8080, tls=False)
    assert "firewall-cmd -q --add-port=8080/tcp" in commands(plan)
    unit = written(plan)["/etc/systemd/system/pypiserver.service"].content.decode()
    assert '"--port" "8080"' in unit


@pytest.mark.parametrize("distro,installs", [
    ("debian-12", ["apt-get install -y -q --no-install-recommends python3 python3-venv nginx "]),
    ("rocky-9", ["yum install -y -q tar nginx /usr/sbin/semanage"]),
    ("centos-7", ["yum install -y -q tar nginx /usr/sbin/semanage"]),
])
def test_https_front_by_default(distro, installs):
    """tls: true (the default): nginx on the public port with TLS, pypiserver on the
    loopback, the certificate from the private CA, the public port (only) opened."""
    plan = fresh_plan(distro, pypiserver_port=8080, https_redirect_port=80)
    cmds, files = commands(plan), written(plan)
    assert any(c.startswith(installs[0]) for c in cmds), cmds
    unit = files["/etc/systemd/system/pypiserver.service"].content.decode()
    assert '"--host" "127.0.0.1" "--port" "18000"' in unit
    site = files["/etc/nginx/conf.d/pypiserver.conf"].content.decode()
    assert "listen 0.0.0.0:8080 ssl;" in site and "server 127.0.0.1:18000;" in site
    assert "listen 0.0.0.0:80 default_server;" in site and "return 301 https://$host:8080$request_uri;" in site
    assert "error_page 497 =301 https://$host:$server_port$request_uri;" in site
    assert "alias /srv/pypi/packages/;" in site and "client_max_body_size 512m;" in site
    key, cert = files["/etc/pypiserver/tls/server.key"], files["/etc/pypiserver/tls/server.crt"]
    assert (key.owner, key.mode, key.secret) == ("root", 0o600, True)
    import hashlib
    assert cert.content.startswith(f"# key sha256 {hashlib.sha256(key.content).hexdigest()}\n"
                                   "-----BEGIN CERTIFICATE-----".encode()) and cert.mode == 0o644
    from provision import tls
    assert tls.renewal_reason(cert.content, tls.ensure_ca(), ["192.0.2.10"]) is None
    if distro_facts(distro).firewalld:
        assert "firewall-cmd -q --add-port=8080/tcp" in cmds and "firewall-cmd -q --add-port=80/tcp" in cmds
        assert not any("18000" in c for c in cmds if c.startswith("firewall-cmd"))
    selinux = [c for c in cmds if c.startswith(("setsebool", "semanage", "{ semanage"))]
    if distro_facts(distro).selinux_enabled:
        assert selinux == [
            "setsebool -P httpd_can_network_connect 1",
            "semanage port -a -t http_port_t -p tcp 8080 2>/dev/null || "
            "semanage port -m -t http_port_t -p tcp 8080",
            "semanage port -a -t http_port_t -p tcp 80 2>/dev/null || "
            "semanage port -m -t http_port_t -p tcp 80",
            "{ semanage fcontext -a -t httpd_sys_content_t '/srv/pypi/packages(/.*)?' 2>/dev/null || "
            "semanage fcontext -m -t httpd_sys_content_t '/srv/pypi/packages(/.*)?'; } && "
            "{ [ ! -e /srv/pypi/packages ] || restorecon -R /srv/pypi/packages; }",
            "{ semanage fcontext -a -t httpd_sys_content_t '/srv/pypi/index(/.*)?' 2>/dev/null || "
            "semanage fcontext -m -t httpd_sys_content_t '/srv/pypi/index(/.*)?'; } && "
            "{ [ ! -e /srv/pypi/index ] || restorecon -R /srv/pypi/index; }",
            "{ semanage fcontext -a -t cert_t '/etc/pypiserver/tls(/.*)?' 2>/dev/null || "
            "semanage fcontext -m -t cert_t '/etc/pypiserver/tls(/.*)?'; } && "
            "{ [ ! -e /etc/pypiserver/tls ] || restorecon -R /etc/pypiserver/tls; }"]
        record = files["/var/lib/provision/selinux-rules-pypiserver"].content.decode()
        assert record.splitlines() == sorted(["port tcp/8080 http_port_t", "port tcp/80 http_port_t",
                                              "fcontext /srv/pypi/packages(/.*)? httpd_sys_content_t",
                                              "fcontext /srv/pypi/index(/.*)? httpd_sys_content_t",
                                              "fcontext /etc/pypiserver/tls(/.*)? cert_t"])
        # a second run: the rules are recorded, the boolean is on: nothing to do, no semanage
        from provision.roles.pypiserver import front
        step = next(s for s, _ in plan if isinstance(s, front.SelinuxFront))
        again = step.plan(distro_facts(distro), {"connect": True, "record": record})
        assert not again.changed and again.note == "rules in place"
        assert "semanage" not in step.probes()["connect"].command() + step.probes()["record"].command()
    else:
        assert selinux == []
    assert "setenforce" not in "\n".join(cmds)


def test_offline_adds_the_wheelhouse_and_find_links(monkeypatch, tmp_path):
    from provision import wheels

    wheel = tmp_path / "x-1-py3-none-any.whl"
    wheel.write_bytes(b"w")
    monkeypatch.setattr(wheels, "ensure_wheelhouse", lambda py, glibc, arch, pins=None: [wheel])
    plan = fresh_plan("centos-7", offline=True)
    uploads = [a for _, p in plan for a in p.actions if type(a).__name__ == "Upload"]
    assert uploads and uploads[0].files == [wheel] and uploads[0].dest == "/opt/pypiserver/wheels"
    cmds = commands(plan)
    assert "/usr/bin/python3.6 -m venv --without-pip /opt/pypiserver/venv && restorecon -R /opt/pypiserver/venv" in cmds
    # pip runs from its own pinned wheel and installs every pin (itself included) at once
    assert ("/opt/pypiserver/venv/bin/python /opt/pypiserver/wheels/pip-21.3.1-py3-none-any.whl/pip "
            "install --disable-pip-version-check --no-input -q --only-binary=:all: --no-index "
            "--find-links /opt/pypiserver/wheels -r /opt/pypiserver/requirements.txt") in cmds


@pytest.mark.parametrize("distro,error", [
    ("alpine", "unsupported OS Alpine Linux v3.20 (ID=alpine)"),
])
def test_unsupported_hosts_are_refused(distro, error):
    from provision.errors import UnsupportedHost

    with pytest.raises(UnsupportedHost, match=error.replace("(", r"\(").replace(")", r"\)")):
        PypiserverRole().check_host(distro_facts(distro))


EL8_CENTOS = ("CentOS Linux 8 / CentOS Stream 8 reached end of life and their mirrors are gone: "
              "use Rocky or AlmaLinux 8 (or 9)")


@pytest.mark.parametrize("distro", ["centos-8", "centos-stream-8"])
def test_centos_8_and_stream_8_are_refused_before_any_change(distro):
    """check_host runs right after the facts: nothing is planned, let alone changed."""
    from provision.errors import UnsupportedHost

    with pytest.raises(UnsupportedHost) as exc:
        PypiserverRole().check_host(distro_facts(distro))
    assert str(exc.value) == EL8_CENTOS


def test_centos_7_el_8_and_stream_9_are_accepted():
    for distro in ("centos-7", "rocky-8", "rocky-9"):
        PypiserverRole().check_host(distro_facts(distro))
    # CentOS Stream 9 (Stream 8's facts with Stream 9's os-release version fields): its
    # mirrors are alive, so it stays accepted
    stream9 = distro_facts("centos-stream-8")
    stream9.os.update(VERSION="9", VERSION_ID="9", PLATFORM_ID="platform:el9",
                      PRETTY_NAME="CentOS Stream 9")
    PypiserverRole().check_host(stream9)


@pytest.mark.parametrize("bad", [{"pypiserver_port": "http"}, {"pypiserver_port": 70000},
                                 {"pypiserver_venv": "/"}, {"pypiserver_packages_dir": "relative/dir"}])
def test_bad_variables_are_refused(bad):
    from provision.errors import InventoryError

    with pytest.raises(InventoryError):
        PypiserverRole().vars(Target(name="h", ssh_host="h", vars=bad))


def test_debian_keeps_its_own_python3_even_with_a_newer_one_installed():
    from provision.roles.pypiserver import choose_python

    facts = distro_facts("debian-12")
    facts.pythons["3.12"] = "/usr/bin/python3.12"  # e.g. from deadsnakes: no python3.12-venv
    assert choose_python(facts) == ("3.11", "/usr/bin/python3.11")
    rocky = distro_facts("rocky-8")
    assert choose_python(rocky) == ("3.11", "/usr/bin/python3.11")  # EL: the newest


def test_a_password_for_reading_keeps_every_read_behind_pypiserver():
    """authenticate download/list: nginx serves nothing from disk (no /packages/ alias)."""
    site = lambda **v: written(fresh_plan("debian-12", **v))["/etc/nginx/conf.d/pypiserver.conf"].content.decode()  # noqa: E731
    assert "alias /srv/pypi/packages/;" in site()
    for auth in ("download", "list,update", "download,list,update"):
        assert "alias /srv/pypi/packages/;" not in site(pypiserver_authenticate=auth)
    from provision.errors import InventoryError
    with pytest.raises(InventoryError, match="static_index serves pages without a password"):
        fresh_plan("debian-12", static_index=True, pypiserver_authenticate="download,update")


def test_ipv6_listen_takes_ipv4_too():
    site = written(fresh_plan("debian-12", pypiserver_listen="::"))["/etc/nginx/conf.d/pypiserver.conf"]
    assert "listen [::]:8000 ssl ipv6only=off;" in site.content.decode()


def test_the_static_index_is_on_by_default_where_nginx_may_serve_pages():
    """auto: with TLS and no password for reading; true is refused where it cannot be."""
    from provision.errors import InventoryError

    def static(**v):
        return "/etc/systemd/system/pypiserver-index.path" in written(fresh_plan("debian-12", **v))
    assert static() and static(static_index=True)
    assert not static(static_index=False) and not static(tls=False)
    assert not static(pypiserver_authenticate="download,update")
    with pytest.raises(InventoryError, match="static_index needs tls: true"):
        fresh_plan("debian-12", static_index=True, tls=False)
    with pytest.raises(InventoryError, match="must be true, false or auto"):
        fresh_plan("debian-12", static_index="yes")


@pytest.mark.parametrize("value,argv", [
    ("https://pypi.org/simple/", None),                     # pypiserver's own default: no flag
    ("off", '"--disable-fallback"'),
    ("https://mirror.example.com:8443/pypi/simple", '"--fallback-url" "https://mirror.example.com:8443/pypi/simple/"'),
])
def test_the_fallback_for_names_the_index_lacks(value, argv):
    unit = written(fresh_plan("debian-12", pypiserver_fallback=value))[
        "/etc/systemd/system/pypiserver.service"].content.decode()
    if argv is None:
        assert "fallback" not in unit
    else:
        assert argv in unit
    # --disable-fallback given the old way (extra args) is not doubled
    unit = written(fresh_plan("debian-12", pypiserver_fallback="off", pypiserver_extra_args="--disable-fallback"))[
        "/etc/systemd/system/pypiserver.service"].content.decode()
    assert unit.count("--disable-fallback") == 1


@pytest.mark.parametrize("value", ["ftp://x/", "https://x/$(id)", "https://x/ a", "http://", 3, "https://x/\"y"])
def test_a_hostile_fallback_is_refused(value):
    from provision.errors import InventoryError

    with pytest.raises(InventoryError, match="pypiserver_fallback must be off or a"):
        fresh_plan("debian-12", pypiserver_fallback=value)


def test_selinux_file_contexts_are_escaped_regular_expressions():
    plan = fresh_plan("rocky-9", pypiserver_packages_dir="/srv/pypi.d/pack+ages")
    rules = [c for c in commands(plan) if "semanage fcontext" in c]
    assert any("'/srv/pypi\\.d/pack\\+ages(/.*)?'" in c for c in rules), rules
    assert any("'/srv/pypi/index(/.*)?'" in c and "httpd_sys_content_t" in c for c in rules), rules


@pytest.mark.parametrize("state,redirect_80,action", [
    ("absent", False, None), ("stock", False, "rm -f /etc/nginx/sites-enabled/default"),
    ("modified", False, None), ("modified", True, "rm -f /etc/nginx/sites-enabled/default"),
])
def test_debians_default_site_goes_only_when_it_is_the_packages_own(state, redirect_80, action):
    from provision.roles.pypiserver.front import DebianDefaultSite, DebianSiteState
    from tests.unit.conftest import planned

    step = DebianDefaultSite(redirect_80)
    assert "dpkg-query -W -f='${Conffiles}\\n' nginx-common" in step.probes()["state"].command()
    assert DebianSiteState("l", "s").parse("", 1) == "absent"
    plan = planned(step, distro_facts("debian-12"), {"state": state})
    assert [a.sh for a in plan.actions] == ([action] if action else [])
    assert not planned(step, distro_facts("rocky-9"), {"state": "stock"}).changed
