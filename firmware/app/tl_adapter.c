/*
 * tl_adapter: adapter files, slots, the active record and uploads (see tl_adapter.h).
 */
#include "tl_adapter.h"

#define TL_AD_AT_VERSION 4u
#define TL_AD_AT_FORM 6u
#define TL_AD_AT_LENGTH 8u
#define TL_AD_AT_SHA 12u
#define TL_AD_AT_LOSS 44u
#define TL_AD_AT_LAYERS 46u
#define TL_AD_AT_UPDATES 48u
#define TL_AD_DESCR_MAX (TL_ADAPTER_HEADER_SIZE + TL_ADAPTER_MAX_LAYERS * TL_ADAPTER_LAYER_SIZE)
#define TL_AD_CHUNK 64u
#define TL_CK_AT_UPDATES 32u /* tl_checkpoint.h: the header's updates counter */

static const uint8_t tl_ad_magic[4] = { 'T', 'L', 'A', 'D' };
static const uint8_t tl_rec_magic[4] = { 'T', 'L', 'A', 'S' };

static int tl_same(const uint8_t *a, const uint8_t *b, uint32_t n)
{
    uint32_t i;
    for (i = 0; i < n; ++i) {
        if (a[i] != b[i]) {
            return 0;
        }
    }
    return 1;
}

/* ------------------------------------------------------------------ sizes */

/* Masters of one layer: r * K + C * r int16. */
static uint32_t tl_layer_masters(const tl_adapter_layer *l)
{
    return (uint32_t)l->rank * l->depth + l->channels * (uint32_t)l->rank;
}

uint32_t tl_adapter_size(const tl_adapter_config *cfg)
{
    uint32_t i, n;
    if (cfg == NULL || cfg->layers == NULL || cfg->n_layers == 0u ||
        cfg->n_layers > TL_ADAPTER_MAX_LAYERS) {
        return 0u;
    }
    n = TL_ADAPTER_HEADER_SIZE + TL_ADAPTER_LAYER_SIZE * cfg->n_layers + 4u;
    for (i = 0; i < cfg->n_layers; ++i) {
        n += 2u * tl_layer_masters(&cfg->layers[i]);
    }
    return n;
}

/* Bytes of one layer's block in a checkpoint payload: masters, then the accumulators and the
 * momentum the build saves (tl_checkpoint.h). */
static uint32_t tl_ckpt_block(const tl_adapter_config *cfg, const tl_adapter_layer *l)
{
    const uint32_t n = tl_layer_masters(l);
    return 2u * n + ((cfg->ckpt_flags & TL_CKPT_FLAG_ACCUM) ? 4u * n : 0u) +
           ((cfg->ckpt_flags & TL_CKPT_FLAG_MOMENTUM) ? 4u * n : 0u);
}

/* ------------------------------------------------------------------ verification */

/* CRC-32 of len bytes of st at offset. */
static tl_status tl_stored_crc(const tl_storage *st, uint32_t offset, uint32_t len, uint32_t *crc)
{
    uint8_t chunk[TL_AD_CHUNK];
    uint32_t c = 0u;
    while (len > 0u) {
        const uint32_t n = len < TL_AD_CHUNK ? len : TL_AD_CHUNK;
        const tl_status s = st->read(st->ctx, offset, chunk, n);
        if (s != TL_OK) {
            return s;
        }
        c = tl_crc32(c, chunk, n);
        offset += n;
        len -= n;
    }
    *crc = c;
    return TL_OK;
}

