"""Every file of a project: the explicit template -> output table and the context of each."""
from __future__ import annotations

import math

import numpy as np

from tinylora import __version__
from tinylora.codegen import c_array_rows, c_comment, render
from tinylora.codegen.project import kernels
from tinylora.codegen.project.adapters import RAM_UNIT, slot_plan
from tinylora.codegen.project.common import (
    CMSIS_NN_VERSION,
    ESP_NN_VERSION,
    PLATFORM_DIR,
    QEMU_ENVS,
    VECTOR_STEPS,
    Project,
    _aligned,
    _header,
    _hex,
    _pin,
    _ram_storage,
    _stm32_family,
    _storage_name,
)
from tinylora.errors import ProjectError
from tinylora.planning.flash import flash_layout
from tinylora.resources import resource_dir

#: The template -> output table. Each row: (output path, template under templates/, whether the
#: file starts with the provenance header). Rendered with the board context (``_board_context``).
TEMPLATES = {
    "all": (
        ("platformio.ini", "project/platformio.ini.j2", True),
        (".gitignore", "project/gitignore.j2", True),
        ("lib/tinylora/library.json", "project/lib/tinylora/library.json.j2", False),
        ("lib/tl_app/library.json", "project/lib/tl_app/library.json.j2", False),
        ("lib/tl_board/library.json", "project/lib/tl_board/library.json.j2", False),
        ("test/test_custom_runner.py", "project/test/test_custom_runner.py.j2", True),
    ),
    "espressif32": (
        ("CMakeLists.txt", "project/CMakeLists.txt.j2", True),
        ("src/CMakeLists.txt", "project/src/CMakeLists.txt.j2", True),
        ("src/idf_component.yml", "project/src/idf_component.yml.j2", True),
        ("sdkconfig.defaults", "project/sdkconfig.defaults.j2", True),
        ("partitions.csv", "project/partitions.csv.j2", True),
    ),
    "ststm32": (
        ("lib/cmsis_nn/library.json", "project/lib/cmsis_nn/library.json.j2", False),
        ("lib/cmsis_nn/README.md", "project/lib/cmsis_nn/README.md.j2", True),
    ),
}
#: Rendered sources of the app libraries: lib/<lib>/src/<name> from templates/project/lib/<lib>/<name>.j2.
LIB_SOURCES = {
    "tl_board": ("tl_board_config.h",),
}
#: The application's plain C (firmware/app, firmware/boards): output path -> firmware/ path.
#: Copied under the provenance header; nothing in them varies per project.
STATIC_C = {
    "src/main.c": "app/main.c",
    "src/tl_app_adapters.h": "app/tl_app_adapters.h",
    "src/tl_app_adapters.c": "app/tl_app_adapters.c",
    "lib/tinylora/src/tl_app_model.h": "app/tl_app_model.h",
    "lib/tl_app/src/tl_protocol.h": "app/tl_protocol.h",
    "lib/tl_app/src/tl_protocol.c": "app/tl_protocol.c",
    "lib/tl_app/src/tl_adapter.h": "app/tl_adapter.h",
    "lib/tl_app/src/tl_adapter.c": "app/tl_adapter.c",
    "lib/tl_board/src/tl_board.h": "boards/tl_board.h",
    "lib/tl_board/src/tl_board_common.c": "boards/tl_board_common.c",
    "lib/tl_board/src/tl_board_qemu.c": "boards/tl_board_qemu.c",
    "lib/tl_board/src/tl_board_espidf.c": "boards/tl_board_espidf.c",
    "lib/tl_board/src/tl_board_stm32.c": "boards/tl_board_stm32.c",
    "lib/tl_board/src/tl_storage_esp_partition.c": "boards/tl_storage_esp_partition.c",
    "lib/tl_board/src/tl_storage_esp_nvs.c": "boards/tl_storage_esp_nvs.c",
    "lib/tl_board/src/tl_storage_stm32_flash.c": "boards/tl_storage_stm32_flash.c",
    "test/tl_unit.h": "app/test/tl_unit.h",
    "test/tl_unit.c": "app/test/tl_unit.c",
    "test/test_storage/test_main.c": "app/test/test_storage.c",
    "test/test_protocol/test_main.c": "app/test/test_protocol.c",
    "test/test_adapters/test_main.c": "app/test/test_adapters.c",
}
#: Unity cases of the static suites (firmware/app/test); test_adapters: adapter_suite_cases.
STATIC_SUITE_CASES = {"test_storage": 7, "test_protocol": 9}


