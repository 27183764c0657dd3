"""The trust boundary as data: every inventory variable and command-line value, fed hostile
strings, is refused in one line or rendered inert (taken literally where it lands)."""

from __future__ import annotations

import re

import pytest

from provision import validate
from provision.errors import InventoryError, ProvisionError
from provision.inventory import Target
from provision.roles.pypiserver import PypiserverRole
from provision.steps import Command, WriteFile

from .conftest import distro_facts, plan_role

HOSTILE = [
    "a\nb", "x\r\nExecStartPre=+/bin/sh -c id", "x'y", 'x"y', "$(id)", "`id`", "..", "/srv/..",
    "/srv/pypi/../../etc", "a\x00b", "A" * 100_000, "ünïcödé", "-rf", "; rm -rf /", "%n", "$HOME",
    "\\", " ", "", "\t", "/", "/etc", "/etc/shadow", "/srv//pypi", "/srv/./pypi", "root", True, 8000.9,
    None, [], {"a": 1}, -1, 0, 80, 99999,
]
# the only variable whose value may be free text: each argument is kept literally
FREE_TEXT = {"pypiserver_extra_args"}


def target(**vars_) -> Target:
    return Target(name="h", ssh_host="192.0.2.10", vars=vars_)


def systemd_unquote(line: str) -> list[str]:
    """ExecStart= words as systemd reads them (quotes, C escapes, %% and $$): test oracle."""
    words, i = [], 0
    while i < len(line):
        if line[i] == " ":
            i += 1
            continue
        assert line[i] == '"', f"unquoted word at {line[i:i + 20]!r}"
        i += 1
        word = ""
        while line[i] != '"':
            if line[i] == "\\":
                word += line[i + 1]
                i += 2
            elif line[i] in "%$":
                assert line[i + 1] == line[i], f"lone {line[i]} would be expanded by systemd"
                word += line[i]
                i += 2
            else:
                word += line[i]
                i += 1
        words.append(word)
        i += 1
    return words


def through_the_corpus(key, check) -> None:
    """check(key, value) for every hostile value; a failure names the value (one test per
    variable instead of one per pair: ~1,500 cases cost a second, not five)."""
    for value in HOSTILE:
        try:
            check(key, value)
        except AssertionError as exc:
            raise AssertionError(f"{key}={value!r}: {exc}") from None


@pytest.mark.parametrize("key", sorted(validate.CHECKS))
def test_every_variable_refuses_or_renders_inert(key):
    through_the_corpus(key, _refuses_or_renders_inert)


def _refuses_or_renders_inert(key, value):
    try:
        v = validate.role_vars(target(**{key: value}))
    except InventoryError as exc:
        message = str(exc)
        assert "\n" not in message and len(message) < 400 and message.startswith(f"h: {key} ")
        return
    got = v[key]
    if key in FREE_TEXT:
        plan = fresh_plan({key: value})
        unit = plan["/etc/systemd/system/pypiserver.service"].content.decode()
        exec_line = next(ln for ln in unit.splitlines() if ln.startswith("ExecStart="))
        argv = systemd_unquote(exec_line[len("ExecStart="):])
        assert argv[-1] == "/srv/pypi/packages" and argv[-1 - len(got):-1] == got
        assert not any(ln.startswith("ExecStartPre") for ln in unit.splitlines())
        return
    # anything else that passes is one of the few safe shapes
    safe = r"[A-Za-z0-9/._+:,-]*"
    assert value in ("", None) or got is value or isinstance(got, (int, bool)) or \
        re.fullmatch(safe, str(got)) or \
        (isinstance(got, list) and all(re.fullmatch(safe, x) for x in got)), (key, value, got)


def fresh_plan(vars_: dict) -> dict:
    written = {}
    for _, plan in plan_role(PypiserverRole(), target(**vars_), distro_facts("debian-12")):
        for a in plan.actions:
            if isinstance(a, WriteFile):
                written[a.path] = a
            assert not isinstance(a, Command) or "\n" not in a.sh or "<<" in a.sh or \
                a.sh.startswith(("if ", "{"))
    return written


