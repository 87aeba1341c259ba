/*
 * tl_app_adapters: serial commands and boot choice of the adapter slots (see
 * tl_app_adapters.h). Replies, one line each:
 *   l <k> <state>             L: slot k holds a valid adapter ("ok") or why not
 *   l active <k>|-            L: the active slot ('-': the base model)
 *   x <k>|-                   X: that adapter is active now (and after a reset)
 *   u <k> <bytes>             U: the upload into slot k may start
 *   d <i>                     D: chunk i is stored
 *   f <k>                     F: slot k holds the whole file, checked; X <k> activates it
 *   g <bytes>, D <i> <crc> <hex>..., g end    G: the device's adapter as a file
 *   ! <what>: <reason> (status <n>)           a refusal: nothing active changed
 */
#include "tl_app_adapters.h"

#include "tl_adapter.h"
#include "tl_app_model.h"
#include "tl_board.h"

static tl_adapter_store tl_store;
static tl_adapter_upload tl_upload;
static int tl_store_ok;
static uint32_t tl_active = TL_ADAPTER_NONE;

static void tl_refusal(const char *what, tl_status status)
{
    tl_print("! ");
    tl_print(what);
    tl_print(": ");
    tl_print(tl_status_text(status));
    tl_print(" (status ");
    tl_print_i32((int32_t)status);
    tl_print(")\n");
}

static void tl_print_slot(uint32_t slot)
{
    if (slot == TL_ADAPTER_NONE) {
        tl_print("-");
    } else {
        tl_print_u32(slot);
    }
}

/* The model runs `slot` (TL_ADAPTER_NONE: the base model): a slot whose check failed is
 * refused; one that passed is CRC-checked again as it is copied (flash changed since). */
static tl_status tl_apply(uint32_t slot)
{
    tl_status status;
    if (slot == TL_ADAPTER_NONE) {
        return tl_app_model_adapter_load(NULL, 0u);
    }
    status = tl_adapter_slot_check(&tl_store, tl_app_model_adapter_config(), slot);
    return status != TL_OK ? status
                           : tl_app_model_adapter_load(tl_store.region,
                                                       tl_adapter_slot_offset(&tl_store, slot));
}

/* `gen --adapter`: its file into slot 0 when that slot is empty (the first boot). The trainer
 * starts from it anyway; the slot keeps it to return to (X 0). */
static void tl_install_initial(void)
{
    const tl_adapter_config *cfg = tl_app_model_adapter_config();
    uint32_t len = 0u, at;
    const uint8_t *file = tl_app_model_initial_adapter(&len);
    tl_status status;
    if (file == NULL || tl_adapter_slot_check(&tl_store, cfg, 0u) != TL_ERR_EMPTY) {
        return;
    }
    status = tl_adapter_upload_begin(&tl_upload, &tl_store, cfg, 0u, len);
    for (at = 0u; at < len && status == TL_OK; at += TL_PROTO_CHUNK_MAX) {
        const uint32_t n = len - at < TL_PROTO_CHUNK_MAX ? len - at : TL_PROTO_CHUNK_MAX;
        status = tl_adapter_upload_chunk(&tl_upload, tl_upload.next, file + at, n,
                                         tl_crc32(0u, file + at, n));
    }
    status = status == TL_OK ? tl_adapter_upload_end(&tl_upload) : status;
    if (status != TL_OK) {
        tl_refusal("the generated adapter could not be stored in slot 0", status);
        return;
    }
    tl_print("# adapters: slot 0 holds the adapter the project was generated with\n");
}

int tl_app_adapters_boot(void)
{
    uint32_t slots = 0u, slot_size = 0u, slot = TL_ADAPTER_NONE;
    const tl_storage *region = tl_board_adapter_storage(&slot_size, &slots);
    tl_status status;
    tl_store_ok = 0;
    if (tl_app_model_adapter_config() == NULL) {
        tl_print("# adapters: not in this build (the frozen forward has no masters)\n");
        return 0;
    }
    if (region == NULL || slots == 0u) {
        tl_print("# adapters: no slots on this board ([adapters] of its boards/*.toml)\n");
        return 0;
    }
    status = tl_adapter_store_init(&tl_store, region, slot_size, slots);
    if (status != TL_OK) {
        tl_refusal("adapter slots unusable", status);
        return 0;
    }
    tl_store_ok = 1;
    tl_install_initial();
    for (slot = 0u; slot < slots; ++slot) { /* every slot's one full check */
        (void)tl_adapter_slot_check(&tl_store, tl_app_model_adapter_config(), slot);
    }
    slot = TL_ADAPTER_NONE;
    tl_print("# adapters: ");
    tl_print_u32(slots);
    tl_print(" slots of ");
    tl_print_u32(slot_size);
    tl_print(" bytes, ");
    tl_print(region->name);
    status = tl_adapter_active(&tl_store, &slot, NULL);
    if (status == TL_ERR_EMPTY) {
        tl_print(", none chosen yet\n");
        return 0;
    }
    status = status == TL_OK ? tl_apply(slot) : status;
    if (status != TL_OK) {
        tl_print("\n");
        tl_refusal("the active adapter could not be loaded; running the base model", status);
        (void)tl_apply(TL_ADAPTER_NONE);
        slot = TL_ADAPTER_NONE;
    }
    tl_active = slot;
    tl_print(", active ");
    tl_print_slot(slot);
    tl_print("\n");
    return 1;
}

