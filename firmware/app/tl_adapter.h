/*
 * tl_adapter: adapter files (format 2, docs/adapter.md) in flash slots beside the base model,
 * the power-safe choice of the active one, uploads in chunks and the device's own adapter as
 * a file.
 *
 * The adapter region (a tl_storage: tl_board_adapter_storage()) is laid out as
 *
 *   [0, unit)                 active record, copy 0   (unit = the region's erase unit)
 *   [unit, 2 unit)            active record, copy 1
 *   2 unit + k * slot_size    slot k (k < n_slots): one form-1 adapter file (int16 masters)
 *
 * The active record (16 bytes: "TLAS", u32 sequence, u32 slot or TL_ADAPTER_NONE, u32 CRC-32
 * of the 12 before) is double-buffered as the checkpoint store's records are: a new one goes
 * to the copy that is not the newest, erased first, with the newest sequence + 1
 * (tl_sequence_newer, wraparound); a write torn by a power cut fails its CRC and the previous
 * record stands. An upload only ever erases and programs a slot that is not active, so a cut
 * at any point leaves the previous adapter active and valid.
 *
 * This build accepts form 1 (int16 masters: the device trains) only; form 2 is refused with
 * TL_ERR_UNSUPPORTED. C99, no malloc, no float (the scales are compared as f32 bit patterns).
 */
#ifndef TL_ADAPTER_H
#define TL_ADAPTER_H

#include <stdint.h>

#include "tl_checkpoint.h"
#include "tl_storage.h"
#include "tl_types.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TL_ADAPTER_VERSION 2u
#define TL_ADAPTER_FORM_MASTERS 1u
#define TL_ADAPTER_HEADER_SIZE 64u
#define TL_ADAPTER_LAYER_SIZE 28u
#define TL_ADAPTER_MAX_LAYERS 16u
#define TL_ADAPTER_NONE 0xFFFFFFFFu /* the active record's slot for "no adapter" */
#define TL_ADAPTER_RECORD_SIZE 16u
#define TL_ADAPTER_MAX_SLOTS 64u /* slots a store keeps a checked state for */

/* One adapted layer as this build was generated (the file's descriptor must equal it). */
typedef struct {
    uint16_t index;    /* tinylora's op index of the layer */
    uint16_t rank;     /* r */
    uint32_t depth;    /* K */
    uint32_t channels; /* C */
    uint32_t s_a;      /* f32 bit patterns of the LoRA scales and alpha */
    uint32_t s_b;
    uint32_t s_h;
    uint32_t alpha;
} tl_adapter_layer;

/* What an adapter must be to run on this build. */
typedef struct {
    const uint8_t *model_sha256; /* 32 bytes: SHA-256 of the base model's .tflite */
    uint8_t loss;                /* 0 softmax cross-entropy, 1 mean squared error */
    uint16_t n_layers;           /* <= TL_ADAPTER_MAX_LAYERS */
    const tl_adapter_layer *layers;
    uint16_t ckpt_flags; /* the build's checkpoint flags (arrays stored after the masters) */
} tl_adapter_config;

/* Bytes of this build's form-1 adapter file; 0 if `cfg` is malformed. */
uint32_t tl_adapter_size(const tl_adapter_config *cfg);

/* The checks of docs/adapter.md, in its order, on the `len`-byte file at `offset` of `st`:
 * TL_ERR_EMPTY (erased), TL_ERR_SHORT / TL_ERR_LENGTH, TL_ERR_MAGIC, TL_ERR_VERSION, TL_ERR_CRC,
 * TL_ERR_UNSUPPORTED (form 2), TL_ERR_LAYOUT (layer count, descriptors, payload size, layer
 * index / K / C), TL_ERR_FOREIGN (another base model), TL_ERR_CONFIG (rank, scales, alpha,
 * loss); storage errors as they come. */
tl_status tl_adapter_verify_stored(const tl_adapter_config *cfg, const tl_storage *st,
                                   uint32_t offset, uint32_t len);

/* The same on a file in memory. */
tl_status tl_adapter_verify(const tl_adapter_config *cfg, const uint8_t *data, uint32_t len);

/* Receives a file piece by piece (tl_adapter_from_checkpoint). */
typedef tl_status (*tl_adapter_sink)(void *ctx, const uint8_t *data, uint32_t len);

/* The form-1 file of the masters in `ckpt` (an inline checkpoint of this build, verified by
 * the caller), its updates counter as the file's, given to `sink` in pieces. */
tl_status tl_adapter_from_checkpoint(const tl_adapter_config *cfg, const uint8_t *ckpt,
                                     uint32_t ckpt_len, tl_adapter_sink sink, void *ctx);

