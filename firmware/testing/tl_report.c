/*
 * tinylora test reporting (see tl_report.h): a small line buffer over tl_target_write.
 */
#include "tl_report.h"

#define TL_REPORT_BUFFER 512

static char tl_buf[TL_REPORT_BUFFER];
static size_t tl_len;
static uint32_t tl_lines;
static uint32_t tl_errors;

static void tl_flush(void)
{
    if (tl_len > 0u) {
        tl_target_write(tl_buf, tl_len);
        tl_len = 0u;
    }
}

static void tl_putc(char c)
{
    if (tl_len == TL_REPORT_BUFFER) {
        tl_flush();
    }
    tl_buf[tl_len++] = c;
}

static void tl_puts(const char *s)
{
    while (*s != '\0') {
        tl_putc(*s++);
    }
}

static void tl_put_byte(uint32_t b)
{
    static const char digits[] = "0123456789abcdef";
    tl_putc(digits[(b >> 4) & 0xFu]);
    tl_putc(digits[b & 0xFu]);
}

/* A number in hex without leading zeros. */
static void tl_put_hex(uint32_t v)
{
    static const char digits[] = "0123456789abcdef";
    int shift = 28;
    while (shift > 0 && ((v >> shift) & 0xFu) == 0u) {
        shift -= 4;
    }
    for (; shift >= 0; shift -= 4) {
        tl_putc(digits[(v >> shift) & 0xFu]);
    }
}

static void tl_put_name(const char *kind, const char *name, int indexed, uint32_t index)
{
    tl_puts(kind);
    tl_puts(name);
    if (indexed) {
        tl_putc('_');
        tl_put_hex(index);
    }
    tl_putc(' ');
}

void tl_report_begin(const char *name, uint32_t index)
{
    tl_put_name("T ", name, 1, index);
}

void tl_report_put_i32(int32_t value)
{
    const uint32_t u = (uint32_t)value;
    tl_put_byte(u);
    tl_put_byte(u >> 8);
    tl_put_byte(u >> 16);
    tl_put_byte(u >> 24);
}

void tl_report_end(void)
{
    tl_putc('\n');
    tl_lines++;
}

static void tl_s8_line(const char *name, int indexed, uint32_t index, const int8_t *values,
                       size_t n)
{
    size_t i;
    tl_put_name("T ", name, indexed, index);
    for (i = 0; i < n; ++i) {
        tl_put_byte((uint32_t)(uint8_t)values[i]);
    }
    tl_report_end();
}

static void tl_i32_line(const char *name, int indexed, uint32_t index, const int32_t *values,
                        size_t n)
{
    size_t i;
    tl_put_name("T ", name, indexed, index);
    for (i = 0; i < n; ++i) {
        tl_report_put_i32(values[i]);
    }
    tl_report_end();
}

void tl_report_s8(const char *name, const int8_t *values, size_t n)
{
    tl_s8_line(name, 0, 0u, values, n);
}

void tl_report_i32(const char *name, const int32_t *values, size_t n)
{
    tl_i32_line(name, 0, 0u, values, n);
}

void tl_report_s8_at(const char *name, uint32_t index, const int8_t *values, size_t n)
{
    tl_s8_line(name, 1, index, values, n);
}

void tl_report_i32_at(const char *name, uint32_t index, const int32_t *values, size_t n)
{
    tl_i32_line(name, 1, index, values, n);
}

void tl_report_error(const char *name, uint32_t index, int status)
{
    tl_put_name("E ", name, 1, index);
    tl_put_hex((uint32_t)status);
    tl_putc('\n');
    tl_lines++;
    tl_errors++;
}

int tl_report_done(void)
{
    tl_puts("DONE ");
    tl_put_hex(tl_lines);
    tl_putc('\n');
    tl_flush();
    return tl_errors > 0u ? 1 : 0;
}
