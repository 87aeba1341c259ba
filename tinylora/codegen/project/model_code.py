"""The model code of a project (:class:`ModelCode`): the generated training step with its
on-device test vectors, or the frozen forward only."""
from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np

from tinylora.codegen import c_array_rows, render
from tinylora.codegen.frozen import generate_frozen_c, plan_frozen
from tinylora.codegen.project.adapters import adapter_context, adapter_file_bytes
from tinylora.codegen.project.common import (
    BACKWARD_RUNTIME,
    OPS_RUNTIME,
    RAM_STORAGE,
    RUNTIME,
    STEP_PREFIX,
    TRAINING_RUNTIME,
    VECTOR_PREDICT,
    VECTOR_STEPS,
    ModelCode,
    _argmax_first,
    _header,
    _name_rows,
)
from tinylora.codegen.step import plan_step, render_step, uses_backward
from tinylora.errors import ProjectError
from tinylora.formats.checkpoint import CheckpointStore
from tinylora.planning.arena import ALIGN, ArenaPlan, plan_trainer


def _forward_common(fplan) -> dict:
    return dict(prefix=fplan.prefix, macro=fplan.prefix.upper(), input_size=fplan.input_size,
                output_size=fplan.output_size, scratch_size=fplan.scratch_size)


def _test_model_main(model, fplan, samples: np.ndarray, app_classes: np.ndarray, source: str,
                     command: str | None) -> str:
    """test/test_model/test_main.c: the frozen forward's vectors (Model.forward on
    ``samples``) and the classes the application's model interface must predict
    (``app_classes``, computed by ``source``)."""
    outputs = np.asarray(model.forward(samples), np.int8).reshape(len(samples), -1)
    return render(
        "project/test/test_model/test_main.c.j2",
        header=_header("test/test_model/test_main.c", command,
                       ["Expected outputs: tinylora.Model.forward (numpy), bit for bit."]),
        count=len(samples), output_rows=c_array_rows(outputs),
        class_rows=c_array_rows(app_classes), app_classes_source=source,
        name_rows=_name_rows([f"forward_sample_{i:02d}" for i in range(len(samples))]),
        **_forward_common(fplan))


def frozen_model_code(model, trainer=None, samples: np.ndarray | None = None, labels=None,
                      command: str | None = None, prefix: str = "tl_model", plan=None,
                      backend: str = "portable") -> ModelCode:
    """The frozen forward behind ``tl_app_model.h`` (predictions only: no training, no
    checkpoints), and its bit-exact vectors as ``test/test_model`` (outputs of
    :meth:`tinylora.Model.forward` on ``samples``). A :data:`ModelCodeFactory`: ``trainer``,
    ``labels`` and ``plan`` are not used; ``backend``'s kernel scratch is in its scratch."""
    fplan = plan_frozen(model, prefix, backend)
    common = _forward_common(fplan)
    lib = {
        "tl_model.c": generate_frozen_c(model, None, prefix, command, backend),
        "tl_model.h": render("project/lib/tinylora/tl_model.h.j2",
                             header=_header("lib/tinylora/src/tl_model.h", command), **common),
        "tl_app_model_frozen.c": render(
            "project/lib/tinylora/tl_app_model_frozen.c.j2",
            header=_header("lib/tinylora/src/tl_app_model_frozen.c", command), **common),
    }
    classes = _argmax_first(np.asarray(model.forward(samples)).reshape(len(samples), -1))
    tests = {"test_model/test_main.c": _test_model_main(model, fplan, samples, classes,
                                                        "tinylora.Model.forward", command)}
    return ModelCode(lib, tests, RUNTIME + (OPS_RUNTIME if fplan.uses_ops else ()), can_train=False,
                     arena_bytes=fplan.scratch_size + fplan.output_size,
                     description="frozen int8 forward (predictions only, no training)",
                     test_cases={"test_model": len(samples) + 3})


def _frozen_test_model(model, samples: np.ndarray, app_classes: np.ndarray, source: str,
                       command: str | None, backend: str) -> dict[str, str]:
    """test/test_model of a build whose lib has no frozen forward: the frozen forward's C
    (prefix tl_model, kernel scratch of ``backend``) in the test folder, next to its vectors."""
    fplan = plan_frozen(model, "tl_model", backend)
    return {
        "test_model/tl_model.c": generate_frozen_c(model, None, "tl_model", command, backend),
        "test_model/tl_model.h": render("project/lib/tinylora/tl_model.h.j2",
                                        header=_header("test/test_model/tl_model.h", command),
                                        **_forward_common(fplan)),
        "test_model/test_main.c": _test_model_main(model, fplan, samples, app_classes, source,
                                                   command),
    }


