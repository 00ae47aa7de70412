/*
 * fuzz_glob.c — libFuzzer target for resp_glob_match (src/resp/glob.c).
 *
 * Input: byte 0 is the nocase flag (low bit); byte 1 says where the rest splits into pattern
 * and string. The answer is checked against an independent oracle, a dynamic programme over
 * (pattern element, string position) that knows nothing of the two-pointer method, and the
 * step count against the O(plen * slen) bound.
 */
#include "resp/glob.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LEN 256

/* Offset just after the pattern element at p (Redis's element boundaries). */
static size_t element_end(const unsigned char *pat, size_t plen, size_t p)
{
    if (pat[p] == '\\')
        return plen - p >= 2 ? p + 2 : p + 1;
    if (pat[p] != '[')
        return p + 1;
    size_t q = p + 1;
    if (q < plen && pat[q] == '^')
        q++;
    while (q < plen) {
        if (pat[q] == '\\' && plen - q >= 2)
            q += 2;
        else if (pat[q] == ']')
            return q + 1;
        else if (plen - q >= 3 && pat[q + 1] == '-')
            q += 3;
        else
            q++;
    }
    return plen;
}

static int oracle(const unsigned char *pat, size_t plen, const unsigned char *s, size_t slen,
                  int nocase)
{
    if (slen == 0)
        return plen == 0;
    size_t starts[MAX_LEN + 1], ends[MAX_LEN + 1], n = 0, nonfinal_groups = 0;
    for (size_t p = 0; p < plen;) {
        starts[n] = p;
        ends[n] = pat[p] == '*' ? p + 1 : element_end(pat, plen, p);
        if (pat[p] == '*' && (n == 0 || pat[starts[n - 1]] != '*')) {
            size_t q = p;
            while (q < plen && pat[q] == '*')
                q++;
            if (q < plen)
                nonfinal_groups++;
        }
        p = ends[n++];
    }
    if (nonfinal_groups > 1000)
        return 0;
    /* ok[i][j]: elements i.. match s[j..]. */
    static unsigned char ok[MAX_LEN + 2][MAX_LEN + 2];
    for (size_t j = 0; j <= slen; j++)
        ok[n][j] = j == slen;
    for (size_t i = n; i-- > 0;) {
        for (size_t j = slen + 1; j-- > 0;) {
            if (pat[starts[i]] == '*') {
                ok[i][j] = ok[i + 1][j] || (j < slen && ok[i][j + 1]);
            } else {
                /* One element against one byte: the library's own single-element answer. */
                ok[i][j] = j < slen &&
                           resp_glob_match((const char *)pat + starts[i], ends[i] - starts[i],
                                           (const char *)s + j, 1, nocase) &&
                           ok[i + 1][j + 1];
            }
        }
    }
    return ok[0][0];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int nocase = data[0] & 1;
    size_t rest = size - 2;
    size_t plen = rest ? data[1] % (rest + 1) : 0;
    size_t slen = rest - plen;
    if (plen > MAX_LEN || slen > MAX_LEN)
        return 0;
    const unsigned char *pat = data + 2, *s = data + 2 + plen;
    uint64_t steps = 0;
    int got =
        resp_glob_match_counted((const char *)pat, plen, (const char *)s, slen, nocase, &steps);
    if (steps > (uint64_t)(plen + 1) * (slen + 1))
        abort();
    if (got != oracle(pat, plen, s, slen, nocase))
        abort();
    return 0;
}
