/* test_raft_codec.c — byte encoding of Raft messages, entries and configurations. */
#include "test.h"

#include "common/alloc.h"
#include "raft/raft.h"
#include "raftcask.h"

static struct raft_message sample_message(struct raft_entry *ents)
{
    static char a[] = "hello", b[] = "world!";
    ents[0] =
        (struct raft_entry){.term = 3, .index = 10, .type = RAFT_ENTRY_NORMAL, .len = 5, .data = a};
    ents[1] = (struct raft_entry){.term = 4, .index = 11, .type = RAFT_ENTRY_NOOP};
    ents[2] =
        (struct raft_entry){.term = 4, .index = 12, .type = RAFT_ENTRY_CONFIG, .len = 6, .data = b};
    struct raft_message m = {.type = RAFT_MSG_APPEND,
                             .from = 1,
                             .to = 0xFFFFFFFFFFFFFFFFull,
                             .term = 4,
                             .log_index = 9,
                             .log_term = 3,
                             .commit = 8,
                             .ctx = 77,
                             .n_entries = 3,
                             .entries = ents};
    m.snapshot.config.n_voters = 2;
    m.snapshot.config.voters[0] = 1;
    m.snapshot.config.voters[1] = 2;
    m.snapshot.crc = 0xE3069283u;
    return m;
}

TEST(codec_message_round_trip)
{
    struct raft_entry ents[3];
    struct raft_message m = sample_message(ents);
    size_t len = raft_msg_encoded_size(&m);
    unsigned char *buf = rc_malloc(len);
    CHECK_EQ_U(raft_msg_encode(&m, buf), len);
    struct raft_message d;
    CHECK_OK(raft_msg_decode(buf, len, &d));
    CHECK_EQ(d.type, RAFT_MSG_APPEND);
    CHECK_EQ_U(d.to, 0xFFFFFFFFFFFFFFFFull);
    CHECK_EQ_U(d.log_index, 9);
    CHECK_EQ_U(d.commit, 8);
    CHECK_EQ_U(d.ctx, 77);
    CHECK_EQ_U(d.n_entries, 3);
    CHECK_MEM(d.entries[0].data, d.entries[0].len, "hello", 5);
    CHECK(d.entries[1].data == NULL && d.entries[1].len == 0);
    CHECK_EQ(d.entries[2].type, RAFT_ENTRY_CONFIG);
    CHECK_EQ_U(d.snapshot.config.n_voters, 2);
    CHECK_EQ_U(d.snapshot.config.voters[1], 2);
    CHECK_EQ_U(d.snapshot.crc, 0xE3069283u);
    raft_msg_decoded_free(&d);
    rc_free(buf);
}

TEST(codec_rejects_every_truncation_and_trailing_bytes)
{
    struct raft_entry ents[3];
    struct raft_message m = sample_message(ents);
    size_t len = raft_msg_encoded_size(&m);
    unsigned char *buf = rc_malloc(len + 1);
    raft_msg_encode(&m, buf);
    struct raft_message d;
    for (size_t cut = 0; cut < len; cut++)
        CHECK_EQ(raft_msg_decode(buf, cut, &d), RC_EPROTO);
    buf[len] = 0;
    CHECK_EQ(raft_msg_decode(buf, len + 1, &d), RC_EPROTO);
    rc_free(buf);
}

TEST(codec_rejects_bad_version_type_flags_and_huge_counts)
{
    struct raft_entry ents[3];
    struct raft_message m = sample_message(ents);
    size_t len = raft_msg_encoded_size(&m);
    unsigned char *buf = rc_malloc(len);
    struct raft_message d;
    raft_msg_encode(&m, buf);
    buf[0] = 2; /* version */
    CHECK_EQ(raft_msg_decode(buf, len, &d), RC_EPROTO);
    raft_msg_encode(&m, buf);
    buf[1] = 0; /* type */
    CHECK_EQ(raft_msg_decode(buf, len, &d), RC_EPROTO);
    raft_msg_encode(&m, buf);
    buf[2] = 2; /* reject flag */
    CHECK_EQ(raft_msg_decode(buf, len, &d), RC_EPROTO);
    raft_msg_encode(&m, buf);
    /* n_entries sits after 4 header bytes and 10 u64 fields: claim 2^32-1 entries. */
    memset(buf + 4 + 80, 0xFF, 4);
    CHECK_EQ(raft_msg_decode(buf, len, &d), RC_EPROTO);
    rc_free(buf);
}

TEST(codec_config_round_trip_and_validation)
{
    struct raft_config c = {.n_voters = 3, .n_learners = 1, .voters = {1, 2, 3}, .learners = {9}};
    unsigned char buf[256];
    size_t len = raft_config_encode(&c, buf);
    CHECK_EQ_U(len, raft_config_encoded_size(&c));
    struct raft_config d;
    CHECK_OK(raft_config_decode(buf, len, &d));
    CHECK_EQ_U(d.n_voters, 3);
    CHECK_EQ_U(d.learners[0], 9);
    c.learners[0] = 2; /* a server cannot be voter and learner */
    len = raft_config_encode(&c, buf);
    CHECK_EQ(raft_config_decode(buf, len, &d), RC_EPROTO);
    c.learners[0] = 0; /* id 0 means none */
    len = raft_config_encode(&c, buf);
    CHECK_EQ(raft_config_decode(buf, len, &d), RC_EPROTO);
}
