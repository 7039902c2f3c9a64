"""The committed JSON Schema of :class:`~vlmtrust.core.results.AuditLog`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).with_name("auditlog.schema.json")


def current_schema() -> dict[str, Any]:
    """The schema as the code defines it now, tagged with its version."""
    from vlmtrust.core.results import SCHEMA_VERSION, AuditLog

    return {"schema_version": SCHEMA_VERSION, "schema": AuditLog.model_json_schema()}


def write_schema() -> Path:
    """Regenerate the committed file (run after bumping SCHEMA_VERSION)."""
    SCHEMA_FILE.write_text(json.dumps(current_schema(), indent=2, sort_keys=True) + "\n")
    return SCHEMA_FILE


if __name__ == "__main__":  # pragma: no cover
    print(write_schema())
