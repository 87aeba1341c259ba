/*
 * Xtensa LX106 entry for QEMU's `sim` machine (qemu-system-xtensa -M sim -cpu lx106).
 *
 * The core resets to 0x50000000 (sysrom0), not to the ELF entry: the .reset section placed
 * there jumps to 0x40100000 (instram1), where _start is the first code of .text. _start sets
 * the stack pointer (a1) and calls tl_xtensa_cstart (tl_target.c). Call0 ABI: arguments in
 * a2..a7, return value in a2, return address in a0.
 */
    .section .reset, "ax"
    .global tl_reset
tl_reset:
    movi    a0, 0x401
    slli    a0, a0, 20          /* a0 = 0x40100000 */
    jx      a0

/* Exception vectors (VECBASE resets to 0x40000000, instram0). PS.EXCM is still set from
 * reset, so any exception (bad address, illegal instruction...) lands in one of these slots;
 * each ends the emulation with exit status 0x7f instead of hanging until a timeout. */
    .section .vectors, "ax"
    .global tl_vectors
tl_vectors:
    .org    0x10                /* debug */
    j       tl_xtensa_fault
    .org    0x20                /* NMI */
    j       tl_xtensa_fault
    .org    0x30                /* kernel exception */
    j       tl_xtensa_fault
    .org    0x40
    j       tl_xtensa_fault
    .org    0x50                /* user exception */
    j       tl_xtensa_fault
    .org    0x60
    j       tl_xtensa_fault
    .org    0x70                /* double exception */
    j       tl_xtensa_fault
    .org    0x80
tl_xtensa_fault:
    movi    a2, 1               /* SYS_exit */
    movi    a3, 0x7f
    simcall
3:
    j       3b

    .section .text.entry, "ax"
    .global _start
    .align  4
_start:
    j       1f
    .align  4
.Lstack_top:
    .word   __stack_top
.Lcstart:
    .word   tl_xtensa_cstart
1:
    l32r    a1, .Lstack_top
    l32r    a0, .Lcstart
    callx0  a0
2:
    j       2b

/* int tl_simcall(int call, int a, int b, int c): QEMU semihosting (`simcall` with
 * -semihosting): a2 = call number, a3.. = arguments; the result comes back in a2. */
    .section .text, "ax"
    .global tl_simcall
    .align  4
tl_simcall:
    simcall
    ret
