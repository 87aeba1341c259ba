"""The `tinylora` command line."""
from __future__ import annotations

import argparse
import sys

from tinylora import __version__, tasks
from tinylora.adapter_cmds import cmd_eval, cmd_merge
from tinylora.bench import BENCH_TARGETS
from tinylora.cli_args import COUNT, DENSITY, LR, RANK, RANK_HELP, SEED, int_in, model_arg, real_in
from tinylora.codegen.project import GEN_LR
from tinylora.commands import (
    cmd_bench,
    cmd_boards,
    cmd_gen,
    cmd_inspect,
    cmd_pio_setup,
    cmd_plan,
    cmd_train,
    cmd_verify,
)
from tinylora.device import cmd_pull, cmd_push
from tinylora.errors import TinyLoRAError
from tinylora.fleet import command as fleet_command
from tinylora.ref.loss import LOSSES
from tinylora.targets import BACKENDS
from tinylora.verify import DEFAULT_LR, TARGETS


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error: `tinylora: error: <what> (see tinylora <cmd> --help)`."""

    def error(self, message: str):
        self.exit(2, f"tinylora: error: {message} (see {self.prog} --help)\n")


def _add_inspect(sub, fmt) -> None:
    p = sub.add_parser("inspect", formatter_class=fmt,
                       help="list a model's layers, shapes, quantization, MACs and support",
                       description="Print every op of a .tflite model with its shapes, "
                                   "quantization, MACs and whether tinylora supports it.",
                       epilog="example:\n  tinylora inspect model.tflite\n\n"
                              "exit status 1 when an op is not supported")
    model_arg(p)
    p.set_defaults(func=cmd_inspect)


def _add_eval(sub, fmt) -> None:
    p = sub.add_parser("eval", formatter_class=fmt,
                       help="accuracy (classifiers) or error (MSE models) of a model, with or without an adapter",
                       description="Run the int8 model (tinylora's bit-exact interpreter), with an "
                                   "adapter when given, on --data (default: the bundled digits test "
                                   "split) and print its accuracy, or for an MSE model its mean "
                                   "squared and absolute error.",
                       epilog="examples:\n  tinylora eval\n"
                              "  tinylora eval --model m.tflite --adapter a.tla --data d.npz\n"
                              "  tinylora eval --model regressor.tflite --data d.npz --loss mse\n\n"
                              "D.npz: x_test, y_test (else x, y); labels are class numbers, MSE "
                              "targets real values (or int8 in the output's quantization)")
    model_arg(p)
    p.add_argument("--model", dest="model_option", default=None, help="the .tflite (same as the positional)")
    p.add_argument("--adapter", default=None, help="an adapter file (.tla) for the model")
    p.add_argument("--data", default=None, help="an .npz to evaluate on")
    p.add_argument("--loss", default=None, choices=LOSSES,
                   help="what the outputs are when neither the adapter nor a final SOFTMAX says")
    p.set_defaults(func=cmd_eval)


def _add_merge(sub, fmt) -> None:
    p = sub.add_parser("merge", formatter_class=fmt,
                       help="merge an adapter into its base model: a plain .tflite",
                       description="Write a standard .tflite whose adapted layers hold W + (alpha/r) BA, "
                                   "requantized per channel; it runs at the base model's cost in any "
                                   "TFLite runtime (pip install tinylora[merge]).",
                       epilog="example:\n  tinylora merge --model m.tflite --adapter a.tla --out merged.tflite")
    p.add_argument("--model", default=None, help="the base .tflite (default: bundled)")
    p.add_argument("--adapter", required=True, help="the adapter file (.tla) trained for it")
    p.add_argument("--out", required=True, help="the merged .tflite to write")
    p.set_defaults(func=cmd_merge)


def _add_train(sub, fmt) -> None:
    p = sub.add_parser("train", formatter_class=fmt,
                       help="train a LoRA adapter with the integer reference trainer",
                       description="Train LoRA adapters on a frozen int8 model with the "
                                   "integer-only reference (what the device runs) and report "
                                   "accuracy before and after. Default: the bundled digits CNN "
                                   "on the bundled 'sensor' adaptation task.",
                       epilog="examples:\n  tinylora train\n"
                              "  tinylora train --task remap --rank 2 --epochs 2 --out adapter.tla\n"
                              "  tinylora train --model m.tflite --data d.npz --rank 4 --epochs 3 "
                              "--out adapter.tla\n\n"
                              "D.npz holds x_train, y_train (and x_test, y_test), or x and y;\n"
                              "float x is quantized with the model's input scale, integer x is "
                              "used as int8.")
    p.add_argument("--model", default=None, help="a full-int8 .tflite (default: bundled)")
    p.add_argument("--data", default=None, help="an .npz of training data (default: bundled task)")
    p.add_argument("--task", default="sensor", choices=tasks.TASKS,
                   help="bundled adaptation task when --data is not given (default: sensor)")
    p.add_argument("--rank", type=RANK, default=None, help=RANK_HELP)
    p.add_argument("--epochs", type=int_in(1, 10000), default=3, help="passes over the data (default 3)")
    p.add_argument("--lr", type=LR, default=0.004, help="SGD learning rate, in (0, 1) (default 0.004)")
    p.add_argument("--density", type=DENSITY, default=None,
                   help="apply only this fraction of gradient entries per step (e.g. 0.1)")
    p.add_argument("--recompute", default="none", choices=["none", "all", "auto"],
                   help="keep activations for backward, or recompute them (same bits)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--loss", default=None, choices=LOSSES, help=LOSS_HELP)
    p.add_argument("--out", default=None, help="write the adapter file here (.tla, docs/adapter.md)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


TARGETS_HELP = ("LoRA targets: 'pointwise' (every FULLY_CONNECTED and 1x1 CONV_2D layer) or "
                "comma-separated layer indices / names (default: the default config's)")
LOSS_HELP = ("xent: class labels (a softmax on the outputs); mse: real targets in the output "
             "space (regression, reconstruction). Default: xent when the model ends in SOFTMAX, "
             "else it must be given")


def _add_plan(sub, fmt) -> None:
    p = sub.add_parser("plan", formatter_class=fmt,
                       help="the static arena plan of one training step, against a RAM budget",
                       description="Place every buffer of a training step (forward, backward, "
                                   "update, recomputation) in one static arena and print the "
                                   "plan; exits 2 with a breakdown when it exceeds the budget.",
                       epilog="examples:\n  tinylora plan\n  tinylora plan --board nucleo_f411re --auto-rank\n"
                              "  tinylora plan --board nucleo_f411re --estimate\n"
                              "  tinylora plan --budget 4096 --rank 8 --recompute all --plot arena.svg")
    p.add_argument("--model", default=None, help="a full-int8 .tflite (default: bundled)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--board", default=None, help="use this board's arena budget (see tinylora boards)")
    g.add_argument("--budget", type=int_in(1), default=None, help="RAM budget in bytes (default 524288)")
    g2 = p.add_mutually_exclusive_group()
    g2.add_argument("--rank", type=RANK, default=None, help=RANK_HELP)
    g2.add_argument("--auto-rank", action="store_true", help="choose per-layer ranks for the budget")
    p.add_argument("--recompute", default="none", choices=["none", "all", "auto"])
    p.add_argument("--loss", default=None, choices=LOSSES, help=LOSS_HELP)
    p.add_argument("--plot", default=None, help="draw the arena over the step (.svg, or .png with matplotlib)")
    p.add_argument("--backend", default=None, choices=BACKENDS,
                   help="frozen kernels whose scratch to plan (default: the board's backend with "
                        "--board, else portable)")
    p.add_argument("--estimate", action="store_true",
                   help="with --board: ESTIMATED ms per inference / training step and mJ per update "
                        "(instructions counted under QEMU x the board's [perf] figures; ~10 s)")
    p.add_argument("--samples", type=int, default=4, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_plan)


def _add_verify(sub, fmt) -> None:
    p = sub.add_parser("verify", formatter_class=fmt,
                       help="run the generated C training step on a target and compare with numpy",
                       description="Generate the C of a training step (frozen model, LoRA "
                                   "adapters, arena, checkpoints) with embedded training samples, "
                                   "build it with -std=c99 -Wall -Wextra -Werror -pedantic -O2, "
                                   "run it natively or under QEMU, and compare every step's "
                                   "logits and loss, the checkpoints, the final masters and "
                                   "predict's logits with the numpy reference byte for byte. "
                                   "Exits 1 if any byte differs, 2 if the target is unavailable.",
                       epilog="examples:\n  tinylora verify --target host\n"
                              "  tinylora verify --target cortex-m4 --steps 100 --density 0.1 "
                              "--recompute all\n"
                              "  tinylora verify --target all --model m.tflite --keep build/\n"
                              "  CMSIS_NN_DIR=../shared/third_party/CMSIS-NN tinylora verify "
                              "--target cortex-m7 --backend cmsis-nn\n\n"
                              "targets:\n" + "\n".join(f"  {k:<14} {v[2]}" for k, v in TARGETS.items())
                              + "\n\nThe bundled model trains on the bundled 'sensor' task; "
                              "--model trains on random\ninputs and labels drawn from --seed.")
    p.add_argument("--target", required=True, choices=[*TARGETS, "all"],
                   help="where to run (all: every target available here)")
    p.add_argument("--backend", default="portable", choices=BACKENDS,
                   help="frozen kernels: portable C (default), cmsis-nn (Cortex-M; sources from "
                        "$CMSIS_NN_DIR), esp-nn (generic-opt) or esp-nn-ansi (Xtensa, RISC-V, "
                        "host; sources from $ESP_NN_DIR)")
    p.add_argument("--model", default=None, help="a full-int8 .tflite (default: bundled)")
    p.add_argument("--steps", type=COUNT, default=50, help="training steps (default 50)")
    p.add_argument("--rank", type=RANK, default=None, help=RANK_HELP)
    p.add_argument("--targets", default=None, help=TARGETS_HELP)
    p.add_argument("--recompute", default="none", choices=["none", "all", "auto"])
    p.add_argument("--density", type=DENSITY, default=None,
                   help="sparse updates: this fraction of gradient entries per tensor")
    p.add_argument("--lr", type=LR, default=DEFAULT_LR, help=f"learning rate (default {DEFAULT_LR})")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--loss", default=None, choices=LOSSES, help="xent (random labels; the default for a "
                   "model ending in SOFTMAX) or mse (random int8 targets in the output's "
                   "quantization); a model with another end must be told which")
    p.add_argument("--keep", default=None, help="write the generated C and the build here")
    p.add_argument("--forward", type=COUNT, default=None, metavar="N",
                   help="check the generated frozen forward alone on N seeded random inputs "
                        "(any supported model: residual graphs, float32 ends)")
    p.set_defaults(func=cmd_verify)


def _add_gen(sub, fmt) -> None:
    p = sub.add_parser("gen", formatter_class=fmt,
                       help="write a complete PlatformIO project for a board",
                       description="Write a PlatformIO project that trains on the device: "
                                   "platformio.ini (the board and QEMU environments), the "
                                   "application, the runtime and generated model code under "
                                   "lib/, on-device tests and a README. The training step's "
                                   "arena is checked against the board's budget first "
                                   "(exit 2 and nothing written when it does not fit). "
                                   "Regenerating gives the same bytes, keeps USER CODE "
                                   "regions and refuses to overwrite other changes.",
                       epilog="examples:\n  tinylora gen --board esp32s3\n"
                              "  tinylora gen --board nucleo_f411re --auto-rank --out f411\n"
                              "  tinylora gen --board esp32 --model m.tflite --data d.npz --rank 2\n"
                              "  tinylora gen --board esp32s3 --adapter host.tla")
    p.add_argument("--board", required=True, help="the board (see tinylora boards)")
    p.add_argument("--model", default=None, help="a full-int8 .tflite (default: bundled)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--rank", type=RANK, default=None, help=RANK_HELP)
    g.add_argument("--auto-rank", action="store_true", help="choose per-layer ranks for the board's budget")
    g.add_argument("--adapter", default=None, help="a .tla (masters) to start from: its config and "
                   "scales, kept in adapter slot 0 (checked against the model first)")
    p.add_argument("--data", default=None, help="an .npz whose first samples are embedded (x_train/y_train or x/y)")
    p.add_argument("--loss", default=None, choices=LOSSES, help=LOSS_HELP)
    p.add_argument("--samples", type=int_in(1, 4096), default=32, help="embedded samples, 1..4096 (default 32)")
    p.add_argument("--epochs", type=int_in(1, 1000), default=3, help="passes over them at boot, 1..1000 (default 3)")
    p.add_argument("--lr", type=LR, default=GEN_LR,
                   help=f"learning rate of the on-device training (default {GEN_LR})")
    p.add_argument("--out", default=None, help="project folder (default tinylora-<board>)")
    p.add_argument("--backend", default=None, choices=BACKENDS,
                   help="frozen kernels (default: the board's; portable: tinylora's own C)")
    p.add_argument("--force", action="store_true", help="overwrite files changed outside USER CODE regions")
    p.set_defaults(func=cmd_gen)


def _add_pio_setup(sub, fmt) -> None:
    p = sub.add_parser("pio-setup", formatter_class=fmt,
                       help="prepare PlatformIO to build the QEMU environments offline",
                       description="Install the one PlatformIO core package the QEMU "
                                   "environments of a generated project need (tool-scons: SCons "
                                   "from PyPI through pip) into a PlatformIO core folder, so "
                                   "`pio run` / `pio test -e qemu_cm4` work without PlatformIO's "
                                   "registry. Boards' own environments still need the registry.",
                       epilog="examples:\n  tinylora pio-setup                 # $PLATFORMIO_CORE_DIR "
                              "or ~/.platformio\n"
                              "  tinylora pio-setup --core ~/pio-core && export "
                              "PLATFORMIO_CORE_DIR=~/pio-core")
    p.add_argument("--core", default=None,
                   help="PlatformIO core folder (default: $PLATFORMIO_CORE_DIR, else ~/.platformio)")
    p.set_defaults(func=cmd_pio_setup)
def _add_bench(sub, fmt) -> None:
    p = sub.add_parser("bench", formatter_class=fmt,
                       help="exact instruction counts of inference and a training step, per op",
                       description="Build the generated training step for a target and count its "
                                   "instructions exactly under QEMU -icount: one inference "
                                   "(predict) and one training step, in total and per op (kind, "
                                   "MACs, instructions), mean over --samples samples. Per-op counts "
                                   "come from a second build that marks every op; the totals from "
                                   "the normal build. Exits 2 if the target is not available.",
                       epilog="examples:\n  tinylora bench --target cortex-m4\n"
                              "  tinylora bench --target rv32imc --rank 4 --json > rv32.json\n"
                              "  tinylora bench --model m.tflite --target xtensa --backend esp-nn\n\n"
                              "targets: " + ", ".join(BENCH_TARGETS) + " (host: no exact counter;\n"
                              "use valgrind --tool=callgrind on a `tinylora verify --keep` build)")
    p.add_argument("--model", default=None, help="a full-int8 .tflite (default: bundled)")
    p.add_argument("--target", required=True, help="one of " + ", ".join(BENCH_TARGETS))
    p.add_argument("--backend", default="portable",
                   help="frozen kernels: portable, or a library the target offers in "
                        "tinylora.targets (cmsis-nn, esp-nn; needs CMSIS_NN_DIR / ESP_NN_DIR)")
    p.add_argument("--rank", type=int, default=3, help="LoRA rank on every target layer (default 3)")
    p.add_argument("--targets", default=None, help=TARGETS_HELP)
    p.add_argument("--recompute", default="none", choices=["none", "all", "auto"])
    p.add_argument("--samples", type=int, default=4, help="samples to average over (default 4)")
    p.add_argument("--seed", type=int, default=0, help="random samples' seed (with --model)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--keep", default=None, help="write the generated C and the build here")
    p.set_defaults(func=cmd_bench)


def _add_boards(sub, fmt) -> None:
    p = sub.add_parser("boards", formatter_class=fmt, help="list the supported boards",
                       description="List the boards tinylora knows (boards/*.toml).",
                       epilog="example:\n  tinylora boards")
    p.set_defaults(func=cmd_boards)


def _add_push_pull(sub, fmt) -> None:
    p = sub.add_parser("push", formatter_class=fmt, help="upload an adapter file to a device's slot",
                       description="Upload a format-2 adapter file (.tla) over the serial port into an "
                                   "inactive adapter slot of a `tinylora gen` device, chunk by chunk (each "
                                   "CRC-checked), then activate it. The device checks the base model's "
                                   "hash and the LoRA config; a refusal changes nothing active.",
                       epilog="example:\n  tinylora push --port /dev/ttyUSB0 adapter.tla --slot 1")
    p.add_argument("adapter", help="the adapter file (.tla)")
    p.add_argument("--port", required=True, help="the device's serial port")
    p.add_argument("--slot", type=int_in(0, 255), default=None,
                   help="the slot (default: the first one not active)")
    p.add_argument("--no-activate", action="store_true", help="store it, keep the active adapter")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each reply")
    p.set_defaults(func=cmd_push)
    p = sub.add_parser("pull", formatter_class=fmt, help="download a device's current adapter",
                       description="Write the adapter the device runs now (its int16 masters, trained "
                                   "on the device or not) as a format-2 file.",
                       epilog="example:\n  tinylora pull --port /dev/ttyUSB0 --out device.tla")
    p.add_argument("--port", required=True, help="the device's serial port")
    p.add_argument("--out", required=True, help="the file to write")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each reply")
    p.set_defaults(func=cmd_pull)


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog="tinylora", formatter_class=fmt,
        description="Train LoRA adapters on microcontrollers, bit-exactly.",
        epilog="example:\n  tinylora inspect                # the bundled digits CNN\n"
               "  tinylora inspect model.tflite")
    parser.add_argument("--version", action="version", version=f"tinylora {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_inspect(sub, fmt)
    _add_eval(sub, fmt)
    _add_merge(sub, fmt)
    _add_train(sub, fmt)
    _add_plan(sub, fmt)
    _add_verify(sub, fmt)
    _add_gen(sub, fmt)
    _add_pio_setup(sub, fmt)
    _add_bench(sub, fmt)
    _add_boards(sub, fmt)
    _add_fleet(sub, fmt)
    _add_push_pull(sub, fmt)
    return parser


def _add_fleet(sub, fmt) -> None:
    p = sub.add_parser("fleet", formatter_class=fmt, help="federated LoRA on a local Flower deployment",
                       description="Fleet (federated) LoRA: a Flower SuperLink and N SuperNodes on the "
                       "loopback interface, each client training on its own non-IID data (docs/fleet.md).")
    p.add_argument("--clients", type=COUNT, default=3)
    p.add_argument("--rounds", type=int_in(0, 100000), default=2)
    p.add_argument("--task", choices=tasks.TASKS, default="sensor")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--rank", type=RANK, default=8)
    p.add_argument("--lr", type=LR, default=0.2)
    p.add_argument("--local-steps", type=COUNT, default=32, help="SGD steps per client per round")
    p.add_argument("--mode", choices=("ffa", "both"), default="ffa",
                   help="ffa: A frozen, B federated (default); both: A and B averaged")
    p.add_argument("--dp-noise", type=real_in(0.0, 1000.0), metavar="SIGMA", help="DP noise multiplier")
    p.add_argument("--clip", type=real_in(0.0, 1e9), metavar="C", help="DP clipping norm (int16 master units)")
    p.add_argument("--secagg", action="store_true", help="secure aggregation (Flower's SecAgg+ workflow)")
    p.add_argument("--round-timeout", type=real_in(0.0, 86400.0), default=120.0, help="seconds per round")
    p.add_argument("--faults", default="", help="inject bad clients: CLIENT:ROUND:KIND,... (docs/fleet.md)")
    p.add_argument("--devices", metavar="qemu-TARGET:K", help="clients 0..K-1 are the generated firmware "
                   "under QEMU (TARGET: cortex-m4, cortex-m7 or xtensa), trained over the serial protocol")
    p.add_argument("--out", help="write the global adapter (.tla) here")
    p.add_argument("--json", action="store_true", help="print one JSON object last")
    p.set_defaults(func=lambda args: fleet_command.run(args))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except BrokenPipeError:   # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except (TinyLoRAError, ValueError) as e:   # bad input: the message says what to do
        print(f"tinylora: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:   # a file the command reads or writes (the message names it)
        name = f" {e.filename}" if e.filename else ""
        print(f"tinylora: error: cannot access{name}: {e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
