"""pip.conf and .pypirc rendering and merging (pure functions, real files in tmp)."""

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


def test_password_only_when_given():
    _, pypirc = cc.render(URL, "team", "demo", "s3cret", extra=False)
    assert "[team]" in pypirc and "password = s3cret" in pypirc and "    team\n" in pypirc


@pytest.mark.parametrize("bad", ["ftp://x/", "not a url", "http:///nohost"])
def test_bad_urls(bad):
    with pytest.raises(cc.ClientConfigError):
        cc.render(bad, "private", None, None, extra=False)


def test_bad_repository_name():
    with pytest.raises(cc.ClientConfigError, match="bad repository name"):
        cc.render(URL, "bad name", None, None, extra=False)


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
    from tests.helpers import invoke

    venv_conf, rc = tmp_path / "venv" / "pip.conf", tmp_path / "pypirc"
    res = invoke("client-config", "--url", "https://pypi.example.org/", "--username", "ci",
                 "--name", "corp", "--write", "--pip-conf", str(venv_conf), "--pypirc", str(rc))
    assert res.returncode == 0, res.stderr
    assert venv_conf.read_text().splitlines()[2] == "index-url = https://pypi.example.org/simple/"
    assert "[corp]\nrepository = https://pypi.example.org/\nusername = ci\n" in rc.read_text()
    assert stat.S_IMODE(rc.stat().st_mode) == 0o600
    again = invoke("client-config", "--url", "https://pypi.example.org/", "--username", "ci",
                   "--name", "corp", "--write", "--pip-conf", str(venv_conf), "--pypirc", str(rc))
    assert again.stdout.count("ok ") == 2  # already set: nothing rewritten
