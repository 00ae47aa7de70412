/* test_common.c — CRC-32C, allocator fault injection, file helpers. */
#include "test.h"

#include "common/alloc.h"
#include "common/crc32c.h"
#include "common/fileio.h"
#include "raftcask.h"

#include <stdio.h>

TEST(crc32c_known_vectors)
{
    CHECK_EQ_U(rc_crc32c(0, "123456789", 9), 0xE3069283u);
    CHECK_EQ_U(rc_crc32c_sw(0, "123456789", 9), 0xE3069283u);
    CHECK_EQ_U(rc_crc32c(0, "", 0), 0);
    unsigned char zeros[32] = {0};
    CHECK_EQ_U(rc_crc32c(0, zeros, 32), 0x8A9136AAu); /* RFC 3720 B.4 */
}

TEST(crc32c_hw_matches_sw_and_is_incremental)
{
    uint64_t st = test_seed(7);
    unsigned char buf[1000];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)test_rand(&st);
    for (size_t len = 0; len <= sizeof buf; len += 13) {
        uint32_t whole = rc_crc32c(0, buf, len);
        CHECK_EQ_U(whole, rc_crc32c_sw(0, buf, len));
        size_t cut = len / 3;
        CHECK_EQ_U(whole, rc_crc32c(rc_crc32c(0, buf, cut), buf + cut, len - cut));
    }
}

TEST(alloc_failure_injection)
{
    rc_alloc_fail_after(2);
    void *a = rc_malloc(10), *b = rc_malloc(10), *c = rc_malloc(10);
    CHECK(a && b && !c);
    CHECK(rc_realloc(a, 100) == NULL);
    rc_alloc_fail_after(-1);
    void *d = rc_malloc(10);
    CHECK(d);
    rc_free(a);
    rc_free(b);
    rc_free(d);
    CHECK(rc_alloc_failures() >= 2);
}

TEST(atomic_file_write_and_read)
{
    const char *dir = test_tmpdir();
    CHECK_OK(rc_write_file_atomic(dir, "f", "hello", 5));
    char path[4096];
    snprintf(path, sizeof path, "%s/f", dir);
    void *data;
    size_t len;
    CHECK_OK(rc_read_file(path, &data, &len));
    CHECK_MEM(data, len, "hello", 5);
    rc_free(data);
    snprintf(path, sizeof path, "%s/absent", dir);
    CHECK_EQ(rc_read_file(path, &data, &len), RC_ENOTFOUND);
}

TEST(strerror_covers_codes)
{
    for (int c = 0; c >= RC_EAGAIN; c--)
        CHECK(strcmp(rc_strerror(c), "unknown error") != 0);
}
