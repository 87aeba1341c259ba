/*
 * tl_target_write over C stdio: the host, Cortex-M (newlib + rdimon semihosting) and
 * RISC-V (picolibc + semihost) test targets. Their C libraries turn stdout into the
 * emulator's standard output.
 */
#include <stdio.h>

#include "tl_report.h"

void tl_target_write(const char *data, size_t len)
{
    fwrite(data, 1, len, stdout);
    fflush(stdout);
}
