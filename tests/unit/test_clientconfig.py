"""pip.conf and .pypirc rendering and merging (pure functions, real files in tmp)."""

import configparser
import os
import stat

import pytest

from provision import clientconfig as cc

URL = "http://10.0.0.5:8000/"


def test_render_index_url_by_default_trusted_host_only_for_http():
    pip_conf, pypirc = cc.render(URL, "private", "demo", None, extra=False)
    assert "index-url = http://10.0.0.5:8000/simple/\n" in pip_conf and "extra-index-url" not in pip_conf
    assert "trusted-host = 10.0.0.5\n" in pip_conf
    assert pip_conf.startswith("# Managed by provision") and pypirc.startswith("# Managed by provision")
    assert "repository = http://10.0.0.5:8000/\nusername = demo\n" in pypirc and "password" not in pypirc
    https, _ = cc.render("https://pypi.example.org/simple/", "private", None, None, extra=False)
    assert "index-url = https://pypi.example.org/simple/" in https and "trusted-host" not in https
    extra, _ = cc.render(URL, "private", None, None, extra=True)
    assert "extra-index-url = http://10.0.0.5:8000/simple/" in extra and "\nindex-url" not in extra


def test_a_private_ca_is_named_for_pip_and_twine_and_bundled_with_public_roots(tmp_path):
    from provision import tls

    ca = tls.ensure_ca()
    pip_conf, pypirc = cc.render("https://10.0.0.5:8000/", "private", "demo", None, extra=False,
                                 cert=str(tmp_path / "provision-ca.pem"))
    assert f"cert = {tmp_path}/provision-ca.pem\n" in pip_conf and "trusted-host" not in pip_conf
    assert f"repository = https://10.0.0.5:8000/\nca_cert = {tmp_path}/provision-ca.pem\n" in pypirc
    bundle = tmp_path / "provision-ca.pem"
    bundle.write_text(cc.ca_bundle(bundle, ca.cert_pem))
    text = bundle.read_text()
    assert text.count(ca.cert_pem.decode().strip()) == 1
    assert text.count("BEGIN CERTIFICATE") > 10        # the public roots stay trusted (PyPI)
    import ssl
    ssl.create_default_context(cafile=str(bundle))   # a bundle OpenSSL loads
    # a second server's CA joins the first; running again adds nothing
    other = tmp_path / "other"
    import os
    os.environ["PROVISION_CA_DIR"], before = str(other), os.environ["PROVISION_CA_DIR"]
    try:
        second = tls.ensure_ca()
    finally:
        os.environ["PROVISION_CA_DIR"] = before
    both = cc.ca_bundle(bundle, second.cert_pem)
    assert ca.cert_pem.decode().strip() in both and second.cert_pem.decode().strip() in both
    bundle.write_text(both)
    assert cc.ca_bundle(bundle, second.cert_pem) == both
    # a root the machine no longer trusts leaves the bundle at the next run (the roots are
    # re-read; only the private CAs below the mark are kept)
    _, roots = cc.public_roots()
    first_root = cc._PEM.findall(roots)[0]
    fewer = roots.replace(first_root, "")
    again = cc.ca_bundle(bundle, second.cert_pem, public=fewer)
    assert first_root not in again and ca.cert_pem.decode().strip() in again
    # a bundle written before the mark: its blocks the roots lack are taken as private, once
    legacy = "# Managed by provision (client-config): public roots + private index CAs\n" + roots + \
        ca.cert_pem.decode()
    bundle.write_text(legacy)
    assert cc.ca_bundle(bundle, second.cert_pem).split(cc.PRIVATE_MARK)[1].count("BEGIN CERTIFICATE") == 2
    # no public roots on this machine: the private CAs alone (client-config warns)
    bundle.write_text(again)
    alone = cc.ca_bundle(bundle, second.cert_pem, public="")
    assert alone.count("BEGIN CERTIFICATE") == 2
    assert cc.uv_settings("https://h:8000/simple/", str(bundle)) == \
        f"export UV_DEFAULT_INDEX=https://h:8000/simple/\nexport SSL_CERT_FILE={bundle}\n"


