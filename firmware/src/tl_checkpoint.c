/*
 * tinylora runtime: checkpoints (see tl_checkpoint.h; reference: tinylora/checkpoint.py).
 */
#include "tl_checkpoint.h"

#include "tl_quant.h"

#define TL_CKPT_SPLIT_RECORD (TL_CKPT_HEADER_SIZE + 8u + 4u) /* header, (length, CRC), CRC */
#define TL_CKPT_CHUNK 64u                                    /* stack buffer for medium reads */

/* Header field offsets. */
#define TL_AT_VERSION 4u
#define TL_AT_FLAGS 6u
#define TL_AT_LENGTH 8u
#define TL_AT_SEQUENCE 12u
#define TL_AT_BINDING 16u
#define TL_AT_STEP 24u
#define TL_AT_RNG 28u
#define TL_AT_UPDATES 32u
#define TL_AT_WINDOW 36u
#define TL_AT_LAYERS 38u

static const uint8_t tl_ckpt_magic[4] = { 'T', 'L', 'C', 'K' };

/* ------------------------------------------------------------------ CRC-32 */

/* tl_crc_table[n]: the CRC register after shifting the byte n through it, eight steps of the
 * reflected polynomial 0xEDB88320 (entry n = n, then 8 times c = (c >> 1) ^ (c & 1 ?
 * 0xEDB88320 : 0)): zlib's table. 1 KB of const data (flash on a device). One table look-up
 * per byte instead of eight shift-and-xor steps: the checkpoint and adapter checks of every
 * slot switch and boot run several times faster (docs/adapter.md, "Switch cost"). */
