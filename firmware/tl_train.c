/*
 * tinylora runtime: training kernels (see tl_train.h; spec: docs/numerics.md and the numpy
 * reference tinylora/lora.py, loss.py, train.py).
 *
 * No float, no division, no allocation. 64-bit arithmetic: int32 x int32 products and sums
 * of them, all provably inside int64 (bounds are noted where they matter).
 */
#include "tl_train.h"

#include "tl_kernels.h"

/* ------------------------------------------------------------------ small helpers */

/* Floor shift of a signed value without implementation-defined behaviour. */
static int64_t tl_floor_shift64(int64_t v, int32_t n)
{
    return v >= 0 ? (v >> n) : ~(~v >> n);
}

/* uint64 -> int64 two's complement, without the implementation-defined conversion. */
static int64_t tl_wrap64(uint64_t x)
{
    return x <= (uint64_t)INT64_MAX ? (int64_t)x : -(int64_t)(~x) - 1;
}

static uint64_t tl_mag64(int64_t v)
{
    return v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
}

static uint32_t tl_mag32(int32_t v)
{
    return v < 0 ? 0u - (uint32_t)v : (uint32_t)v;
}

static int32_t tl_bit_length64(uint64_t v)
{
    const uint32_t high = (uint32_t)(v >> 32);
    if (high != 0u) {
        return 64 - tl_clz32(high);
    }
    return 32 - tl_clz32((uint32_t)v);
}

static int32_t tl_sat32_64(int64_t v)
{
    if (v > INT32_MAX) {
        return INT32_MAX;
    }
    if (v < INT32_MIN) {
        return INT32_MIN;
    }
    return (int32_t)v;
}

