/*
 * An instruction-driven counter for benchmarks under QEMU -icount (tinylora.bench turns the
 * raw deltas into exact instruction counts): RISC-V rdinstret (one per instruction),
 * Cortex-M SysTick on the processor clock (counts down, 24 bits), Xtensa CCOUNT. Elsewhere
 * (host) it reads 0.
 */
#ifndef TL_COUNTER_H
#define TL_COUNTER_H

#include <stdint.h>

#if defined(__riscv)
static inline void tl_counter_init(void)
{
}
static inline uint32_t tl_counter(void)
{
    uint32_t v;
    __asm__ volatile("rdinstret %0" : "=r"(v));
    return v;
}
static inline uint32_t tl_counter_elapsed(uint32_t a, uint32_t b)
{
    return b - a;
}
#elif defined(__arm__)
#define TL_SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define TL_SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define TL_SYST_CVR (*(volatile uint32_t *)0xE000E018u)
static inline void tl_counter_init(void)
{
    TL_SYST_RVR = 0xFFFFFFu;
    TL_SYST_CVR = 0u;
    TL_SYST_CSR = 5u; /* enable, processor clock, no interrupt */
}
static inline uint32_t tl_counter(void)
{
    return TL_SYST_CVR;
}
static inline uint32_t tl_counter_elapsed(uint32_t a, uint32_t b)
{
    return (a - b) & 0xFFFFFFu;
}
#elif defined(__XTENSA__)
static inline void tl_counter_init(void)
{
}
static inline uint32_t tl_counter(void)
{
    uint32_t v;
    __asm__ volatile("rsr.ccount %0" : "=a"(v));
    return v;
}
static inline uint32_t tl_counter_elapsed(uint32_t a, uint32_t b)
{
    return b - a;
}
#else
static inline void tl_counter_init(void)
{
}
static inline uint32_t tl_counter(void)
{
    return 0u;
}
static inline uint32_t tl_counter_elapsed(uint32_t a, uint32_t b)
{
    return b - a;
}
#endif

#endif /* TL_COUNTER_H */