def adapter_suite_cases(slots: int) -> int:
    """Cases of test_adapters: the whole suite with slots, one ("none here") without."""
    return 8 if slots else 1


#: Files of firmware/targets copied into the local QEMU platform.
TARGET_FILES = ("cortex-m/mps2.ld", "cortex-m/startup.c", "stdio/tl_target_stdio.c",
                "xtensa/start.S", "xtensa/tl_target.c", "xtensa/xtensa-sim.ld")


def _board_storage_console(b) -> tuple[dict, dict, dict | None]:
    """The board's storage and console data for the templates (checked), and STM32 facts."""
    storage = dict(b.storage or {})
    console = dict(b.console or {})
    if not storage or not console:
        raise ProjectError(f"board {b.name}: boards/{b.name}.toml needs [console] and [storage]")
    storage["size_hex"] = _hex(storage["size"])
    storage["erase_unit_hex"] = _hex(storage["erase_unit"])
    if "address" in storage:
        storage["address_hex"] = f"0x{int(storage['address']):08X}"
    if storage["size"] % storage["erase_unit"] or storage["size"] < 2 * storage["erase_unit"]:
        raise ProjectError(f"board {b.name}: storage must be at least two whole erase units")
    stm32 = None
    family = _stm32_family(b)
    if family:
        tx_port, tx_pin = _pin(console["tx"])
        rx_port, rx_pin = _pin(console["rx"])
        if tx_port != rx_port:
            raise ProjectError(f"board {b.name}: console TX and RX must share a GPIO port")
        console.update(port=tx_port, tx_pin=tx_pin, rx_pin=rx_pin)
        stm32 = {"family": family, "hal_header": f"stm32{family.lower()}xx_hal.h"}
    return storage, console, stm32


def _partition_rows(layout, storage: dict) -> list[str]:
    """partitions.csv rows at the offsets of the board's flash layout."""
    rows = [("nvs", "data", "nvs", 0x9000, 0x6000), ("phy_init", "data", "phy", 0xF000, 0x1000),
            ("factory", "app", "factory", layout.app.start, layout.app.size),
            (storage["label"], "0x40", "0x00", layout.region("checkpoints").start, storage["size"])]
    if layout.adapter_slots:
        slots = layout.region("adapter slots")
        rows.append(("adapters", "0x40", "0x01", slots.start, slots.size))
    return [f"{n + ',':<9} {t + ',':<5} {s + ',':<8} {_hex(o) + ',':<9} {_hex(z) + ','}"
            for n, t, s, o, z in rows]


def _stm32_adapters(b) -> dict | None:
    """The [adapters] region's address, first sector (page) and bank, for the STM32 backend."""
    a = b.adapters or {}
    if not int(a.get("slots", 0)):
        return None
    if "first_sector" not in a or "bank" not in a:
        raise ProjectError(f"board {b.name}: boards/{b.name}.toml [adapters] needs first_sector "
                           "and bank (the flash backend erases by sector number)")
    return {"address": f"0x{int(a['address']):08X}", "first_sector": int(a["first_sector"]),
            "bank": int(a["bank"])}