static const uint32_t tl_crc_table[256] = {
    0x00000000u, 0x77073096u, 0xEE0E612Cu, 0x990951BAu, 0x076DC419u, 0x706AF48Fu, 0xE963A535u,
    0x9E6495A3u, 0x0EDB8832u, 0x79DCB8A4u, 0xE0D5E91Eu, 0x97D2D988u, 0x09B64C2Bu, 0x7EB17CBDu,
    0xE7B82D07u, 0x90BF1D91u, 0x1DB71064u, 0x6AB020F2u, 0xF3B97148u, 0x84BE41DEu, 0x1ADAD47Du,
    0x6DDDE4EBu, 0xF4D4B551u, 0x83D385C7u, 0x136C9856u, 0x646BA8C0u, 0xFD62F97Au, 0x8A65C9ECu,
    0x14015C4Fu, 0x63066CD9u, 0xFA0F3D63u, 0x8D080DF5u, 0x3B6E20C8u, 0x4C69105Eu, 0xD56041E4u,
    0xA2677172u, 0x3C03E4D1u, 0x4B04D447u, 0xD20D85FDu, 0xA50AB56Bu, 0x35B5A8FAu, 0x42B2986Cu,
    0xDBBBC9D6u, 0xACBCF940u, 0x32D86CE3u, 0x45DF5C75u, 0xDCD60DCFu, 0xABD13D59u, 0x26D930ACu,
    0x51DE003Au, 0xC8D75180u, 0xBFD06116u, 0x21B4F4B5u, 0x56B3C423u, 0xCFBA9599u, 0xB8BDA50Fu,
    0x2802B89Eu, 0x5F058808u, 0xC60CD9B2u, 0xB10BE924u, 0x2F6F7C87u, 0x58684C11u, 0xC1611DABu,
    0xB6662D3Du, 0x76DC4190u, 0x01DB7106u, 0x98D220BCu, 0xEFD5102Au, 0x71B18589u, 0x06B6B51Fu,
    0x9FBFE4A5u, 0xE8B8D433u, 0x7807C9A2u, 0x0F00F934u, 0x9609A88Eu, 0xE10E9818u, 0x7F6A0DBBu,
    0x086D3D2Du, 0x91646C97u, 0xE6635C01u, 0x6B6B51F4u, 0x1C6C6162u, 0x856530D8u, 0xF262004Eu,
    0x6C0695EDu, 0x1B01A57Bu, 0x8208F4C1u, 0xF50FC457u, 0x65B0D9C6u, 0x12B7E950u, 0x8BBEB8EAu,
    0xFCB9887Cu, 0x62DD1DDFu, 0x15DA2D49u, 0x8CD37CF3u, 0xFBD44C65u, 0x4DB26158u, 0x3AB551CEu,
    0xA3BC0074u, 0xD4BB30E2u, 0x4ADFA541u, 0x3DD895D7u, 0xA4D1C46Du, 0xD3D6F4FBu, 0x4369E96Au,
    0x346ED9FCu, 0xAD678846u, 0xDA60B8D0u, 0x44042D73u, 0x33031DE5u, 0xAA0A4C5Fu, 0xDD0D7CC9u,
    0x5005713Cu, 0x270241AAu, 0xBE0B1010u, 0xC90C2086u, 0x5768B525u, 0x206F85B3u, 0xB966D409u,
    0xCE61E49Fu, 0x5EDEF90Eu, 0x29D9C998u, 0xB0D09822u, 0xC7D7A8B4u, 0x59B33D17u, 0x2EB40D81u,
    0xB7BD5C3Bu, 0xC0BA6CADu, 0xEDB88320u, 0x9ABFB3B6u, 0x03B6E20Cu, 0x74B1D29Au, 0xEAD54739u,
    0x9DD277AFu, 0x04DB2615u, 0x73DC1683u, 0xE3630B12u, 0x94643B84u, 0x0D6D6A3Eu, 0x7A6A5AA8u,
    0xE40ECF0Bu, 0x9309FF9Du, 0x0A00AE27u, 0x7D079EB1u, 0xF00F9344u, 0x8708A3D2u, 0x1E01F268u,
    0x6906C2FEu, 0xF762575Du, 0x806567CBu, 0x196C3671u, 0x6E6B06E7u, 0xFED41B76u, 0x89D32BE0u,
    0x10DA7A5Au, 0x67DD4ACCu, 0xF9B9DF6Fu, 0x8EBEEFF9u, 0x17B7BE43u, 0x60B08ED5u, 0xD6D6A3E8u,
    0xA1D1937Eu, 0x38D8C2C4u, 0x4FDFF252u, 0xD1BB67F1u, 0xA6BC5767u, 0x3FB506DDu, 0x48B2364Bu,
    0xD80D2BDAu, 0xAF0A1B4Cu, 0x36034AF6u, 0x41047A60u, 0xDF60EFC3u, 0xA867DF55u, 0x316E8EEFu,
    0x4669BE79u, 0xCB61B38Cu, 0xBC66831Au, 0x256FD2A0u, 0x5268E236u, 0xCC0C7795u, 0xBB0B4703u,
    0x220216B9u, 0x5505262Fu, 0xC5BA3BBEu, 0xB2BD0B28u, 0x2BB45A92u, 0x5CB36A04u, 0xC2D7FFA7u,
    0xB5D0CF31u, 0x2CD99E8Bu, 0x5BDEAE1Du, 0x9B64C2B0u, 0xEC63F226u, 0x756AA39Cu, 0x026D930Au,
    0x9C0906A9u, 0xEB0E363Fu, 0x72076785u, 0x05005713u, 0x95BF4A82u, 0xE2B87A14u, 0x7BB12BAEu,
    0x0CB61B38u, 0x92D28E9Bu, 0xE5D5BE0Du, 0x7CDCEFB7u, 0x0BDBDF21u, 0x86D3D2D4u, 0xF1D4E242u,
    0x68DDB3F8u, 0x1FDA836Eu, 0x81BE16CDu, 0xF6B9265Bu, 0x6FB077E1u, 0x18B74777u, 0x88085AE6u,
    0xFF0F6A70u, 0x66063BCAu, 0x11010B5Cu, 0x8F659EFFu, 0xF862AE69u, 0x616BFFD3u, 0x166CCF45u,
    0xA00AE278u, 0xD70DD2EEu, 0x4E048354u, 0x3903B3C2u, 0xA7672661u, 0xD06016F7u, 0x4969474Du,
    0x3E6E77DBu, 0xAED16A4Au, 0xD9D65ADCu, 0x40DF0B66u, 0x37D83BF0u, 0xA9BCAE53u, 0xDEBB9EC5u,
    0x47B2CF7Fu, 0x30B5FFE9u, 0xBDBDF21Cu, 0xCABAC28Au, 0x53B39330u, 0x24B4A3A6u, 0xBAD03605u,
    0xCDD70693u, 0x54DE5729u, 0x23D967BFu, 0xB3667A2Eu, 0xC4614AB8u, 0x5D681B02u, 0x2A6F2B94u,
    0xB40BBE37u, 0xC30C8EA1u, 0x5A05DF1Bu, 0x2D02EF8Du,
};

