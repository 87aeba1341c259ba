/*
 * tl_app_adapters: the application's adapter slots (tl_adapter.h) behind the serial commands
 * L, X, U, D, F and G (tl_protocol.h), and the choice of the adapter at boot.
 */
#ifndef TL_APP_ADAPTERS_H
#define TL_APP_ADAPTERS_H

#include "tl_protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Open the board's adapter region and apply the active record: 1 if a choice was made
 * before (a slot or the base model: the model now runs it), 0 if none (never selected, no
 * slots on this board, or a build that cannot hold adapters). Prints a '#' line. */
int tl_app_adapters_boot(void);

/* Answer one adapter command (L, X, U, D, F, G); 0 if `event` is not one. */
int tl_app_adapters_command(tl_proto *p, tl_proto_event event);

#ifdef __cplusplus
}
#endif

#endif /* TL_APP_ADAPTERS_H */
