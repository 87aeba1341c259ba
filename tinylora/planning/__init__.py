"""Planning a training step onto a device: ``arena`` (buffer placement, budgets), ``autorank``,
``boards`` (board data from ``boards/*.toml``) and ``plotting`` (arena pictures).

Planning takes a trainer; it does not live inside it (``plan.arena`` imports ``ref``, never the
other way round).
"""