/* The file's own consistency: layer count, descriptors inside, payload size exact. */
static tl_status tl_check_shape(const uint8_t *head, uint32_t len)
{
    const uint32_t layers = tl_get16(head + TL_AD_AT_LAYERS);
    uint32_t i, payload = 0u;
    if (layers == 0u || layers > TL_ADAPTER_MAX_LAYERS ||
        TL_ADAPTER_HEADER_SIZE + TL_ADAPTER_LAYER_SIZE * layers + 4u > len) {
        return TL_ERR_LAYOUT;
    }
    for (i = 0; i < layers; ++i) {
        const uint8_t *d = head + TL_ADAPTER_HEADER_SIZE + TL_ADAPTER_LAYER_SIZE * i;
        const uint32_t r = tl_get16(d + 2u);
        const uint32_t k = tl_get32(d + 4u);
        const uint32_t c = tl_get32(d + 8u);
        if (r == 0u || k == 0u || c == 0u || k > 0x00FFFFFFu || c > 0x00FFFFFFu || r > 255u) {
            return TL_ERR_LAYOUT;
        }
        payload += 2u * (r * k + c * r);
        if (payload > len) {
            return TL_ERR_LAYOUT;
        }
    }
    return TL_ADAPTER_HEADER_SIZE + TL_ADAPTER_LAYER_SIZE * layers + payload + 4u == len
               ? TL_OK
               : TL_ERR_LAYOUT;
}

/* The checks against this build: model, layers, config. */
static tl_status tl_check_build(const tl_adapter_config *cfg, const uint8_t *head)
{
    uint32_t i;
    int config_differs = head[TL_AD_AT_LOSS] != cfg->loss;
    if (!tl_same(head + TL_AD_AT_SHA, cfg->model_sha256, 32u)) {
        return TL_ERR_FOREIGN;
    }
    if (tl_get16(head + TL_AD_AT_LAYERS) != cfg->n_layers) {
        return TL_ERR_LAYOUT;
    }
    for (i = 0; i < cfg->n_layers; ++i) {
        const uint8_t *d = head + TL_ADAPTER_HEADER_SIZE + TL_ADAPTER_LAYER_SIZE * i;
        const tl_adapter_layer *l = &cfg->layers[i];
        if (tl_get16(d) != l->index || tl_get32(d + 4u) != l->depth ||
            tl_get32(d + 8u) != l->channels) {
            return TL_ERR_LAYOUT;
        }
        config_differs |= tl_get16(d + 2u) != l->rank || tl_get32(d + 12u) != l->s_a ||
                          tl_get32(d + 16u) != l->s_b || tl_get32(d + 20u) != l->s_h ||
                          tl_get32(d + 24u) != l->alpha;
    }
    return config_differs ? TL_ERR_CONFIG : TL_OK;
}

tl_status tl_adapter_verify_stored(const tl_adapter_config *cfg, const tl_storage *st,
                                   uint32_t offset, uint32_t len)
{
    uint8_t head[TL_AD_DESCR_MAX];
    uint8_t tail[4];
    uint32_t crc = 0u, layers;
    tl_status s;
    if (cfg == NULL || st == NULL || tl_adapter_size(cfg) == 0u) {
        return TL_ERR_NULL;
    }
    if (len < TL_ADAPTER_HEADER_SIZE + 4u) {
        return TL_ERR_SHORT;
    }
    s = st->read(st->ctx, offset, head, TL_ADAPTER_HEADER_SIZE);
    if (s != TL_OK) {
        return s;
    }
    if (tl_get32(head) == 0xFFFFFFFFu && tl_get32(head + 4u) == 0xFFFFFFFFu &&
        tl_get32(head + TL_AD_AT_LENGTH) == 0xFFFFFFFFu) {
        return TL_ERR_EMPTY; /* an erased slot */
    }
    if (tl_get32(head + TL_AD_AT_LENGTH) != len) {
        return TL_ERR_LENGTH;
    }
    if (!tl_same(head, tl_ad_magic, 4u)) {
        return TL_ERR_MAGIC;
    }
    if (tl_get16(head + TL_AD_AT_VERSION) != TL_ADAPTER_VERSION) {
        return TL_ERR_VERSION;
    }
    s = tl_stored_crc(st, offset, len - 4u, &crc);
    if (s == TL_OK) {
        s = st->read(st->ctx, offset + len - 4u, tail, 4u);
    }
    if (s != TL_OK) {
        return s;
    }
    if (tl_get32(tail) != crc) {
        return TL_ERR_CRC;
    }
    if (tl_get16(head + TL_AD_AT_FORM) != TL_ADAPTER_FORM_MASTERS) {
        return tl_get16(head + TL_AD_AT_FORM) == 2u ? TL_ERR_UNSUPPORTED : TL_ERR_VERSION;
    }
    layers = tl_get16(head + TL_AD_AT_LAYERS);
    if (layers == 0u || layers > TL_ADAPTER_MAX_LAYERS ||
        TL_ADAPTER_HEADER_SIZE + TL_ADAPTER_LAYER_SIZE * layers + 4u > len) {
        return TL_ERR_LAYOUT;
    }
    s = st->read(st->ctx, offset, head, TL_ADAPTER_HEADER_SIZE + TL_ADAPTER_LAYER_SIZE * layers);
    if (s == TL_OK) {
        s = tl_check_shape(head, len);
    }
    return s != TL_OK ? s : tl_check_build(cfg, head);
}

