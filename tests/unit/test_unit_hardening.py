"""The unit's sandboxing follows the host's systemd version (issue items 17 and 21).

The unit is rendered exactly as a deploy does (the role's own step, with the arguments
`PypiserverRole.phases` passes), for the systemd of each supported distro: 219 CentOS 7,
239 EL 8, 245 Ubuntu 20.04, 247 Debian 11, 249 Ubuntu 22.04, 252 Debian 12 / EL 9,
255 Ubuntu 24.04.
"""

from __future__ import annotations

import dataclasses

import pytest

from provision.inventory import Target
from provision.roles.pypiserver import PypiserverRole
from provision.steps import WriteFile

from .conftest import distro_facts, planned

UNIT = "/etc/systemd/system/pypiserver.service"

# Directive -> (the systemd release that introduced it, source). "NEWS" is systemd's NEWS
# file, section "CHANGES WITH <n>". Settings that predate 219 count as 219.
INTRODUCED = {
    "PrivateTmp": (219, "NEWS 183 era; in systemd.exec(5) of 219"),
    "PrivateDevices": (219, "NEWS 209"),
    "DevicePolicy": (219, "systemd.resource-control(5) of 219"),
    "ProtectHome": (219, "NEWS 214"),
    "CapabilityBoundingSet": (219, "systemd.exec(5) of 219: empty = empty bounding set"),
    "UMask": (219, "systemd.exec(5) of 219"),
    "AmbientCapabilities": (229, "NEWS 229"),
    "ProtectSystem": (219, "NEWS 214 (yes/full); 'strict' NEWS 232"),
    "ReadWritePaths": (231, "NEWS 231 (renamed from ReadWriteDirectories=)"),
    "ProtectKernelTunables": (232, "NEWS 232"),
    "ProtectKernelModules": (232, "NEWS 232"),
    "ProtectControlGroups": (232, "NEWS 232"),
    "RemoveIPC": (232, "NEWS 232"),
    "PrivateUsers": (232, "NEWS 232"),
    "NoNewPrivileges": (187, "NEWS 187"),
    "SystemCallFilter": (187, "NEWS 187; groups NEWS 231; @system-service NEWS 239 (PR #8766)"),
    "SystemCallArchitectures": (209, "NEWS 209"),
    "SystemCallErrorNumber": (209, "NEWS 209"),
    "RestrictAddressFamilies": (211, "NEWS 211"),
    "MemoryDenyWriteExecute": (231, "NEWS 231"),
    "RestrictRealtime": (231, "NEWS 231"),
    "RestrictNamespaces": (233, "NEWS 233"),
    "LockPersonality": (235, "NEWS 235"),
    "KeyringMode": (235, "NEWS 235"),
    "RestrictSUIDSGID": (242, "NEWS 242"),
    "ProtectHostname": (242, "NEWS 242"),
    "ProtectKernelLogs": (244, "NEWS 244"),
    "ProtectClock": (245, "NEWS 245"),
    "ProtectProc": (247, "NEWS 247"),
    "ProcSubset": (247, "NEWS 247"),
}

# Below 232 the template leaves out NoNewPrivileges=yes and whatever needs or implies it
# (issue item 21: SELinux on EL 7 keeps a no_new_privs service in init_t, systemd #3845).
NNP_FROM = 232
# systemd.exec(5) of 219 says of these: "NoNewPrivileges=yes is implied" (and 219 loads their
# seccomp filter after switching to User=, which the kernel accepts only under no_new_privs).
IMPLY_NNP_IN_219 = {"SystemCallFilter", "SystemCallArchitectures", "RestrictAddressFamilies"}
# What later releases list as implying it too, plus SystemCallErrorNumber= (only serves a
# filter). PrivateDevices= is not among them in 219 (it only drops CAP_MKNOD and sets
# DevicePolicy=closed there), so it stays.
IMPLY_NNP_LATER = {"SystemCallErrorNumber", "MemoryDenyWriteExecute", "RestrictRealtime",
                   "RestrictNamespaces", "LockPersonality", "RestrictSUIDSGID",
                   "ProtectHostname", "ProtectKernelTunables", "ProtectKernelModules",
                   "ProtectKernelLogs", "ProtectClock", "SystemCallLog", "RestrictFileSystems"}

# Where the template waits longer than the introducing release, and why.
GATE = {name: since for name, (since, _) in INTRODUCED.items()}
GATE.update({
    "NoNewPrivileges": NNP_FROM,
    "SystemCallArchitectures": NNP_FROM,
    "SystemCallErrorNumber": NNP_FROM,
    "RestrictAddressFamilies": NNP_FROM,
    "MemoryDenyWriteExecute": NNP_FROM,
    "RestrictRealtime": NNP_FROM,
    "ReadWritePaths": 232,      # only next to ProtectSystem=strict
    "SystemCallFilter": 239,    # @system-service
    "ProcSubset": 251,          # with ProtectKernelTunables/Logs since 250 (PR #21545),
                                # with ProtectHostname since 251 (PR #22203)
})

