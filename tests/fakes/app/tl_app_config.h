/*
 * A test double of a generated project's tl_app_config.h: a tiny "model" (4 input bytes,
 * 3 classes) so that the application's plain C (firmware/app, firmware/boards) builds and
 * runs without a generated model (tests/test_app_c.py).
 */
#ifndef TL_APP_CONFIG_H
#define TL_APP_CONFIG_H

#define TL_APP_MODEL "fake"
#define TL_APP_INPUT_SIZE 4
#define TL_APP_CLASSES 3
#define TL_APP_ARENA_SIZE 64u
#ifndef TL_APP_CAN_TRAIN
#define TL_APP_CAN_TRAIN 1
#endif
#define TL_APP_SAMPLES 2
#define TL_APP_EPOCHS 1
#define TL_APP_CHECKPOINT_EVERY 100u

#endif /* TL_APP_CONFIG_H */