@pytest.mark.parametrize("key,value,needle", [
    ("pypiserver_packages_dir", "/srv/..", "must be normalised"),
    ("pypiserver_packages_dir", "/srv", "is a system directory"),
    ("pypiserver_packages_dir", "/etc/ssh/pypi", "is inside /etc/ssh"),
    ("pypiserver_venv", "/usr/lib", "is inside /usr/lib"),
    ("pypiserver_venv", "/opt/venv", "/opt is a system directory"),
    ("pypiserver_htpasswd", "/etc/shadow", "/etc is a system directory"),
    ("pypiserver_listen", "0.0.0.0\nExecStartPre=+/bin/sh", "control character"),
    ("pypiserver_listen", "localhost", "must be an IP address"),
    ("pypiserver_authenticate", "update --fallback-url x", "comma-separated list"),
    ("pypiserver_port", True, "must be a whole number"),
    ("pypiserver_port", 8000.9, "must be a whole number"),
    ("pypiserver_port", 80, "below 1024"),
    ("pypiserver_user", "root", "may not be root"),
    ("pypiserver_extra_args", "--x 'unclosed", "cannot be split"),
    ("offline", "false", "must be true or false"),
    ("pypiserver_prot", 8000, "unknown variable pypiserver_prot (did you mean pypiserver_port?)"),
    ("pypi_cache_upstrem", "https://x/", "unknown variable pypi_cache_upstrem (did you mean pypi_cache_upstream?)"),
    ("pypi_cache_upstream", "https://user:secret@pypi.example/simple/", "no user or password"),
    ("pypi_cache_upstream", "file:///etc/passwd", "must be an http(s) URL"),
    ("pypi_cache_deny", "evil;rm", "is not a name pattern"),
    ("pypi_cache_allow", ["a(b)"], "is not a name pattern"),
    ("pypi_cache_min_age", "3 days", "must be a time like"),
    ("pypi_cache_index_ttl", "0", "must be longer than 0"),
    ("pypi_cache_max_size", "10t", "must be a size like"),
    ("pypi_cache_port", 18000, "pypi_cache_port 18000 is also pypiserver_backend_port"),
])
def test_refusals_say_why(key, value, needle):
    with pytest.raises(InventoryError) as err:
        validate.role_vars(target(**{key: value}, **({"pypi_cache": True} if key == "pypi_cache_port" else {})))
    assert needle in str(err.value)


def test_the_cache_needs_the_static_index():
    for vars_, why in (({"tls": False}, "tls: false"), ({"static_index": False}, "static_index: false"),
                       ({"pypiserver_authenticate": "update,download"}, "reading needs a password")):
        with pytest.raises(InventoryError, match=f"pypi_cache needs the static index.*{why}"):
            validate.role_vars(target(pypi_cache=True, **vars_))


@pytest.mark.parametrize("key", ["pypi_cache_upstream", "pypi_cache_allow", "pypi_cache_deny",
                                 "pypi_cache_min_age", "pypi_cache_index_ttl", "pypi_cache_max_size",
                                 "pypi_cache_dir", "pypi_cache_port"])
def test_cache_values_are_refused_or_inert_where_they_are_written(key):
    """With the cache on, these reach nginx's site and the origin's unit: what passes is
    one of a few safe shapes there (no quote, brace, semicolon or space of its own)."""
    def check(key, value):
        try:
            v = validate.role_vars(target(pypi_cache=True, **{key: value}))
        except InventoryError as exc:
            assert "\n" not in str(exc) and str(exc).startswith(f"h: {key} ")
            return
        plan = fresh_plan({"pypi_cache": True, key: value})
        site = plan["/etc/nginx/conf.d/pypiserver.conf"].content.decode()
        unit = plan["/etc/systemd/system/pypiserver-cache.service"].content.decode()
        exec_line = next(ln for ln in unit.splitlines() if ln.startswith("ExecStart="))
        argv = systemd_unquote(exec_line[len("ExecStart="):])
        assert argv[argv.index("--upstream") + 1] == v["pypi_cache_upstream"]
        for got in (v[key] if isinstance(v[key], list) else [v[key]]):
            assert re.fullmatch(r"[A-Za-z0-9/._:*?~%+-]*", str(got)), (value, got)
        for line in site.splitlines():
            if line.strip().startswith('"~^(?:'):
                assert re.fullmatch(r'    "~\^\(\?:[a-z0-9\\\-\[\]*]*\)\$" [01];', line), line
    through_the_corpus(key, check)


def test_the_upstream_ca_is_a_file_here_and_never_reaches_the_host_as_a_value():
    """pypi_cache_upstream_ca names a file on this machine: a value that is no readable PEM
    file is refused in one line; the host only ever sees its content, at a fixed path."""
    def check(key, value):
        try:
            validate.role_vars(target(pypi_cache=True, **{key: value}))
            plan = fresh_plan({"pypi_cache": True, key: value})
        except InventoryError as exc:
            assert "\n" not in str(exc) and str(exc).startswith(f"h: {key} ") or \
                str(exc).startswith(f"{key} "), str(exc)
            return
        assert value in ("", None), value      # nothing in the corpus is a PEM file
        assert "/etc/pypiserver/pypi-cache-upstream-ca.pem" not in plan
    through_the_corpus("pypi_cache_upstream_ca", check)