def test_password_only_when_given():
    _, pypirc = cc.render(URL, "team", "demo", "s3cret", extra=False)
    assert "[team]" in pypirc and "password = s3cret" in pypirc and "    team\n" in pypirc


@pytest.mark.parametrize("bad", ["ftp://x/", "not a url", "http:///nohost"])
def test_bad_urls(bad):
    with pytest.raises(cc.ClientConfigError):
        cc.render(bad, "private", None, None, extra=False)


@pytest.mark.parametrize("bad", ["bad name", "private\n", "x]\n[evil"])
def test_bad_repository_name(bad):
    with pytest.raises(cc.ClientConfigError, match="bad repository name"):
        cc.render(URL, bad, None, None, extra=False)


def test_merge_keeps_everything_else_and_unions_lists():
    pip_conf, pypirc = cc.render(URL, "private", "demo", None, extra=False)
    mine = ("# my settings\n[global]\ntimeout = 60\nindex_url = https://old.example/simple\n"
            "trusted-host = files.example.org\n\n[install]\nno-compile = yes\n")
    merged = cc.merge(mine, pip_conf)
    assert merged.startswith("# my settings\n[global]\ntimeout = 60\n")
    assert "index-url = http://10.0.0.5:8000/simple/" in merged and "old.example" not in merged
    assert "trusted-host =\n    files.example.org\n    10.0.0.5\n" in merged
    assert merged.endswith("[install]\nno-compile = yes\n")
    assert cc.merge(merged, pip_conf) == merged  # a second merge changes nothing
    rc = cc.merge("[distutils]\nindex-servers =\n    pypi\n\n[pypi]\nusername = __token__\n", pypirc)
    assert "index-servers =\n    pypi\n    private\n" in rc and "[pypi]\nusername = __token__\n" in rc
    assert rc.endswith("[private]\nrepository = http://10.0.0.5:8000/\nusername = demo\n")


def test_write_merged_backs_up_and_sets_mode(tmp_path):
    _, pypirc = cc.render(URL, "private", "demo", "pw", extra=False)
    path = tmp_path / ".pypirc"
    path.write_text("[distutils]\nindex-servers = pypi\n")
    path.chmod(0o644)
    assert cc.write_merged(path, pypirc, mode=0o600).startswith("changed")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (backup,) = tmp_path.glob(".pypirc.bak-*")
    assert backup.read_text() == "[distutils]\nindex-servers = pypi\n"
    assert cc.write_merged(path, pypirc, mode=0o600).startswith("ok")  # nothing new: no write
    assert len(list(tmp_path.glob(".pypirc.bak-*"))) == 1
    fresh = tmp_path / "sub" / "pip.conf"
    pip_conf, _ = cc.render(URL, "private", None, None, extra=False)
    cc.write_merged(fresh, pip_conf)
    assert fresh.read_text() == pip_conf and not list(fresh.parent.glob("*.bak-*"))


def test_cli_writes_where_told(tmp_path):
    """Through the real CLI, no server needed with --url: e.g. a venv's own pip.conf."""
    from tests.helpers import invoke_here as invoke

    venv_conf, rc = tmp_path / "venv" / "pip.conf", tmp_path / "pypirc"
    res = invoke("client-config", "--url", "https://pypi.example.org/", "--no-verify", "--username", "ci",
                 "--name", "corp", "--write", "--pip-conf", str(venv_conf), "--pypirc", str(rc))
    assert res.returncode == 0, res.stderr
    assert venv_conf.read_text().splitlines()[2] == "index-url = https://pypi.example.org/simple/"
    assert "[corp]\nrepository = https://pypi.example.org/\nusername = ci\n" in rc.read_text()
    assert stat.S_IMODE(rc.stat().st_mode) == 0o600
    again = invoke("client-config", "--url", "https://pypi.example.org/", "--no-verify", "--username", "ci",
                   "--name", "corp", "--write", "--pip-conf", str(venv_conf), "--pypirc", str(rc))
    assert again.stdout.count("ok ") == 2  # already set: nothing rewritten


PASSWORD = "pass  word %x %(home)s %%"  # inner double spaces and '%': kept as they are


