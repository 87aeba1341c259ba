"""What each `tinylora` command does (the argparse front end is :mod:`tinylora.cli`)."""
from __future__ import annotations

import os
import pathlib
import sys
import time

import numpy as np

from tinylora import bench, datasets, emulate, load_tflite, regression, tasks
from tinylora.cli_args import rank_flag
from tinylora.codegen.project import GEN_LR, QEMU_ENVS, check_names, plan_project, write_project
from tinylora.codegen.project.flash import model_bytes
from tinylora.console import Progress, short, table
from tinylora.errors import InputError, ModelError, PioError
from tinylora.examples import example_model
from tinylora.formats.adapter import ADAPTER_MAGIC, Adapter
from tinylora.pio import default_core_dir, lint, prepare_core, scons_versions
from tinylora.planning.arena import checked_plan, inference_plan
from tinylora.planning.autorank import auto_rank
from tinylora.planning.boards import board_names, load_board
from tinylora.planning.flash import check_flash, flash_budget
from tinylora.ref.graph import build_node
from tinylora.ref.model import Model
from tinylora.ref.trainer import LoRAConfig, Trainer
from tinylora.targets import LIBRARIES
from tinylora.tflite import reader as tflite
from tinylora.verify import TARGETS, lora_targets, verify
from tinylora.verify_forward import verify_forward


def _model_path(arg: str | None) -> str:
    if arg is not None:
        return arg
    return str(example_model())


def _quant_text(t: tflite.Tensor | None) -> str:
    if t is None or not t.quantized:
        return "-"
    if t.scale.size == 1:
        return f"s={float(t.scale[0]):.4g} zp={int(t.zero_point[0])}"
    return f"per-ch x{t.scale.size}"


def _inspect_adapter(path: str, data: bytes) -> int:
    """`tinylora inspect adapter.tla`: what the adapter holds (its structure; no model needed)."""
    print(f"{path}: {Adapter.load(data).describe()}")
    print("(use it: Trainer(model, adapter=path), tinylora eval --adapter, tinylora merge)")
    return 0


def cmd_inspect(args) -> int:
    path = _model_path(args.model)
    data = tflite.read_bytes(path)
    if data[:4] == ADAPTER_MAGIC:
        return _inspect_adapter(path, data)
    graph = tflite.parse(data)
    rows, macs, problems = [], 0, []
    for op in graph.ops:
        ins = [graph.tensors[i] for i in op.inputs if 0 <= i < len(graph.tensors)]
        out = graph.tensors[op.outputs[0]] if op.outputs and 0 <= op.outputs[0] < len(graph.tensors) else None
        try:
            layer = build_node(graph, op)
            status, op_macs = "yes", layer.macs
            act = layer.activation if hasattr(layer, "activation") else "NONE"
        except ModelError as e:
            status, op_macs, act = "NO", 0, op.options.get("activation", "-")
            problems.append(str(e))
        macs += op_macs
        w = ins[1] if len(ins) > 1 else None
        rows.append([str(op.index), op.name, short(out.name if out else "?"),
                     "x".join(map(str, ins[0].shape)) if ins else "?",
                     "x".join(map(str, out.shape)) if out else "?",
                     _quant_text(ins[0] if ins else None), _quant_text(out),
                     _quant_text(w) if op.name in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D") else "-",
                     str(act), f"{op_macs:,}", status])
    print(f"{path}: {len(graph.ops)} ops, {len(graph.tensors)} tensors, {macs:,} MACs per inference")
    print(table(rows, ["#", "op", "name", "input", "output", "input q", "output q", "weights q",
                        "act", "MACs", "supported"]))
    if problems:
        print("\nnot supported:")
        for p in problems:
            print(f"  {p}")
        return 1
    try:
        Model(graph, data)
    except ModelError as e:
        print(f"\nnot supported: {e}")
        return 1
    print("\nevery op is supported: tinylora runs this model bit-exactly")
    return 0


def _load_data(args, model):
    """(x_train, y_train, x_test, y_test, description) from --data or the bundled task."""
    if args.data:
        return (*datasets.load_npz(args.data, model), args.data)
    t = tasks.task(args.task, args.seed)
    return (model.quantize(t["x_train"]), t["y_train"], model.quantize(t["x_test"]), t["y_test"],
            f"bundled digits, task '{args.task}' ({t['description']})")


def check_out_file(path: str, option: str = "--out") -> pathlib.Path:
    """Refuse an output file that cannot be written, before any work: a folder, a path under
    a file, or a folder without write permission (missing folders are made later)."""
    out = pathlib.Path(path)
    if out.is_dir():
        raise InputError(f"{option} {path} is a folder: give a file name in it")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{option} {path}: {parent} is a file, not a folder: choose another path")
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise InputError(f"{option} {path} is not writable here: choose a folder you can write to")
    return out


