/*
 * config.h — raftcask's options (SPEC §2): defaults, command-line flags, config file.
 *
 * Every option is one row of a table (name, kind, field, default, help), so that flags,
 * config-file lines, `--help`, and CONFIG GET all come from one place. A config file holds
 * lines `name value` (redis.conf style, `#` starts a comment); flags given on the command
 * line win over the file whatever their order.
 */
#ifndef RC_SERVER_CONFIG_H
#define RC_SERVER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct rc_config {
    char *dir;
    char *bind;      /* HOST:PORT of the client listener */
    char *peer_bind; /* HOST:PORT for Raft traffic (later issue) */
    char *advertise;
    char *peer_advertise;
    uint64_t id;
    char *join;
    bool recover;
    char *read_consistency; /* linearizable | leader | local */
    char *follower_mode;    /* proxy | redirect | moved */
    uint64_t snapshot_threshold;
    uint64_t snapshot_trailing;
    char *parse_snapshot;         /* one-shot: print this backup as RESP and exit */
    char *restore_from;           /* seed a new node from this backup */
    uint64_t election_timeout_ms; /* Raft election timeout (randomised up to twice this) */
    uint64_t heartbeat_ms;
    char *requirepass;
    char *tls_cert, *tls_key, *tls_ca, *tls_client_ca;
    uint64_t tls_port;
    uint64_t maxclients;
    uint64_t proto_max_bulk_len;
    uint64_t max_key_size;
    uint64_t client_output_limit; /* bytes of pending replies before a client is dropped */
    char *loglevel;
    char *logfile;
    char *metrics;
    uint64_t max_file_bytes; /* data-file size (store) */
    char *config_file;
    /* One-shot modes. */
    bool show_version, show_help, print_commands_md;
};

/* Sets every option to its default. The strings are owned by the config (free with
 * rc_config_free). */
int rc_config_init(struct rc_config *c);
void rc_config_free(struct rc_config *c);

/*
 * Parses argv (and the --config file it names, if any). On error returns RC_EINVAL with a
 * one-line message in err (size errlen), e.g. "unknown option '--foo'".
 */
int rc_config_parse_args(struct rc_config *c, int argc, char **argv, char *err, size_t errlen);

/* Checks values that must agree (ports, enumerations). RC_EINVAL and a message, or 0. */
int rc_config_validate(const struct rc_config *c, char *err, size_t errlen);

/* Calls fn(name, value) for every option whose name matches the glob pattern (CONFIG GET).
 * value is the option's current value as text. */
typedef void (*rc_config_visit_fn)(const char *name, const char *value, void *ctx);
void rc_config_visit(const struct rc_config *c, const char *pattern, size_t plen,
                     rc_config_visit_fn fn, void *ctx);

/* Writes the usage text (every option with its default and help) to out. */
void rc_config_usage(FILE *out);

/* Splits "host:port" (or "[v6]:port"); port 0..65535. 0 or RC_EINVAL. host must hold 256. */
int rc_config_split_hostport(const char *s, char *host, int *port);

#endif