def test_password_merged_byte_exact_as_twine_reads_it(tmp_path):
    from twine.utils import get_config

    path = tmp_path / ".pypirc"
    path.write_text("[distutils]\nindex-servers = pypi\n\n[private]\nrepository = http://old/\n"
                    "password = old\n")
    _, pypirc = cc.render(URL, "private", "demo", PASSWORD, extra=False)
    assert cc.write_merged(path, pypirc, mode=0o600).startswith("changed")
    parser = configparser.RawConfigParser()  # twine's parser: no interpolation
    parser.read(path)
    assert parser.get("private", "password") == PASSWORD
    assert get_config(str(path))["private"]["password"] == PASSWORD
    before = path.read_bytes()
    assert cc.write_merged(path, pypirc, mode=0o600) == f"ok       {path} (already set)"
    assert path.read_bytes() == before


def test_merge_replaces_the_whole_value_configparser_reads():
    """A blank line and then an indented line still belong to the value for configparser."""
    _, pypirc = cc.render(URL, "private", "demo", "new", extra=False)
    merged = cc.merge("[private]\npassword = old\n\n    tail\n# note\nusername = demo\n", pypirc)
    parser = configparser.RawConfigParser()
    parser.read_string(merged)
    assert parser.get("private", "password") == "new" and parser.get("private", "username") == "demo"
    assert cc.merge(merged, pypirc) == merged


@pytest.mark.parametrize("bad", [" lead", "trail ", "\u00a0nbsp", "x\t"])
def test_password_whitespace_at_the_ends_refused(bad):
    with pytest.raises(cc.ClientConfigError, match="TWINE_PASSWORD or keyring") as exc:
        cc.render(URL, "private", "demo", bad.replace("\t", " "), extra=False)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("bad", ["pw\n[evil]\nrepository = http://evil/", "pw\r", "pw\u2028x", "pw\x85x"])
def test_password_line_breaks_refused(bad):
    with pytest.raises(cc.ClientConfigError, match="control character or a line break"):
        cc.render(URL, "private", "demo", bad, extra=False)


@pytest.mark.parametrize("bad", ["", "ci\n[evil]", "ci:bot", "#ci", "ci bot", "x" * 256, "ci\x9b",
                                 "ci\u2028x"])
def test_bad_usernames_refused(bad):
    with pytest.raises(cc.ClientConfigError, match="bad --username") as exc:
        cc.render(URL, "private", bad, None, extra=False)
    assert "\n" not in str(exc.value)


def test_longest_username_accepted():
    _, pypirc = cc.render(URL, "private", "x" * 255, None, extra=False)
    assert f"username = {'x' * 255}\n" in pypirc


@pytest.mark.parametrize("bad, why", [
    ("http://ci:s3cret@10.0.0.5:8000/", "credentials belong in .pypirc"),
    ("https://s3cret@pypi.example.org/", "credentials belong in .pypirc"),
    ("http://10.0.0.5:99999/", "Port out of range"),
    ("http://10.0.0.5:0/", "port must be 1 to 65535"),
    ("http://10.0.0.5:http/", "Port could not be cast"),
    ("http://10.0.0.5:8000/\n", "whitespace or a control character"),
    ("http://10.0.0.5\t:8000/", "whitespace or a control character"),  # urlsplit drops tabs
    ("http://10.0.0.5 /", "whitespace or a control character"),
    ("http://10.0.0.5:8000/?x=1", "no query"),
    ("http://10.0.0.5:8000/#top", "no query"),
    ("http://10.0.0.5:8000/?", "no query"),
    ("http://[fd00::1:8000/", "Invalid IPv6 URL"),
])
def test_bad_urls_one_line_reason(bad, why):
    with pytest.raises(cc.ClientConfigError, match=why) as exc:
        cc.render(bad, "private", None, None, extra=False)
    assert "\n" not in str(exc.value) and "s3cret" not in str(exc.value)


