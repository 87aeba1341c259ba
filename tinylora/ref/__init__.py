"""The numpy fixed-point reference: the specification every C path must equal byte for byte.

``quant`` (rounding helpers), ``softmax``, ``layers`` (frozen int8 ops, TFLM-exact), ``model``
(a frozen graph), ``lora`` (adapter arithmetic), ``loss`` (the Q10 loss table), ``trainer``
(LoRAConfig + Trainer: schedule of typed buffers and its executor), ``floatref`` (float twin
used by tests and auto-rank).
"""