/* A file in memory as a read-only tl_storage. */
typedef struct {
    const uint8_t *data;
    uint32_t len;
} tl_memory;

static tl_status tl_memory_read(void *ctx, uint32_t offset, uint8_t *dst, uint32_t len)
{
    const tl_memory *m = (const tl_memory *)ctx;
    uint32_t i;
    if (offset > m->len || len > m->len - offset) {
        return TL_ERR_RANGE;
    }
    for (i = 0; i < len; ++i) {
        dst[i] = m->data[offset + i];
    }
    return TL_OK;
}

tl_status tl_adapter_verify(const tl_adapter_config *cfg, const uint8_t *data, uint32_t len)
{
    tl_memory m;
    tl_storage st;
    if (data == NULL) {
        return TL_ERR_NULL;
    }
    m.data = data;
    m.len = len;
    st.ctx = &m;
    st.name = "memory";
    st.size = len;
    st.erase_unit = 1u;
    st.program_unit = 1u;
    st.open = NULL;
    st.read = tl_memory_read;
    st.erase = NULL;
    st.program = NULL;
    return tl_adapter_verify_stored(cfg, &st, 0u, len);
}

/* ------------------------------------------------------------------ checkpoint <-> file */

/* The header and descriptors of this build's file with `updates`. */
static void tl_file_head(const tl_adapter_config *cfg, uint32_t updates, uint8_t *head)
{
    uint32_t i;
    for (i = 0; i < TL_AD_DESCR_MAX; ++i) {
        head[i] = 0u;
    }
    for (i = 0; i < 4u; ++i) {
        head[i] = tl_ad_magic[i];
    }
    tl_put16(head + TL_AD_AT_VERSION, TL_ADAPTER_VERSION);
    tl_put16(head + TL_AD_AT_FORM, TL_ADAPTER_FORM_MASTERS);
    tl_put32(head + TL_AD_AT_LENGTH, tl_adapter_size(cfg));
    for (i = 0; i < 32u; ++i) {
        head[TL_AD_AT_SHA + i] = cfg->model_sha256[i];
    }
    head[TL_AD_AT_LOSS] = cfg->loss;
    tl_put16(head + TL_AD_AT_LAYERS, cfg->n_layers);
    tl_put32(head + TL_AD_AT_UPDATES, updates);
    for (i = 0; i < cfg->n_layers; ++i) {
        uint8_t *d = head + TL_ADAPTER_HEADER_SIZE + TL_ADAPTER_LAYER_SIZE * i;
        const tl_adapter_layer *l = &cfg->layers[i];
        tl_put16(d, l->index);
        tl_put16(d + 2u, l->rank);
        tl_put32(d + 4u, l->depth);
        tl_put32(d + 8u, l->channels);
        tl_put32(d + 12u, l->s_a);
        tl_put32(d + 16u, l->s_b);
        tl_put32(d + 20u, l->s_h);
        tl_put32(d + 24u, l->alpha);
    }
}