@pytest.mark.filterwarnings("ignore:pkg_resources is deprecated:DeprecationWarning")
def test_ipv6_trusted_host_is_one_pip_matches(tmp_path, monkeypatch):
    """Read back by pip's own option parser and checked with pip's own origin matching."""
    from pip._internal.commands import create_command
    from pip._internal.models.link import Link
    from pip._internal.network.session import PipSession

    pip_conf, pypirc = cc.render("http://[fd00::1]:8000/", "private", None, None, extra=False)
    assert "repository = http://[fd00::1]:8000/\n" in pypirc
    path = tmp_path / "pip.conf"
    path.write_text(pip_conf)
    for var in [v for v in os.environ if v.startswith("PIP_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("PIP_CONFIG_FILE", str(path))
    options, _ = create_command("download").parse_args([])
    assert options.index_url == "http://[fd00::1]:8000/simple/"
    index = Link(options.index_url)
    assert PipSession(trusted_hosts=options.trusted_hosts).is_secure_origin(index)
    assert not PipSession().is_secure_origin(index)  # without it pip would ignore the index
    assert not PipSession(trusted_hosts=["fd00::2"]).is_secure_origin(index)


def test_symlinked_pypirc_written_through_the_link(tmp_path):
    target = tmp_path / "dotfiles" / "pypirc"
    target.parent.mkdir()
    target.write_text("[distutils]\nindex-servers = pypi\n")
    link = tmp_path / ".pypirc"
    link.symlink_to(os.path.join("dotfiles", "pypirc"))
    _, pypirc = cc.render(URL, "private", "demo", "pw", extra=False)
    assert "through the link" in cc.write_merged(link, pypirc, mode=0o600)
    assert link.is_symlink() and os.readlink(link) == os.path.join("dotfiles", "pypirc")
    assert "[private]\nrepository = http://10.0.0.5:8000/\nusername = demo\npassword = pw\n" in target.read_text()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    (backup,) = target.parent.glob("pypirc.bak-*")
    assert backup.read_text() == "[distutils]\nindex-servers = pypi\n"
    assert cc.write_merged(link, pypirc, mode=0o600).startswith("ok")
    dangling = tmp_path / "pip.conf"
    dangling.symlink_to(tmp_path / "new" / "pip.conf")
    pip_conf, _ = cc.render(URL, "private", None, None, extra=False)
    cc.write_merged(dangling, pip_conf)
    assert dangling.is_symlink() and (tmp_path / "new" / "pip.conf").read_text() == pip_conf


def test_only_regular_files_read(tmp_path):
    pip_conf, _ = cc.render(URL, "private", None, None, extra=False)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (cc.Path("/dev/full"), fifo, tmp_path):
        with pytest.raises(cc.ClientConfigError, match="not a regular file"):
            cc.write_merged(path, pip_conf)
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_files_over_1_mib_refused(tmp_path):
    pip_conf, _ = cc.render(URL, "private", None, None, extra=False)
    big = tmp_path / "pip.conf"
    big.write_text("[global]\n" + "# padding\n" * (cc.MAX_BYTES // 10))
    with pytest.raises(cc.ClientConfigError, match="larger than 1 MiB"):
        cc.write_merged(big, pip_conf)
    assert cc.write_merged(tmp_path / "fine.conf", pip_conf).startswith("changed")


def test_cli_refusals_touch_nothing(tmp_path):
    """One line and exit 2; a refused --pip-conf leaves .pypirc unwritten too (the binary
    once, the same program in this process for the rest)."""
    from tests.helpers import invoke, invoke_here

    args = ("client-config", "--no-verify", "--write", "--pypirc", str(tmp_path / "pypirc"))
    pip_conf = str(tmp_path / "pip.conf")
    for extra, why in [(("--url", URL, "--pip-conf", "/dev/full"), "/dev/full is not a regular file"),
                       (("--url", URL, "--pip-conf", pip_conf, "--username", "ci\n[evil]"), "bad --username"),
                       (("--url", "http://h:99999/", "--pip-conf", pip_conf), "Port out of range")]:
        res = invoke_here(*args, *extra)
        assert res.returncode == 2 and res.stderr.startswith("error: ") and why in res.stderr, res.stderr
        assert res.stderr.count("\n") == 1
    res = invoke(*args, "--url", URL, "--pip-conf", pip_conf, "--password-stdin", input=" pw\n", timeout=60)
    assert res.returncode == 2 and "TWINE_PASSWORD" in res.stderr
    assert os.listdir(tmp_path) == []
