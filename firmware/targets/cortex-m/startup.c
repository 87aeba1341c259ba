/*
 * Cortex-M startup for the QEMU MPS2 test targets (see mps2.ld): vector table, reset handler
 * (copy .data from flash, zero .bss, enable the FPU, enter newlib's crt0 `_start`, which sets
 * up semihosting and calls main), and a fault handler that ends the emulation with status
 * 0x7f instead of hanging until the test's timeout.
 */
#include <stdint.h>

extern uint32_t __data_start__, __data_end__, __data_load__, __bss_start__, __bss_end__;
/* The initial stack pointer, declared as a function so that it fits the table's type. */
extern void __stack_top(void);
extern void _start(void);
extern void _exit(int status); /* newlib: semihosting exit */

void tl_reset_handler(void);
void tl_fault_handler(void);

typedef void (*tl_vector)(void);

__attribute__((section(".isr_vector"), used)) const tl_vector tl_vectors[16] = {
    __stack_top,      /* initial stack pointer */
    tl_reset_handler, /* reset */
    tl_fault_handler, /* NMI */
    tl_fault_handler, /* HardFault */
    tl_fault_handler, /* MemManage */
    tl_fault_handler, /* BusFault */
    tl_fault_handler, /* UsageFault */
    0,
    0,
    0,
    0,                /* reserved */
    tl_fault_handler, /* SVCall */
    tl_fault_handler, /* DebugMonitor */
    0,                /* reserved */
    tl_fault_handler, /* PendSV */
    tl_fault_handler  /* SysTick */
};

void tl_reset_handler(void)
{
    uint32_t *src = &__data_load__;
    uint32_t *dst = &__data_start__;
    volatile uint32_t *cpacr = (volatile uint32_t *)0xE000ED88u;
    while (dst < &__data_end__) {
        *dst++ = *src++;
    }
    for (dst = &__bss_start__; dst < &__bss_end__; ++dst) {
        *dst = 0u;
    }
    *cpacr |= 0xFu << 20; /* CP10 and CP11 full access: the FPU */
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    _start();
    for (;;) {
    }
}

void tl_fault_handler(void)
{
    _exit(0x7f);
}
