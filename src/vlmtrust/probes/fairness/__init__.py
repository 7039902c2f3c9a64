from vlmtrust.probes.fairness import dataset_audit  # noqa: F401  (registers fairness/dataset_audit)
