"""A complete PlatformIO project for one board: ``tinylora gen``.

:func:`plan_project` decides everything (board, model, LoRA configuration, arena plan
checked against the board's budget, embedded samples, every file's bytes) without touching
the disk; :func:`write_project` writes it, keeping the user's ``USER CODE`` regions and
refusing to overwrite anything else a user changed. Nothing is written when the plan does
not fit the board (:class:`~tinylora.errors.BudgetError`) or when a file would be lost.

Project layout::

    platformio.ini            the board's environment and the QEMU environments
    README.md                 flash, monitor, test, the serial protocol, the output
    src/main.c                the application (USER CODE regions are kept on regeneration)
    lib/tinylora/             runtime + generated model code (library.json)
    lib/tl_app/               portable app parts: checkpoint storage interface, serial protocol
    lib/tl_board/             board support: console, time, arena placement, storage backends
    lib/cmsis_nn/             STM32 only: the CMSIS-NN vendoring point (empty)
    test/                     on-device tests (bit-exact vectors, storage, protocol)
    tools/platform-tinylora-qemu/   the local PlatformIO platform of the QEMU environments
    CMakeLists.txt, src/CMakeLists.txt, src/idf_component.yml, sdkconfig.defaults,
    partitions.csv            ESP-IDF boards only
    .tinylora/manifest.json   what tinylora wrote (hashes), to detect edits
    .tinylora/pending.json    only while writing: the journal a rerun finishes from

**The model code.** Everything in ``lib/tinylora/src`` besides the copied runtime, plus its
on-device tests, is a :class:`ModelCode`, made by :func:`model_code`:
:func:`training_model_code`, the generated training step of :mod:`tinylora.codegen.step`
(``tl_trainer.{h,c}``) behind the application's model interface (``tl_app_model.h``, glue
``tl_app_model_train.c``: training, predictions, checkpoints through the two-slot store of
``tl_checkpoint.c`` on the board's ``tl_storage``), with its bit-exact training vectors and
checkpoint tests as ``test/test_training`` and the frozen forward's vectors as
``test/test_model``. :func:`frozen_model_code` (predictions only) plugs in the same way
(``plan_project(..., model_code_factory=frozen_model_code)``).

:func:`simulate_app` is the application's console output as numpy computes it (the lines a
QEMU run must print, and the README's example).
"""
from __future__ import annotations

from tinylora.codegen.project.common import (
    _ELF,
    CMSIS_NN_VERSION,
    ESP_NN_VERSION,
    FRAMEWORKS,
    GEN_LR,
    MANIFEST,
    OPS_RUNTIME,
    PLATFORM_DIR,
    QEMU_ENVS,
    RAM_STORAGE,
    RUNTIME,
    STEP_PREFIX,
    TRAINING_RUNTIME,
    VECTOR_PREDICT,
    VECTOR_STEPS,
    ModelCode,
    Project,
    QemuEnv,
)
from tinylora.codegen.project.model_code import ModelCodeFactory, frozen_model_code, model_code, training_model_code
from tinylora.codegen.project.plan import _default_samples, plan_project
from tinylora.codegen.project.regions import canonical
from tinylora.codegen.project.simulate import simulate_app
from tinylora.codegen.project.write import WriteReport, check_names, generate_project, write_project
from tinylora.errors import ProjectError

# The modules, in the order a `tinylora gen` goes through them:
#   plan.py        plan_project: board, model, trainer, arena plan, checks -> Project
#   model_code.py  the training step and its test vectors (ModelCode)
#   simulate.py    the app's console output as numpy computes it
#   files.py       the template -> output table: every file's bytes
#   regions.py     USER CODE regions, canonical bytes for the manifest
#   write.py       write_project (keeps regions, refuses to lose edits), check_names
#   disk.py        paths kept inside --out, the manifest checked, atomic writes with a journal
#   common.py      constants and data classes shared by the above

__all__ = ["annotations", "canonical", "check_names", "CMSIS_NN_VERSION", "ESP_NN_VERSION", "FRAMEWORKS",
           "frozen_model_code", "GEN_LR", "generate_project", "MANIFEST", "model_code", "ModelCode",
           "ModelCodeFactory", "plan_project", "PLATFORM_DIR", "Project", "ProjectError", "QEMU_ENVS",
           "OPS_RUNTIME", "QemuEnv", "RAM_STORAGE", "RUNTIME", "simulate_app", "STEP_PREFIX", "training_model_code",
           "TRAINING_RUNTIME", "VECTOR_PREDICT", "VECTOR_STEPS", "write_project", "WriteReport",
           "_default_samples", "_ELF"]
