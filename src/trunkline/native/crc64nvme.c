/*
 * CRC-64/NVME (AWS's CRC64NVME: the checksum S3 computes for every new object), for the
 * compiled receive loop.
 *
 * Why this is ours: a download of an object whose store keeps a CRC64NVME must sum it
 * beside the CRC32C, inside the loop that runs with the interpreter lock released. No
 * library on these machines exports one to C: ISA-L has it from 2.31 (crc64_rocksoft),
 * Debian 12 ships 2.30; awscrt exports only its Python wrapper. Without it such a body
 * went through the Python loop (~0.2 user s/GB more, the lock held per chunk).
 *
 * Two ways, same results (tests/unit/test_crc64nvme.py holds both against awscrt):
 * carry-less multiplication (PCLMULQDQ) folding four 128-bit lanes, 64 bytes a turn, where
 * the CPU has it, and a byte table elsewhere and for the last < 16 bytes. The folding
 * constants are x^e mod G, computed at start from the polynomial, not typed in.
 *
 * Reflected-domain arithmetic (refin/refout): a 64-bit value's bit i is the coefficient of
 * x^(63-i); a 128-bit lane loaded little-endian, bit i that of x^(127-i). A carry-less
 * product of two such 64-bit values, read as 128 bits, is A*B*x: so a lane S = H*x^64 + L
 * (H: its first 8 bytes) moved D bits on, S*x^D, is clmul(H, x^(D+63) mod G) ^
 * clmul(L, x^(D-1) mod G), below 128 bits and congruent mod G. At the end the lane is
 * reduced by running the table over its 16 bytes from a zero register (S ≡ the message
 * so far, so its CRC register is the message's).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define POLY_REFLECTED 0x9A6C9329AC4BC9B5ull   /* 0xAD93D23594C93659, bit-reversed */
#define POLY_NORMAL 0xAD93D23594C93659ull

static uint64_t table[256];
static int have_clmul = 0;
static uint64_t k_128[2], k_512[2];   /* {x^(D+63) mod G, x^(D-1) mod G}, reflected */

static uint64_t reverse64(uint64_t v) {
    uint64_t r = 0;
    for (int i = 0; i < 64; i++) {
        r = (r << 1) | (v & 1);
        v >>= 1;
    }
    return r;
}

/* x^e mod G, as a reflected 64-bit value */
static uint64_t xpow_mod(unsigned e) {
    uint64_t v = 1;   /* normal form: bit i is the coefficient of x^i */
    while (e--) v = (v << 1) ^ ((v >> 63) ? POLY_NORMAL : 0);
    return reverse64(v);
}

void tl_crc64nvme_init(void) {
    for (uint64_t i = 0; i < 256; i++) {
        uint64_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ ((c & 1) ? POLY_REFLECTED : 0);
        table[i] = c;
    }
    k_128[0] = xpow_mod(128 + 63);
    k_128[1] = xpow_mod(128 - 1);
    k_512[0] = xpow_mod(512 + 63);
    k_512[1] = xpow_mod(512 - 1);
#if defined(__x86_64__)
    __builtin_cpu_init();
    have_clmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
#endif
}

/* The uninverted register r over n bytes, a byte at a time. */
static uint64_t by_table(uint64_t r, const unsigned char *p, size_t n) {
    while (n--) r = table[(r ^ *p++) & 0xFF] ^ (r >> 8);
    return r;
}

#if defined(__x86_64__)
__attribute__((target("pclmul,sse4.1")))
static inline __m128i fold(__m128i s, __m128i k) {
    return _mm_xor_si128(_mm_clmulepi64_si128(s, k, 0x00), _mm_clmulepi64_si128(s, k, 0x11));
}

__attribute__((target("pclmul,sse4.1")))
static uint64_t by_clmul(uint64_t r, const unsigned char *p, size_t n) {
    /* n >= 64. The register goes into the first 8 bytes (the CRC of the message with
     * them xored by r equals the CRC from register r). */
    const __m128i K4 = _mm_set_epi64x((long long)k_512[1], (long long)k_512[0]);
    const __m128i K1 = _mm_set_epi64x((long long)k_128[1], (long long)k_128[0]);
    __m128i x0 = _mm_loadu_si128((const __m128i *)p);
    __m128i x1 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 32));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 48));
    x0 = _mm_xor_si128(x0, _mm_set_epi64x(0, (long long)r));
    p += 64;
    n -= 64;
    while (n >= 64) {
        x0 = _mm_xor_si128(fold(x0, K4), _mm_loadu_si128((const __m128i *)p));
        x1 = _mm_xor_si128(fold(x1, K4), _mm_loadu_si128((const __m128i *)(p + 16)));
        x2 = _mm_xor_si128(fold(x2, K4), _mm_loadu_si128((const __m128i *)(p + 32)));
        x3 = _mm_xor_si128(fold(x3, K4), _mm_loadu_si128((const __m128i *)(p + 48)));
        p += 64;
        n -= 64;
    }
    /* the lanes in message order: lane0*x^384 + lane1*x^256 + lane2*x^128 + lane3 */
    x1 = _mm_xor_si128(x1, fold(x0, K1));
    x2 = _mm_xor_si128(x2, fold(x1, K1));
    x3 = _mm_xor_si128(x3, fold(x2, K1));
    while (n >= 16) {
        x3 = _mm_xor_si128(fold(x3, K1), _mm_loadu_si128((const __m128i *)p));
        p += 16;
        n -= 16;
    }
    unsigned char lane[16];
    _mm_storeu_si128((__m128i *)lane, x3);
    return by_table(by_table(0, lane, 16), p, n);
}
#endif

/* crc: the usual (finalised) CRC64NVME value of what came before (0 to start). */
uint64_t tl_crc64nvme_update(uint64_t crc, const unsigned char *p, size_t n, int use_clmul) {
    uint64_t r = ~crc;
#if defined(__x86_64__)
    if (use_clmul && have_clmul && n >= 64) return ~by_clmul(r, p, n);
#endif
    (void)use_clmul;
    return ~by_table(r, p, n);
}

int tl_crc64nvme_clmul(void) { return have_clmul; }