uint32_t tl_crc32(uint32_t crc, const uint8_t *data, size_t len)
{
    size_t i;
    crc = ~crc;
    for (i = 0; i < len; ++i) {
        crc = (crc >> 8) ^ tl_crc_table[(crc ^ data[i]) & 0xFFu];
    }
    return ~crc;
}

/* ------------------------------------------------------------------ little-endian fields */

void tl_put16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

void tl_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

uint32_t tl_get16(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8);
}

uint32_t tl_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t tl_get64(const uint8_t *p)
{
    return (uint64_t)tl_get32(p) | ((uint64_t)tl_get32(p + 4) << 32);
}

/* Two's complement values from their little-endian bytes (no implementation-defined
 * unsigned -> signed conversion). */
static int16_t tl_i16(uint32_t u)
{
    return (int16_t)(u < 0x8000u ? (int32_t)u : (int32_t)u - 0x10000);
}

static int tl_magic_ok(const uint8_t *p)
{
    return p[0] == tl_ckpt_magic[0] && p[1] == tl_ckpt_magic[1] && p[2] == tl_ckpt_magic[2] &&
           p[3] == tl_ckpt_magic[3];
}

/* ------------------------------------------------------------------ encode / decode */

/* Payload bytes of one layer under `flags`, or 0 if the layer is malformed. */
static uint64_t tl_layer_bytes(const tl_ckpt_layer *l, uint32_t flags)
{
    uint64_t n;
    if (l->a_size < 0 || l->b_size < 0) {
        return 0u;
    }
    n = (uint64_t)(uint32_t)l->a_size + (uint32_t)l->b_size;
    return 2u * n + ((flags & TL_CKPT_FLAG_ACCUM) ? 4u * n : 0u) +
           ((flags & TL_CKPT_FLAG_MOMENTUM) ? 4u * n : 0u);
}

static uint64_t tl_payload_bytes(const tl_ckpt_state *s)
{
    uint64_t total = 0u;
    uint32_t i;
    for (i = 0; i < s->n_layers; ++i) {
        total += tl_layer_bytes(&s->layers[i], s->flags);
    }
    return total;
}

static int tl_state_ok(const tl_ckpt_state *s)
{
    uint32_t i;
    if (s->n_layers > 0u && s->layers == NULL) {
        return 0;
    }
    if ((s->flags & ~(uint32_t)(TL_CKPT_FLAG_ACCUM | TL_CKPT_FLAG_MOMENTUM)) != 0u) {
        return 0;
    }
    for (i = 0; i < s->n_layers; ++i) {
        const tl_ckpt_layer *l = &s->layers[i];
        if (l->a_size < 0 || l->b_size < 0 || (l->a_size > 0 && l->a_master == NULL) ||
            (l->b_size > 0 && l->b_master == NULL)) {
            return 0;
        }
        if ((s->flags & TL_CKPT_FLAG_ACCUM) &&
            ((l->a_size > 0 && l->acc_a == NULL) || (l->b_size > 0 && l->acc_b == NULL))) {
            return 0;
        }
        if ((s->flags & TL_CKPT_FLAG_MOMENTUM) &&
            ((l->a_size > 0 && l->mom_a == NULL) || (l->b_size > 0 && l->mom_b == NULL))) {
            return 0;
        }
    }
    return tl_payload_bytes(s) <= 0xFFFFFFFFu - TL_CKPT_HEADER_SIZE - 4u;
}

uint32_t tl_checkpoint_size(const tl_ckpt_state *state)
{
    if (state == NULL || !tl_state_ok(state)) {
        return 0u;
    }
    return (uint32_t)tl_payload_bytes(state) + TL_CKPT_HEADER_SIZE + 4u;
}

static uint8_t *tl_put_i16s(uint8_t *p, const int16_t *v, int32_t n)
{
    int32_t i;
    for (i = 0; i < n; ++i, p += 2) {
        tl_put16(p, (uint32_t)(uint16_t)v[i]);
    }
    return p;
}

static uint8_t *tl_put_i32s(uint8_t *p, const int32_t *v, int32_t n)
{
    int32_t i;
    for (i = 0; i < n; ++i, p += 4) {
        tl_put32(p, (uint32_t)v[i]);
    }
    return p;
}

