/*
 * A test double of a generated project's tl_board_config.h (tests/test_app_c.py).
 */
#ifndef TL_BOARD_CONFIG_H
#define TL_BOARD_CONFIG_H

#define TL_BOARD_NAME "fake"
#define TL_BOARD_TITLE "a test double"
#define TL_STORAGE_RAM_SIZE 1024u
#define TL_STORAGE_RAM_ERASE_UNIT 256u
#define TL_STORAGE_SIZE 0x400u
#define TL_STORAGE_ERASE_UNIT 0x100u
#define TL_STORAGE_PROGRAM_UNIT 4u

#endif /* TL_BOARD_CONFIG_H */