# The full set, as systemd 252 (Debian 12, EL 9) gets it.
FULL = {
    "NoNewPrivileges": ["yes"],
    "PrivateTmp": ["yes"],
    "PrivateDevices": ["yes"],
    "DevicePolicy": ["closed"],
    "ProtectHome": ["yes"],
    "CapabilityBoundingSet": [""],
    "AmbientCapabilities": [""],
    "UMask": ["0022"],
    "ProtectSystem": ["strict"],
    "ReadWritePaths": ["/srv/pypi/packages"],
    "ProtectKernelTunables": ["yes"],
    "ProtectKernelModules": ["yes"],
    "ProtectControlGroups": ["yes"],
    "RemoveIPC": ["yes"],
    "PrivateUsers": ["yes"],
    "SystemCallArchitectures": ["native"],
    "SystemCallErrorNumber": ["EPERM"],
    "RestrictAddressFamilies": ["AF_INET AF_INET6 AF_UNIX"],
    "MemoryDenyWriteExecute": ["yes"],
    "RestrictRealtime": ["yes"],
    "RestrictNamespaces": ["yes"],
    "LockPersonality": ["yes"],
    "KeyringMode": ["private"],
    "SystemCallFilter": ["@system-service", "~@privileged @resources"],
    "RestrictSUIDSGID": ["yes"],
    "ProtectHostname": ["yes"],
    "ProtectKernelLogs": ["yes"],
    "ProtectClock": ["yes"],
    "ProtectProc": ["invisible"],
    "ProcSubset": ["pid"],
}

VERSIONS = [219, 239, 245, 247, 249, 252, 255]


def unit_text(systemd: int, **vars_) -> str:
    """The unit a deploy writes to a Debian 12 host whose systemd is `systemd`."""
    facts = dataclasses.replace(distro_facts("debian-12"), systemd=systemd)
    target = Target(name="h", ssh_host="192.0.2.10", vars=vars_)
    for phase in PypiserverRole().phases(target):
        for step in phase:
            if getattr(step, "path", None) != UNIT:
                continue
            step.prepare(facts)   # renders the unit for this systemd
            plan = planned(step, facts)
            for action in plan.actions:
                if isinstance(action, WriteFile) and action.path == UNIT:
                    return action.content.decode()
    raise AssertionError(f"the role writes no {UNIT}")


def service_settings(text: str) -> dict[str, list[str]]:
    """[Service] settings of a unit: name -> values in order (comments left out)."""
    out: dict[str, list[str]] = {}
    section = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_every_hardening_directive_is_known_and_gated():
    """Nothing in the template's hardening escapes this file's version table."""
    latest = service_settings(unit_text(999))
    hardening = set(latest) - {"Type", "User", "Group", "ExecStart", "Restart", "RestartSec"}
    assert hardening == set(INTRODUCED) == set(FULL)
    for name, gate in GATE.items():
        assert gate >= INTRODUCED[name][0], name


@pytest.mark.parametrize("systemd", VERSIONS)
def test_each_directive_appears_only_from_its_version(systemd):
    settings = service_settings(unit_text(systemd))
    for name, gate in GATE.items():
        if systemd >= gate:
            assert name in settings, f"{name}= missing on systemd {systemd} (gate {gate})"
        else:
            assert name not in settings, f"{name}= on systemd {systemd}, before its gate {gate}"


@pytest.mark.parametrize("systemd", [219, 231])
def test_no_no_new_privileges_before_232(systemd):
    text = unit_text(systemd)
    settings = service_settings(text)
    assert "NoNewPrivileges" not in settings
    assert not settings.keys() & IMPLY_NNP_IN_219
    assert not settings.keys() & IMPLY_NNP_LATER
    # the unit says why (an admin comparing it with a newer host's will ask)
    assert "systemd issue #3845" in text and "init_t" in text
    # what is left is the mount/capability sandbox 219 has without no_new_privs
    assert settings["ProtectSystem"] == ["full"]
    assert settings["CapabilityBoundingSet"] == [""]
    assert {"PrivateTmp", "PrivateDevices", "DevicePolicy", "ProtectHome", "UMask"} <= settings.keys()


def test_systemd_219_unit_exactly():
    settings = service_settings(unit_text(219))
    hardening = {k: v for k, v in settings.items()
                 if k not in ("Type", "User", "Group", "ExecStart", "Restart", "RestartSec")}
    assert hardening == {
        "PrivateTmp": ["yes"], "PrivateDevices": ["yes"], "DevicePolicy": ["closed"],
        "ProtectHome": ["yes"], "CapabilityBoundingSet": [""], "UMask": ["0022"],
        "ProtectSystem": ["full"],
    }


@pytest.mark.parametrize("systemd", [252, 255])
def test_full_set_from_252(systemd):
    settings = service_settings(unit_text(systemd))
    hardening = {k: v for k, v in settings.items()
                 if k not in ("Type", "User", "Group", "ExecStart", "Restart", "RestartSec")}
    assert hardening == FULL


def test_239_el8_and_247_debian11():
    el8 = service_settings(unit_text(239))
    assert el8["NoNewPrivileges"] == ["yes"]
    assert el8["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    assert el8["ProtectSystem"] == ["strict"] and el8["PrivateUsers"] == ["yes"]
    assert not el8.keys() & {"ProtectHostname", "ProtectKernelLogs", "ProtectClock",
                             "ProtectProc", "ProcSubset", "RestrictSUIDSGID"}
    deb11 = service_settings(unit_text(247))
    assert deb11["ProtectProc"] == ["invisible"] and "ProcSubset" not in deb11


def test_writable_path_is_the_packages_dir_only():
    settings = service_settings(unit_text(252, pypiserver_packages_dir="/data/pypi/pkgs"))
    assert settings["ReadWritePaths"] == ["/data/pypi/pkgs"]
    assert settings["ProtectSystem"] == ["strict"]
    # uploads stay world-readable for a web server in front
    assert settings["UMask"] == ["0022"]


def test_execstart_and_user_are_left_alone():
    for systemd in (219, 252):
        settings = service_settings(unit_text(systemd))
        assert settings["User"] == settings["Group"] == ["pypi"]
        assert len(settings["ExecStart"]) == 1 and "pypi-server" in settings["ExecStart"][0]