tl_status tl_checkpoint_encode(const tl_ckpt_state *state, uint32_t sequence, uint8_t *out,
                               uint32_t cap, uint32_t *len)
{
    uint32_t size, i;
    uint8_t *p;
    if (state == NULL || out == NULL || len == NULL) {
        return TL_ERR_NULL;
    }
    size = tl_checkpoint_size(state);
    if (size == 0u) {
        return TL_ERR_LAYOUT;
    }
    if (cap < size) {
        return TL_ERR_ARENA;
    }
    out[0] = tl_ckpt_magic[0];
    out[1] = tl_ckpt_magic[1];
    out[2] = tl_ckpt_magic[2];
    out[3] = tl_ckpt_magic[3];
    tl_put16(out + TL_AT_VERSION, TL_CKPT_VERSION);
    tl_put16(out + TL_AT_FLAGS, state->flags);
    tl_put32(out + TL_AT_LENGTH, size);
    tl_put32(out + TL_AT_SEQUENCE, sequence);
    tl_put32(out + TL_AT_BINDING, (uint32_t)state->binding);
    tl_put32(out + TL_AT_BINDING + 4u, (uint32_t)(state->binding >> 32));
    tl_put32(out + TL_AT_STEP, state->step_count);
    tl_put32(out + TL_AT_RNG, state->rng_state);
    tl_put32(out + TL_AT_UPDATES, state->updates);
    tl_put16(out + TL_AT_WINDOW, state->window);
    tl_put16(out + TL_AT_LAYERS, state->n_layers);
    p = out + TL_CKPT_HEADER_SIZE;
    for (i = 0; i < state->n_layers; ++i) {
        const tl_ckpt_layer *l = &state->layers[i];
        p = tl_put_i16s(p, l->a_master, l->a_size);
        p = tl_put_i16s(p, l->b_master, l->b_size);
        if (state->flags & TL_CKPT_FLAG_ACCUM) {
            p = tl_put_i32s(p, l->acc_a, l->a_size);
            p = tl_put_i32s(p, l->acc_b, l->b_size);
        }
        if (state->flags & TL_CKPT_FLAG_MOMENTUM) {
            p = tl_put_i32s(p, l->mom_a, l->a_size);
            p = tl_put_i32s(p, l->mom_b, l->b_size);
        }
    }
    tl_put32(p, tl_crc32(0u, out, size - 4u));
    *len = size;
    return TL_OK;
}

tl_status tl_checkpoint_verify(const uint8_t *data, uint32_t len)
{
    if (data == NULL) {
        return TL_ERR_NULL;
    }
    if (len < TL_CKPT_HEADER_SIZE + 4u) {
        return TL_ERR_SHORT;
    }
    if (!tl_magic_ok(data)) {
        return TL_ERR_MAGIC;
    }
    if (tl_get32(data + len - 4u) != tl_crc32(0u, data, len - 4u)) {
        return TL_ERR_CRC;
    }
    if (tl_get32(data + TL_AT_LENGTH) != len) {
        return TL_ERR_LENGTH;
    }
    return TL_OK;
}

static const uint8_t *tl_get_i16s(const uint8_t *p, int16_t *v, int32_t n)
{
    int32_t i;
    for (i = 0; i < n; ++i, p += 2) {
        v[i] = tl_i16(tl_get16(p));
    }
    return p;
}

static const uint8_t *tl_get_i32s(const uint8_t *p, int32_t *v, int32_t n)
{
    int32_t i;
    for (i = 0; i < n; ++i, p += 4) {
        v[i] = tl_wrap32(tl_get32(p));
    }
    return p;
}

static void tl_zero_i32s(int32_t *v, int32_t n)
{
    int32_t i;
    if (v != NULL) {
        for (i = 0; i < n; ++i) {
            v[i] = 0;
        }
    }
}

/* lora.to_int8 of the restored masters (tl_train.h's tl_refresh_view_s8, kept local so the
 * checkpoint module links on its own). */
static void tl_view(const int16_t *master, int8_t *view, int32_t n)
{
    int32_t i;
    if (view == NULL) {
        return;
    }
    for (i = 0; i < n; ++i) {
        /* rdbp(master, 8): floor((m + 128) / 256) except that ties round away from zero */
        const int32_t m = master[i];
        const int32_t floor_div = m >= 0 ? (m >> 8) : ~(~m >> 8);
        const uint32_t remainder = (uint32_t)m & 0xFFu;
        const int32_t q = floor_div + (remainder > (0x7Fu + (m < 0 ? 1u : 0u)) ? 1 : 0);
        view[i] = (int8_t)(q > 127 ? 127 : (q < -127 ? -127 : q));
    }
}