/* Whether ckpt_len is this build's inline checkpoint size. */
static int tl_ckpt_fits(const tl_adapter_config *cfg, uint32_t ckpt_len)
{
    uint32_t i, n = TL_CKPT_HEADER_SIZE + 4u;
    for (i = 0; i < cfg->n_layers; ++i) {
        n += tl_ckpt_block(cfg, &cfg->layers[i]);
    }
    return n == ckpt_len;
}

tl_status tl_adapter_from_checkpoint(const tl_adapter_config *cfg, const uint8_t *ckpt,
                                     uint32_t ckpt_len, tl_adapter_sink sink, void *ctx)
{
    uint8_t head[TL_AD_DESCR_MAX];
    uint8_t tail[4];
    const uint8_t *block;
    uint32_t i, crc, n;
    tl_status s;
    if (cfg == NULL || ckpt == NULL || sink == NULL || tl_adapter_size(cfg) == 0u) {
        return TL_ERR_NULL;
    }
    if (!tl_ckpt_fits(cfg, ckpt_len)) {
        return TL_ERR_LAYOUT;
    }
    tl_file_head(cfg, tl_get32(ckpt + TL_CK_AT_UPDATES), head);
    n = TL_ADAPTER_HEADER_SIZE + TL_ADAPTER_LAYER_SIZE * cfg->n_layers;
    crc = tl_crc32(0u, head, n);
    s = sink(ctx, head, n);
    block = ckpt + TL_CKPT_HEADER_SIZE;
    for (i = 0; i < cfg->n_layers && s == TL_OK; ++i) {
        const uint32_t masters = 2u * tl_layer_masters(&cfg->layers[i]);
        crc = tl_crc32(crc, block, masters); /* A [r][K] then B [C][r], int16 LE: as stored */
        s = sink(ctx, block, masters);
        block += tl_ckpt_block(cfg, &cfg->layers[i]);
    }
    tl_put32(tail, crc);
    return s != TL_OK ? s : sink(ctx, tail, 4u);
}

tl_status tl_adapter_into_checkpoint(const tl_adapter_config *cfg, const tl_storage *st,
                                     uint32_t offset, uint8_t *ckpt, uint32_t ckpt_len)
{
    uint8_t head[TL_AD_DESCR_MAX];
    uint8_t want[TL_AD_DESCR_MAX];
    uint8_t tail[4];
    uint8_t *block;
    uint32_t i, j, n, at, crc;
    tl_status s;
    if (cfg == NULL || st == NULL || ckpt == NULL || tl_adapter_size(cfg) == 0u) {
        return TL_ERR_NULL;
    }
    if (!tl_ckpt_fits(cfg, ckpt_len)) {
        return TL_ERR_LAYOUT;
    }
    n = TL_ADAPTER_HEADER_SIZE + TL_ADAPTER_LAYER_SIZE * cfg->n_layers;
    s = st->read(st->ctx, offset, head, n);
    if (s != TL_OK) {
        return s;
    }
    /* this build's header with the file's updates counter and reserved bytes (45, 52..63) */
    tl_file_head(cfg, tl_get32(head + TL_AD_AT_UPDATES), want);
    want[TL_AD_AT_LOSS + 1u] = head[TL_AD_AT_LOSS + 1u];
    for (i = TL_AD_AT_UPDATES + 4u; i < TL_ADAPTER_HEADER_SIZE; ++i) {
        want[i] = head[i];
    }
    if (!tl_same(head, want, n)) { /* not this build's file: say why as the full check does */
        s = tl_adapter_verify_stored(cfg, st, offset, tl_adapter_size(cfg));
        return s != TL_OK ? s : TL_ERR_LAYOUT;
    }
    crc = tl_crc32(0u, head, n);
    block = ckpt + TL_CKPT_HEADER_SIZE;
    at = offset + n;
    for (i = 0; i < cfg->n_layers; ++i) {
        const uint32_t masters = 2u * tl_layer_masters(&cfg->layers[i]);
        const uint32_t size = tl_ckpt_block(cfg, &cfg->layers[i]);
        s = st->read(st->ctx, at, block, masters);
        if (s != TL_OK) {
            return s;
        }
        crc = tl_crc32(crc, block, masters); /* the bytes the trainer will run */
        for (j = masters; j < size; ++j) {
            block[j] = 0u; /* a new adapter starts with no accumulated gradient or momentum */
        }
        at += masters;
        block += size;
    }
    s = st->read(st->ctx, at, tail, 4u);
    if (s != TL_OK) {
        return s;
    }
    if (tl_get32(tail) != crc) {
        return TL_ERR_CRC; /* changed since its check (flash corruption): never run */
    }
    for (i = 0; i < 4u; ++i) {
        ckpt[TL_CK_AT_UPDATES + i] = head[TL_AD_AT_UPDATES + i];
    }
    tl_put32(ckpt + ckpt_len - 4u, tl_crc32(0u, ckpt, ckpt_len - 4u));
    return TL_OK;
}

