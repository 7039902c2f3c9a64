"""Third-party probes and mitigations through entry points.

A distribution adds probes or mitigations by declaring entry points in its ``pyproject.toml``::

    [project.entry-points."vlmtrust.probes"]
    my_probes = "my_pkg.probes"                 # a module: importing it runs its @probe(...)
    toxic_v2 = "my_pkg.probes:ToxicV2"          # or one class (registered under its @probe name,
                                                # or under the entry point's name if undecorated)

    [project.entry-points."vlmtrust.mitigations"]
    my_guard = "my_pkg.guard"

The registries (:func:`vlmtrust.core.probe.registry`, :func:`vlmtrust.core.mitigation.registry`)
load the built-ins first, then every entry point of their group. A plug-in that fails to import
or to register is skipped with one warning line on the ``vlmtrust`` logger naming the
distribution; the other plug-ins still load.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import logging
from collections.abc import Callable

PROBES_GROUP = "vlmtrust.probes"
MITIGATIONS_GROUP = "vlmtrust.mitigations"

log = logging.getLogger("vlmtrust")


def _dist_label(ep: md.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "an unknown distribution"
    return f"distribution {dist.name} {dist.version}"


def load_entry_points(
    group: str,
    *,
    base: type,
    register: Callable[[str, type], object],
    registered: Callable[[type], bool],
    seen: set[tuple[str, str]],
) -> None:
    """Import every entry point of ``group`` not in ``seen`` (updated); warn on failures.

    Args:
        group: the entry-point group.
        base: the class a class entry point must subclass (``Probe`` or ``Mitigation``).
        register: ``(name, cls)`` registers an undecorated class under the entry point's name.
        registered: whether a class is already in the registry (decorated with its name).
        seen: ``(name, value)`` of entry points already handled (deduplicated across calls and
            across sys.path entries that list one distribution twice).
    """
    importlib.invalidate_caches()
    for ep in md.entry_points(group=group):
        key = (ep.name, ep.value)
        if key in seen:
            continue
        seen.add(key)
        try:
            obj = ep.load()
            if isinstance(obj, type):
                if not issubclass(obj, base):
                    raise TypeError(f"{obj.__qualname__} is not a {base.__name__} subclass")
                if not registered(obj):
                    register(ep.name, obj)
        except Exception as exc:  # a broken plug-in must not take the others down
            what = group.rsplit(".", 1)[-1].rstrip("s")
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            log.warning(
                "vlmtrust: skipped %s plug-in %r (%s) from %s: %s%s",
                what,
                ep.name,
                ep.value,
                _dist_label(ep),
                type(exc).__name__,
                f": {msg}" if msg else "",
            )