tl_status tl_checkpoint_decode(const uint8_t *data, uint32_t len, tl_ckpt_state *state)
{
    tl_status s;
    uint32_t flags, i;
    const uint8_t *p;
    if (data == NULL || state == NULL) {
        return TL_ERR_NULL;
    }
    s = tl_checkpoint_verify(data, len);
    if (s != TL_OK) {
        return s;
    }
    if (tl_get16(data + TL_AT_VERSION) != TL_CKPT_VERSION) {
        return TL_ERR_VERSION;
    }
    flags = tl_get16(data + TL_AT_FLAGS);
    if (flags & TL_CKPT_FLAG_SPLIT) {
        return TL_ERR_SPLIT;
    }
    if (tl_get64(data + TL_AT_BINDING) != state->binding) {
        return TL_ERR_FOREIGN;
    }
    if (flags != state->flags || tl_get16(data + TL_AT_LAYERS) != state->n_layers ||
        !tl_state_ok(state) ||
        tl_payload_bytes(state) != (uint64_t)len - TL_CKPT_HEADER_SIZE - 4u) {
        return TL_ERR_LAYOUT;
    }
    /* Everything checks out: restore. */
    p = data + TL_CKPT_HEADER_SIZE;
    for (i = 0; i < state->n_layers; ++i) {
        const tl_ckpt_layer *l = &state->layers[i];
        p = tl_get_i16s(p, l->a_master, l->a_size);
        p = tl_get_i16s(p, l->b_master, l->b_size);
        if (flags & TL_CKPT_FLAG_ACCUM) {
            p = tl_get_i32s(p, l->acc_a, l->a_size);
            p = tl_get_i32s(p, l->acc_b, l->b_size);
        } else {
            tl_zero_i32s(l->acc_a, l->a_size);
            tl_zero_i32s(l->acc_b, l->b_size);
        }
        if (flags & TL_CKPT_FLAG_MOMENTUM) {
            p = tl_get_i32s(p, l->mom_a, l->a_size);
            p = tl_get_i32s(p, l->mom_b, l->b_size);
        }
        tl_view(l->a_master, l->a_view, l->a_size);
        tl_view(l->b_master, l->b_view, l->b_size);
    }
    state->step_count = tl_get32(data + TL_AT_STEP);
    state->rng_state = tl_get32(data + TL_AT_RNG);
    state->updates = tl_get32(data + TL_AT_UPDATES);
    state->window = (uint16_t)tl_get16(data + TL_AT_WINDOW);
    return TL_OK;
}

/* ------------------------------------------------------------------ two-slot store */

typedef struct {
    uint32_t sequence;
    uint32_t flags;
    uint32_t length;      /* of the record in its slot */
    uint32_t payload_len; /* split records: the payload in the adapter slot */
} tl_slot_info;

static uint32_t tl_record_at(const tl_ckpt_store *st, uint32_t k)
{
    return st->offset + k * st->record_slot;
}

static uint32_t tl_adapter_at(const tl_ckpt_store *st, uint32_t k)
{
    return st->offset + 2u * st->record_slot + k * st->adapter_slot;
}

static int tl_storage_ok(const tl_ckpt_store *st)
{
    const tl_storage *m = st != NULL ? st->storage : NULL;
    return m != NULL && m->read != NULL && m->erase != NULL && m->program != NULL;
}

static tl_status tl_read(const tl_ckpt_store *st, uint32_t offset, uint8_t *dst, uint32_t len)
{
    return st->storage->read(st->storage->ctx, offset, dst, len);
}

static tl_status tl_erase(const tl_ckpt_store *st, uint32_t offset, uint32_t len)
{
    return st->storage->erase(st->storage->ctx, offset, len);
}

static tl_status tl_program(const tl_ckpt_store *st, uint32_t offset, const uint8_t *src,
                            uint32_t len)
{
    return st->storage->program(st->storage->ctx, offset, src, len);
}

/* CRC-32 of len medium bytes at offset; -1 on a read error. */
static int tl_medium_crc(const tl_ckpt_store *st, uint32_t offset, uint32_t len, uint32_t *crc)
{
    uint8_t chunk[TL_CKPT_CHUNK];
    uint32_t c = 0u;
    while (len > 0u) {
        const uint32_t n = len < TL_CKPT_CHUNK ? len : TL_CKPT_CHUNK;
        if (tl_read(st, offset, chunk, n) != TL_OK) {
            return -1;
        }
        c = tl_crc32(c, chunk, n);
        offset += n;
        len -= n;
    }
    *crc = c;
    return 0;
}

