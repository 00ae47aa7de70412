/*
 * glob.c — glob matching with the results of Redis's stringmatchlen (see glob.h).
 *
 * Redis matches recursively: at each '*' it tries the rest of the pattern at every later
 * position of the string. That is exponential on patterns like "*a*a*a*a*b" until Redis
 * added an early exit (skipLongerMatches) and a nesting limit. We get the same answers
 * without recursion, by the classic two-pointer method:
 *
 *   - walk pattern and string together, one pattern element against one byte;
 *   - at a '*', remember where it was and at which string position it started matching,
 *     first assuming it matches nothing;
 *   - on a mismatch, go back to the most recent '*' only, and let it swallow one more byte.
 *
 * Going back to only the most recent '*' is enough: every element other than '*' matches
 * exactly one byte, so if the rest of the pattern after the last '*' cannot match from any
 * later position, letting an earlier '*' match more cannot help (the same argument Redis's
 * skipLongerMatches comment makes). Each retry of the last '*' costs at most one pass over
 * the pattern, hence O(plen * slen) in all.
 *
 * Redis's corner cases that the two-pointer loop does not give by itself are handled
 * explicitly: the empty string (match_empty), and the nesting limit (too_many_stars).
 */
#include "resp/glob.h"

/* Redis gives up past this many nested '*' recursions (stringmatchlen_impl's nesting). */
#define REDIS_STAR_NESTING_LIMIT 1000

static unsigned char fold(unsigned char c, int nocase)
{
    /* Redis calls tolower() in the C locale: ASCII letters only. */
    return nocase && c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/*
 * Redis compares range ends as `char`, which is signed on the platforms it ships for, so a
 * range mixing ASCII and bytes >= 0x80 ("[\xe9-A]") covers what signed order says. We keep
 * that for identical answers; ranges within ASCII or within 0x80-0xff are unaffected.
 */
static int as_signed_char(unsigned char c)
{
    return c >= 128 ? (int)c - 256 : (int)c;
}

/*
 * Matches the class that starts at pattern[p] == '[' against byte c. Returns whether it
 * matches and sets *end to the offset just after the class. The class runs to its ']' or,
 * if unclosed, to the end of the pattern; inside it, \x is the byte x (compared exactly,
 * even with nocase, as in Redis), "a-z" is a range in either order, and any other byte
 * stands for itself — including ']' as the end of a range.
 */
static int match_class(const unsigned char *pat, size_t plen, size_t p, unsigned char c, int nocase,
                       size_t *end)
{
    size_t q = p + 1;
    int negate = q < plen && pat[q] == '^';
    if (negate)
        q++;
    int matched = 0;
    for (;;) {
        if (q == plen) {
            break;
        } else if (pat[q] == '\\' && plen - q >= 2) {
            if (pat[q + 1] == c)
                matched = 1;
            q += 2;
        } else if (pat[q] == ']') {
            q++;
            break;
        } else if (plen - q >= 3 && pat[q + 1] == '-') {
            int lo = as_signed_char(pat[q]), hi = as_signed_char(pat[q + 2]);
            if (lo > hi) {
                int t = lo;
                lo = hi;
                hi = t;
            }
            /* Like Redis, fold the ends after ordering them. */
            lo = as_signed_char(fold((unsigned char)lo, nocase));
            hi = as_signed_char(fold((unsigned char)hi, nocase));
            int fc = as_signed_char(fold(c, nocase));
            if (fc >= lo && fc <= hi)
                matched = 1;
            q += 3;
        } else {
            if (fold(pat[q], nocase) == fold(c, nocase))
                matched = 1;
            q++;
        }
    }
    *end = q;
    return negate ? !matched : matched;
}

/*
 * Matches the one-byte element at pattern[p] (anything but '*') against c; sets *end to the
 * offset after the element, whether or not it matched.
 */
static int match_element(const unsigned char *pat, size_t plen, size_t p, unsigned char c,
                         int nocase, size_t *end)
{
    switch (pat[p]) {
    case '?':
        *end = p + 1;
        return 1;
    case '[':
        return match_class(pat, plen, p, c, nocase, end);
    case '\\':
        /* A trailing lone backslash is a literal backslash. */
        if (plen - p >= 2) {
            *end = p + 2;
            return fold(pat[p + 1], nocase) == fold(c, nocase);
        }
        /* fall through */
    default:
        *end = p + 1;
        return fold(pat[p], nocase) == fold(c, nocase);
    }
}

/*
 * Whether Redis's recursion limit makes every match fail: Redis recurses once per '*'
 * group it passes (a run of '*' counts once), except for a group that ends the pattern,
 * which matches at once; past REDIS_STAR_NESTING_LIMIT levels it answers "no match". Any
 * successful match passes every group before the last element, so the answer depends only
 * on how many such groups there are.
 */
static int too_many_stars(const unsigned char *pat, size_t plen)
{
    size_t groups = 0, p = 0;
    while (p < plen) {
        if (pat[p] == '*') {
            while (p < plen && pat[p] == '*')
                p++;
            if (p < plen)
                groups++;
            continue;
        }
        size_t end;
        match_element(pat, plen, p, 0, 0, &end);
        p = end;
    }
    return groups > REDIS_STAR_NESTING_LIMIT;
}

int resp_glob_match_counted(const char *pattern, size_t plen, const char *str, size_t slen,
                            int nocase, uint64_t *steps)
{
    const unsigned char *pat = (const unsigned char *)pattern;
    const unsigned char *s = (const unsigned char *)str;

    /* Redis's loop never starts on an empty string: only the empty pattern matches it. */
    if (slen == 0)
        return plen == 0;
    if (too_many_stars(pat, plen))
        return 0;

    const size_t none = SIZE_MAX;
    size_t pi = 0, si = 0;
    size_t star_pi = none; /* pattern offset just after the last '*' group seen */
    size_t star_si = 0;    /* string offset where that '*' stopped swallowing */
    uint64_t n = 0;
    while (si < slen) {
        n++;
        if (pi < plen && pat[pi] == '*') {
            while (pi < plen && pat[pi] == '*')
                pi++;
            if (pi == plen) {
                *steps += n;
                return 1; /* a final '*' swallows the rest */
            }
            star_pi = pi;
            star_si = si;
            continue;
        }
        size_t end;
        if (pi < plen && match_element(pat, plen, pi, s[si], nocase, &end)) {
            pi = end;
            si++;
            continue;
        }
        if (star_pi == none) {
            *steps += n;
            return 0;
        }
        /* Let the last '*' swallow one more byte and retry the rest of the pattern. */
        star_si++;
        si = star_si;
        pi = star_pi;
    }
    /* The string is used up: only '*'s may remain. */
    while (pi < plen && pat[pi] == '*')
        pi++;
    *steps += n;
    return pi == plen;
}

int resp_glob_match(const char *pattern, size_t plen, const char *str, size_t slen, int nocase)
{
    uint64_t steps = 0;
    return resp_glob_match_counted(pattern, plen, str, slen, nocase, &steps);
}

int resp_glob_matches_all(const char *pattern, size_t plen)
{
    return plen == 1 && pattern[0] == '*';
}

size_t resp_glob_literal_prefix(const char *pattern, size_t plen)
{
    size_t i = 0;
    while (i < plen && pattern[i] != '*' && pattern[i] != '?' && pattern[i] != '[' &&
           pattern[i] != '\\')
        i++;
    return i;
}