/* Put the masters of the adapter file at `offset` of `st` into the inline checkpoint `ckpt`
 * of this build: accumulators and momentum zeroed, updates from the file, CRC resealed;
 * restoring it gives the trainer that adapter. The file is checked in the same pass that
 * copies it: its header and descriptors must be this build's (byte for byte but the updates
 * counter; else the status of tl_adapter_verify_stored) and the CRC-32 of the bytes read must
 * be the file's (TL_ERR_CRC: it changed since it was checked). On an error `ckpt` holds
 * garbage: do not restore it. */
tl_status tl_adapter_into_checkpoint(const tl_adapter_config *cfg, const tl_storage *st,
                                     uint32_t offset, uint8_t *ckpt, uint32_t ckpt_len);

/* The slots and the active record on the adapter region. */
typedef struct {
    const tl_storage *region;              /* the medium, as it is */
    tl_storage_stream stream;              /* byte-sized programs over it */
    uint32_t unit;                         /* the region's erase unit: one active-record copy */
    uint32_t slot_size;                    /* a whole number of erase units */
    uint32_t n_slots;                      /* <= TL_ADAPTER_MAX_SLOTS */
    uint8_t checked[TL_ADAPTER_MAX_SLOTS]; /* per slot: the status of its full check, or
                                              TL_ADAPTER_UNCHECKED (tl_adapter_slot_check) */
} tl_adapter_store;

#define TL_ADAPTER_UNCHECKED 0xFFu

/* TL_ERR_ALIGN for slots that are not whole erase units, TL_ERR_TOO_LARGE for a region
 * smaller than two record units and the slots or more than TL_ADAPTER_MAX_SLOTS slots;
 * storage errors (open) as they come. Every slot starts unchecked. */
tl_status tl_adapter_store_init(tl_adapter_store *s, const tl_storage *region, uint32_t slot_size,
                                uint32_t n_slots);

/* Where slot k starts in the region. */
uint32_t tl_adapter_slot_offset(const tl_adapter_store *s, uint32_t slot);

/* Slot k's file checked in full (tl_adapter_verify_stored against `cfg`, the one
 * configuration of this build) once: at its first call after tl_adapter_store_init (the
 * application checks every slot at boot) or when its upload ends; later calls return that
 * status without reading the slot. An upload's begin forgets it. TL_ERR_SLOT beyond n_slots.
 * A file that changes in flash after its check (a flipped bit) is still never run:
 * tl_adapter_into_checkpoint CRCs the bytes it copies. */
tl_status tl_adapter_slot_check(tl_adapter_store *s, const tl_adapter_config *cfg, uint32_t slot);

/* The newest valid active record: *slot (TL_ADAPTER_NONE: the base model) and *sequence.
 * TL_ERR_EMPTY if neither copy holds one (never selected: *slot = TL_ADAPTER_NONE). */
tl_status tl_adapter_active(tl_adapter_store *s, uint32_t *slot, uint32_t *sequence);

/* Make `slot` (or TL_ADAPTER_NONE) the active one, power-safely. A slot must hold a file
 * that passed its check (tl_adapter_slot_check: its status otherwise); TL_ERR_SLOT beyond
 * n_slots. */
tl_status tl_adapter_select(tl_adapter_store *s, const tl_adapter_config *cfg, uint32_t slot);

/* An upload in progress: chunks in order, each with its CRC-32, into an inactive slot. */
typedef struct {
    tl_adapter_store *store;
    const tl_adapter_config *cfg;
    uint32_t slot;
    uint32_t total;    /* the file's size, announced at the start */
    uint32_t received; /* bytes programmed so far */
    uint32_t next;     /* the index the next chunk must have */
    int open;
} tl_adapter_upload;

/* Start: TL_ERR_SLOT for a slot beyond the board's or the active one, TL_ERR_LAYOUT for a
 * size that is not this build's adapter size, TL_ERR_TOO_LARGE if it exceeds a slot. Erases
 * the slot. */
tl_status tl_adapter_upload_begin(tl_adapter_upload *u, tl_adapter_store *s,
                                  const tl_adapter_config *cfg, uint32_t slot, uint32_t total);

/* Chunk `index` (0, 1, ...) of n bytes whose CRC-32 is `crc`: TL_ERR_ORDER (no upload, or not
 * the next index: resend the right one), TL_ERR_CRC (damaged: resend it), TL_ERR_LENGTH (past
 * the announced size). A refused chunk changes nothing. */
tl_status tl_adapter_upload_chunk(tl_adapter_upload *u, uint32_t index, const uint8_t *data,
                                  uint32_t n, uint32_t crc);

/* The end: every byte arrived (TL_ERR_LENGTH otherwise) and the stored file passes
 * tl_adapter_verify_stored (the slot's check: tl_adapter_slot_check returns it from now on).
 * The slot is not activated (tl_adapter_select does that). */
tl_status tl_adapter_upload_end(tl_adapter_upload *u);

/* A few English words for a status (the device's replies). */
const char *tl_status_text(tl_status status);

#ifdef __cplusplus
}
#endif

#endif /* TL_ADAPTER_H */
