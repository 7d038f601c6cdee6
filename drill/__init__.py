"""Crash drills for tablemover: SIGKILL the daemon under write load and prove zero divergence (spec 9.6)."""