def training_model_code(model, trainer, samples: np.ndarray, labels: np.ndarray,
                        command: str | None = None, plan: ArenaPlan | None = None,
                        backend: str = "portable", initial_adapter: bytes | None = None) -> ModelCode:
    """The generated training step behind ``tl_app_model.h``, with its tests.

    lib: ``tl_trainer.{h,c}`` (:func:`tinylora.codegen.step.generate_step`, without a static
    arena: the application passes the board's) and ``tl_app_model_train.c``; runtime
    :data:`TRAINING_RUNTIME`. test: ``test_training`` (:data:`VECTOR_STEPS` steps on the
    embedded samples compared with ``Trainer.step``, checkpoints and the two-slot store on
    RAM storage, torn writes) and ``test_model`` (the frozen forward's vectors).
    ``initial_adapter``: a form-1 file (gen --adapter) the firmware keeps in adapter slot 0.
    ``trainer`` is not changed (the expected values come from copies of it)."""

    x, _ = model._check_input(np.asarray(samples))
    y = np.asarray(labels, np.int64).reshape(-1)
    plan = plan if plan is not None else plan_trainer(trainer, backend=backend)
    sp = plan_step(trainer, plan, prefix=STEP_PREFIX)
    macro = sp.macro
    lib = dict(render_step(sp, command=command, static_arena=False))
    lib["tl_app_model_train.c"] = render(
        "project/lib/tinylora/tl_app_model_train.c.j2",
        header=_header("lib/tinylora/src/tl_app_model_train.c", command),
        prefix=STEP_PREFIX, macro=macro, adapter=adapter_context(trainer),
        initial_rows=c_array_rows(np.frombuffer(initial_adapter, np.uint8)) if initial_adapter else [])

    # the vectors: numpy's Trainer on a copy, the step sequence of test_training
    t = copy.deepcopy(trainer)
    n, half, count = VECTOR_STEPS, VECTOR_STEPS // 2, len(y)
    logits, losses, ckpt_mid = [], [], b""
    for i in range(n):
        if i == half:
            ckpt_mid = t.checkpoint()
        result = t.step(x[i % count: i % count + 1], int(y[i % count]))
        losses.append(result.loss)
        logits.append(result.logits)
    ckpt_final = t.checkpoint()
    predict = min(VECTOR_PREDICT, count)
    predicted = np.asarray(t.logits(x[:predict]), np.int8).reshape(predict, -1)
    store = CheckpointStore(record_slot=len(ckpt_mid))
    (at_mid, stored_mid), = store.plan_writes(ckpt_mid)
    store.save(ckpt_mid)
    (at_final, stored_final), = store.plan_writes(ckpt_final)
    if (at_mid, at_final) != (0, len(ckpt_mid)):   # pragma: no cover - the store's layout
        raise ProjectError("unexpected checkpoint store layout")
    masters = []
    for i, ad in sorted(t.adapters.items()):
        for p in "AB":
            arr = ad.arrays[p]
            masters.append({"name": f"{p}{i}", "offset": f"{macro}_OFFSET_{p}{i}",
                            "count": int(arr.size), "rows": c_array_rows(arr),
                            "what": f"{p} masters of layer {i} (int16 {list(arr.shape)})"})
    step_names = [f"training_step_{i:02d}" for i in range(n)]

    def u8(data: bytes) -> list[str]:
        return c_array_rows(np.frombuffer(data, np.uint8))

    tests = {
        "test_training/test_main.c": render(
            "project/test/test_training/test_main.c.j2",
            header=_header("test/test_training/test_main.c", command,
                           ["Expected values: tinylora.ref.trainer.Trainer.step and "
                            "tinylora.formats.checkpoint (numpy), bit for bit."]),
            prefix=STEP_PREFIX, macro=macro, steps=n, restore_at=half, predict=predict,
            unit=RAM_STORAGE["erase_unit"],
            logits_rows=c_array_rows(np.stack(logits)), loss_rows=c_array_rows(losses),
            ckpt_mid_rows=u8(ckpt_mid), ckpt_final_rows=u8(ckpt_final),
            stored_mid_rows=u8(stored_mid), stored_final_rows=u8(stored_final),
            masters=masters, predict_rows=c_array_rows(predicted),
            initial_updates=int.from_bytes(initial_adapter[48:52], "little") if initial_adapter else 0,
            name_rows=_name_rows(step_names)),
    }
    app_classes = np.argmax(np.asarray(trainer.logits(x)).reshape(count, -1), axis=-1)
    tests.update(_frozen_test_model(model, x, app_classes, "tinylora.ref.trainer.Trainer.logits "
                                    "(the adapters' initial state)", command, backend))
    ckpt = len(ckpt_final)
    cases = {"test_training": n + 2 + len(masters) + 13, "test_model": count + 3}
    runtime = TRAINING_RUNTIME + (OPS_RUNTIME if plan_frozen(model).uses_ops else ())
    runtime += BACKWARD_RUNTIME if uses_backward(sp) else ()
    return ModelCode(lib, tests, runtime, can_train=True,
                     # the step's arena, the checkpoint buffer, and room to align the start
                     arena_bytes=sp.plan.total_bytes + ckpt + ALIGN - 1,
                     description=f"generated training step ({STEP_PREFIX}.c, bit-exact with "
                                 "tinylora.ref.trainer.Trainer.step) with checkpoints",
                     checkpoint_bytes=ckpt, adapter_bytes=adapter_file_bytes(trainer),
                     test_cases=cases)


#: The one place where a project's model code is chosen: (model, trainer, samples, labels,
#: command=..., plan=..., backend=...) -> ModelCode; ``plan`` is the trainer's arena plan,
#: already made and checked by plan_project (None: make it) for the frozen kernels of
#: ``backend``, whose kernel scratch the model code hands to them.
ModelCodeFactory = Callable[..., ModelCode]


def model_code(model, trainer, samples: np.ndarray, labels: np.ndarray,
               command: str | None = None, plan: ArenaPlan | None = None,
               backend: str = "portable", initial_adapter: bytes | None = None) -> ModelCode:
    """The model code of a project (see the module docstring): the training step."""
    return training_model_code(model, trainer, samples, labels, command=command, plan=plan,
                               backend=backend, initial_adapter=initial_adapter)
