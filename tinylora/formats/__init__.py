"""Byte formats tinylora writes and reads: ``checkpoint`` (adapter checkpoint records)."""
