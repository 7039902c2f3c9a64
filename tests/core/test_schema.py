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


def test_a_v2_log_without_request_stats_or_options_still_loads():
    v2 = {
        "schema_version": 2,
        "spec": {
            "model": {"spec": "s", "fingerprint": "f", "kind": "generative", "capabilities": []},
            "probes": [],
            "seed": 0,
            "vlmtrust_version": "0.1.0",
            "created": "2025-01-01T00:00:00+00:00",
        },
        "results": [
            {"probe": "safety/figstep", "pillar": "safety", "version": 1, "params": {}},
        ],
    }
    from vlmtrust.core.results import AuditLog

    log = AuditLog.model_validate(v2)
    assert log.schema_version == SCHEMA_VERSION
    assert log.results[0].requests is None and log.spec.model.options == {}
