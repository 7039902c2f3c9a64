"""Probe families: the shared loops every probe builds on.

A probe belongs to one family, which owns the loop (samples, evaluation, metrics); the probe
declares only what is specific to it. See ``docs/adding-a-probe.md``.

* :class:`RequestProbe` — each request under each condition, judged by every judge: ASR per
  judge and condition, over-refusal on benign look-alikes, paired lift, per-topic groups.
* :class:`LabeledImageProbe` — each labeled image under each variant (clean, corrupted,
  attacked, labelled, …), classified: accuracy per variant, relative accuracy, abstention.
* :class:`GroupProbe` — samples with group attributes: per-group values, differences and
  ratios with CIs, flags against declared thresholds (the fairness pillar).
* :class:`MembershipProbe` — candidates with a known member label and a score each: AUC, TPR
  at low FPR with exact CIs, the model-free confound check (the privacy pillar).
"""

from vlmtrust.probes.families.group import GroupProbe
from vlmtrust.probes.families.labeled_image import LabeledImageProbe
from vlmtrust.probes.families.membership import MembershipProbe
from vlmtrust.probes.families.request import RequestProbe

__all__ = ["GroupProbe", "LabeledImageProbe", "MembershipProbe", "RequestProbe"]
