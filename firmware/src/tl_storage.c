/*
 * tl_storage: argument checks shared by every implementation, the RAM implementation, and
 * byte-sized programs over whole program units (tl_storage_stream). See tl_storage.h.
 */
#include "tl_storage.h"

tl_status tl_storage_check(const tl_storage *st, uint32_t offset, uint32_t len, uint32_t unit)
{
    if (offset > st->size || len > st->size - offset) {
        return TL_ERR_RANGE;
    }
    if (unit > 1u && (offset % unit != 0u || len % unit != 0u)) {
        return TL_ERR_ALIGN;
    }
    return TL_OK;
}

static tl_status tl_ram_open(void *ctx)
{
    (void)ctx;
    return TL_OK;
}

static tl_status tl_ram_read(void *ctx, uint32_t offset, uint8_t *dst, uint32_t len)
{
    const tl_storage_ram *ram = (const tl_storage_ram *)ctx;
    uint32_t i;
    const tl_status status = tl_storage_check(&ram->storage, offset, len, 1u);
    if (status != TL_OK) {
        return status;
    }
    for (i = 0; i < len; ++i) {
        dst[i] = ram->buffer[offset + i];
    }
    return TL_OK;
}

static tl_status tl_ram_erase(void *ctx, uint32_t offset, uint32_t len)
{
    tl_storage_ram *ram = (tl_storage_ram *)ctx;
    uint32_t i;
    const tl_status status = tl_storage_check(&ram->storage, offset, len, ram->storage.erase_unit);
    if (status != TL_OK) {
        return status;
    }
    for (i = 0; i < len; ++i) {
        ram->buffer[offset + i] = 0xFFu;
    }
    return TL_OK;
}

static tl_status tl_ram_program(void *ctx, uint32_t offset, const uint8_t *src, uint32_t len)
{
    tl_storage_ram *ram = (tl_storage_ram *)ctx;
    uint32_t i;
    const tl_status status =
        tl_storage_check(&ram->storage, offset, len, ram->storage.program_unit);
    if (status != TL_OK) {
        return status;
    }
    for (i = 0; i < len; ++i) {
        ram->buffer[offset + i] &= src[i]; /* programming only clears bits, as on NOR flash */
    }
    return TL_OK;
}

const tl_storage *tl_storage_ram_init(tl_storage_ram *ram, uint8_t *buffer, uint32_t size,
                                      uint32_t erase_unit, uint32_t program_unit)
{
    uint32_t i;
    ram->buffer = buffer;
    ram->storage.ctx = ram;
    ram->storage.name = "RAM";
    ram->storage.size = size;
    ram->storage.erase_unit = erase_unit;
    ram->storage.program_unit = program_unit;
    ram->storage.open = tl_ram_open;
    ram->storage.read = tl_ram_read;
    ram->storage.erase = tl_ram_erase;
    ram->storage.program = tl_ram_program;
    for (i = 0; i < size; ++i) {
        buffer[i] = 0xFFu;
    }
    return &ram->storage;
}

tl_status tl_storage_stream_flush(tl_storage_stream *s)
{
    const tl_storage *base = s->base;
    uint32_t i;
    if (s->used == 0u) {
        return TL_OK;
    }
    for (i = s->used; i < base->program_unit; ++i) {
        s->pending[i] = 0xFFu; /* programming 0xFF leaves a byte erased */
    }
    s->used = 0u;
    return base->program(base->ctx, s->at, s->pending, base->program_unit);
}

static tl_status tl_stream_open(void *stream)
{
    const tl_storage *base = ((tl_storage_stream *)stream)->base;
    return base->open != NULL ? base->open(base->ctx) : TL_OK;
}

static tl_status tl_stream_read(void *stream, uint32_t offset, uint8_t *dst, uint32_t len)
{
    tl_storage_stream *s = (tl_storage_stream *)stream;
    const tl_status status = tl_storage_stream_flush(s);
    if (status != TL_OK) {
        return status;
    }
    return s->base->read(s->base->ctx, offset, dst, len);
}

static tl_status tl_stream_erase(void *stream, uint32_t offset, uint32_t len)
{
    tl_storage_stream *s = (tl_storage_stream *)stream;
    const tl_status status = tl_storage_stream_flush(s);
    if (status != TL_OK) {
        return status;
    }
    return s->base->erase(s->base->ctx, offset, len);
}

/* Start a pending unit at `offset` (not on a unit boundary, or shorter than a unit). */
static void tl_stream_start(tl_storage_stream *s, uint32_t offset)
{
    const uint32_t head = offset % s->base->program_unit;
    s->at = offset - head;
    for (s->used = 0u; s->used < head; ++s->used) {
        s->pending[s->used] = 0xFFu;
    }
}

static tl_status tl_stream_program(void *stream, uint32_t offset, const uint8_t *src, uint32_t len)
{
    tl_storage_stream *s = (tl_storage_stream *)stream;
    const tl_storage *base = s->base;
    const uint32_t unit = base->program_unit;
    uint32_t i;
    tl_status status = tl_storage_check(base, offset, len, 1u);
    if (status != TL_OK || len == 0u) {
        return status;
    }
    if (s->used > 0u && offset != s->at + s->used) {
        status = tl_storage_stream_flush(s); /* not contiguous: finish the pending unit */
        if (status != TL_OK) {
            return status;
        }
    }
    while (len > 0u) {
        uint32_t n;
        if (s->used == 0u && offset % unit == 0u && len >= unit) { /* whole units straight */
            n = len - len % unit;
            status = base->program(base->ctx, offset, src, n);
            if (status != TL_OK) {
                return status;
            }
            offset += n;
            src += n;
            len -= n;
            continue;
        }
        if (s->used == 0u) {
            tl_stream_start(s, offset);
        }
        n = unit - s->used < len ? unit - s->used : len;
        for (i = 0; i < n; ++i) {
            s->pending[s->used + i] = src[i];
        }
        s->used += n;
        offset += n;
        src += n;
        len -= n;
        if (s->used == unit) {
            s->used = 0u;
            status = base->program(base->ctx, s->at, s->pending, unit);
            if (status != TL_OK) {
                return status;
            }
        }
    }
    return TL_OK;
}

tl_status tl_storage_stream_init(tl_storage_stream *s, const tl_storage *base)
{
    s->base = base;
    s->at = 0u;
    s->used = 0u;
    s->storage = *base;
    s->storage.ctx = s;
    s->storage.program_unit = 1u;
    s->storage.open = tl_stream_open;
    s->storage.read = tl_stream_read;
    s->storage.erase = tl_stream_erase;
    s->storage.program = tl_stream_program;
    if (base->program_unit == 0u || base->program_unit > TL_STORAGE_STREAM_UNIT_MAX) {
        return TL_ERR_ALIGN;
    }
    return TL_OK;
}
