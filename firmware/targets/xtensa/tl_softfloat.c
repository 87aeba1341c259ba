/*
 * tinylora test target (QEMU sim, Xtensa LX106): the IEEE binary32 routines Debian's
 * xtensa-lx106-elf libgcc lacks (the ESP8266 takes them from its ROM): __addsf3, __subsf3,
 * __mulsf3, __floatsisf. Only the float ends of a model use them (tl_quantize_f32_s8,
 * tl_dequantize_s8_f32). Round to nearest, ties to even, subnormals included, NaN results
 * are the default quiet NaN; no exception flags. Checked through tests/test_ops_c.py, whose
 * float results are compared bit for bit with numpy's.
 */
#include <stdint.h>

float __addsf3(float a, float b);
float __subsf3(float a, float b);
float __mulsf3(float a, float b);
float __floatsisf(int32_t i);

typedef union {
    float f;
    uint32_t u;
} tl_f32;

#define TL_F32_NAN 0x7FC00000u

static float tl_f32_of(uint32_t u)
{
    tl_f32 v;
    v.u = u;
    return v.f;
}

static uint32_t tl_bits_of(float f)
{
    tl_f32 v;
    v.f = f;
    return v.u;
}

/* sign * m * 2^e (m > 0; its low bit may be a sticky bit) rounded to binary32. */
static uint32_t tl_round_pack(uint32_t sign, int32_t e, uint64_t m)
{
    int32_t biased, shift;
    uint64_t mant, rem, half;
    while ((m >> 63) == 0u) { /* normalise: top bit at 63 */
        m <<= 1;
        --e;
    }
    biased = e + 63 + 127; /* value = 1.xxx * 2^(e + 63) */
    if (biased >= 255) {
        return sign | 0x7F800000u;
    }
    shift = biased >= 1 ? 40 : 40 + (1 - biased); /* bits below the kept mantissa */
    if (shift > 64) {
        return sign; /* below half the smallest subnormal */
    }
    mant = shift == 64 ? 0u : m >> shift;
    rem = shift == 64 ? m : m & ((((uint64_t)1) << shift) - 1u);
    half = ((uint64_t)1) << (shift - 1);
    if (rem > half || (rem == half && (mant & 1u))) {
        ++mant;
    }
    if (biased >= 1) {
        if (mant == ((uint64_t)1 << 24)) {
            mant >>= 1;
            ++biased;
            if (biased >= 255) {
                return sign | 0x7F800000u;
            }
        }
        return sign | ((uint32_t)biased << 23) | ((uint32_t)mant & 0x7FFFFFu);
    }
    return sign | (uint32_t)mant; /* a carry into bit 23 is the smallest normal */
}

/* finite non-zero u -> mantissa and exponent: value = m * 2^e. */
static void tl_unpack(uint32_t u, uint64_t *m, int32_t *e)
{
    const uint32_t bexp = (u >> 23) & 0xFFu;
    const uint32_t frac = u & 0x7FFFFFu;
    if (bexp == 0u) {
        *m = frac;
        *e = -149;
    } else {
        *m = frac | 0x800000u;
        *e = (int32_t)bexp - 150;
    }
}

static int tl_is_nan(uint32_t u)
{
    return (u & 0x7FFFFFFFu) > 0x7F800000u;
}

static int tl_is_inf(uint32_t u)
{
    return (u & 0x7FFFFFFFu) == 0x7F800000u;
}

float __mulsf3(float a, float b)
{
    const uint32_t ua = tl_bits_of(a), ub = tl_bits_of(b);
    const uint32_t sign = (ua ^ ub) & 0x80000000u;
    const int a_zero = (ua & 0x7FFFFFFFu) == 0u, b_zero = (ub & 0x7FFFFFFFu) == 0u;
    uint64_t ma, mb;
    int32_t ea, eb;
    if (tl_is_nan(ua) || tl_is_nan(ub) || (tl_is_inf(ua) && b_zero) || (tl_is_inf(ub) && a_zero)) {
        return tl_f32_of(TL_F32_NAN);
    }
    if (tl_is_inf(ua) || tl_is_inf(ub)) {
        return tl_f32_of(sign | 0x7F800000u);
    }
    if (a_zero || b_zero) {
        return tl_f32_of(sign);
    }
    tl_unpack(ua, &ma, &ea);
    tl_unpack(ub, &mb, &eb);
    return tl_f32_of(tl_round_pack(sign, ea + eb, ma * mb)); /* 48-bit product: exact */
}

float __addsf3(float a, float b)
{
    uint32_t ua = tl_bits_of(a), ub = tl_bits_of(b), sign;
    uint64_t ma, mb, m;
    int32_t ea, eb, d;
    if (tl_is_nan(ua) || tl_is_nan(ub) ||
        (tl_is_inf(ua) && tl_is_inf(ub) && ((ua ^ ub) & 0x80000000u))) {
        return tl_f32_of(TL_F32_NAN);
    }
    if (tl_is_inf(ua)) {
        return a;
    }
    if (tl_is_inf(ub)) {
        return b;
    }
    if ((ua & 0x7FFFFFFFu) == 0u) {
        return (ub & 0x7FFFFFFFu) == 0u ? tl_f32_of(ua & ub) : b; /* -0 + -0 = -0 */
    }
    if ((ub & 0x7FFFFFFFu) == 0u) {
        return a;
    }
    tl_unpack(ua, &ma, &ea);
    tl_unpack(ub, &mb, &eb);
    if (ea < eb) { /* a: the larger exponent */
        uint32_t tu = ua;
        uint64_t tm = ma;
        int32_t te = ea;
        ua = ub, ma = mb, ea = eb;
        ub = tu, mb = tm, eb = te;
    }
    ma <<= 38; /* 24 + 38 = 62 bits: room for a carry, 38 guard bits */
    mb <<= 38;
    d = ea - eb;
    if (d >= 62) {
        mb = 1u; /* only a sticky bit survives */
    } else if (d > 0) {
        mb = (mb >> d) | ((mb & ((((uint64_t)1) << d) - 1u)) != 0u ? 1u : 0u);
    }
    if (((ua ^ ub) & 0x80000000u) == 0u) {
        m = ma + mb;
        sign = ua & 0x80000000u;
    } else if (ma >= mb) {
        m = ma - mb;
        sign = ua & 0x80000000u;
    } else {
        m = mb - ma;
        sign = ub & 0x80000000u;
    }
    if (m == 0u) {
        return tl_f32_of(0u); /* x - x = +0 when rounding to nearest */
    }
    return tl_f32_of(tl_round_pack(sign, ea - 38, m));
}

float __subsf3(float a, float b)
{
    return __addsf3(a, tl_f32_of(tl_bits_of(b) ^ 0x80000000u));
}

float __floatsisf(int32_t i)
{
    uint32_t sign = 0u;
    uint64_t m;
    if (i == 0) {
        return tl_f32_of(0u);
    }
    if (i < 0) {
        sign = 0x80000000u;
        m = (uint64_t)(-(int64_t)i);
    } else {
        m = (uint64_t)i;
    }
    return tl_f32_of(tl_round_pack(sign, 0, m));
}