def cmd_train(args) -> int:
    if args.out:
        check_out_file(args.out)
    model = load_tflite(_model_path(args.model))
    if args.loss == "mse":
        return regression.cmd_train_mse(args, model)
    xtr, ytr, xte, yte, what = _load_data(args, model)
    trainer = Trainer(model, LoRAConfig(rank=args.rank, loss=args.loss), lr=args.lr, seed=args.seed,
                      grad_density=args.density, recompute=args.recompute, calibration=xtr[:64])
    base = float(np.mean(trainer.predict(xte) == yte))
    targets = ", ".join(f"{i}:{short(ad.layer.name)} rank {ad.k.rank}" for i, ad in trainer.adapters.items())
    print(f"data: {what}: {len(ytr)} training, {len(yte)} test samples")
    print(f"LoRA on layers {targets}; lr {trainer.lr:.6g} (exact fixed point); "
          f"recompute {trainer.recompute}")
    t0 = time.perf_counter()
    history = trainer.fit(xtr, ytr, epochs=args.epochs, callback=None if args.quiet else Progress())
    seconds = time.perf_counter() - t0
    acc = float(np.mean(trainer.predict(xte) == yte))
    blob = trainer.adapter.to_bytes()
    rows = [[str(h["epoch"]), f"{h['loss']:.4f}", f"{h['train_accuracy']:.2%}"] for h in history]
    print(table(rows, ["epoch", "train loss", "train acc"]))
    steps = args.epochs * len(ytr)
    print(table([["test accuracy (base int8)", f"{base:.2%}"], ["test accuracy (adapted)", f"{acc:.2%}"],
                  ["steps", f"{steps} ({steps / seconds:.0f} steps/s)"],
                  ["adapter", f"{len(blob)} bytes"],
                  ["checkpoint", f"{len(trainer.checkpoint())} bytes"],
                  ["training arena", f"{checked_plan(trainer).total_bytes:,} bytes"]], ["result", "value"]))
    if args.out:
        out = pathlib.Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        trainer.adapter.save(out)
        print(f"wrote {out}")
    return 0


def plan_kernel_bytes(plan) -> int:
    """The largest kernel scratch buffer of a plan (0: none)."""
    return max((b.size for b in plan.buffers if b.what.startswith("kernel scratch")), default=0)


def _print_flash(model, trainer, plan, board: str) -> None:
    """plan --board: the flash breakdown with gen's default 32 samples (gen also counts the
    test vectors); BudgetError when it does not fit."""
    try:
        frozen, lora = model_bytes(trainer, plan=plan)
    except (ModelError, InputError) as e:   # no C for this model: gen refuses it anyway
        print(f"\nflash: not counted, tinylora gen has no C for this model ({e})")
        return
    size = int(np.prod(model.input_shape))
    budget = flash_budget(load_board(board), frozen, lora, 32 * size + 32,
                          samples_note=f"gen's default 32 samples of {size} B and labels")
    print()
    print(check_flash(budget, plan).report())


def cmd_plan(args) -> int:
    if args.plot:
        plot = check_out_file(args.plot, "--plot")
        if plot.suffix.lower() not in (".svg", ".png"):
            raise InputError(f"--plot {args.plot}: draw to a .svg (or a .png with matplotlib)")
        if not plot.parent.is_dir():
            raise InputError(f"--plot {args.plot}: folder {plot.parent} does not exist: create it first")
    if args.estimate and not args.board:
        raise InputError("--estimate needs --board B: the estimate uses the board's clock, "
                         "cycles per instruction and current (boards/B.toml [perf])")
    model = load_tflite(_model_path(args.model))
    budget, board = args.budget, args.board
    if args.auto_rank:
        t = tasks.task("sensor")
        calib = model.quantize(t["x_train"][:32]) if args.model is None else None
        if calib is None:
            calib = np.random.default_rng(0).integers(-128, 128, (16,) + model.input_shape).astype(np.int8)
        result = auto_rank(model, budget=budget, board=board, calibration=calib)
        print(result.explanation)
        config, recompute = result.config, result.recompute
    else:
        config, recompute = LoRAConfig(rank=args.rank, loss=args.loss), args.recompute
    trainer = Trainer(model, config, recompute=recompute)
    backend = getattr(args, "backend", None) or (load_board(board).backend if board else "portable")
    plan = checked_plan(trainer, budget=budget, board=board, backend=backend)
    print(f"frozen kernels: {backend}" + ("" if backend == "portable" else
          f" (kernel scratch planned in the arena: buffers k<layer>, {plan_kernel_bytes(plan):,} B at most)"))
    print(plan.report())
    print(f"\ninference only (same planner, activations only): {inference_plan(model).total_bytes:,} B")
    if board is not None:
        _print_flash(model, trainer, plan, board)
    if args.estimate:
        _plan_estimate(args, model, config, recompute)
    if args.plot:
        plan.plot(args.plot)
        print(f"wrote {args.plot}")
    return 0


