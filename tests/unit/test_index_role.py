"""yank / unyank / reindex: planned from real files read by the facts' own commands."""

from __future__ import annotations

import json

import pytest

from provision.errors import InventoryError, StepError
from provision.roles.index.steps import Reindex, YankEntry
from provision.steps.base import Command, WriteFile
from provision.validate import project_name, release_version, yank_reason
from tests.unit.conftest import ask, distro_facts

FACTS = distro_facts("debian-12")


@pytest.fixture
def host(tmp_path):
    packages = tmp_path / "packages"
    packages.mkdir()
    for name in ("Demo_Pkg-1.0-py3-none-any.whl", "demo_pkg-1.0.tar.gz", "demo_pkg-2.0rc1-py3-none-any.whl",
                 "other-3.0.tar.gz"):
        (packages / name).write_bytes(b"x")
    yanked = tmp_path / "yanked.json"
    yanked.write_text("")
    yanked.chmod(0o644)
    return packages, yanked


def plan(step):
    return step.plan(FACTS, {k: ask(f) for k, f in step.probes().items()})


def entry(host, project, version, reason, enabled=True):
    packages, yanked = host
    return YankEntry(str(yanked), str(packages), "pypiserver-index.service", project, version, reason, enabled)


def apply(host, p):
    """What the runner's write would leave (the content; owner and mode are checked apart)."""
    write = next(a for a in p.actions if isinstance(a, WriteFile))
    host[1].write_bytes(write.content)
    return json.loads(write.content)


def test_yank_writes_the_list_atomically_then_rebuilds(host):
    p = plan(entry(host, "Demo.Pkg", "1.0", "broken metadata"))
    assert p.note == "yank: broken metadata"
    write, start = p.actions
    assert isinstance(write, WriteFile) and write.mode == 0o644 and write.expect_sha256
    assert isinstance(start, Command) and start.sh == "systemctl start pypiserver-index.service"
    assert apply(host, p) == {"demo-pkg": {"1.0": "broken metadata"}}
    # the same again: nothing to do; another reason: changed
    assert not plan(entry(host, "demo-pkg", "1.0", "broken metadata")).changed
    p = plan(entry(host, "demo-pkg", "1.0", ""))
    assert p.note == "change the reason" and apply(host, p) == {"demo-pkg": {"1.0": ""}}
    p = plan(entry(host, "demo_pkg", "2.0RC1", "x"))       # spelled as the files spell it
    assert apply(host, p) == {"demo-pkg": {"1.0": "", "2.0rc1": "x"}}


def test_unyank_removes_the_entry_and_is_ok_when_not_yanked(host):
    host[1].write_text(json.dumps({"demo-pkg": {"1.0": "r"}, "other": {"3.0": ""}}))
    p = plan(entry(host, "demo-pkg", "1.0", None))
    assert p.note == "unyank" and apply(host, p) == {"other": {"3.0": ""}}
    assert plan(entry(host, "demo-pkg", "1.0", None)).note == "not yanked"


def test_refusals_name_what_is_wrong(host):
    with pytest.raises(StepError, match=r"demo-pkg 9\.9: no such release on the host \(versions: 1\.0, 2\.0rc1\)"):
        plan(entry(host, "demo-pkg", "9.9", "x"))
    with pytest.raises(StepError, match="static index is off"):
        plan(entry(host, "demo-pkg", "1.0", "x", enabled=False))
    host[1].write_text("[1, 2]")
    with pytest.raises(StepError, match="is not a yank list"):
        plan(entry(host, "demo-pkg", "1.0", "x"))
    host[1].unlink()
    with pytest.raises(StepError, match="not found: deploy again"):
        plan(entry(host, "demo-pkg", "1.0", "x"))


def test_reindex_drops_the_state_then_runs_the_builder():
    p = Reindex("/srv/pypi/index", "pypiserver-index.service").plan(FACTS, {})
    assert [a.sh for a in p.actions] == ["rm -f /srv/pypi/index/state.json",
                                          "systemctl start pypiserver-index.service"]
    with pytest.raises(StepError, match="static index is off"):
        Reindex("/srv/pypi/index", "x.service", enabled=False).plan(FACTS, {})


@pytest.mark.parametrize("check, value", [
    (project_name, "-rf"), (project_name, "a b"), (project_name, "x" * 101), (project_name, "pkg;id"),
    (release_version, "1.0 && id"), (release_version, "../1"), (release_version, ""),
    (yank_reason, "two\nlines"), (yank_reason, "x" * 501), (yank_reason, 3),
])
def test_hostile_values_are_one_line_refusals(check, value):
    with pytest.raises(InventoryError) as exc:
        check(value)
    assert "\n" not in str(exc.value)


def test_good_values_pass_unchanged():
    assert project_name("Foo_Bar.baz-2") == "Foo_Bar.baz-2"
    assert release_version("1!2.0rc1+local.3") == "1!2.0rc1+local.3"
    assert yank_reason('<script>"quoted" & more</script>') == '<script>"quoted" & more</script>'
