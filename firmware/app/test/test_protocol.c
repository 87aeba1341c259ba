/*
 * tl_protocol: the serial line protocol (README.md, "Sending samples") on good and bad lines.
 */
#include <string.h>

#include "tl_app_config.h"
#include "tl_board.h"
#include "tl_protocol.h"
#include "tl_unit.h"

static int8_t tl_sample[TL_APP_INPUT_SIZE];
static int8_t tl_pattern[TL_APP_INPUT_SIZE];
static tl_proto tl_p;

static tl_proto_event tl_feed(const char *text)
{
    tl_proto_event last = TL_PROTO_NONE;
    for (; *text != '\0'; ++text) {
        const tl_proto_event e = tl_proto_feed(&tl_p, (unsigned char)*text);
        if (e != TL_PROTO_NONE) {
            last = e;
        }
    }
    return last;
}

/* Feed the hex digits of tl_pattern (n bytes; `upper`: A-F). */
static void tl_feed_hex(uint32_t n, int upper)
{
    static const char lower_digits[] = "0123456789abcdef";
    static const char upper_digits[] = "0123456789ABCDEF";
    const char *digits = upper ? upper_digits : lower_digits;
    uint32_t i;
    for (i = 0; i < n; ++i) {
        const uint8_t b = (uint8_t)tl_pattern[i % TL_APP_INPUT_SIZE];
        (void)tl_proto_feed(&tl_p, digits[b >> 4]);
        (void)tl_proto_feed(&tl_p, digits[b & 15u]);
    }
}

static void tl_setup(void)
{
    uint32_t i;
    for (i = 0; i < TL_APP_INPUT_SIZE; ++i) {
        tl_pattern[i] = (int8_t)((int32_t)((i * 37u + 11u) % 256u) - 128);
    }
    memset(tl_sample, 0, sizeof tl_sample);
    tl_proto_init(&tl_p, tl_sample, TL_APP_INPUT_SIZE, TL_APP_CLASSES);
}

static void test_sample_line_fills_the_sample_and_label(void)
{
    tl_setup();
    TL_CHECK(tl_feed("S 1 ") == TL_PROTO_NONE);
    tl_feed_hex(TL_APP_INPUT_SIZE, 0);
    TL_CHECK(tl_feed("\n") == TL_PROTO_SAMPLE);
    TL_CHECK(tl_p.label == 1);
    TL_CHECK(tl_unit_first_difference(tl_sample, tl_pattern, TL_APP_INPUT_SIZE) < 0);
}

static void test_predict_line_with_crlf_and_uppercase_hex(void)
{
    tl_setup();
    (void)tl_feed("  P   ");
    tl_feed_hex(TL_APP_INPUT_SIZE, 1);
    TL_CHECK(tl_feed("  \r\n") == TL_PROTO_PREDICT);
    TL_CHECK(tl_unit_first_difference(tl_sample, tl_pattern, TL_APP_INPUT_SIZE) < 0);
}

static void test_commands_without_arguments(void)
{
    tl_setup();
    TL_CHECK(tl_feed("E\n") == TL_PROTO_EVALUATE);
    TL_CHECK(tl_feed("C\n") == TL_PROTO_CHECKPOINT);
    TL_CHECK(tl_feed("?\n") == TL_PROTO_STATUS);
    TL_CHECK(tl_feed("\n") == TL_PROTO_NONE);
    TL_CHECK(tl_feed("\r\n") == TL_PROTO_NONE);
}

static void test_label_out_of_range_is_an_error(void)
{
    tl_setup();
    (void)tl_feed("S 4095 ");
    tl_feed_hex(TL_APP_INPUT_SIZE, 0);
    TL_CHECK(tl_feed("\n") == TL_PROTO_ERROR);
    TL_CHECK(tl_p.error == TL_PROTO_ERR_LABEL);
    TL_CHECK(tl_feed("S x 00\n") == TL_PROTO_ERROR);
    TL_CHECK(tl_p.error == TL_PROTO_ERR_LABEL);
    TL_CHECK(tl_feed("S\n") == TL_PROTO_ERROR);
    TL_CHECK(tl_p.error == TL_PROTO_ERR_LABEL);
}

static void test_wrong_hex_is_an_error(void)
{
    tl_setup();
    TL_CHECK(tl_feed("P 0g\n") == TL_PROTO_ERROR);
    TL_CHECK(tl_p.error == TL_PROTO_ERR_HEX);
    (void)tl_feed("P ");
    tl_feed_hex(TL_APP_INPUT_SIZE - 1u, 0);
    TL_CHECK(tl_feed("\n") == TL_PROTO_ERROR);
    TL_CHECK(tl_p.error == TL_PROTO_ERR_LENGTH);
    (void)tl_feed("P ");
    tl_feed_hex(TL_APP_INPUT_SIZE + 1u, 0);
    TL_CHECK(tl_feed("\n") == TL_PROTO_ERROR);
    TL_CHECK(tl_p.error == TL_PROTO_ERR_LENGTH);
    TL_CHECK(tl_feed("S 2\n") == TL_PROTO_ERROR);
    TL_CHECK(tl_p.error == TL_PROTO_ERR_LENGTH);
}

static void test_unknown_command_and_extra_text_are_errors(void)
{
    tl_setup();
    TL_CHECK(tl_feed("Q\n") == TL_PROTO_ERROR);
    TL_CHECK(tl_p.error == TL_PROTO_ERR_COMMAND);
    TL_CHECK(tl_feed("E1\n") == TL_PROTO_ERROR);
    TL_CHECK(tl_p.error == TL_PROTO_ERR_COMMAND);
    TL_CHECK(tl_feed("E now\n") == TL_PROTO_ERROR);
    TL_CHECK(tl_p.error == TL_PROTO_ERR_EXTRA);
}