def _bench_samples(args, model, n: int):
    """The bundled model trains on the bundled 'sensor' task; another model on seeded random
    int8 inputs and labels (as `tinylora verify` does)."""
    if args.model is None:
        t = tasks.task("sensor")
        return model.quantize(t["x_train"]), t["y_train"][:n]
    rng = np.random.default_rng(args.seed)
    x = rng.integers(-128, 128, (max(n, 16),) + tuple(model.input_shape)).astype(np.int8)
    classes = int(np.prod(model.layers[-1].output_shape))
    return x, rng.integers(0, classes, n)


def _bench_trainer(args, model, config: LoRAConfig, recompute: str) -> tuple[Trainer, np.ndarray, np.ndarray]:
    x, y = _bench_samples(args, model, args.samples)
    trainer = Trainer(model, config, lr=0.02, recompute=recompute, calibration=x[:64])
    return trainer, x[: len(y)], y


def cmd_bench(args) -> int:
    model = load_tflite(_model_path(args.model))
    targets = lora_targets(model, getattr(args, "targets", None))
    trainer, x, y = _bench_trainer(args, model, LoRAConfig(rank=args.rank, targets=targets), args.recompute)
    command = (f"tinylora bench --target {args.target} --backend {args.backend} --rank {args.rank}"
               + (" --model <file>" if args.model else "") + _targets_opt(args))
    try:
        result = bench.run_bench(trainer, args.target, x, y, backend=args.backend, keep=args.keep,
                                 command=command)
    except emulate.EmulationError as e:
        print(f"tinylora: error: {e}", file=sys.stderr)
        return 2
    print(result.dumps() if args.json else bench.table_text(result))
    return 0


def _plan_estimate(args, model, config: LoRAConfig, recompute) -> None:
    board = load_board(args.board)
    if not board.perf:
        print(f"\nno estimate: boards/{board.name}.toml has no [perf] table")
        return
    trainer, x, y = _bench_trainer(args, model, config, recompute)
    command = f"tinylora plan --board {board.name} --estimate"
    try:
        result = bench.run_bench(trainer, board.emulation, x, y, backend=board.backend, command=command)
    except (InputError, emulate.EmulationError) as e:   # no such library build here, or it fails
        print(f"\nestimate with the portable kernels instead of {board.backend}: {e}")
        result = bench.run_bench(trainer, board.emulation, x, y, command=command)
    print("\n" + bench.estimate_text(board, result, trainer.accum_steps))


def cmd_boards(args) -> int:
    rows = []
    for name in board_names():
        b = load_board(name)
        rows.append([b.name, b.pio_board, b.cpu, f"{b.ram_app_kb} KB", f"{b.arena_budget // 1024} KB",
                     f"{b.flash_kb} KB", b.backend, b.emulation])
    print(table(rows, ["board", "PlatformIO id", "CPU", "RAM for app", "arena budget", "flash",
                        "kernels", "emulated as"]))
    return 0


def cmd_verify(args) -> int:
    backend = getattr(args, "backend", "portable")
    targets = list(TARGETS) if args.target == "all" else [args.target]
    if args.target == "all" and backend != "portable":  # the targets the library runs on
        targets = [t for t in targets if TARGETS[t][0] in LIBRARIES[backend].toolchains]
    command = (f"tinylora verify --target {args.target} --steps {args.steps}{rank_flag(args.rank)} "
               f"--recompute {args.recompute} --lr {args.lr} --seed {args.seed}"
               + (f" --density {args.density}" if args.density is not None else "")
               + (" --model <file>" if args.model else "")
               + (f" --loss {args.loss}" if args.loss else "")
               + (f" --backend {backend}" if backend != "portable" else "")
               + (f" --forward {args.forward}" if getattr(args, "forward", None) else "") + _targets_opt(args))
    failed = False
    for target in targets:
        ok, why = emulate.available(TARGETS[target][0])
        if not ok:
            print(f"target {target}: not available here: {why}")
            if args.target != "all":
                return 2
            continue
        t0 = time.perf_counter()
        keep = None
        if args.keep:
            keep = pathlib.Path(args.keep) / target if args.target == "all" else args.keep
        try:
            if getattr(args, "forward", None):  # the generated forward alone (any model)
                result = verify_forward(target, args.model, args.forward, args.seed, keep, command, backend)
            else:
                result = verify(target, model=args.model, steps=args.steps, rank=args.rank,
                                recompute=args.recompute, density=args.density, seed=args.seed, keep=keep,
                                lr=args.lr, command=command, backend=backend,
                                targets=getattr(args, "targets", None), loss=args.loss)
        except emulate.EmulationError as e:
            print(f"target {target}: {e}")
            failed = True
            continue
        print(result.summary())
        print(f"  total {time.perf_counter() - t0:.2f} s" + (f"; sources kept in {keep}" if keep else ""))
        failed |= not result.ok
    return 1 if failed else 0


