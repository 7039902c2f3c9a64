import json

from vlmtrust.core.results import SCHEMA_VERSION
from vlmtrust.schema import SCHEMA_FILE, current_schema


def test_committed_schema_matches_code():
    committed = json.loads(SCHEMA_FILE.read_text())
    now = current_schema()
    if committed["schema"] != now["schema"]:
        assert committed["schema_version"] < SCHEMA_VERSION, (
            "AuditLog changed without a version bump: bump SCHEMA_VERSION in "
            "vlmtrust/core/results.py, then run `python -c 'from vlmtrust.schema import "
            "write_schema; write_schema()'` and commit the file"
        )
        raise AssertionError("schema version bumped: regenerate the committed schema file")
    assert committed["schema_version"] == SCHEMA_VERSION