/* ------------------------------------------------------------------ the store */

tl_status tl_adapter_store_init(tl_adapter_store *s, const tl_storage *region, uint32_t slot_size,
                                uint32_t n_slots)
{
    uint32_t i;
    tl_status status;
    if (s == NULL || region == NULL) {
        return TL_ERR_NULL;
    }
    s->region = region;
    s->unit = region->erase_unit;
    s->slot_size = slot_size;
    s->n_slots = n_slots;
    for (i = 0; i < TL_ADAPTER_MAX_SLOTS; ++i) {
        s->checked[i] = TL_ADAPTER_UNCHECKED;
    }
    if (n_slots > TL_ADAPTER_MAX_SLOTS) {
        return TL_ERR_TOO_LARGE;
    }
    if (s->unit == 0u || slot_size % s->unit != 0u || slot_size == 0u) {
        return TL_ERR_ALIGN;
    }
    if (region->size / 2u < s->unit || n_slots > (region->size - 2u * s->unit) / slot_size) {
        return TL_ERR_TOO_LARGE;
    }
    status = tl_storage_stream_init(&s->stream, region);
    if (status == TL_OK && region->open != NULL) {
        status = region->open(region->ctx);
    }
    return status;
}

uint32_t tl_adapter_slot_offset(const tl_adapter_store *s, uint32_t slot)
{
    return 2u * s->unit + slot * s->slot_size;
}

tl_status tl_adapter_slot_check(tl_adapter_store *s, const tl_adapter_config *cfg, uint32_t slot)
{
    if (s == NULL || cfg == NULL) {
        return TL_ERR_NULL;
    }
    if (slot >= s->n_slots) {
        return TL_ERR_SLOT;
    }
    if (s->checked[slot] == TL_ADAPTER_UNCHECKED) {
        s->checked[slot] = (uint8_t)tl_adapter_verify_stored(
            cfg, s->region, tl_adapter_slot_offset(s, slot), tl_adapter_size(cfg));
    }
    return (tl_status)s->checked[slot];
}

/* Active record copy k: 1 if valid (slot, sequence filled), 0 if not. */
static tl_status tl_record(tl_adapter_store *s, uint32_t k, int *valid, uint32_t *slot,
                           uint32_t *sequence)
{
    uint8_t rec[TL_ADAPTER_RECORD_SIZE];
    const tl_status status =
        s->stream.storage.read(s->stream.storage.ctx, k * s->unit, rec, TL_ADAPTER_RECORD_SIZE);
    *valid = status == TL_OK && tl_same(rec, tl_rec_magic, 4u) &&
             tl_get32(rec + 12u) == tl_crc32(0u, rec, 12u);
    if (*valid) {
        *sequence = tl_get32(rec + 4u);
        *slot = tl_get32(rec + 8u);
    }
    return status;
}