def test_service_directories_may_not_nest():
    with pytest.raises(InventoryError, match="pypiserver_config_dir /srv/pypi/packages/etc is inside"):
        validate.role_vars(target(pypiserver_config_dir="/srv/pypi/packages/etc"))
    with pytest.raises(InventoryError, match="keep it in pypiserver_config_dir"):
        validate.role_vars(target(pypiserver_htpasswd="/srv/pypi/packages/htpasswd"))


def test_accepted_values_are_normalised():
    v = validate.role_vars(target(pypiserver_port="8080", pypiserver_listen="::",
                                  pypiserver_extra_args="--disable-fallback --hash-algo sha256",
                                  pypiserver_authenticate="update,download"))
    assert v["pypiserver_port"] == 8080 and v["pypiserver_listen"] == "::"
    assert v["pypiserver_extra_args"] == ["--disable-fallback", "--hash-algo", "sha256"]


@pytest.mark.parametrize("key", ["ssh_host", "ssh_user", "ssh_port", "ssh_key", "known_hosts"])
@pytest.mark.parametrize("value", ["a\nb", "-oProxyCommand=id", "$(id)", True, 99999, "x'y"],
                         ids=lambda v: repr(v)[:20])
def test_connection_variables(key, value, tmp_path):
    from provision.inventory import select

    inv = tmp_path / "inv.yml"
    import yaml
    inv.write_text(yaml.safe_dump({"all": {"hosts": {"h1": {key: value}}}}))
    try:
        (t,) = select(None, str(inv), {})
    except InventoryError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("h1: ")
        return
    # accepted: only as a local path (our own files) or a literal value, never an option
    assert key in ("ssh_key", "known_hosts") and "\n" not in str(getattr(t, key))


@pytest.mark.parametrize("spec", ["", ",", " , ", "a\nb", "-oProxyCommand=id", "x;id"])
def test_host_specs(spec):
    from provision.inventory import select

    with pytest.raises(ProvisionError) as err:
        select([spec], None, {})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["#ci", "a" * 256, "a:b", "a b", "a\nb", ""])
def test_account_names(name):
    from provision.htpasswd import AccountError, check_name

    with pytest.raises(AccountError):
        check_name(name)


def test_systemd_quote_round_trips_the_corpus():
    for value in HOSTILE:
        if isinstance(value, str) and not re.search(r"[\x00-\x1f\x7f]", value):
            assert systemd_unquote(validate.systemd_quote(value)) == [value]
        elif isinstance(value, str) and value:
            with pytest.raises(ValueError):
                validate.systemd_quote(value)


@pytest.mark.parametrize("flag,value", [("--python", "3.11\n; id"), ("--platform", "x86_64 --index-url"),
                                        ("--platform", "$(id)")])
def test_mirror_flags_are_refused_in_one_line(tmp_path, flag, value):
    from tests.helpers import invoke

    req = tmp_path / "r.txt"
    req.write_text("six\n")
    res = invoke("mirror", "-r", str(req), "--host", "127.0.0.1:1", flag, value)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert res.stdout == ""  # refused before any host was addressed


CLI_VALUES = {
    # check, what a value that passes may look like (None: free text, never reaching a shell)
    "name": (validate.project_name, r"[A-Za-z0-9._-]+"),
    "version": (validate.release_version, r"[A-Za-z0-9.!+_-]+"),
    "--since": (validate.since_time, r"[A-Za-z0-9 :.+-]+"),
    "reason": (validate.yank_reason, None),      # JSON on the host, escaped in the HTML page
    "--to": (lambda v: validate.folder_option(v, "--to"), None),    # a path here, never a shell
}


@pytest.mark.parametrize("what", sorted(CLI_VALUES))
def test_every_command_line_value_refuses_or_stays_inert(what):
    check, safe = CLI_VALUES[what]

    def one(_, value):
        try:
            got = check(value)
        except InventoryError as exc:
            message = str(exc)
            assert "\n" not in message and len(message) < 400 and message.startswith(what), message
            return
        assert isinstance(got, str) and not re.search(r"[\x00-\x1f\x7f]", got)
        if safe:
            assert re.fullmatch(safe, got) and not got.startswith("-") or \
                (what == "--since" and re.fullmatch(r"-[0-9]+[a-z]*", got)), got
    through_the_corpus(what, one)