/* CheckpointStore._read_record + the split check of _latest: 1 if slot k holds a complete
 * checkpoint (info filled), 0 if not, -1 on a read error. */
static int tl_slot_complete(const tl_ckpt_store *st, uint32_t k, tl_slot_info *info)
{
    uint8_t head[TL_CKPT_SPLIT_RECORD];
    const uint32_t at = tl_record_at(st, k);
    uint32_t length, crc, payload_crc;
    if (tl_read(st, at, head, TL_AT_LENGTH + 4u) != TL_OK) {
        return -1;
    }
    if (!tl_magic_ok(head)) {
        return 0;
    }
    length = tl_get32(head + TL_AT_LENGTH);
    if (length < TL_CKPT_HEADER_SIZE + 4u || length > st->record_slot) {
        return 0;
    }
    if (tl_medium_crc(st, at, length - 4u, &crc) != 0 ||
        tl_read(st, at + length - 4u, head, 4u) != TL_OK) {
        return -1;
    }
    if (tl_get32(head) != crc) {
        return 0;
    }
    if (tl_read(st, at, head, length < TL_CKPT_SPLIT_RECORD ? length : TL_CKPT_SPLIT_RECORD) !=
        TL_OK) {
        return -1;
    }
    info->sequence = tl_get32(head + TL_AT_SEQUENCE);
    info->flags = tl_get16(head + TL_AT_FLAGS);
    info->length = length;
    info->payload_len = 0u;
    if (info->flags & TL_CKPT_FLAG_SPLIT) {
        if (length != TL_CKPT_SPLIT_RECORD) {
            return 0;
        }
        info->payload_len = tl_get32(head + TL_CKPT_HEADER_SIZE);
        if (info->payload_len > st->adapter_slot) {
            return 0;
        }
        if (tl_medium_crc(st, tl_adapter_at(st, k), info->payload_len, &payload_crc) != TL_OK) {
            return -1;
        }
        if (payload_crc != tl_get32(head + TL_CKPT_HEADER_SIZE + 4u)) {
            return 0;
        }
    }
    return 1;
}

int tl_sequence_newer(uint32_t a, uint32_t b)
{
    const uint32_t distance = a - b;
    return distance != 0u && distance < 0x80000000u;
}

/* CheckpointStore._latest: *found = 0 when neither slot is complete. */
static tl_status tl_latest(const tl_ckpt_store *st, int *found, uint32_t *slot, tl_slot_info *best)
{
    uint32_t k;
    *found = 0;
    for (k = 0; k < 2u; ++k) {
        tl_slot_info info;
        const int ok = tl_slot_complete(st, k, &info);
        if (ok < 0) {
            return TL_ERR_IO;
        }
        if (ok && (!*found || tl_sequence_newer(info.sequence, best->sequence))) {
            *found = 1;
            *slot = k;
            *best = info;
        }
    }
    return TL_OK;
}

static tl_status tl_store_check(const tl_ckpt_store *st)
{
    if (!tl_storage_ok(st)) {
        return TL_ERR_NULL;
    }
    if (st->record_slot < TL_CKPT_SPLIT_RECORD) {
        return TL_ERR_ARENA; /* a record slot must hold at least a split record */
    }
    return TL_OK;
}

