"""Facts: typed questions to a host, all asked in one round trip.

A fact is a small value class with a shell `command()` and a total `parse(text, rc)`
(`base`). Host facts (`host`: OS, Pythons, systemd, SELinux...) are gathered for every run
into `HostFacts`; resource facts (files, packages, users, python, service, firewall) are
what steps declare in `probes()`, and what `plan()` receives, parsed, by the step's own
keys. Per-distro data tests feed the parsers real outputs (tests/unit/data/facts/).
"""

from .host import HOST_FACTS, HostFacts, host_fact_commands, parse_host_facts, version_key
from .base import MARK, MISSING, Fact, Output, section_script, split_sections
from .files import DirFiles, DirListing, FileInfo, FileState, FileText, PathExists, PathInfo, Stat
from .firewall import FirewalldRuntimePort, FirewalldZone, Listeners, Ufw, UfwRules, ZonePorts
from .packages import InstalledPackages
from .python import VenvInfo, VenvState
from .service import ServiceState, UnitInfo
from .users import Account, Passwd, UidMin

__all__ = [
    "HOST_FACTS", "MARK", "MISSING", "Account", "DirFiles", "DirListing", "Fact", "FileInfo", "FileState",
    "FileText", "FirewalldRuntimePort", "FirewalldZone", "HostFacts", "InstalledPackages",
    "Listeners", "Output", "Passwd", "PathExists", "PathInfo", "ServiceState", "Stat", "Ufw",
    "UfwRules", "UidMin", "UnitInfo", "VenvInfo", "VenvState", "ZonePorts", "host_fact_commands",
    "parse_host_facts", "section_script", "split_sections", "version_key",
]
