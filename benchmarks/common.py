"""What the benchmark scripts share: tearing down the test hosts they booted."""

from provision import testhost


def destroy_own_hosts(hosts, before: set, prefix: str, log) -> None:
    """Destroy the hosts this run booted, also those of an interrupted boot_hosts()."""
    mine = {h.name: h for h in hosts}
    for h in testhost.list_hosts():
        if h.name not in before and h.name.startswith(prefix) and h.name not in mine:
            mine[h.name] = h
    for name, h in mine.items():
        try:
            h.destroy()
        except Exception as exc:  # noqa: BLE001 - report and go on with the others
            log(f"could not destroy {name}: {exc} (python -m provision.testhost down {name})")
    if mine:
        log(f"destroyed {', '.join(mine)}")
