/*
 * tl_protocol: the serial line protocol of the application, parsed one character at a time
 * (no line buffer: a sample's hex digits go straight into the caller's sample buffer).
 *
 * Host -> device, one command per line (ended by '\n', '\r' or "\r\n": terminals such as minicom
 * and screen send '\r' alone; the input's end also ends a last line; spaces separate fields):
 *   S <label> <hex>   train on one sample: label in [0, classes), hex = the int8 input
 *                     as 2 hex digits per byte (two's complement), exactly 2 * size digits
 *   P <hex>           predict one sample (no training)
 *   E                 evaluate the embedded samples (accuracy)
 *   C                 write a checkpoint now
 *   ?                 status
 * Empty lines are ignored. A malformed line gives TL_PROTO_ERROR and a reason.
 */
#ifndef TL_PROTOCOL_H
#define TL_PROTOCOL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    TL_PROTO_NONE = 0, /* no complete line yet (or an empty one) */
    TL_PROTO_SAMPLE = 'S',
    TL_PROTO_PREDICT = 'P',
    TL_PROTO_EVALUATE = 'E',
    TL_PROTO_CHECKPOINT = 'C',
    TL_PROTO_STATUS = '?',
    TL_PROTO_ERROR = '!'
} tl_proto_event;

typedef enum {
    TL_PROTO_OK = 0,
    TL_PROTO_ERR_COMMAND, /* unknown command letter */
    TL_PROTO_ERR_LABEL,   /* missing, not a decimal number, or >= classes */
    TL_PROTO_ERR_HEX,     /* a character that is not a hex digit */
    TL_PROTO_ERR_LENGTH,  /* not exactly 2 * size hex digits */
    TL_PROTO_ERR_EXTRA    /* something after the last field */
} tl_proto_error;

typedef struct {
    int8_t *sample; /* the caller's buffer, size bytes: the sample of S and P */
    uint32_t size;
    int32_t classes;
    int32_t label; /* the label of S */
    tl_proto_error error;
    /* parser state */
    int state;
    int command;
    uint32_t digits;
    int32_t value;
    int after_cr; /* the last character was '\r': a '\n' now ends nothing */
} tl_proto;

void tl_proto_init(tl_proto *p, int8_t *sample, uint32_t size, int32_t classes);

/* Feed one character; returns the event when it ends a line, else TL_PROTO_NONE. */
tl_proto_event tl_proto_feed(tl_proto *p, int c);

/* The input ended: the event of a last line that had no line end (else TL_PROTO_NONE). */
tl_proto_event tl_proto_finish(tl_proto *p);

/* A short English reason for p->error. */
const char *tl_proto_error_text(tl_proto_error error);

#ifdef __cplusplus
}
#endif

#endif /* TL_PROTOCOL_H */
