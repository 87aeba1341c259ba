"""The numpy fixed-point reference: the specification every C path must equal byte for byte.

``quant`` (rounding helpers), ``softmax``, ``layers`` (frozen int8 ops, TFLM-exact), ``model``
(a frozen graph), ``lora`` (adapter arithmetic, the rows rule, sparsify), ``loss`` (the Q10 loss
table), ``schedule`` (the step as data: ops and buffer names), ``config`` (LoRAConfig),
``adapted`` (one adapter's persistent state), ``executor`` (one method per op kind),
``trainer`` (Trainer: builds the schedule and runs it), ``arena_exec`` (running inside an arena
plan), ``floatref`` (float twin used by tests and auto-rank).
"""
