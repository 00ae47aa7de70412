/* config.c — the option table and its parsers (see config.h). */
#include "config.h"

#include "common/alloc.h"
#include "raftcask.h"
#include "resp/glob.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum opt_kind { OPT_STRING, OPT_UINT, OPT_BOOL, OPT_SIZE };

struct option_row {
    const char *name; /* as in the config file; the flag is "--" + name */
    enum opt_kind kind;
    size_t offset;
    const char *default_value;
    const char *help;
};

#define FIELD(f) offsetof(struct rc_config, f)

static const struct option_row options[] = {
    {"dir", OPT_STRING, FIELD(dir), "./data", "everything the node stores"},
    {"bind", OPT_STRING, FIELD(bind), "127.0.0.1:4920", "client (RESP) listener HOST:PORT"},
    {"peer-bind", OPT_STRING, FIELD(peer_bind), "",
     "Raft listener HOST:PORT (default: the --bind host, client port + 1)"},
    {"advertise", OPT_STRING, FIELD(advertise), "",
     "client HOST:PORT told to other nodes and to clients (default: --bind)"},
    {"peer-advertise", OPT_STRING, FIELD(peer_advertise), "",
     "peer HOST:PORT told to other nodes (default: --peer-bind)"},
    {"id", OPT_UINT, FIELD(id), "0", "Raft server id (default: random at first start)"},
    {"join", OPT_STRING, FIELD(join), "", "client address of a member to join"},
    {"recover", OPT_BOOL, FIELD(recover), "no", "rewrite the configuration to this node alone"},
    {"read-consistency", OPT_STRING, FIELD(read_consistency), "linearizable",
     "linearizable | leader | local"},
    {"follower-mode", OPT_STRING, FIELD(follower_mode), "proxy", "proxy | redirect | moved"},
    {"snapshot-threshold", OPT_UINT, FIELD(snapshot_threshold), "8192",
     "log entries between snapshots"},
    {"snapshot-trailing", OPT_UINT, FIELD(snapshot_trailing), "1024",
     "log entries kept at and before a snapshot's index, for followers a little behind"},
    {"election-timeout-ms", OPT_UINT, FIELD(election_timeout_ms), "300",
     "Raft election timeout (randomised up to twice this)"},
    {"heartbeat-ms", OPT_UINT, FIELD(heartbeat_ms), "60", "Raft leader heartbeat interval"},
    {"parse-snapshot", OPT_STRING, FIELD(parse_snapshot), "",
     "print a backup's state.bin as RESP commands (for redis-cli --pipe), then exit"},
    {"restore", OPT_STRING, FIELD(restore_from), "",
     "seed a new single-node cluster in --dir from a backup's state.bin"},
    {"requirepass", OPT_STRING, FIELD(requirepass), "", "clients must AUTH with this secret"},
    {"tls-cert", OPT_STRING, FIELD(tls_cert), "",
     "certificate (PEM) this node presents to its peers: mutual TLS between nodes"},
    {"tls-key", OPT_STRING, FIELD(tls_key), "", "private key (PEM) of --tls-cert"},
    {"tls-ca", OPT_STRING, FIELD(tls_ca), "", "CA (PEM) whose certificates peers must present"},
    {"tls-client-ca", OPT_STRING, FIELD(tls_client_ca), "",
     "CA (PEM) whose certificates --tls-port clients must present (never --tls-ca's); none: "
     "clients need no certificate"},
    {"tls-port", OPT_UINT, FIELD(tls_port), "0",
     "port (on the --bind host) for clients over TLS; with --tls-client-ca they must present a "
     "certificate from it (default: none)"},
    {"maxclients", OPT_UINT, FIELD(maxclients), "10000", "most client connections at once"},
    {"proto-max-bulk-len", OPT_SIZE, FIELD(proto_max_bulk_len), "536870912",
     "largest bulk string (value) accepted"},
    {"max-key-size", OPT_SIZE, FIELD(max_key_size), "65536", "largest key accepted"},
    {"client-output-limit", OPT_SIZE, FIELD(client_output_limit), "1073741824",
     "pending reply bytes after which a client is disconnected"},
    {"loglevel", OPT_STRING, FIELD(loglevel), "info", "debug | info | warning"},
    {"logfile", OPT_STRING, FIELD(logfile), "", "log to this file (default: stderr)"},
    {"metrics", OPT_STRING, FIELD(metrics), "",
     "HOST:PORT for HTTP GET /metrics (Prometheus text) and GET /health"},
    {"data-file-size", OPT_SIZE, FIELD(max_file_bytes), "67108864",
     "roll the active data file past this size"},
};