def _board_context(p: Project) -> dict:
    """What every template of the project may use: board, storage, console, QEMU environments."""
    b = p.board
    esp = b.platform == "espressif32"
    storage, console, stm32 = _board_storage_console(b)
    width = max(len(b.name), *(len(q.env) for q in QEMU_ENVS))
    qemu = [{"env": q.env, "board": q.board, "title": q.title, "own": q.emulation == b.emulation,
             "pad": " " * (width - len(q.env)), "command": q.command,
             "kernel_options": kernels.qemu_options(p.backend, q.emulation)} for q in QEMU_ENVS]
    layout = flash_layout(b)
    app = layout.app
    # PlatformIO's size check (checkprogsize, run by pio run / test / upload) refuses an image
    # larger than the program region: on the board (ESP-IDF: also the factory partition's size)
    # and in the QEMU environments, which build the same libraries and tests
    size_check = [f"board_upload.maximum_size = {app.size}"]
    partitions = _partition_rows(layout, storage) if esp else []
    flags = kernels.board_flags(p.backend)
    lib = kernels.library(p.backend)
    if flags:  # the one line to delete for tinylora's portable kernels (README.md)
        flags = [f"; frozen kernels: {lib.title} {lib.version}; delete the next line for the portable C",
                 *flags]
    if esp:
        board_options = ["board_build.partitions = partitions.csv",
                         "monitor_filters = esp32_exception_decoder",
                         *(["build_flags =", *flags] if flags else [])]
    else:
        board_options = ["upload_protocol = stlink", *size_check, "build_flags =",
                         f"    -D TL_STM32_{stm32['family']}", *flags]
    return dict(ram_adapter_unit=RAM_UNIT, board=b, esp=esp, stm32=stm32, storage=storage, console=console,
                ram_storage=_ram_storage(p.code.checkpoint_bytes), qemu=qemu,
                board_options=board_options, size_check=size_check, partitions=partitions,
                adapters=layout.adapter_slots,
                adapter_slots=slot_plan(layout, p.code.adapter_bytes, p.code.can_train),
                adapters_stm32=_stm32_adapters(b) if stm32 else None,
                board_pad=" " * (width - len(b.name)), version=__version__,
                esp_nn_version=ESP_NN_VERSION, cmsis_nn_version=CMSIS_NN_VERSION,
                cmsis_nn_tag=f"v{CMSIS_NN_VERSION}", library=lib, backend=p.backend,
                kernel_scratch=p.kernel_scratch,
                # decisions made here, not in templates: which ESP-NN kernels the chip gets
                # and whether the arena comes from the heap (board data: heap_arena, the
                # original ESP32: tl_board.h's CONFIG_IDF_TARGET_ESP32 branch)
                esp_nn_kernels=(f"the {b.simd} path" if b.simd
                                else "the generic-opt C path on this chip, no S3 SIMD"),
                heap_arena=b.heap_arena)


def _app_context(p: Project, model, x, samples_note: str, epochs: int) -> dict:
    b = p.board
    return {"model": c_comment(p.model_name).replace('"', "'"), "input_size": x[0].size,
            "classes": int(np.prod(model.output_shape)), "arena_size": p.arena_bytes,
            "arena_note": c_comment(f"training step plan {p.training_arena_bytes}, model code "
                                    f"{p.code.arena_bytes}; {b.name}'s budget {b.arena_budget}"),
            "can_train": int(p.code.can_train), "code_note": c_comment(p.code.description),
            "samples": len(x), "samples_note": c_comment(samples_note), "epochs": epochs,
            "checkpoint_every": p.checkpoint_every}


def _copied_files(p: Project, command: str | None) -> dict[str, bytes | str]:
    """Runtime, the app's plain C, model code and the local QEMU platform: copied or generated
    elsewhere."""
    fw = resource_dir("firmware")
    files: dict[str, bytes | str] = {}
    for name in p.code.runtime:   # public headers in firmware/include, the rest in firmware/src
        folder = "include" if (fw / "include" / name).is_file() else "src"
        files[f"lib/tinylora/src/{name}"] = (fw / folder / name).read_bytes()
    for path, source in STATIC_C.items():
        files[path] = render("project/_static.j2", header=_header(path, command)) + (fw / source).read_text()
    for name, text in sorted(p.code.lib_files.items()):
        files[f"lib/tinylora/src/{name}"] = text
    for name, text in sorted(p.code.test_files.items()):
        files[f"test/{name}"] = text
    platform = fw / "pio" / "platform-tinylora-qemu"
    for src in sorted(platform.rglob("*")):
        if src.is_file() and "__pycache__" not in src.parts:
            files[f"{PLATFORM_DIR}/{src.relative_to(platform).as_posix()}"] = src.read_bytes()
    for rel in TARGET_FILES:
        files[f"{PLATFORM_DIR}/targets/{rel}"] = (fw / "targets" / rel).read_bytes()
    files[f"{PLATFORM_DIR}/targets/include/tl_report.h"] = (fw / "testing" / "tl_report.h").read_bytes()
    return files


