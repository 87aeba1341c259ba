/*
 * tl_unit: this project's test framework, C side. It prints Unity's output format,
 *
 *   <file>:<line>:<test>:PASS
 *   <file>:<line>:<test>:FAIL: <message>
 *   -----------------------
 *   <n> Tests <f> Failures 0 Ignored
 *   OK | FAIL
 *
 * which PlatformIO's Unity runner reads (test/test_custom_runner.py uses it without
 * downloading Unity), so `pio test` counts every case. Output goes to the board's console
 * (tl_board_write): semihosting under QEMU, the serial port on a device.
 */
#ifndef TL_UNIT_H
#define TL_UNIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void tl_unit_begin(const char *file);
/* Run `test` (a function using TL_CHECK) and report it as `name`. */
void tl_unit_run(void (*test)(void), const char *name, int line);
/* Report a case whose result is already known (table-driven tests). */
void tl_unit_report(const char *name, int line, int passed, const char *message);
/* The summary; returns the number of failures (the program's exit status). */
int tl_unit_end(void);

void tl_unit_fail(int line, const char *message);

#define TL_RUN(test) tl_unit_run(test, #test, __LINE__)
#define TL_CHECK(condition)                                                                        \
    do {                                                                                           \
        if (!(condition)) {                                                                        \
            tl_unit_fail(__LINE__, "expected " #condition);                                        \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* The index of the first differing byte, or -1 if a and b are equal. */
int32_t tl_unit_first_difference(const void *a, const void *b, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* TL_UNIT_H */
