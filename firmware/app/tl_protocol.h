/*
 * tl_protocol: the serial line protocol of the application, parsed one character at a time
 * (no line buffer for S and P: a sample's hex digits go straight into the caller's sample
 * buffer; the adapter commands' short fields are kept in p->line).
 *
 * Host -> device, one command per line (ended by '\n', '\r' or "\r\n": terminals such as minicom
 * and screen send '\r' alone; the input's end also ends a last line; spaces separate fields):
 *   S <label> <hex>   train on one sample: label in [0, classes), hex = the int8 input
 *                     as 2 hex digits per byte (two's complement), exactly 2 * size digits
 *   P <hex>           predict one sample (no training)
 *   E                 evaluate the embedded samples (accuracy)
 *   C                 write a checkpoint now
 *   ?                 status
 * Adapter slots (tl_adapter.h; the fields stay in p->line, read them with tl_proto_fields):
 *   L                 list the slots and the active one
 *   X <slot>|-        make slot <slot> (decimal) the active adapter, '-' the base model
 *   U <slot> <bytes>  start an upload of a <bytes>-byte adapter file into slot <slot>
 *   D <i> <crc> <hex> chunk i (decimal, from 0) of the upload: crc = CRC-32 of its bytes
 *                     (8 hex digits), hex = 2 digits per byte, at most TL_PROTO_CHUNK bytes
 *   F                 finish the upload (checks the whole file; does not activate it)
 *   G                 send the device's current adapter (its masters) as a file: "D" lines
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
    TL_PROTO_LIST = 'L',
    TL_PROTO_SELECT = 'X',
    TL_PROTO_UPLOAD = 'U',
    TL_PROTO_CHUNK = 'D',
    TL_PROTO_FINISH = 'F',
    TL_PROTO_GET = 'G',
    TL_PROTO_ERROR = '!'
} tl_proto_event;

typedef enum {
    TL_PROTO_OK = 0,
    TL_PROTO_ERR_COMMAND, /* unknown command letter */
    TL_PROTO_ERR_LABEL,   /* missing, not a decimal number, or >= classes */
    TL_PROTO_ERR_HEX,     /* a character that is not a hex digit */
    TL_PROTO_ERR_LENGTH,  /* not exactly 2 * size hex digits */
    TL_PROTO_ERR_EXTRA,   /* something after the last field */
    TL_PROTO_ERR_FIELD    /* an adapter command's field is missing or malformed */
} tl_proto_error;

#define TL_PROTO_CHUNK_MAX 64u                            /* bytes of one D line */
#define TL_PROTO_LINE_MAX (2u * TL_PROTO_CHUNK_MAX + 32u) /* an adapter command's fields */

/* The fields of an adapter command (tl_proto_fields). */
typedef struct {
    uint32_t a;    /* L, X, U: the slot (TL_PROTO_NO_SLOT for '-'); D: the chunk index */
    uint32_t b;    /* U: the file's bytes; D: the chunk's CRC-32 */
    uint32_t size; /* D: bytes in data */
    uint8_t data[TL_PROTO_CHUNK_MAX];
} tl_proto_fields_t;

#define TL_PROTO_NO_SLOT 0xFFFFFFFFu

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
    uint32_t line_len;
    char line[TL_PROTO_LINE_MAX]; /* an adapter command's fields, as they came */
} tl_proto;

void tl_proto_init(tl_proto *p, int8_t *sample, uint32_t size, int32_t classes);

/* Feed one character; returns the event when it ends a line, else TL_PROTO_NONE. */
tl_proto_event tl_proto_feed(tl_proto *p, int c);

/* The input ended: the event of a last line that had no line end (else TL_PROTO_NONE). */
tl_proto_event tl_proto_finish(tl_proto *p);

/* Parse the fields of the adapter command that p's last event was (X, U, D): 0 if they are
 * well formed (p->error = TL_PROTO_ERR_FIELD otherwise). */
int tl_proto_fields(tl_proto *p, int command, tl_proto_fields_t *out);

/* A short English reason for p->error. */
const char *tl_proto_error_text(tl_proto_error error);

#ifdef __cplusplus
}
#endif

#endif /* TL_PROTOCOL_H */
