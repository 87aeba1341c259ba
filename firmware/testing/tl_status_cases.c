/*
 * Argument checking of the kernels: each call below must return the tl_status written beside
 * it. Reported as one line "T status_0 <int32 per case>" (the test compares with
 * TL_STATUS_CASES_EXPECTED in tinylora/codegen/selftest.py).
 */
#include "tl_kernels.h"
#include "tl_report.h"

void tl_status_cases(void);

void tl_status_cases(void)
{
    static const int8_t x[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    static const int8_t w[16] = { 1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6, 7, -7, 8, -8 };
    static const int32_t mult[2] = { 1 << 30, 1 << 30 };
    static const int32_t shift[2] = { -1, -2 };
    static int8_t y[8];
    const tl_per_channel_quant q = { mult, shift };
    const tl_fc_params fc = { 3, -5, -128, 127 };
    const tl_fc_params fc_bad_act = { 3, -5, 10, 9 };
    const tl_fc_params fc_bad_offset = { 300, 0, -128, 127 };
    const tl_dims fc_in = { 1, 1, 1, 8 }, fc_w = { 2, 1, 1, 8 }, fc_out = { 1, 1, 1, 2 };
    const tl_dims fc_in_bad = { 1, 1, 1, 7 };
    const tl_conv_params conv = { 0, 0, 1, 1, 0, 0, 1, 1, -128, 127 };
    const tl_conv_params conv_bad_stride = { 0, 0, 0, 1, 0, 0, 1, 1, -128, 127 };
    const tl_dims conv_in = { 1, 2, 2, 2 }, conv_w = { 2, 1, 1, 2 }, conv_out = { 1, 2, 2, 2 };
    const tl_dw_conv_params dw_bad_mult = { 0, 0, 1, 1, 0, 0, 1, 1, 3, -128, 127 };
    const tl_dims dw_w = { 1, 1, 1, 2 };
    const tl_softmax_params sm = { 1 << 30, 20, -100 };
    const tl_softmax_params sm_bad_shift = { 1 << 30, 32, -100 };

    tl_report_begin("status", 0);
    tl_report_put_i32((int32_t)tl_fully_connected_s8(NULL, &fc, &q, &fc_in, x, &fc_w, w, NULL,
                                                     &fc_out, y)); /* TL_OK */
    tl_report_put_i32((int32_t)tl_fully_connected_s8(NULL, &fc, &q, &fc_in, NULL, &fc_w, w, NULL,
                                                     &fc_out, y)); /* NULL */
    tl_report_put_i32((int32_t)tl_fully_connected_s8(NULL, &fc_bad_act, &q, &fc_in, x, &fc_w, w,
                                                     NULL, &fc_out, y)); /* PARAM */
    tl_report_put_i32((int32_t)tl_fully_connected_s8(NULL, &fc_bad_offset, &q, &fc_in, x, &fc_w, w,
                                                     NULL, &fc_out, y)); /* PARAM */
    tl_report_put_i32((int32_t)tl_fully_connected_s8(NULL, &fc, &q, &fc_in_bad, x, &fc_w, w, NULL,
                                                     &fc_out, y)); /* SHAPE */
    tl_report_put_i32((int32_t)tl_conv2d_s8(NULL, &conv, &q, &conv_in, x, &conv_w, w, NULL,
                                            &conv_out, y)); /* TL_OK */
    tl_report_put_i32((int32_t)tl_conv2d_s8(NULL, &conv_bad_stride, &q, &conv_in, x, &conv_w, w,
                                            NULL, &conv_out, y)); /* PARAM */
    tl_report_put_i32((int32_t)tl_depthwise_conv2d_s8(NULL, &dw_bad_mult, &q, &conv_in, x, &dw_w, w,
                                                      NULL, &conv_out, y)); /* SHAPE */
    tl_report_put_i32((int32_t)tl_softmax_s8(&sm, 1, 8, x, y));             /* TL_OK */
    tl_report_put_i32((int32_t)tl_softmax_s8(&sm, 1, 4096, x, y));          /* SHAPE */
    tl_report_put_i32((int32_t)tl_softmax_s8(&sm_bad_shift, 1, 8, x, y));   /* PARAM */
    tl_report_end();
}