def _readme(p: Project, files: dict, ctx: dict, app: dict, samples_note: str, epochs: int,
            command: str | None) -> str:
    """README.md, rendered last: it lists the test suites among ``files``."""
    b, qemu = p.board, ctx["qemu"]
    unit = int(ctx["storage"]["erase_unit"])
    slot = -(-max(p.code.checkpoint_bytes, 1) // unit) * unit
    suites = sorted({f.split("/")[1] for f in files if f.startswith("test/test_") and f.count("/") == 2})
    cases = {**p.code.test_cases, **STATIC_SUITE_CASES,
             "test_adapters": adapter_suite_cases(ctx["adapter_slots"].slots)}
    return render("project/README.md.j2", header=_header("README.md", command), project=p,
                  samples_note=samples_note, epochs=epochs, test_suites=suites, test_cases=cases,
                  test_total=sum(cases.get(t, 0) for t in suites), ckpt_slot=slot,
                  ckpt_slot_hex=_hex(slot), storage_name=_storage_name(b),
                  lr=f"{p.lr:.6g}", vector_steps=VECTOR_STEPS, boot_steps=epochs * app["samples"],
                  uniform_loss=f"{math.log(app['classes']):.3f}",
                  qemu_own=next(q for q in qemu if q["own"]), classes=app["classes"],
                  test_commands=_aligned([(f"pio test -e {b.name}",
                                           "on the connected board (flashes the test firmware)")]
                                         + [(f"pio test -e {q['env']}", q["title"]) for q in qemu]),
                  input_size=app["input_size"], **ctx)


def _render_files(p: Project, model, x, y, samples_note: str, epochs: int,
                  command: str | None) -> dict[str, bytes]:
    """Every file of the project (path -> bytes): the TEMPLATES table, the app's generated
    configuration and samples, the copied runtime and platform, and the README."""
    ctx = _board_context(p)
    files = _copied_files(p, command)
    rows = TEMPLATES["all"] + TEMPLATES[p.board.platform]
    rows += tuple((f"lib/{lib}/src/{name}", f"project/lib/{lib}/{name}.j2", True)
                  for lib, names in LIB_SOURCES.items() for name in names)
    for path, template, header in rows:
        extra = {"header": _header(path, command)} if header else {}
        files[path] = render(template, **extra, **ctx)
    app = _app_context(p, model, x, samples_note, epochs)
    files["lib/tinylora/src/tl_app_config.h"] = render(
        "project/lib/tinylora/tl_app_config.h.j2", header=_header("lib/tinylora/src/tl_app_config.h", command),
        app=app)
    files["lib/tinylora/src/tl_app_samples.c"] = render(
        "project/lib/tinylora/tl_app_samples.c.j2", header=_header("lib/tinylora/src/tl_app_samples.c", command),
        samples_note=c_comment(samples_note), rows=c_array_rows(x.reshape(len(x), -1)), label_rows=c_array_rows(y))
    files["README.md"] = _readme(p, files, ctx, app, samples_note, epochs, command)
    out = {}
    for path, content in sorted(files.items()):
        data = content.encode("utf-8") if isinstance(content, str) else content
        if path.endswith((".c", ".h", ".ini", ".md", ".json", ".py", ".yml", ".csv", ".txt")) \
                and b"\r" in data:
            raise ProjectError(f"{path}: generated text must use \\n line ends")
        out[path] = data
    return out
