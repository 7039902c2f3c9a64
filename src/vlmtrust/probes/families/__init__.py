"""Probe families: the shared loops every probe builds on."""
