/*
 * tinylora runtime: power-safe checkpoints (docs/checkpoint.md; reference:
 * tinylora/checkpoint.py, whose bytes these functions write and read).
 *
 * Record (little-endian): "TLCK", u16 version 1, u16 flags, u32 length (CRC included),
 * u32 sequence, u64 binding, u32 step count, u32 PRNG state, u32 updates, u16 window
 * position, u16 layer count, payload (per layer: A masters int16 [r][K], B masters int16
 * [C][r]; with flag 2 the int32 accumulators dA, dB; with flag 4 the int32 momentum mA, mB),
 * u32 CRC-32 (zlib's) of everything before it. Split records (flag 1) carry
 * (u32 payload length, u32 payload CRC) instead of the payload, which lives in the adapter
 * slot of the same index.
 *
 * C99, no malloc, no float. The store works through a caller-provided storage interface.
 */
#ifndef TL_CHECKPOINT_H
#define TL_CHECKPOINT_H

#include "tl_storage.h"
#include "tl_types.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TL_CKPT_VERSION 1u
#define TL_CKPT_HEADER_SIZE 40u
#define TL_CKPT_FLAG_SPLIT 1u
#define TL_CKPT_FLAG_ACCUM 2u     /* accumulators saved (accum_steps > 1) */
#define TL_CKPT_FLAG_MOMENTUM 4u  /* momentum saved (momentum on) */
#define TL_CKPT_RECORD_SLOT 1024u /* CheckpointStore's default record slot */

/* Every function returns a tl_status (tl_types.h): TL_OK, or why a checkpoint was refused
 * (the cases tinylora.checkpoint raises CheckpointError for: TL_ERR_SHORT, _MAGIC, _CRC,
 * _LENGTH, _VERSION, _SPLIT, _FOREIGN, _LAYOUT, _EMPTY, _TOO_LARGE) or how the call was wrong
 * (TL_ERR_NULL, TL_ERR_ARENA: the caller's buffer is too small; TL_ERR_IO: the storage
 * failed). On any error nothing in the trainer state has been changed. */

/* CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), zlib's crc32(): start with crc = 0
 * and feed the data in any number of pieces. */
uint32_t tl_crc32(uint32_t crc, const uint8_t *data, size_t len);

/* Little-endian fields of the records and files the device stores (checkpoints, adapters). */
uint32_t tl_get16(const uint8_t *p);
uint32_t tl_get32(const uint8_t *p);
void tl_put16(uint8_t *p, uint32_t v);
void tl_put32(uint8_t *p, uint32_t v);

/* One adapted layer's persistent arrays (a_size = r * K, b_size = C * r). */
typedef struct {
    int32_t a_size;
    int32_t b_size;
    int16_t *a_master; /* A masters [r][K] */
    int16_t *b_master; /* B masters [C][r] */
    int8_t *a_view;    /* int8 views, refreshed by a restore (NULL: none) */
    int8_t *b_view;
    int32_t *acc_a; /* accumulators: saved with TL_CKPT_FLAG_ACCUM; a restore without */
    int32_t *acc_b; /*   the flag zeroes them (NULL: none, e.g. per-step scratch) */
    int32_t *mom_a; /* momentum: saved with TL_CKPT_FLAG_MOMENTUM */
    int32_t *mom_b;
} tl_ckpt_layer;

/* The trainer's state as the checkpoint sees it. `binding` and `flags` come from the
 * generated configuration (tinylora.checkpoint.binding and _flags); the counters are what
 * Trainer keeps (step_count, rng_state, updates, step_count % accum_steps). */
typedef struct {
    uint64_t binding;
    uint16_t flags; /* TL_CKPT_FLAG_ACCUM | TL_CKPT_FLAG_MOMENTUM as configured */
    uint16_t n_layers;
    const tl_ckpt_layer *layers; /* ascending layer index */
    uint32_t step_count;
    uint32_t rng_state;
    uint32_t updates;
    uint16_t window;
} tl_ckpt_state;

/* Bytes of the inline checkpoint of `state` (header, payload, CRC); 0 if it is malformed. */
uint32_t tl_checkpoint_size(const tl_ckpt_state *state);

/* checkpoint.encode: the inline record with sequence number `sequence` (0 as
 * Trainer.checkpoint() writes it) into out[cap]; *len = its size. */
tl_status tl_checkpoint_encode(const tl_ckpt_state *state, uint32_t sequence, uint8_t *out,
                               uint32_t cap, uint32_t *len);

/* checkpoint._unseal: size, magic, CRC and length field of a record (any kind). */
tl_status tl_checkpoint_verify(const uint8_t *data, uint32_t len);

/* checkpoint.decode: verify (as tl_checkpoint_verify, then version, not split, binding ==
 * state->binding, flags == state->flags, layer count, exact payload size) and only then
 * restore the arrays and counters into `state` (views refreshed; accumulators zeroed when
 * the record has none). `state->layers` gives where the arrays go. */
tl_status tl_checkpoint_decode(const uint8_t *data, uint32_t len, tl_ckpt_state *state);

/* The two-slot store on a tl_storage (one that programs single bytes: program_unit 1, or a
 * tl_storage_stream over the medium). Offsets are from `offset` in the storage: record slot 0
 * at 0, record slot 1 at record_slot, adapter slot k at 2 * record_slot + k * adapter_slot
 * (CheckpointStore). Each slot is a whole number of the storage's erase units. */
typedef struct {
    const tl_storage *storage;
    uint32_t offset;       /* where the store starts in the storage */
    uint32_t record_slot;  /* bytes per record slot (default TL_CKPT_RECORD_SLOT) */
    uint32_t adapter_slot; /* bytes per adapter slot, 0 when records are never split */
} tl_ckpt_store;

/* Whether sequence number a is newer than b: serial-number arithmetic on 32 bits (RFC 1982;
 * tinylora.checkpoint.sequence_newer), so that numbers wrap and none beats every later one.
 * Every double-buffered record of the firmware (checkpoints, the active adapter) uses it. */
int tl_sequence_newer(uint32_t a, uint32_t b);

/* CheckpointStore.save: validate the inline `checkpoint`, find the newest complete
 * checkpoint, write to the other slot index with sequence newest + 1 (1 on an empty store):
 * a record that fits the record slot as it is, else a split record (the adapter slot is
 * erased and written first, then the record slot). Each slot is erased before it is
 * written. A storage error (power loss) returns TL_ERR_IO. */
tl_status tl_ckpt_store_save(const tl_ckpt_store *st, const uint8_t *checkpoint, uint32_t len);

/* CheckpointStore.load: the newest complete checkpoint (sequence numbers compared with
 * wraparound, RFC 1982 serial-number arithmetic; slot 0 on a tie)
 * in inline form (split flag cleared, length and CRC recomputed) into out[cap]; *len its
 * size, *sequence (may be NULL) its sequence number. TL_ERR_EMPTY if there is none. */
tl_status tl_ckpt_store_load(const tl_ckpt_store *st, uint8_t *out, uint32_t cap, uint32_t *len,
                             uint32_t *sequence);

#ifdef __cplusplus
}
#endif

#endif /* TL_CHECKPOINT_H */
