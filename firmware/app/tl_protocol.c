/*
 * tl_protocol: the line parser (see tl_protocol.h), a state machine over characters.
 */
#include "tl_protocol.h"

enum {
    ST_START,   /* before the command letter */
    ST_COMMAND, /* after the command letter: a space or the end of the line */
    ST_LABEL,   /* the decimal label of S */
    ST_HEX,     /* the hex digits of S / P */
    ST_TRAIL,   /* only spaces may follow */
    ST_DISCARD, /* an error was found: skip to the end of the line */
    ST_LINE     /* an adapter command: its fields go to p->line */
};

/* The adapter commands (their fields are kept in p->line). */
static int tl_is_adapter_command(int c)
{
    return c == 'L' || c == 'X' || c == 'U' || c == 'D' || c == 'F' || c == 'G';
}

/* Whether an adapter command takes fields (L, F and G take none). */
static int tl_has_fields(int c)
{
    return c == 'X' || c == 'U' || c == 'D';
}

void tl_proto_init(tl_proto *p, int8_t *sample, uint32_t size, int32_t classes)
{
    p->sample = sample;
    p->size = size;
    p->classes = classes;
    p->label = 0;
    p->error = TL_PROTO_OK;
    p->state = ST_START;
    p->command = 0;
    p->digits = 0;
    p->value = -1;
    p->after_cr = 0;
    p->line_len = 0;
}

