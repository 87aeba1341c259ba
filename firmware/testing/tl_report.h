/*
 * tinylora test reporting: prints results in the line protocol tinylora/emulate.py reads.
 *
 *   T <name> <hex>      one named result: its bytes in order, two lowercase hex digits each
 *                       (int32 values as 4 little-endian bytes, whatever the target's order)
 *   E <name> <status>   a kernel returned a tl_status other than TL_OK (hex)
 *   DONE <n>            the end: n (hex) = number of T and E lines; the program then exits 0
 *
 * Only hex is printed (no printf, no division: the Xtensa test target has no libc and no
 * 32-bit divide). Output goes through tl_target_write, which each target provides
 * (firmware/targets/<target>/).
 */
#ifndef TL_REPORT_H
#define TL_REPORT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Provided by the target: write len bytes to the host's standard output. */
void tl_target_write(const char *data, size_t len);

/* One complete line each. A name is a C identifier; `index` variants append _<hex index>. */
void tl_report_s8(const char *name, const int8_t *values, size_t n);
void tl_report_i32(const char *name, const int32_t *values, size_t n);
void tl_report_s8_at(const char *name, uint32_t index, const int8_t *values, size_t n);
void tl_report_i32_at(const char *name, uint32_t index, const int32_t *values, size_t n);
void tl_report_error(const char *name, uint32_t index, int status);

/* A line built piece by piece: begin, any number of values, end. */
void tl_report_begin(const char *name, uint32_t index);
void tl_report_put_i32(int32_t value);
void tl_report_end(void);

/* Prints DONE and flushes; returns 0, or 1 if any E line was printed (main's exit status). */
int tl_report_done(void);

#ifdef __cplusplus
}
#endif

#endif /* TL_REPORT_H */
