import numpy as np
from PIL import Image
from runner_toys import COLOURS, ColourEncoder

from vlmtrust.core.probe import ProbeContext
from vlmtrust.probes.capability.zero_shot import ZeroShot
from vlmtrust.runner.engine import evaluate_probe


class Abstaining(ColourEncoder):
    """Declines every blue image."""

    def abstain(self, images, class_texts):
        return [np.asarray(im).mean(axis=(0, 1))[2] > 150 for im in images]


def _folder(root):
    for name, rgb in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (6, 6), rgb).save(root / name / f"{i}.png")
    return root


def test_zero_shot_counts_abstentions_as_wrong(tmp_path):
    ctx = ProbeContext(data=str(_folder(tmp_path / "d")))
    plain = evaluate_probe(ColourEncoder(), ZeroShot({"template": "a {} thing"}), ctx)
    assert plain.metric("accuracy").value == 1.0
    assert "abstention_rate" not in {m.name for m in plain.metrics}
    guarded = evaluate_probe(Abstaining(), ZeroShot({"template": "a {} thing"}), ctx)
    assert guarded.metric("accuracy").value == 8 / 12
    assert guarded.metric("abstention_rate").value == 4 / 12
    assert guarded.metric("accuracy").groups["blue"].value == 0.0
