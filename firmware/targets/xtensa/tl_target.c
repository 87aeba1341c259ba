/*
 * Xtensa LX106 test-target shim for QEMU's sim machine (no C library is linked):
 *   - tl_xtensa_cstart: zero .bss, run main, exit through semihosting with its status;
 *   - tl_target_write: semihosting write(1, ...);
 *   - memcpy / memmove / memset, which GCC may call for struct copies and initialisers;
 *   - the libgcc routines Debian's xtensa-lx106-elf libgcc lacks: __muldi3 (64-bit multiply,
 *     needed by every int32 x int32 -> int64 product), __udivsi3, __umodsi3, __divsi3.
 * Everything here uses 32-bit operations only, so none of it calls itself back.
 */
#include <stddef.h>
#include <stdint.h>

#include "tl_report.h"

#define TL_SYS_EXIT 1
#define TL_SYS_WRITE 4

int tl_simcall(int call, int a, int b, int c); /* start.S */
int main(void);
void tl_xtensa_cstart(void);
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int value, size_t n);
long long __muldi3(long long a, long long b);
unsigned int __udivsi3(unsigned int n, unsigned int d);
unsigned int __umodsi3(unsigned int n, unsigned int d);
int __divsi3(int n, int d);

extern char __bss_start[], __bss_end[];

void tl_xtensa_cstart(void)
{
    char *p;
    int status;
    for (p = __bss_start; p < __bss_end; ++p) {
        *p = 0;
    }
    status = main();
    tl_simcall(TL_SYS_EXIT, status, 0, 0);
    for (;;) {
    }
}

void tl_target_write(const char *data, size_t len)
{
    while (len > 0u) {
        const int n = tl_simcall(TL_SYS_WRITE, 1, (int)(uintptr_t)data, (int)len);
        if (n <= 0) {
            return;
        }
        data += n;
        len -= (size_t)n;
    }
}

void *memcpy(void *dst, const void *src, size_t n)
{
    unsigned char *d = (unsigned char *)dst;
    const unsigned char *s = (const unsigned char *)src;
    while (n-- > 0u) {
        *d++ = *s++;
    }
    return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
    unsigned char *d = (unsigned char *)dst;
    const unsigned char *s = (const unsigned char *)src;
    if (d < s) {
        while (n-- > 0u) {
            *d++ = *s++;
        }
    } else {
        while (n-- > 0u) {
            d[n] = s[n];
        }
    }
    return dst;
}

void *memset(void *dst, int value, size_t n)
{
    unsigned char *d = (unsigned char *)dst;
    while (n-- > 0u) {
        *d++ = (unsigned char)value;
    }
    return dst;
}

/* 32 x 32 -> 64-bit unsigned product from four 16 x 16 -> 32-bit products. */
static void tl_umul32(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo)
{
    const uint32_t a0 = a & 0xFFFFu, a1 = a >> 16, b0 = b & 0xFFFFu, b1 = b >> 16;
    const uint32_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    const uint32_t mid = (p00 >> 16) + (p01 & 0xFFFFu) + (p10 & 0xFFFFu); /* < 3 * 2^16 */
    *lo = (p00 & 0xFFFFu) | (mid << 16);
    *hi = p11 + (p01 >> 16) + (p10 >> 16) + (mid >> 16);
}

/* The low 64 bits of a * b (the same for signed and unsigned operands). */
long long __muldi3(long long a, long long b)
{
    const uint64_t ua = (uint64_t)a, ub = (uint64_t)b;
    const uint32_t al = (uint32_t)ua, ah = (uint32_t)(ua >> 32);
    const uint32_t bl = (uint32_t)ub, bh = (uint32_t)(ub >> 32);
    uint32_t hi, lo;
    uint64_t r;
    tl_umul32(al, bl, &hi, &lo);
    hi += al * bh + ah * bl;
    r = ((uint64_t)hi << 32) | lo;
    /* uint64 -> int64 modulo 2^64 without the implementation-defined conversion */
    return r <= (uint64_t)INT64_MAX ? (long long)r : -(long long)(~r) - 1;
}

/* Restoring division: quotient and remainder of n / d (d == 0 gives quotient all ones). */
static uint32_t tl_udivmod(uint32_t n, uint32_t d, uint32_t *rem)
{
    uint32_t q = 0u, r = 0u;
    int i;
    for (i = 31; i >= 0; --i) {
        r = (r << 1) | ((n >> i) & 1u);
        if (r >= d) {
            r -= d;
            q |= 1u << i;
        }
    }
    *rem = r;
    return q;
}

unsigned int __udivsi3(unsigned int n, unsigned int d)
{
    uint32_t r;
    return tl_udivmod(n, d, &r);
}

unsigned int __umodsi3(unsigned int n, unsigned int d)
{
    uint32_t r;
    tl_udivmod(n, d, &r);
    return r;
}

int __divsi3(int n, int d)
{
    const uint32_t un = n < 0 ? 0u - (uint32_t)n : (uint32_t)n;
    const uint32_t ud = d < 0 ? 0u - (uint32_t)d : (uint32_t)d;
    uint32_t r;
    const uint32_t q = tl_udivmod(un, ud, &r);
    const uint32_t signed_q = ((n < 0) != (d < 0)) ? 0u - q : q;
    (void)r;
    /* C truncates toward zero; INT32_MIN / -1 wraps to INT32_MIN. */
    return signed_q <= 0x7FFFFFFFu ? (int)signed_q : -(int)(~signed_q) - 1;
}