static void tl_list(void)
{
    uint32_t k;
    for (k = 0; k < tl_store.n_slots; ++k) { /* as checked at boot or at its upload */
        const tl_status status = tl_adapter_slot_check(&tl_store, tl_app_model_adapter_config(), k);
        tl_print("l ");
        tl_print_u32(k);
        tl_print(" ");
        tl_print(status == TL_OK ? "ok" : tl_status_text(status));
        tl_print("\n");
    }
    tl_print("l active ");
    tl_print_slot(tl_active);
    tl_print("\n");
}

static void tl_select(uint32_t slot)
{
    tl_status status = slot != TL_ADAPTER_NONE && slot >= tl_store.n_slots ? TL_ERR_SLOT : TL_OK;
    if (status == TL_OK) {
        status = tl_apply(slot); /* verifies first: a refusal changes nothing */
    }
    if (status != TL_OK) {
        tl_refusal("select refused", status);
        return;
    }
    status = tl_adapter_select(&tl_store, tl_app_model_adapter_config(), slot);
    if (status != TL_OK) {
        (void)tl_apply(tl_active); /* not recorded: run what is active (after a reset too) */
        tl_refusal("select not recorded", status);
        return;
    }
    tl_active = slot;
    tl_print("x ");
    tl_print_slot(slot);
    tl_print("\n");
}

/* G: the file in "D <i> <crc> <hex>" lines of TL_PROTO_CHUNK_MAX bytes. */
typedef struct {
    uint8_t chunk[TL_PROTO_CHUNK_MAX];
    uint32_t used;
    uint32_t index;
} tl_sender;

static void tl_send_chunk(tl_sender *s)
{
    static const char digits[] = "0123456789abcdef";
    const uint32_t crc = tl_crc32(0u, s->chunk, s->used);
    char hex[3];
    uint32_t i;
    int shift;
    tl_print("D ");
    tl_print_u32(s->index++);
    tl_print(" ");
    hex[1] = '\0';
    for (shift = 28; shift >= 0; shift -= 4) {
        hex[0] = digits[(crc >> shift) & 0xFu];
        tl_print(hex);
    }
    tl_print(" ");
    hex[2] = '\0';
    for (i = 0; i < s->used; ++i) {
        hex[0] = digits[s->chunk[i] >> 4];
        hex[1] = digits[s->chunk[i] & 0xFu];
        tl_print(hex);
    }
    tl_print("\n");
    s->used = 0u;
}

static tl_status tl_send(void *ctx, const uint8_t *data, uint32_t len)
{
    tl_sender *s = (tl_sender *)ctx;
    uint32_t i;
    for (i = 0; i < len; ++i) {
        s->chunk[s->used++] = data[i];
        if (s->used == TL_PROTO_CHUNK_MAX) {
            tl_send_chunk(s);
        }
    }
    return TL_OK;
}

static void tl_get(void)
{
    tl_sender sender;
    tl_status status;
    sender.used = 0u;
    sender.index = 0u;
    tl_print("g ");
    tl_print_u32(tl_adapter_size(tl_app_model_adapter_config()));
    tl_print("\n");
    status = tl_app_model_adapter_save(tl_send, &sender);
    if (sender.used > 0u) {
        tl_send_chunk(&sender);
    }
    if (status != TL_OK) {
        tl_refusal("adapter not sent", status);
        return;
    }
    tl_print("g end\n");
}

static void tl_upload_command(tl_proto_event event, const tl_proto_fields_t *f)
{
    tl_status status;
    if (event == TL_PROTO_UPLOAD) {
        status = tl_adapter_upload_begin(&tl_upload, &tl_store, tl_app_model_adapter_config(), f->a,
                                         f->b);
        if (status != TL_OK) {
            tl_refusal("upload refused", status);
            return;
        }
        tl_print("u ");
        tl_print_u32(f->a);
        tl_print(" ");
        tl_print_u32(f->b);
    } else if (event == TL_PROTO_CHUNK) {
        status = tl_adapter_upload_chunk(&tl_upload, f->a, f->data, f->size, f->b);
        if (status != TL_OK) {
            tl_refusal("chunk refused", status);
            return;
        }
        tl_print("d ");
        tl_print_u32(f->a);
    } else {
        status = tl_adapter_upload_end(&tl_upload);
        if (status != TL_OK) {
            tl_refusal("upload failed", status);
            return;
        }
        tl_print("f ");
        tl_print_u32(tl_upload.slot);
    }
    tl_print("\n");
}

int tl_app_adapters_command(tl_proto *p, tl_proto_event event)
{
    static tl_proto_fields_t fields;
    if (event != TL_PROTO_LIST && event != TL_PROTO_SELECT && event != TL_PROTO_UPLOAD &&
        event != TL_PROTO_CHUNK && event != TL_PROTO_FINISH && event != TL_PROTO_GET) {
        return 0;
    }
    if (tl_proto_fields(p, (int)event, &fields) != 0) {
        tl_print("! ");
        tl_print(tl_proto_error_text(p->error));
        tl_print("\n");
        return 1;
    }
    if (event == TL_PROTO_GET && tl_app_model_adapter_config() != NULL) {
        tl_get();
    } else if (!tl_store_ok) {
        tl_refusal("no adapter slots",
                   tl_app_model_adapter_config() == NULL ? TL_ERR_UNSUPPORTED : TL_ERR_SLOT);
    } else if (event == TL_PROTO_LIST) {
        tl_list();
    } else if (event == TL_PROTO_SELECT) {
        tl_select(fields.a == TL_PROTO_NO_SLOT ? TL_ADAPTER_NONE : fields.a);
    } else {
        tl_upload_command(event, &fields);
    }
    return 1;
}