static int8_t tl_sat8(int32_t v, int32_t lo, int32_t hi)
{
    return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

static int16_t tl_sat16_64(int64_t v)
{
    return (int16_t)(v < INT16_MIN ? INT16_MIN : (v > INT16_MAX ? INT16_MAX : v));
}

/* x / 2^e rounded half away from zero, e in [1, 63] (quant.rounding_divide_by_pot on int64). */
static int64_t tl_rdbp64(int64_t x, int32_t e)
{
    const uint64_t mask = ((uint64_t)1 << e) - 1u;
    const uint64_t remainder = (uint64_t)x & mask;
    const uint64_t threshold = (mask >> 1) + (x < 0 ? 1u : 0u);
    return tl_floor_shift64(x, e) + (remainder > threshold ? 1 : 0);
}

/* A requantization shift plus block exponents. Every shift outside [-128, 128] gives the same
 * tl_requantize_single result as the bound (0, or saturation), so the sum is clamped there
 * and never overflows. */
static int32_t tl_shift_sum(int32_t a, int32_t b, int32_t c, int32_t d)
{
    const int64_t s = (int64_t)a + b + c + d;
    return s > 128 ? 128 : (s < -128 ? -128 : (int32_t)s);
}

#define TL_MAX_EXPONENT (1 << 20) /* |block exponent| accepted from a caller */

/* ------------------------------------------------------------------ block floating point */

int32_t tl_normalize_exponent(const int64_t *x, int32_t n, int32_t bits)
{
    uint64_t peak = 0u;
    int32_t i;
    if (x == NULL) {
        return 0;
    }
    for (i = 0; i < n; ++i) {
        const uint64_t m = tl_mag64(x[i]);
        if (m > peak) {
            peak = m;
        }
    }
    return peak == 0u ? 0 : tl_bit_length64(peak) - bits;
}

int64_t tl_normalize_value(int64_t x, int32_t e, int32_t bits)
{
    int64_t m, limit;
    if (e <= 0) {
        return e <= -64 ? 0 : tl_wrap64((uint64_t)x << -e);
    }
    if (e >= 64) {
        return 0; /* |x| < 2^63 <= 2^(e-1): rounds to zero */
    }
    m = tl_rdbp64(x, e);
    limit = ((int64_t)1 << bits) - 1;
    return m > limit ? limit : (m < -limit ? -limit : m);
}

static tl_status tl_normalize_check(const void *x, int32_t n, int32_t bits, int32_t max_bits,
                                    const void *out, const int32_t *exponent)
{
    if ((n > 0 && (x == NULL || out == NULL)) || exponent == NULL) {
        return TL_ERR_NULL;
    }
    if (n < 0) {
        return TL_ERR_SHAPE;
    }
    if (bits < 1 || bits > max_bits) {
        return TL_ERR_PARAM;
    }
    return TL_OK;
}

tl_status tl_normalize(const int64_t *x, int32_t n, int32_t bits, int32_t *mantissas,
                       int32_t *exponent)
{
    int32_t i, e;
    const tl_status s = tl_normalize_check(x, n, bits, 31, mantissas, exponent);
    if (s != TL_OK) {
        return s;
    }
    e = tl_normalize_exponent(x, n, bits);
    for (i = 0; i < n; ++i) {
        mantissas[i] = (int32_t)tl_normalize_value(x[i], e, bits);
    }
    *exponent = e;
    return TL_OK;
}

tl_status tl_normalize_s16(const int64_t *x, int32_t n, int16_t *mantissas, int32_t *exponent)
{
    int32_t i, e;
    const tl_status s = tl_normalize_check(x, n, TL_GRAD_BITS, TL_GRAD_BITS, mantissas, exponent);
    if (s != TL_OK) {
        return s;
    }
    e = tl_normalize_exponent(x, n, TL_GRAD_BITS);
    for (i = 0; i < n; ++i) {
        mantissas[i] = (int16_t)tl_normalize_value(x[i], e, TL_GRAD_BITS);
    }
    *exponent = e;
    return TL_OK;
}

tl_status tl_normalize_inplace(int64_t *x, int32_t n, int32_t bits, int32_t *exponent)
{
    int32_t i, e;
    const tl_status s = tl_normalize_check(x, n, bits, 62, x, exponent);
    if (s != TL_OK) {
        return s;
    }
    e = tl_normalize_exponent(x, n, bits);
    if (e != 0) {
        for (i = 0; i < n; ++i) {
            x[i] = tl_normalize_value(x[i], e, bits);
        }
    }
    *exponent = e;
    return TL_OK;
}

/* ------------------------------------------------------------------ loss table */

/* LOSS_LUT_BEGIN: generated by tinylora.codegen.tables.render_loss_lut_c() */
/* Q10 cross-entropy of a probability k/256 (k = p_q + 128):
 * tl_loss_lut_q10[k] = round(-ln(max(k, 1/2) / 256) * 2^10), k = 0 .. 256. */
const uint16_t tl_loss_lut_q10[TL_LOSS_LUT_SIZE] = {
    6388, 5678, 4968, 4553, 4259, 4030, 3844, 3686, 3549, 3428, 3320, 3223,
    3134, 3052, 2976, 2905, 2839, 2777, 2719, 2663, 2611, 2561, 2513, 2468,
    2424, 2382, 2342, 2303, 2266, 2230, 2195, 2162, 2129, 2098, 2067, 2038,
    2009, 1981, 1953, 1927, 1901, 1876, 1851, 1827, 1803, 1780, 1758, 1736,
    1714, 1693, 1672, 1652, 1632, 1613, 1594, 1575, 1556, 1538, 1520, 1503,
    1486, 1469, 1452, 1436, 1420, 1404, 1388, 1373, 1357, 1343, 1328, 1313,
    1299, 1285, 1271, 1257, 1244, 1230, 1217, 1204, 1191, 1178, 1166, 1153,
    1141, 1129, 1117, 1105, 1093, 1082, 1070, 1059, 1048, 1037, 1026, 1015,
    1004, 994, 983, 973, 963, 952, 942, 932, 922, 913, 903, 893,
    884, 874, 865, 856, 847, 837, 828, 819, 811, 802, 793, 784,
    776, 767, 759, 751, 742, 734, 726, 718, 710, 702, 694, 686,
    678, 671, 663, 655, 648, 640, 633, 625, 618, 611, 603, 596,
    589, 582, 575, 568, 561, 554, 547, 541, 534, 527, 520, 514,
    507, 501, 494, 488, 481, 475, 469, 462, 456, 450, 444, 437,
    431, 425, 419, 413, 407, 401, 395, 390, 384, 378, 372, 366,
    361, 355, 349, 344, 338, 333, 327, 322, 316, 311, 305, 300,
    295, 289, 284, 279, 273, 268, 263, 258, 253, 248, 243, 238,
    233, 227, 223, 218, 213, 208, 203, 198, 193, 188, 184, 179,
    174, 169, 165, 160, 155, 151, 146, 141, 137, 132, 128, 123,
    119, 114, 110, 105, 101, 96, 92, 88, 83, 79, 75, 70,
    66, 62, 58, 53, 49, 45, 41, 37, 33, 28, 24, 20,
    16, 12, 8, 4, 0
};
/* LOSS_LUT_END */

/* ------------------------------------------------------------------ layer geometry */

/* out = ceil(in / stride), as lora.rows_view's x[::stride] visits. */
static int tl_strided_size_ok(int32_t in, int32_t out, int32_t stride)
{
    return (int64_t)(out - 1) * stride < in && (int64_t)out * stride >= in;
}

static tl_status tl_check_layer(const tl_lora_params *p)
{
    int64_t rows;
    if (p == NULL || p->weights == NULL || p->output_quant.multiplier == NULL ||
        p->output_quant.shift == NULL) {
        return TL_ERR_NULL;
    }
    if (p->in_h < 1 || p->in_w < 1 || p->out_h < 1 || p->out_w < 1 || p->depth < 1 ||
        p->depth > TL_LORA_MAX_DEPTH || p->channels < 1 || p->rank < 0 || p->rank > 255) {
        return TL_ERR_SHAPE;
    }
    if (p->stride_h < 1 || p->stride_w < 1) {
        return TL_ERR_PARAM;
    }
    if (!tl_strided_size_ok(p->in_h, p->out_h, p->stride_h) ||
        !tl_strided_size_ok(p->in_w, p->out_w, p->stride_w)) {
        return TL_ERR_SHAPE;
    }
    rows = (int64_t)p->out_h * p->out_w;
    if ((int64_t)p->in_h * p->in_w * p->depth > INT32_MAX || rows * p->channels > INT32_MAX ||
        rows * p->depth > INT32_MAX || rows * 255 > INT32_MAX) {
        return TL_ERR_SHAPE;
    }
    if (p->input_offset < -127 || p->input_offset > 128 || p->act_min < -128 ||
        p->act_max > 127 || p->act_min > p->act_max) {
        return TL_ERR_PARAM;
    }
    return TL_OK;
}

/* Offset of the first input value of row (oy, ox). */
static size_t tl_pixel(const tl_lora_params *p, int32_t oy, int32_t ox)
{
    return ((size_t)oy * (size_t)p->stride_h * (size_t)p->in_w + (size_t)ox * (size_t)p->stride_w) *
           (size_t)p->depth;
}

/* ------------------------------------------------------------------ forward */

tl_status tl_lora_forward_s8(const tl_lora_params *p, const int8_t *input, const int8_t *a8,
                             const int8_t *b8, int8_t *output, int8_t *h)
{
    int32_t oy, ox, row = 0;
    int32_t c, j;
    const tl_status s = tl_check_layer(p);
    if (s != TL_OK) {
        return s;
    }
    if (input == NULL || a8 == NULL || b8 == NULL || output == NULL || h == NULL ||
        p->join.multiplier == NULL || p->join.shift == NULL) {
        return TL_ERR_NULL;
    }
    if (p->rank < 1) {
        return TL_ERR_SHAPE;
    }
    for (oy = 0; oy < p->out_h; ++oy) {
        for (ox = 0; ox < p->out_w; ++ox, ++row) {
            const int32_t K = p->depth, r = p->rank;
            const int8_t *x = input + tl_pixel(p, oy, ox);
            int8_t *hr = h + (size_t)row * (size_t)r;
            int8_t *y = output + (size_t)row * (size_t)p->channels;
            /* u = x_off . A^T: |x_off| <= 255, |a| <= 128, K <= 2^16: below 2^31, so the
             * wrapping int8 dot product (SMLAD on Arm DSP cores) is the exact sum */
            for (j = 0; j < r; ++j) {
                const int32_t u =
                    tl_wrap32(tl_dot_s8(x, a8 + (size_t)j * (size_t)K, K, p->input_offset));
                hr[j] = tl_sat8(tl_requantize_single(u, p->h_multiplier, p->h_shift), -128, 127);
            }
            for (c = 0; c < p->channels; ++c) {
                const int8_t *w = p->weights + (size_t)c * (size_t)K;
                const int8_t *b = b8 + (size_t)c * (size_t)r;
                uint32_t acc = p->bias != NULL ? (uint32_t)p->bias[c] : 0u; /* TFLM: wraps */
                int32_t v = 0; /* h . B^T: |h|, |b| <= 128, r <= 255: below 2^23 */
                int64_t joined;
                acc += tl_dot_s8(x, w, K, p->input_offset); /* the frozen kernel's sum */
                for (j = 0; j < r; ++j) {
                    v += (int32_t)hr[j] * (int32_t)b[j];
                }
                joined = (int64_t)tl_wrap32(acc) +
                         tl_requantize_single(v, p->join.multiplier[c], p->join.shift[c]);
                y[c] = tl_requantize_s8(tl_sat32_64(joined), p->output_quant.multiplier[c],
                                        p->output_quant.shift[c], p->output_offset, p->act_min,
                                        p->act_max);
            }
        }
    }
    return TL_OK;
}

/* ------------------------------------------------------------------ loss */

tl_status tl_xent_grad_s8(const tl_softmax_params *params, int32_t classes, const int8_t *logits,
                          int32_t label, int8_t *probs, int16_t *grad, int32_t *loss_q10)
{
    int32_t c;
    tl_status s;
    if (params == NULL || logits == NULL || probs == NULL || grad == NULL || loss_q10 == NULL) {
        return TL_ERR_NULL;
    }
    if (classes < 1 || classes > 4095) {
        return TL_ERR_SHAPE;
    }
    if (label < 0 || label >= classes) {
        return TL_ERR_PARAM;
    }
    s = tl_softmax_s8(params, 1, classes, logits, probs);
    if (s != TL_OK) {
        return s;
    }
    for (c = 0; c < classes; ++c) {
        grad[c] = (int16_t)((int32_t)probs[c] + 128 - (c == label ? 256 : 0));
    }
    *loss_q10 = (int32_t)tl_loss_lut_q10[(int32_t)probs[label] + 128];
    return TL_OK;
}

/* ------------------------------------------------------------------ gradient sinks */

/* Is (ma, ia) a worse entry to keep than (mb, ib)? Smaller |delta|, or equal and a higher
 * flat index (train.sparsify keeps the largest, ties to the lower index). */
static int tl_worse(uint32_t ma, int32_t ia, uint32_t mb, int32_t ib)
{
    return ma < mb || (ma == mb && ia > ib);
}

/* Offer (index, delta) to the bounded min-heap of `cap` (index, delta) pairs whose root is
 * the worst kept entry; empty pairs (delta 0) are worse than any real entry. */
static void tl_heap_offer(int32_t *pairs, int32_t cap, int32_t index, int32_t delta)
{
    const uint32_t mag = tl_mag32(delta);
    int32_t pos = 0;
    if (!tl_worse(tl_mag32(pairs[1]), pairs[0], mag, index)) {
        return; /* not better than the worst kept entry */
    }
    for (;;) {
        const int32_t left = 2 * pos + 1;
        int32_t child;
        if (left >= cap) {
            break;
        }
        child = left;
        if (left + 1 < cap && tl_worse(tl_mag32(pairs[2 * left + 3]), pairs[2 * left + 2],
                                       tl_mag32(pairs[2 * left + 1]), pairs[2 * left])) {
            child = left + 1;
        }
        if (!tl_worse(tl_mag32(pairs[2 * child + 1]), pairs[2 * child], mag, index)) {
            break;
        }
        pairs[2 * pos] = pairs[2 * child];
        pairs[2 * pos + 1] = pairs[2 * child + 1];
        pos = child;
    }
    pairs[2 * pos] = index;
    pairs[2 * pos + 1] = delta;
}

/* One weight-gradient entry: the int32 update value rescale(G, M_u) of flat index `index`. */
static void tl_emit(const tl_optim_params *opt, const tl_grad_buffer *g, int32_t index,
                    int32_t value)
{
    int32_t delta;
    if (g->pairs == NULL) {
        g->acc[index] = opt->accumulate ? tl_sat32_64((int64_t)g->acc[index] + value) : value;
        return;
    }
    delta = tl_rounding_divide_by_pot(value, TL_ACCUM_FRAC_BITS);
    if (opt->momentum_multiplier != 0) {
        delta = tl_sat32_64((int64_t)tl_requantize_single(g->momentum[index],
                                                          opt->momentum_multiplier,
                                                          opt->momentum_shift) + delta);
        g->momentum[index] = delta;
    }
    if (delta != 0 && tl_mag32(delta) >= (uint32_t)opt->threshold) {
        tl_heap_offer(g->pairs, g->capacity, index, delta);
    }
}

static tl_status tl_check_grad_buffer(const tl_optim_params *opt, const tl_grad_buffer *g)
{
    if (g->pairs != NULL) {
        if (g->capacity < 1 || opt->accumulate) {
            return TL_ERR_PARAM; /* sparse pairs hold one step's deltas: no accumulation */
        }
        if (opt->momentum_multiplier != 0 && g->momentum == NULL) {
            return TL_ERR_NULL;
        }
        return TL_OK;
    }
    if (g->acc == NULL) {
        return TL_ERR_NULL;
    }
    return g->capacity < 0 ? TL_ERR_PARAM : TL_OK;
}

static tl_status tl_check_optim(const tl_optim_params *opt)
{
    if (opt == NULL) {
        return TL_ERR_NULL;
    }
    if (opt->threshold < 0 || opt->accumulate < 0 || opt->accumulate > 1) {
        return TL_ERR_PARAM;
    }
    return TL_OK;
}

static void tl_clear_pairs(const tl_grad_buffer *g)
{
    int32_t i;
    if (g->pairs != NULL) {
        for (i = 0; i < 2 * g->capacity; ++i) {
            g->pairs[i] = 0;
        }
    }
}

/* ------------------------------------------------------------------ backward */

/* The peak |G| of GB = g^T . h ([C][r]) or GA = dh^T . x_off ([r][K]) and its emission:
 * both walk the same sums, once for the block exponent and once to emit the mantissas. */
static int64_t tl_gb_entry(const tl_lora_params *p, const int16_t *grad, const int8_t *h,
                           int32_t rows, int32_t c, int32_t j)
{
    int64_t sum = 0;
    int32_t row;
    for (row = 0; row < rows; ++row) { /* |g| < 2^16, |h| <= 128: products below 2^23 */
        sum += (int32_t)grad[(size_t)row * (size_t)p->channels + (size_t)c] *
               (int32_t)h[(size_t)row * (size_t)p->rank + (size_t)j];
    }
    return sum;
}

static int64_t tl_ga_entry(const tl_lora_params *p, const int64_t *dh, const int8_t *input,
                           int32_t j, int32_t k)
{
    int64_t sum = 0;
    int32_t oy, ox, row = 0;
    for (oy = 0; oy < p->out_h; ++oy) {
        for (ox = 0; ox < p->out_w; ++ox, ++row) {
            const int32_t x_off = (int32_t)input[tl_pixel(p, oy, ox) + (size_t)k] + p->input_offset;
            /* |dh| < 2^15 (15-bit mantissa), |x_off| <= 255: below 2^23 */
            sum += (int32_t)dh[(size_t)row * (size_t)p->rank + (size_t)j] * x_off;
        }
    }
    return sum;
}

static void tl_weight_gradients(const tl_lora_params *p, const tl_optim_params *opt,
                                const int8_t *input, const int16_t *grad, int32_t e,
                                const tl_lora_tensors *lora, int32_t eh)
{
    const int32_t rows = p->out_h * p->out_w, C = p->channels, K = p->depth, r = p->rank;
    uint64_t peak = 0u;
    int32_t c, j, k, eb, ea, shift;
    /* GB = normalize31(g^T . h) -> rescale(GB, M_uB, shift + e + eb) */
    for (c = 0; c < C; ++c) {
        for (j = 0; j < r; ++j) {
            const uint64_t m = tl_mag64(tl_gb_entry(p, grad, lora->h, rows, c, j));
            peak = m > peak ? m : peak;
        }
    }
    eb = peak == 0u ? 0 : tl_bit_length64(peak) - 31;
    shift = tl_shift_sum(p->update_b_shift, e, eb, 0);
    for (c = 0; c < C; ++c) {
        for (j = 0; j < r; ++j) {
            const int32_t m = (int32_t)tl_normalize_value(tl_gb_entry(p, grad, lora->h, rows, c, j),
                                                          eb, 31);
            tl_emit(opt, &lora->db, c * r + j,
                    tl_requantize_single(m, p->update_b_multiplier, shift));
        }
    }
    /* GA = normalize31(dh^T . x_off) -> rescale(GA, M_uA, shift + e + eh + ea) */
    peak = 0u;
    for (j = 0; j < r; ++j) {
        for (k = 0; k < K; ++k) {
            const uint64_t m = tl_mag64(tl_ga_entry(p, lora->dh, input, j, k));
            peak = m > peak ? m : peak;
        }
    }
    ea = peak == 0u ? 0 : tl_bit_length64(peak) - 31;
    shift = tl_shift_sum(p->update_a_shift, e, eh, ea);
    for (j = 0; j < r; ++j) {
        for (k = 0; k < K; ++k) {
            const int32_t m = (int32_t)tl_normalize_value(tl_ga_entry(p, lora->dh, input, j, k),
                                                          ea, 31);
            tl_emit(opt, &lora->da, j * K + k,
                    tl_requantize_single(m, p->update_a_multiplier, shift));
        }
    }
}

tl_status tl_lora_backward_s8(const tl_lora_params *p, const tl_optim_params *opt,
                              const int8_t *input, const int8_t *output, int16_t *grad,
                              int32_t exponent, const tl_lora_tensors *lora, int64_t *dx,
                              int16_t *grad_in, int32_t *grad_in_exponent)
{
    int32_t rows, C, K, r, i, e, eg, eh = 0;
    int32_t oy, ox, row, c, j, k;
    uint32_t peak = 0u;
    tl_status s = tl_check_layer(p);
    if (s != TL_OK) {
        return s;
    }
    if (input == NULL || output == NULL || grad == NULL) {
        return TL_ERR_NULL;
    }
    if (exponent > TL_MAX_EXPONENT || exponent < -TL_MAX_EXPONENT) {
        return TL_ERR_PARAM;
    }
    rows = p->out_h * p->out_w;
    C = p->channels;
    K = p->depth;
    r = p->rank;
    if (lora != NULL) {
        s = tl_check_optim(opt);
        if (s != TL_OK) {
            return s;
        }
        if (lora->a8 == NULL || lora->b8 == NULL || lora->h == NULL || lora->dh == NULL) {
            return TL_ERR_NULL;
        }
        if (r < 1) {
            return TL_ERR_SHAPE;
        }
        s = tl_check_grad_buffer(opt, &lora->da);
        if (s == TL_OK) {
            s = tl_check_grad_buffer(opt, &lora->db);
        }
        if (s != TL_OK) {
            return s;
        }
    }
    if (grad_in != NULL && (dx == NULL || grad_in_exponent == NULL ||
                            p->input_ratio.multiplier == NULL || p->input_ratio.shift == NULL)) {
        return TL_ERR_NULL;
    }

    /* 1. The output clamp (lora.output_gradient_mask), then 15-bit mantissas. */
    for (i = 0; i < rows * C; ++i) {
        const int32_t g = grad[i], y = output[i];
        if ((y == p->act_min && (p->act_min_is_activation || g > 0)) ||
            (y == p->act_max && (p->act_max_is_activation || g < 0))) {
            grad[i] = 0;
        } else if (tl_mag32(g) > peak) {
            peak = tl_mag32(g);
        }
    }
    eg = peak == 0u ? 0 : tl_bit_length64(peak) - TL_GRAD_BITS;
    if (eg != 0) {
        for (i = 0; i < rows * C; ++i) {
            grad[i] = (int16_t)tl_normalize_value(grad[i], eg, TL_GRAD_BITS);
        }
    }
    e = exponent + eg;

    /* 2. The adapter: dh = normalize15(sat-mask(g . B)), then GB and GA into the updates. */
    if (lora != NULL) {
        for (row = 0; row < rows; ++row) {
            const int16_t *g = grad + (size_t)row * (size_t)C;
            for (j = 0; j < r; ++j) {
                const int32_t hv = lora->h[(size_t)row * (size_t)r + (size_t)j];
                int64_t sum = 0;
                for (c = 0; c < C; ++c) {
                    sum += (int32_t)g[c] * (int32_t)lora->b8[(size_t)c * (size_t)r + (size_t)j];
                }
                if ((hv == -128 && sum > 0) || (hv == 127 && sum < 0)) {
                    sum = 0; /* lora.saturation_mask */
                }
                lora->dh[(size_t)row * (size_t)r + (size_t)j] = sum;
            }
        }
        (void)tl_normalize_inplace(lora->dh, rows * r, TL_GRAD_BITS, &eh);
        tl_clear_pairs(&lora->da);
        tl_clear_pairs(&lora->db);
        tl_weight_gradients(p, opt, input, grad, e, lora, eh);
    }

    /* 3. The input gradient: rescale(g, s_w[c]/S) . W + rescale(dh, to_input) . A in 64 bits,
     *    normalized to 15 bits and scattered to the pixels the layer read. */
    if (grad_in != NULL) {
        const int32_t dh_shift = tl_shift_sum(p->to_input_shift, eh, 0, 0);
        int32_t ex;
        row = 0;
        for (oy = 0; oy < p->out_h; ++oy) {
            for (ox = 0; ox < p->out_w; ++ox, ++row) {
                int64_t *d = dx + (size_t)row * (size_t)K;
                for (k = 0; k < K; ++k) {
                    d[k] = 0;
                }
                for (c = 0; c < C; ++c) {
                    const int32_t gs = tl_requantize_single(grad[(size_t)row * (size_t)C + (size_t)c],
                                                            p->input_ratio.multiplier[c],
                                                            p->input_ratio.shift[c]);
                    const int8_t *w = p->weights + (size_t)c * (size_t)K;
                    if (gs == 0) {
                        continue;
                    }
                    if (gs > -(1 << 23) && gs < (1 << 23)) { /* the product fits int32 */
                        for (k = 0; k < K; ++k) {
                            d[k] += gs * (int32_t)w[k];
                        }
                    } else {
                        for (k = 0; k < K; ++k) {
                            d[k] += (int64_t)gs * w[k];
                        }
                    }
                }
                if (lora != NULL) {
                    for (j = 0; j < r; ++j) {
                        const int32_t ds = tl_requantize_single(
                            (int32_t)lora->dh[(size_t)row * (size_t)r + (size_t)j],
                            p->to_input_multiplier, dh_shift);
                        const int8_t *a = lora->a8 + (size_t)j * (size_t)K;
                        if (ds == 0) {
                            continue;
                        }
                        if (ds > -(1 << 23) && ds < (1 << 23)) { /* the product fits int32 */
                            for (k = 0; k < K; ++k) {
                                d[k] += ds * (int32_t)a[k];
                            }
                        } else {
                            for (k = 0; k < K; ++k) {
                                d[k] += (int64_t)ds * a[k];
                            }
                        }
                    }
                }
            }
        }
        ex = tl_normalize_exponent(dx, rows * K, TL_GRAD_BITS);
        for (i = 0; i < p->in_h * p->in_w * K; ++i) {
            grad_in[i] = 0;
        }
        row = 0;
        for (oy = 0; oy < p->out_h; ++oy) {
            for (ox = 0; ox < p->out_w; ++ox, ++row) {
                int16_t *gi = grad_in + tl_pixel(p, oy, ox);
                const int64_t *d = dx + (size_t)row * (size_t)K;
                for (k = 0; k < K; ++k) {
                    gi[k] = (int16_t)tl_normalize_value(d[k], ex, TL_GRAD_BITS);
                }
            }
        }
        *grad_in_exponent = e + ex;
    }
    return TL_OK;
}

tl_status tl_reshape_backward_s16(int32_t n, const int16_t *grad, int16_t *grad_in)
{
    int32_t i;
    if (grad == NULL || grad_in == NULL) {
        return TL_ERR_NULL;
    }
    if (n < 0) {
        return TL_ERR_SHAPE;
    }
    if (grad != grad_in) {
        for (i = 0; i < n; ++i) {
            grad_in[i] = grad[i];
        }
    }
    return TL_OK;
}

/* ------------------------------------------------------------------ update */

tl_status tl_refresh_view_s8(int32_t n, const int16_t *master, int8_t *view)
{
    int32_t i;
    if (n > 0 && (master == NULL || view == NULL)) {
        return TL_ERR_NULL;
    }
    for (i = 0; i < n; ++i) {
        view[i] = tl_sat8(tl_rounding_divide_by_pot(master[i], TL_MASTER_FRAC_BITS), -127, 127);
    }
    return TL_OK;
}

/* How many of the n deltas (held in d) are applicable with magnitude >= at_least. */
static int32_t tl_count_at_least(const int32_t *d, int32_t n, uint32_t threshold, uint32_t at_least)
{
    int32_t i, count = 0;
    for (i = 0; i < n; ++i) {
        const uint32_t m = tl_mag32(d[i]);
        count += (d[i] != 0 && m >= threshold && m >= at_least) ? 1 : 0;
    }
    return count;
}

tl_status tl_update_s16(const tl_optim_params *opt, int32_t n, const tl_grad_buffer *g,
                        int16_t *master, int8_t *view)
{
    int32_t i;
    tl_status s = tl_check_optim(opt);
    if (s != TL_OK) {
        return s;
    }
    if (g == NULL || master == NULL || view == NULL) {
        return TL_ERR_NULL;
    }
    if (n < 0) {
        return TL_ERR_SHAPE;
    }
    if (g->pairs != NULL) {
        if (g->capacity < 1) {
            return TL_ERR_PARAM;
        }
        for (i = 0; i < g->capacity; ++i) { /* validate before changing anything */
            if (g->pairs[2 * i + 1] != 0 && (g->pairs[2 * i] < 0 || g->pairs[2 * i] >= n)) {
                return TL_ERR_PARAM;
            }
        }
        for (i = 0; i < g->capacity; ++i) {
            const int32_t index = g->pairs[2 * i], delta = g->pairs[2 * i + 1];
            if (delta != 0) {
                master[index] = tl_sat16_64((int64_t)master[index] - delta);
            }
        }
        tl_clear_pairs(g);
    } else {
        const uint32_t threshold = (uint32_t)opt->threshold;
        int32_t *d = g->acc;
        uint32_t cut = 0u;  /* with a capacity: keep |delta| > cut, and `quota` equal to it */
        int32_t quota = -1; /* -1: no capacity cut */
        if (d == NULL) {
            return TL_ERR_NULL;
        }
        if (g->capacity < 0) {
            return TL_ERR_PARAM;
        }
        if (opt->momentum_multiplier != 0 && g->momentum == NULL) {
            return TL_ERR_NULL;
        }
        /* delta = rdbp(acc, 8) (and momentum), held in the accumulator until it is reset */
        for (i = 0; i < n; ++i) {
            int32_t delta = tl_rounding_divide_by_pot(d[i], TL_ACCUM_FRAC_BITS);
            if (opt->momentum_multiplier != 0) {
                delta = tl_sat32_64((int64_t)tl_requantize_single(g->momentum[i],
                                                                  opt->momentum_multiplier,
                                                                  opt->momentum_shift) + delta);
                g->momentum[i] = delta;
            }
            d[i] = delta;
        }
        if (g->capacity > 0 && tl_count_at_least(d, n, threshold, 0u) > g->capacity) {
            /* cut = the largest magnitude m with at least `capacity` applicable |delta| >= m,
             * built bit by bit (the count falls as m grows); then every |delta| > cut and
             * the first (by index) `quota` entries equal to it are the top `capacity`. */
            int32_t bit;
            for (bit = 31; bit >= 0; --bit) {
                const uint32_t candidate = cut | (1u << bit);
                if (tl_count_at_least(d, n, threshold, candidate) >= g->capacity) {
                    cut = candidate;
                }
            }
            quota = g->capacity - (cut == 0xFFFFFFFFu ? 0 : tl_count_at_least(d, n, threshold, cut + 1u));
        }
        for (i = 0; i < n; ++i) {
            const uint32_t m = tl_mag32(d[i]);
            int keep = d[i] != 0 && m >= threshold;
            if (keep && quota >= 0 && m <= cut) {
                keep = m == cut && quota > 0;
                quota -= keep ? 1 : 0;
            }
            if (keep) {
                master[i] = tl_sat16_64((int64_t)master[i] - d[i]);
            }
            d[i] = 0;
        }
    }
    return tl_refresh_view_s8(n, master, view);
}