#define NOPTIONS (sizeof options / sizeof *options)

/* ============================== values ============================== */

/* Parses "123", "64k", "16mb", "1gb" (redis.conf style units, powers of 1024). */
static int parse_size(const char *s, uint64_t *out)
{
    if (!*s || *s == '-')
        return RC_EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return RC_EINVAL;
    uint64_t mult = 1;
    if (!strcasecmp(end, "k") || !strcasecmp(end, "kb"))
        mult = 1024;
    else if (!strcasecmp(end, "m") || !strcasecmp(end, "mb"))
        mult = 1024 * 1024;
    else if (!strcasecmp(end, "g") || !strcasecmp(end, "gb"))
        mult = 1024ull * 1024 * 1024;
    else if (*end)
        return RC_EINVAL;
    if (v > UINT64_MAX / mult)
        return RC_EINVAL;
    *out = v * mult;
    return 0;
}

static int set_option(struct rc_config *c, const struct option_row *o, const char *value, char *err,
                      size_t errlen)
{
    void *field = (char *)c + o->offset;
    switch (o->kind) {
    case OPT_STRING: {
        char *copy = rc_memdup(value, strlen(value));
        if (!copy)
            return RC_ENOMEM;
        rc_free(*(char **)field);
        *(char **)field = copy;
        return 0;
    }
    case OPT_BOOL:
        if (!strcasecmp(value, "yes") || !strcmp(value, "1") || !strcasecmp(value, "true"))
            *(bool *)field = true;
        else if (!strcasecmp(value, "no") || !strcmp(value, "0") || !strcasecmp(value, "false"))
            *(bool *)field = false;
        else
            goto bad;
        return 0;
    case OPT_UINT:
    case OPT_SIZE: {
        uint64_t v;
        if (parse_size(value, &v) != 0) /* plain numbers, or with k/m/g units */
            goto bad;
        *(uint64_t *)field = v;
        return 0;
    }
    }
bad:
    snprintf(err, errlen, "invalid value '%s' for option '%s'", value, o->name);
    return RC_EINVAL;
}

static const struct option_row *find_option(const char *name, size_t len)
{
    for (size_t i = 0; i < NOPTIONS; i++)
        if (strlen(options[i].name) == len && strncasecmp(options[i].name, name, len) == 0)
            return &options[i];
    return NULL;
}

