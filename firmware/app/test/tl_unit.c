/*
 * tl_unit (see tl_unit.h): Unity-format results on the board's console.
 */
#include "tl_unit.h"

#include "tl_board.h"

static const char *tl_file = "test";
static uint32_t tl_tests;
static uint32_t tl_failures;
static int tl_failed;
static int tl_fail_line;
static const char *tl_fail_message;

void tl_unit_begin(const char *file)
{
    tl_file = file;
    tl_tests = 0;
    tl_failures = 0;
    tl_board_delay_ms(2000); /* devices: time for `pio test` to open the serial port */
    tl_print("\n");
}

void tl_unit_fail(int line, const char *message)
{
    if (!tl_failed) {
        tl_failed = 1;
        tl_fail_line = line;
        tl_fail_message = message;
    }
}

void tl_unit_report(const char *name, int line, int passed, const char *message)
{
    tl_tests++;
    tl_print(tl_file);
    tl_print(":");
    tl_print_i32(line);
    tl_print(":");
    tl_print(name);
    if (passed) {
        tl_print(":PASS\n");
    } else {
        tl_failures++;
        tl_print(":FAIL: ");
        tl_print(message != NULL ? message : "failed");
        tl_print("\n");
    }
}

void tl_unit_run(void (*test)(void), const char *name, int line)
{
    tl_failed = 0;
    tl_fail_line = line;
    tl_fail_message = NULL;
    test();
    tl_unit_report(name, tl_failed ? tl_fail_line : line, !tl_failed, tl_fail_message);
    tl_board_yield();
}

int tl_unit_end(void)
{
    tl_print("\n-----------------------\n");
    tl_print_u32(tl_tests);
    tl_print(" Tests ");
    tl_print_u32(tl_failures);
    tl_print(" Failures 0 Ignored\n");
    tl_print(tl_failures == 0u ? "OK\n" : "FAIL\n");
    return tl_failures == 0u ? 0 : 1;
}

int32_t tl_unit_first_difference(const void *a, const void *b, size_t n)
{
    const uint8_t *x = (const uint8_t *)a;
    const uint8_t *y = (const uint8_t *)b;
    size_t i;
    for (i = 0; i < n; ++i) {
        if (x[i] != y[i]) {
            return (int32_t)i;
        }
    }
    return -1;
}
