"""Byte formats tinylora writes and reads: ``checkpoint`` (checkpoint records and the two-slot
store) and ``adapter`` (the trained adapter file)."""