tl_status tl_ckpt_store_save(const tl_ckpt_store *st, const uint8_t *checkpoint, uint32_t len)
{
    uint8_t head[TL_CKPT_SPLIT_RECORD];
    uint8_t tail[4];
    tl_slot_info latest;
    uint32_t k = 0u, sequence = 1u, payload_len, i;
    int found;
    tl_status s = tl_store_check(st);
    if (s != TL_OK) {
        return s;
    }
    if (checkpoint == NULL) {
        return TL_ERR_NULL;
    }
    s = tl_checkpoint_verify(checkpoint, len);
    if (s != TL_OK) {
        return s;
    }
    s = tl_latest(st, &found, &k, &latest);
    if (s != TL_OK) {
        return s;
    }
    if (found) {
        k = 1u - k;
        sequence = latest.sequence + 1u;
    }
    for (i = 0; i < TL_CKPT_HEADER_SIZE; ++i) {
        head[i] = checkpoint[i];
    }
    tl_put32(head + TL_AT_SEQUENCE, sequence);
    payload_len = len - TL_CKPT_HEADER_SIZE - 4u;
    if (len <= st->record_slot) {
        /* inline: the same record with the new sequence number and CRC */
        uint32_t crc = tl_crc32(0u, head, TL_CKPT_HEADER_SIZE);
        crc = tl_crc32(crc, checkpoint + TL_CKPT_HEADER_SIZE, payload_len);
        tl_put32(tail, crc);
        if (tl_erase(st, tl_record_at(st, k), st->record_slot) != TL_OK ||
            tl_program(st, tl_record_at(st, k), head, TL_CKPT_HEADER_SIZE) != TL_OK ||
            (payload_len > 0u &&
             tl_program(st, tl_record_at(st, k) + TL_CKPT_HEADER_SIZE,
                        checkpoint + TL_CKPT_HEADER_SIZE, payload_len) != TL_OK) ||
            tl_program(st, tl_record_at(st, k) + len - 4u, tail, 4u) != TL_OK) {
            return TL_ERR_IO;
        }
        return TL_OK;
    }
    if (payload_len > st->adapter_slot) {
        return TL_ERR_TOO_LARGE;
    }
    /* split: the payload to the adapter slot first, then the record that points at it */
    tl_put16(head + TL_AT_FLAGS, tl_get16(head + TL_AT_FLAGS) | TL_CKPT_FLAG_SPLIT);
    tl_put32(head + TL_AT_LENGTH, TL_CKPT_SPLIT_RECORD);
    tl_put32(head + TL_CKPT_HEADER_SIZE, payload_len);
    tl_put32(head + TL_CKPT_HEADER_SIZE + 4u,
             tl_crc32(0u, checkpoint + TL_CKPT_HEADER_SIZE, payload_len));
    tl_put32(head + TL_CKPT_HEADER_SIZE + 8u, tl_crc32(0u, head, TL_CKPT_HEADER_SIZE + 8u));
    if (tl_erase(st, tl_adapter_at(st, k), st->adapter_slot) != TL_OK ||
        tl_program(st, tl_adapter_at(st, k), checkpoint + TL_CKPT_HEADER_SIZE, payload_len) !=
            TL_OK ||
        tl_erase(st, tl_record_at(st, k), st->record_slot) != TL_OK ||
        tl_program(st, tl_record_at(st, k), head, TL_CKPT_SPLIT_RECORD) != TL_OK) {
        return TL_ERR_IO;
    }
    return TL_OK;
}

tl_status tl_ckpt_store_load(const tl_ckpt_store *st, uint8_t *out, uint32_t cap, uint32_t *len,
                             uint32_t *sequence)
{
    tl_slot_info best;
    uint32_t k = 0u, size;
    int found;
    tl_status s = tl_store_check(st);
    if (s != TL_OK) {
        return s;
    }
    if (out == NULL || len == NULL) {
        return TL_ERR_NULL;
    }
    s = tl_latest(st, &found, &k, &best);
    if (s != TL_OK) {
        return s;
    }
    if (!found) {
        return TL_ERR_EMPTY;
    }
    if (!(best.flags & TL_CKPT_FLAG_SPLIT)) {
        if (cap < best.length) {
            return TL_ERR_ARENA;
        }
        if (tl_read(st, tl_record_at(st, k), out, best.length) != TL_OK) {
            return TL_ERR_IO;
        }
        size = best.length;
    } else {
        size = TL_CKPT_HEADER_SIZE + best.payload_len + 4u;
        if (cap < size) {
            return TL_ERR_ARENA;
        }
        if (tl_read(st, tl_record_at(st, k), out, TL_CKPT_HEADER_SIZE) != TL_OK ||
            (best.payload_len > 0u && tl_read(st, tl_adapter_at(st, k), out + TL_CKPT_HEADER_SIZE,
                                              best.payload_len) != TL_OK)) {
            return TL_ERR_IO;
        }
        tl_put16(out + TL_AT_FLAGS, best.flags & ~(uint32_t)TL_CKPT_FLAG_SPLIT);
        tl_put32(out + TL_AT_LENGTH, size);
        tl_put32(out + size - 4u, tl_crc32(0u, out, size - 4u));
    }
    *len = size;
    if (sequence != NULL) {
        *sequence = best.sequence;
    }
    return TL_OK;
}