/* The newest valid copy: *copy (2: none), *slot, *sequence. */
static tl_status tl_newest(tl_adapter_store *s, uint32_t *copy, uint32_t *slot, uint32_t *sequence)
{
    uint32_t k;
    *copy = 2u;
    *slot = TL_ADAPTER_NONE;
    *sequence = 0u;
    for (k = 0; k < 2u; ++k) {
        int valid = 0;
        uint32_t sl = 0u, seq = 0u;
        const tl_status status = tl_record(s, k, &valid, &sl, &seq);
        if (status != TL_OK) {
            return status;
        }
        if (valid && (*copy == 2u || tl_sequence_newer(seq, *sequence))) {
            *copy = k;
            *slot = sl;
            *sequence = seq;
        }
    }
    return TL_OK;
}

tl_status tl_adapter_active(tl_adapter_store *s, uint32_t *slot, uint32_t *sequence)
{
    uint32_t copy, seq;
    tl_status status;
    if (s == NULL || slot == NULL) {
        return TL_ERR_NULL;
    }
    status = tl_newest(s, &copy, slot, &seq);
    if (sequence != NULL) {
        *sequence = seq;
    }
    if (status == TL_OK && copy == 2u) {
        return TL_ERR_EMPTY;
    }
    return status;
}

tl_status tl_adapter_select(tl_adapter_store *s, const tl_adapter_config *cfg, uint32_t slot)
{
    uint8_t rec[TL_ADAPTER_RECORD_SIZE];
    uint32_t copy, current, seq, i;
    tl_status status;
    if (s == NULL || cfg == NULL) {
        return TL_ERR_NULL;
    }
    if (slot != TL_ADAPTER_NONE && slot >= s->n_slots) {
        return TL_ERR_SLOT;
    }
    if (slot != TL_ADAPTER_NONE) {
        status = tl_adapter_slot_check(s, cfg, slot);
        if (status != TL_OK) {
            return status;
        }
    }
    status = tl_newest(s, &copy, &current, &seq);
    if (status != TL_OK) {
        return status;
    }
    for (i = 0; i < 4u; ++i) {
        rec[i] = tl_rec_magic[i];
    }
    tl_put32(rec + 4u, copy == 2u ? 1u : seq + 1u);
    tl_put32(rec + 8u, slot);
    tl_put32(rec + 12u, tl_crc32(0u, rec, 12u));
    copy = copy == 0u ? 1u : 0u; /* the copy that is not the newest */
    status = s->stream.storage.erase(s->stream.storage.ctx, copy * s->unit, s->unit);
    if (status == TL_OK) {
        status = s->stream.storage.program(s->stream.storage.ctx, copy * s->unit, rec,
                                           TL_ADAPTER_RECORD_SIZE);
    }
    if (status == TL_OK) {
        status = tl_storage_stream_flush(&s->stream);
    }
    return status;
}

/* ------------------------------------------------------------------ uploads */

