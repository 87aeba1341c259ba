/*
 * tl_board: console output helpers shared by every board (over tl_board_write).
 */
#include "tl_board.h"

void tl_print(const char *text)
{
    size_t n = 0;
    while (text[n] != '\0') { /* no strlen: the Xtensa test target has no C library */
        ++n;
    }
    tl_board_write(text, n);
}

void tl_print_u32(uint32_t value)
{
    char digits[10];
    int n = 0;
    do {
        digits[n++] = (char)('0' + value % 10u);
        value /= 10u;
    } while (value != 0u);
    while (n > 0) {
        --n;
        tl_board_write(&digits[n], 1);
    }
}

void tl_print_i32(int32_t value)
{
    if (value < 0) {
        tl_board_write("-", 1);
        tl_print_u32(0u - (uint32_t)value);
    } else {
        tl_print_u32((uint32_t)value);
    }
}

void tl_print_percent(uint32_t part, uint32_t whole)
{
    uint32_t permille = 0;
    while (part > 4000000u) { /* keep part * 1000 in 32 bits (no 64-bit division) */
        part >>= 1;
        whole >>= 1;
    }
    if (whole > 0u) {
        permille = part * 1000u / whole;
    }
    tl_print_u32(permille / 10u);
    tl_board_write(".", 1);
    tl_print_u32(permille % 10u);
    tl_board_write("%", 1);
}

void tl_print_q10(int32_t value)
{
    uint32_t magnitude;
    uint32_t frac;
    char digits[3];
    if (value < 0) {
        tl_board_write("-", 1);
        magnitude = 0u - (uint32_t)value;
    } else {
        magnitude = (uint32_t)value;
    }
    tl_print_u32(magnitude >> 10);
    frac = ((magnitude & 1023u) * 1000u) >> 10; /* three decimals, rounded down */
    digits[0] = (char)('0' + frac / 100u);
    digits[1] = (char)('0' + (frac / 10u) % 10u);
    digits[2] = (char)('0' + frac % 10u);
    tl_board_write(".", 1);
    tl_board_write(digits, 3);
}
