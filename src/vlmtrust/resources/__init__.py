"""Data files shipped with vlmtrust (request sets, labeled judge sets), read via importlib."""