tl_status tl_adapter_upload_begin(tl_adapter_upload *u, tl_adapter_store *s,
                                  const tl_adapter_config *cfg, uint32_t slot, uint32_t total)
{
    uint32_t active = TL_ADAPTER_NONE;
    tl_status status;
    if (u == NULL || s == NULL || cfg == NULL) {
        return TL_ERR_NULL;
    }
    u->open = 0;
    if (slot >= s->n_slots) {
        return TL_ERR_SLOT;
    }
    status = tl_adapter_active(s, &active, NULL);
    if (status != TL_OK && status != TL_ERR_EMPTY) {
        return status;
    }
    if (active == slot) {
        return TL_ERR_SLOT; /* never overwrite the adapter in use */
    }
    if (total != tl_adapter_size(cfg)) {
        return TL_ERR_LAYOUT;
    }
    if (total > s->slot_size) {
        return TL_ERR_TOO_LARGE;
    }
    s->checked[slot] = TL_ADAPTER_UNCHECKED; /* its file is about to change */
    status = s->stream.storage.erase(s->stream.storage.ctx, tl_adapter_slot_offset(s, slot),
                                     s->slot_size);
    if (status != TL_OK) {
        return status;
    }
    u->store = s;
    u->cfg = cfg;
    u->slot = slot;
    u->total = total;
    u->received = 0u;
    u->next = 0u;
    u->open = 1;
    return TL_OK;
}

tl_status tl_adapter_upload_chunk(tl_adapter_upload *u, uint32_t index, const uint8_t *data,
                                  uint32_t n, uint32_t crc)
{
    tl_adapter_store *s;
    tl_status status;
    if (u == NULL || (data == NULL && n > 0u)) {
        return TL_ERR_NULL;
    }
    if (!u->open || index != u->next) {
        return TL_ERR_ORDER;
    }
    if (tl_crc32(0u, data, n) != crc) {
        return TL_ERR_CRC;
    }
    if (n > u->total - u->received) {
        return TL_ERR_LENGTH;
    }
    s = u->store;
    status = s->stream.storage.program(s->stream.storage.ctx,
                                       tl_adapter_slot_offset(s, u->slot) + u->received, data, n);
    if (status != TL_OK) {
        u->open = 0; /* the medium failed: start again */
        return status;
    }
    u->received += n;
    u->next++;
    return TL_OK;
}

tl_status tl_adapter_upload_end(tl_adapter_upload *u)
{
    tl_adapter_store *s;
    tl_status status;
    if (u == NULL) {
        return TL_ERR_NULL;
    }
    if (!u->open) {
        return TL_ERR_ORDER;
    }
    u->open = 0;
    if (u->received != u->total) {
        return TL_ERR_LENGTH;
    }
    s = u->store;
    status = tl_storage_stream_flush(&s->stream);
    if (status != TL_OK) {
        return status;
    }
    s->checked[u->slot] = TL_ADAPTER_UNCHECKED;
    return tl_adapter_slot_check(s, u->cfg, u->slot); /* the slot's one full check */
}

const char *tl_status_text(tl_status status)
{
    switch (status) {
    case TL_OK:
        return "ok";
    case TL_ERR_NULL:
    case TL_ERR_SHAPE:
    case TL_ERR_PARAM:
        return "bad call";
    case TL_ERR_UNSUPPORTED:
        return "not in this build (it accepts form 1, int16 masters, only)";
    case TL_ERR_ARENA:
        return "buffer too small";
    case TL_ERR_SHORT:
    case TL_ERR_LENGTH:
        return "wrong length";
    case TL_ERR_MAGIC:
        return "not an adapter file";
    case TL_ERR_CRC:
        return "CRC mismatch";
    case TL_ERR_VERSION:
        return "another format version or form";
    case TL_ERR_FOREIGN:
        return "made for another base model (SHA-256 differs)";
    case TL_ERR_LAYOUT:
        return "other layers or sizes than this build's";
    case TL_ERR_CONFIG:
        return "another LoRA config (rank, scales, alpha or loss)";
    case TL_ERR_EMPTY:
        return "nothing stored";
    case TL_ERR_TOO_LARGE:
        return "does not fit a slot";
    case TL_ERR_SLOT:
        return "no such slot on this board, or it is the active one";
    case TL_ERR_ORDER:
        return "chunk out of order (or no upload in progress)";
    case TL_ERR_SPLIT:
    case TL_ERR_IO:
    case TL_ERR_RANGE:
    case TL_ERR_ALIGN:
    case TL_ERR_OPEN:
        return "storage error";
    }
    return "?";
}
