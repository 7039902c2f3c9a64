"""Probe families: base classes owning a shared loop; a probe declares only what is specific."""
