"""``hardened:DIR`` — a model produced by ``vlmtrust harden``.

``DIR`` is either a model directory written with ``save_pretrained`` (model mitigations) or a
folder holding ``wrapper.json`` (inference-time wrappers), which names the base model spec,
the mitigation and its parameters.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlmtrust.core.errors import ModelSpecError
from vlmtrust.core.mitigation import WRAPPER_FILE, WrapperMitigation, get_mitigation


def load_hardened(target: str, *, spec: str, **kwargs: Any) -> Any:
    """Load a hardened model directory (model or wrapper)."""
    path = Path(target)
    if not path.is_dir():
        raise ModelSpecError(
            f"model spec {spec!r}: {target} is not a directory; pass the --out folder of "
            "`vlmtrust harden`"
        )
    wrapper = path / WRAPPER_FILE
    if wrapper.exists():
        try:
            payload = json.loads(wrapper.read_text())
            name, base, params = payload["mitigation"], payload["base"], payload["params"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ModelSpecError(
                f"{wrapper}: not a valid wrapper file ({e}); re-run `vlmtrust harden`"
            ) from None
        from vlmtrust.models.loader import load_model

        if not isinstance(base, str) or (
            base.startswith("hardened:")
            and Path(base.removeprefix("hardened:")).resolve() == path.resolve()
        ):
            raise ModelSpecError(
                f"{wrapper}: base {base!r} must name another model (it points at itself); "
                "re-run `vlmtrust harden` on the original model"
            )
        cls = get_mitigation(name)
        if not issubclass(cls, WrapperMitigation):
            raise ModelSpecError(f"{wrapper}: mitigation {name!r} is not a wrapper")
        mit = cls(params)
        mit.source_dir = path
        model = mit.wrap(load_model(base, **kwargs))
        model.spec = spec
        return model
    from vlmtrust.models.loader import _load_hf

    return _load_hf(str(path), spec=spec, **kwargs)