static void test_adapter_commands_and_their_fields(void)
{
    tl_proto_fields_t f;
    tl_setup();
    TL_CHECK(tl_feed("L\n") == TL_PROTO_LIST && tl_proto_fields(&tl_p, 'L', &f) == 0);
    TL_CHECK(tl_feed("G\r\n") == TL_PROTO_GET && tl_feed("F\n") == TL_PROTO_FINISH);
    TL_CHECK(tl_feed("X 2\n") == TL_PROTO_SELECT && tl_proto_fields(&tl_p, 'X', &f) == 0);
    TL_CHECK(f.a == 2u);
    TL_CHECK(tl_feed("X -\n") == TL_PROTO_SELECT && tl_proto_fields(&tl_p, 'X', &f) == 0);
    TL_CHECK(f.a == TL_PROTO_NO_SLOT);
    TL_CHECK(tl_feed("U 1 952\n") == TL_PROTO_UPLOAD && tl_proto_fields(&tl_p, 'U', &f) == 0);
    TL_CHECK(f.a == 1u && f.b == 952u);
    TL_CHECK(tl_feed("D 3 0A0b0c0D 01ff80\n") == TL_PROTO_CHUNK);
    TL_CHECK(tl_proto_fields(&tl_p, 'D', &f) == 0);
    TL_CHECK(f.a == 3u && f.b == 0x0A0B0C0Du && f.size == 3u && f.data[1] == 0xFFu);
    TL_CHECK(tl_feed("D 3 0A0b0c0 01\n") == TL_PROTO_CHUNK); /* a 7-digit CRC */
    TL_CHECK(tl_proto_fields(&tl_p, 'D', &f) != 0 && tl_p.error == TL_PROTO_ERR_FIELD);
    TL_CHECK(tl_feed("D 0 00000000 0\n") == TL_PROTO_CHUNK); /* an odd digit count */
    TL_CHECK(tl_proto_fields(&tl_p, 'D', &f) != 0);
    TL_CHECK(tl_feed("U 1\n") == TL_PROTO_UPLOAD && tl_proto_fields(&tl_p, 'U', &f) != 0);
    TL_CHECK(tl_feed("X\n") == TL_PROTO_SELECT && tl_proto_fields(&tl_p, 'X', &f) != 0);
    TL_CHECK(tl_feed("L 1\n") == TL_PROTO_ERROR && tl_p.error == TL_PROTO_ERR_EXTRA);
}

static void test_a_good_line_after_a_bad_one(void)
{
    tl_setup();
    TL_CHECK(tl_feed("garbage 12 zz\n") == TL_PROTO_ERROR);
    (void)tl_feed("S 0 ");
    tl_feed_hex(TL_APP_INPUT_SIZE, 0);
    TL_CHECK(tl_feed("\n") == TL_PROTO_SAMPLE);
    TL_CHECK(tl_p.label == 0);
    TL_CHECK(tl_unit_first_difference(tl_sample, tl_pattern, TL_APP_INPUT_SIZE) < 0);
}

static void test_cr_alone_ends_a_line_and_the_input_end_ends_the_last(void)
{
    tl_setup();
    TL_CHECK(tl_proto_feed(&tl_p, 'E') == TL_PROTO_NONE);
    TL_CHECK(tl_proto_feed(&tl_p, '\r') == TL_PROTO_EVALUATE); /* minicom, screen */
    TL_CHECK(tl_proto_feed(&tl_p, 'C') == TL_PROTO_NONE);
    TL_CHECK(tl_proto_feed(&tl_p, '\r') == TL_PROTO_CHECKPOINT);
    TL_CHECK(tl_proto_feed(&tl_p, '\n') == TL_PROTO_NONE); /* CRLF: one line end */
    TL_CHECK(tl_proto_feed(&tl_p, '\n') == TL_PROTO_NONE); /* then an empty line */
    TL_CHECK(tl_feed("?\r\r") == TL_PROTO_STATUS);
    TL_CHECK(tl_proto_finish(&tl_p) == TL_PROTO_NONE); /* nothing pending */
    (void)tl_feed("P ");
    tl_feed_hex(TL_APP_INPUT_SIZE, 0);
    TL_CHECK(tl_proto_finish(&tl_p) == TL_PROTO_PREDICT); /* no line end before the input's end */
    TL_CHECK(tl_unit_first_difference(tl_sample, tl_pattern, TL_APP_INPUT_SIZE) < 0);
}

static int tl_run_tests(void)
{
    tl_unit_begin("test/test_protocol/test_main.c");
    TL_RUN(test_sample_line_fills_the_sample_and_label);
    TL_RUN(test_predict_line_with_crlf_and_uppercase_hex);
    TL_RUN(test_commands_without_arguments);
    TL_RUN(test_label_out_of_range_is_an_error);
    TL_RUN(test_wrong_hex_is_an_error);
    TL_RUN(test_unknown_command_and_extra_text_are_errors);
    TL_RUN(test_adapter_commands_and_their_fields);
    TL_RUN(test_a_good_line_after_a_bad_one);
    TL_RUN(test_cr_alone_ends_a_line_and_the_input_end_ends_the_last);
    return tl_unit_end();
}

TL_BOARD_MAIN(tl_run_tests)