int rc_config_init(struct rc_config *c)
{
    memset(c, 0, sizeof *c);
    char err[128];
    for (size_t i = 0; i < NOPTIONS; i++) {
        int rc = set_option(c, &options[i], options[i].default_value, err, sizeof err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

void rc_config_free(struct rc_config *c)
{
    for (size_t i = 0; i < NOPTIONS; i++)
        if (options[i].kind == OPT_STRING)
            rc_free(*(char **)((char *)c + options[i].offset));
    rc_free(c->config_file);
    memset(c, 0, sizeof *c);
}

/* ============================== config file ============================== */

static int parse_file(struct rc_config *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read config file '%s': %s", path, strerror(errno));
        return RC_EINVAL;
    }
    char line[4096];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '#' || *p == '\n' || *p == '\r' || *p == '\0')
            continue;
        char *name = p;
        while (*p && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            p++;
        size_t nlen = (size_t)(p - name);
        while (*p == ' ' || *p == '\t')
            p++;
        char *value = p;
        size_t vlen = strcspn(value, "\r\n");
        while (vlen > 0 && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
            vlen--;
        value[vlen] = '\0';
        if (vlen >= 2 && (value[0] == '"' || value[0] == '\'') && value[vlen - 1] == value[0]) {
            value[vlen - 1] = '\0'; /* a quoted value */
            value++;
        }
        const struct option_row *o = find_option(name, nlen);
        if (!o) {
            snprintf(err, errlen, "%s:%d: unknown option '%.*s'", path, lineno, (int)nlen, name);
            rc = RC_EINVAL;
        } else if (o->kind == OPT_BOOL && *value == '\0') {
            rc = set_option(c, o, "yes", err, errlen);
        } else {
            rc = set_option(c, o, value, err, errlen);
        }
    }
    fclose(f);
    return rc;
}

/* ============================== command line ============================== */

int rc_config_parse_args(struct rc_config *c, int argc, char **argv, char *err, size_t errlen)
{
    /* First find --config, so the file is read before the flags that override it. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "option '--config' needs a value");
                return RC_EINVAL;
            }
            rc_free(c->config_file);
            c->config_file = rc_memdup(argv[i + 1], strlen(argv[i + 1]));
            if (!c->config_file)
                return RC_ENOMEM;
            i++;
        }
    }
    if (c->config_file) {
        int rc = parse_file(c, c->config_file, err, errlen);
        if (rc != 0)
            return rc;
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--config") == 0) {
            i++;
            continue;
        }
        if (strcmp(arg, "--version") == 0 || strcmp(arg, "-v") == 0) {
            c->show_version = true;
            continue;
        }
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            c->show_help = true;
            continue;
        }
        if (strcmp(arg, "--commands-markdown") == 0) {
            c->print_commands_md = true;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0) {
            snprintf(err, errlen, "unexpected argument '%s'", arg);
            return RC_EINVAL;
        }
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const struct option_row *o = find_option(name, nlen);
        if (!o) {
            snprintf(err, errlen, "unknown option '%s' (see --help)", arg);
            return RC_EINVAL;
        }
        const char *value;
        if (eq)
            value = eq + 1;
        else if (o->kind == OPT_BOOL)
            value = "yes";
        else if (i + 1 < argc)
            value = argv[++i];
        else {
            snprintf(err, errlen, "option '%s' needs a value", arg);
            return RC_EINVAL;
        }
        int rc = set_option(c, o, value, err, errlen);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int rc_config_split_hostport(const char *s, char *host, int *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s)
        return RC_EINVAL;
    size_t hlen = (size_t)(colon - s);
    if (s[0] == '[' && hlen >= 2 && s[hlen - 1] == ']') {
        s++;
        hlen -= 2;
    }
    if (hlen >= 256)
        return RC_EINVAL;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || p < 0 || p > 65535)
        return RC_EINVAL;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    *port = (int)p;
    return 0;
}

static bool one_of(const char *v, const char *a, const char *b, const char *c3)
{
    return !strcmp(v, a) || !strcmp(v, b) || !strcmp(v, c3);
}

int rc_config_validate(const struct rc_config *c, char *err, size_t errlen)
{
    char host[256];
    int port;
    if (rc_config_split_hostport(c->bind, host, &port) != 0) {
        snprintf(err, errlen, "invalid --bind '%s' (expected HOST:PORT)", c->bind);
        return RC_EINVAL;
    }
    char other_host[256];
    int other_port;
    if (c->metrics[0] && rc_config_split_hostport(c->metrics, other_host, &other_port) != 0) {
        snprintf(err, errlen, "invalid --metrics '%s' (expected HOST:PORT)", c->metrics);
        return RC_EINVAL;
    }
    if (!one_of(c->read_consistency, "linearizable", "leader", "local")) {
        snprintf(err, errlen, "invalid --read-consistency '%s'", c->read_consistency);
        return RC_EINVAL;
    }
    if (!one_of(c->follower_mode, "proxy", "redirect", "moved")) {
        snprintf(err, errlen, "invalid --follower-mode '%s'", c->follower_mode);
        return RC_EINVAL;
    }
    if (!one_of(c->loglevel, "debug", "info", "warning") && strcmp(c->loglevel, "warn") != 0) {
        snprintf(err, errlen, "invalid --loglevel '%s'", c->loglevel);
        return RC_EINVAL;
    }
    if (c->maxclients == 0 || c->proto_max_bulk_len < 1024 || c->proto_max_bulk_len > (1u << 30) ||
        c->max_key_size == 0 || c->max_key_size > (1u << 20)) {
        snprintf(err, errlen, "--maxclients, --proto-max-bulk-len or --max-key-size out of range");
        return RC_EINVAL;
    }
    if (c->client_output_limit < (1u << 20) || c->client_output_limit > (1ull << 31)) {
        snprintf(err, errlen, "--client-output-limit must be between 1 MiB and 2 GiB");
        return RC_EINVAL;
    }
    if (c->max_file_bytes < 4096 || c->max_file_bytes > (1ull << 31)) {
        snprintf(err, errlen, "--data-file-size must be between 4 KiB and 2 GiB");
        return RC_EINVAL;
    }
    if ((c->tls_cert[0] || c->tls_key[0] || c->tls_ca[0]) &&
        !(c->tls_cert[0] && c->tls_key[0] && c->tls_ca[0])) {
        snprintf(err, errlen, "TLS between nodes needs all of --tls-cert, --tls-key and --tls-ca");
        return RC_EINVAL;
    }
    if (c->tls_client_ca[0] && !c->tls_port) {
        snprintf(err, errlen, "--tls-client-ca needs --tls-port");
        return RC_EINVAL;
    }
    if (c->tls_client_ca[0] && strcmp(c->tls_client_ca, c->tls_ca) == 0) {
        snprintf(err, errlen,
                 "--tls-client-ca must not be --tls-ca: a client certificate would be good for "
                 "a node");
        return RC_EINVAL;
    }
    if (c->tls_port && (!c->tls_cert[0] || c->tls_port > 65535)) {
        snprintf(err, errlen,
                 "--tls-port needs a port (1-65535) and --tls-cert, --tls-key and "
                 "--tls-ca");
        return RC_EINVAL;
    }
    if (c->tls_port) {
        int bind_port = port, peer_port = port + 1;
        if (c->peer_bind[0] && rc_config_split_hostport(c->peer_bind, other_host, &peer_port) != 0)
            peer_port = -1;
        if ((int)c->tls_port == bind_port || (int)c->tls_port == peer_port) {
            snprintf(err, errlen, "--tls-port %llu is the client or the peer port",
                     (unsigned long long)c->tls_port);
            return RC_EINVAL;
        }
    }
    return 0;
}

/* ============================== listing ============================== */

static void value_text(const struct rc_config *c, const struct option_row *o, char *buf, size_t len)
{
    const void *field = (const char *)c + o->offset;
    switch (o->kind) {
    case OPT_STRING:
        snprintf(buf, len, "%s", *(char *const *)field ? *(char *const *)field : "");
        break;
    case OPT_BOOL:
        snprintf(buf, len, "%s", *(const bool *)field ? "yes" : "no");
        break;
    case OPT_UINT:
    case OPT_SIZE:
        snprintf(buf, len, "%llu", (unsigned long long)*(const uint64_t *)field);
        break;
    }
}

void rc_config_visit(const struct rc_config *c, const char *pattern, size_t plen,
                     rc_config_visit_fn fn, void *ctx)
{
    char buf[4096];
    for (size_t i = 0; i < NOPTIONS; i++) {
        const char *name = options[i].name;
        if (!resp_glob_match(pattern, plen, name, strlen(name), 1))
            continue;
        /* The secret is never shown, as Redis hides requirepass from CONFIG GET output. */
        if (strcmp(name, "requirepass") == 0 && c->requirepass[0])
            snprintf(buf, sizeof buf, "(set)");
        else
            value_text(c, &options[i], buf, sizeof buf);
        fn(name, buf, ctx);
    }
}

void rc_config_usage(FILE *out)
{
    fprintf(out, "usage: raftcask [--config FILE] [options]\n\n"
                 "Every option can also be a line 'name value' in the config file; flags "
                 "win.\n\n");
    for (size_t i = 0; i < NOPTIONS; i++) {
        if (strstr(options[i].help, "(default:")) /* a default that depends on other flags */
            fprintf(out, "  --%-22s %s\n", options[i].name, options[i].help);
        else
            fprintf(out, "  --%-22s %s (default: %s)\n", options[i].name, options[i].help,
                    options[i].default_value[0] ? options[i].default_value : "none");
    }
    fprintf(out, "  --%-22s %s\n  --%-22s %s\n  --%-22s %s\n", "commands-markdown",
            "print the command table as Markdown (docs/COMMANDS.md) and exit", "version",
            "print the version and exit", "help", "print this help and exit");
}
