/*
 * glob.h — Redis's glob-style pattern matching (KEYS, SCAN MATCH, PDEL, PSUBSCRIBE).
 */
#ifndef RC_RESP_GLOB_H
#define RC_RESP_GLOB_H

#include <stddef.h>
#include <stdint.h>

/*
 * Returns 1 if str[0..slen) matches pattern[0..plen), else 0, with the results of Redis
 * 7's stringmatchlen: '*' any run of bytes, '?' one byte, [abc] [^abc] [a-z] classes (a
 * reversed range [z-a] works too), \x the byte x; nocase folds ASCII letters. Redis's
 * corner cases are kept: the empty string matches only the empty pattern (even "*" does
 * not match it; callers treat a lone "*" as "everything" before calling); an unclosed
 * class "[ab" runs to the end of the pattern; "[a-]" is the range from 'a' to ']'; an
 * escape inside a class ignores nocase; a pattern with more than 1000 '*' groups before its
 * last element never matches (Redis's recursion limit); range ends compare as signed char,
 * as in Redis on x86-64 (char is unsigned on arm64 Linux, so there Redis itself answers
 * differently for ranges that mix ASCII and bytes >= 0x80).
 *
 * Time is O(plen * slen) at worst, whatever the pattern ("*a*a*a…b" included): no
 * recursion, no exponential backtracking.
 */
int resp_glob_match(const char *pattern, size_t plen, const char *str, size_t slen, int nocase);

/* True for the pattern "*": callers select every key without matching, as Redis's KEYS and
 * SCAN do (which is what makes them return the empty key: a glob match of "*" refuses ""). */
int resp_glob_matches_all(const char *pattern, size_t plen);

/* Length of the pattern's literal prefix (up to its first special character): only keys
 * starting with it can match, so scans can be limited to them. */
size_t resp_glob_literal_prefix(const char *pattern, size_t plen);

/* resp_glob_match that also adds to *steps the number of loop steps it took (tests use it
 * to check the time bound without a clock). */
int resp_glob_match_counted(const char *pattern, size_t plen, const char *str, size_t slen,
                            int nocase, uint64_t *steps);

#endif