def _targets_opt(args) -> str:
    return f" --targets {args.targets}" if getattr(args, "targets", None) else ""


def _gen_command(args) -> str:
    """The command recorded in generated files: options that change their content, paths
    reduced to file names (so the bytes do not depend on where things are)."""
    parts = ["tinylora gen", f"--board {args.board}"]
    if args.model:
        parts.append(f"--model {pathlib.Path(args.model).name}")
    if not getattr(args, "adapter", None):
        parts.append("--auto-rank" if args.auto_rank else rank_flag(args.rank).strip())
    if args.data:
        parts.append(f"--data {pathlib.Path(args.data).name}")
    if getattr(args, "loss", None):
        parts.append(f"--loss {args.loss}")
    if args.samples != 32:
        parts.append(f"--samples {args.samples}")
    if args.epochs != 3:
        parts.append(f"--epochs {args.epochs}")
    if args.lr != GEN_LR:
        parts.append(f"--lr {args.lr:g}")
    parts += [f"--backend {args.backend}"] if args.backend else []
    if getattr(args, "adapter", None):
        parts.append(f"--adapter {pathlib.Path(args.adapter).name}")
    return " ".join(p for p in parts if p)


def cmd_gen(args) -> int:
    out = pathlib.Path(args.out or f"tinylora-{args.board}")
    project = plan_project(args.board, model_path=args.model, rank=args.rank,
                           auto_rank=args.auto_rank, data=args.data, samples=args.samples,
                           epochs=args.epochs, lr=args.lr, command=_gen_command(args),
                           backend=args.backend, adapter=getattr(args, "adapter", None),
                           loss=getattr(args, "loss", None))
    b = project.board
    print(f"board {b.name} ({b.title}): {b.platform} / {b.pio_board} / {b.framework}")
    print(f"model {project.model_name}; LoRA {project.config_text}")
    print(f"arena {project.arena_bytes:,} B within the budget of {project.budget:,} B "
          f"(training step plan {project.training_arena_bytes:,} B; {project.code.description})")
    fl = project.flash
    print(f"flash {fl.need:,} B within the program region of {fl.limit:,} B (code estimate "
          f"{fl.items[0][1]:,} B + embedded constants; tinylora plan --board {b.name} shows it)")
    report = write_project(project, out, force=args.force)
    print(f"wrote {len(report.written)} files to {out} ({len(report.unchanged)} unchanged"
          + (f", {len(report.removed)} removed" if report.removed else "") + ")")
    for path, names in report.preserved_regions.items():
        print(f"kept your USER CODE regions in {path}: {', '.join(names)}")
    problems = check_names(out, b)
    for problem in problems:
        print(f"tinylora: error: {problem}", file=sys.stderr)
    try:
        result = lint(out)
        for kind in ("errors", "warnings"):
            for msg in result[kind]:
                print(f"platformio.ini lint {kind[:-1]}: {msg}", file=sys.stderr)
        if not result["errors"] and not result["warnings"]:
            print("platformio.ini: PlatformIO's lint finds no errors and no warnings")
        if result["errors"]:
            problems.append("lint")
    except ImportError:
        print("platformio.ini: not linted (PlatformIO is not installed: pip install platformio)")
    print(f"next: cd {out} && pio run -t upload && pio device monitor   (README.md; tests: pio test)")
    print("without a board: tinylora pio-setup (once, prepares PlatformIO offline), then "
          f"cd {out} && pio test -e {QEMU_ENVS[0].env}")
    return 1 if problems else 0


def cmd_pio_setup(args) -> int:
    core = pathlib.Path(args.core).expanduser() if args.core else default_core_dir()
    if core.exists() and not core.is_dir():
        raise InputError(f"--core {core} is a file: give a folder for PlatformIO's core")
    try:
        core = prepare_core(core)
    except (PioError, OSError) as e:   # pip's output can take several lines: keep them
        print(f"tinylora: error: preparing PlatformIO core {core} failed: {e}", file=sys.stderr)
        return 2
    scons, package = scons_versions()
    print(f"PlatformIO core {core}: tool-scons {package} (SCons {scons}) is installed; the QEMU "
          "environments of a generated project now build and test without PlatformIO's registry")
    if args.core:
        print(f"use it: export PLATFORMIO_CORE_DIR={core}   (then: pio test -e qemu_cm4)")
    return 0