static int tl_hex_value(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static void tl_fail(tl_proto *p, tl_proto_error error)
{
    p->error = error;
    p->state = ST_DISCARD;
}

/* The end of a line: the event of the command, or the error. */
static tl_proto_event tl_end_line(tl_proto *p)
{
    tl_proto_event event = TL_PROTO_NONE;
    const int state = p->state;
    const int command = p->command;
    if (state == ST_DISCARD) {
        event = TL_PROTO_ERROR;
    } else if (state == ST_START) {
        event = TL_PROTO_NONE; /* an empty line */
    } else if (command == 'S' && (state == ST_COMMAND || state == ST_LABEL)) {
        p->error = state == ST_LABEL && p->value >= 0 ? TL_PROTO_ERR_LENGTH : TL_PROTO_ERR_LABEL;
        event = TL_PROTO_ERROR;
    } else if (command == 'P' && state == ST_COMMAND) {
        p->error = TL_PROTO_ERR_LENGTH;
        event = TL_PROTO_ERROR;
    } else if (state == ST_LINE || (state == ST_COMMAND && tl_is_adapter_command(command))) {
        event = (tl_proto_event)command;
        if (state == ST_LINE) {
            p->line[p->line_len] = '\0';
        } else {
            p->line[0] = '\0';
        }
        if (!tl_has_fields(command) && state == ST_LINE) {
            uint32_t i;
            for (i = 0; i < p->line_len; ++i) {
                if (p->line[i] != ' ' && p->line[i] != '\t') {
                    p->error = TL_PROTO_ERR_EXTRA;
                    event = TL_PROTO_ERROR;
                }
            }
        }
    } else if (state == ST_HEX && p->digits != 2u * p->size) {
        p->error = TL_PROTO_ERR_LENGTH;
        event = TL_PROTO_ERROR;
    } else {
        event = (tl_proto_event)command;
    }
    p->state = ST_START;
    p->command = 0;
    p->digits = 0;
    p->value = -1;
    return event;
}

tl_proto_event tl_proto_feed(tl_proto *p, int c)
{
    int v;
    if (c == '\n' && p->after_cr) { /* the '\n' of "\r\n": the line has ended */
        p->after_cr = 0;
        return TL_PROTO_NONE;
    }
    p->after_cr = c == '\r';
    if (c == '\r' || c == '\n') {
        return tl_end_line(p);
    }
    switch (p->state) {
    case ST_START:
        if (c == ' ' || c == '\t') {
            break;
        }
        p->error = TL_PROTO_OK;
        if (c == 'S' || c == 'P' || c == 'E' || c == 'C' || c == '?' || tl_is_adapter_command(c)) {
            p->command = c;
            p->state = ST_COMMAND;
        } else {
            tl_fail(p, TL_PROTO_ERR_COMMAND);
        }
        break;
    case ST_COMMAND:
        if (c != ' ' && c != '\t') {
            tl_fail(p, TL_PROTO_ERR_COMMAND); /* e.g. "SS" or "E1" */
        } else if (tl_is_adapter_command(p->command)) {
            p->state = ST_LINE;
            p->line_len = 0;
        } else if (p->command == 'S') {
            p->state = ST_LABEL;
            p->value = -1;
        } else if (p->command == 'P') {
            p->state = ST_HEX;
            p->digits = 0;
        } else {
            p->state = ST_TRAIL;
        }
        break;
    case ST_LABEL:
        if (c == ' ' || c == '\t') {
            if (p->value >= 0) {
                p->label = p->value;
                p->state = ST_HEX;
                p->digits = 0;
            }
        } else if (c >= '0' && c <= '9') {
            p->value = (p->value < 0 ? 0 : p->value * 10) + (c - '0');
            if (p->value >= p->classes) {
                tl_fail(p, TL_PROTO_ERR_LABEL);
            }
        } else {
            tl_fail(p, TL_PROTO_ERR_LABEL);
        }
        break;
    case ST_HEX:
        if (c == ' ' || c == '\t') {
            if (p->digits > 0u) {
                p->state = p->digits == 2u * p->size ? ST_TRAIL : ST_DISCARD;
                if (p->state == ST_DISCARD) {
                    p->error = TL_PROTO_ERR_LENGTH;
                }
            }
            break;
        }
        v = tl_hex_value(c);
        if (v < 0) {
            tl_fail(p, TL_PROTO_ERR_HEX);
        } else if (p->digits >= 2u * p->size) {
            tl_fail(p, TL_PROTO_ERR_LENGTH);
        } else {
            const uint32_t byte = p->digits >> 1;
            if ((p->digits & 1u) == 0u) {
                p->value = v;
            } else {
                const int u = p->value * 16 + v;
                p->sample[byte] = (int8_t)(u >= 128 ? u - 256 : u);
            }
            p->digits++;
        }
        break;
    case ST_TRAIL:
        if (c != ' ' && c != '\t') {
            tl_fail(p, TL_PROTO_ERR_EXTRA);
        }
        break;
    case ST_LINE:
        if (p->line_len + 1u >= TL_PROTO_LINE_MAX) {
            tl_fail(p, TL_PROTO_ERR_LENGTH);
        } else {
            p->line[p->line_len++] = (char)c;
        }
        break;
    default: /* ST_DISCARD */
        break;
    }
    return TL_PROTO_NONE;
}

/* ------------------------------------------------------------------ adapter command fields */

static void tl_skip_spaces(const char **s)
{
    while (**s == ' ' || **s == '\t') {
        (*s)++;
    }
}

/* A decimal number (at most 9 digits); 0 if there is none. */
static int tl_decimal(const char **s, uint32_t *v)
{
    uint32_t n = 0u, digits = 0u;
    tl_skip_spaces(s);
    while (**s >= '0' && **s <= '9' && digits < 10u) {
        n = n * 10u + (uint32_t)(**s - '0');
        (*s)++;
        digits++;
    }
    *v = n;
    return digits > 0u && digits <= 9u;
}

/* Exactly 8 hex digits. */
static int tl_hex32(const char **s, uint32_t *v)
{
    uint32_t n = 0u, i;
    tl_skip_spaces(s);
    for (i = 0; i < 8u; ++i) {
        const int d = tl_hex_value((*s)[i]);
        if (d < 0) {
            return 0;
        }
        n = (n << 4) | (uint32_t)d;
    }
    *s += 8;
    *v = n;
    return 1;
}

/* Pairs of hex digits up to the end or a space: at least one byte, at most max. */
static int tl_hex_bytes(const char **s, uint8_t *out, uint32_t max, uint32_t *n)
{
    uint32_t k = 0u;
    tl_skip_spaces(s);
    while (**s != '\0' && **s != ' ' && **s != '\t') {
        const int hi = tl_hex_value((*s)[0]);
        const int lo = hi < 0 ? -1 : tl_hex_value((*s)[1]);
        if (lo < 0 || k >= max) {
            return 0;
        }
        out[k++] = (uint8_t)(hi * 16 + lo);
        *s += 2;
    }
    *n = k;
    return k > 0u;
}

static int tl_fields_of(const char *s, int command, tl_proto_fields_t *out)
{
    int ok;
    out->a = 0u;
    out->b = 0u;
    out->size = 0u;
    if (command == 'X') {
        tl_skip_spaces(&s);
        if (*s == '-') {
            out->a = TL_PROTO_NO_SLOT;
            s++;
            ok = 1;
        } else {
            ok = tl_decimal(&s, &out->a);
        }
    } else if (command == 'U') {
        ok = tl_decimal(&s, &out->a) && tl_decimal(&s, &out->b);
    } else if (command == 'D') {
        ok = tl_decimal(&s, &out->a) && tl_hex32(&s, &out->b) &&
             tl_hex_bytes(&s, out->data, TL_PROTO_CHUNK_MAX, &out->size);
    } else {
        ok = 1;
    }
    tl_skip_spaces(&s);
    return ok && *s == '\0';
}

int tl_proto_fields(tl_proto *p, int command, tl_proto_fields_t *out)
{
    if (!tl_fields_of(p->line, command, out)) {
        p->error = TL_PROTO_ERR_FIELD;
        return 1;
    }
    return 0;
}

tl_proto_event tl_proto_finish(tl_proto *p)
{
    p->after_cr = 0;
    return tl_end_line(p);
}

const char *tl_proto_error_text(tl_proto_error error)
{
    switch (error) {
    case TL_PROTO_OK:
        return "ok";
    case TL_PROTO_ERR_COMMAND:
        return "unknown command (S, P, E, C, ?, L, X, U, D, F or G)";
    case TL_PROTO_ERR_LABEL:
        return "bad label (a decimal class number)";
    case TL_PROTO_ERR_HEX:
        return "not a hex digit";
    case TL_PROTO_ERR_LENGTH:
        return "wrong number of hex digits";
    case TL_PROTO_ERR_EXTRA:
        return "unexpected text after the last field";
    case TL_PROTO_ERR_FIELD:
        return "bad fields (X <slot>|-, U <slot> <bytes>, D <i> <crc8> <hex>)";
    }
    return "?";
}
