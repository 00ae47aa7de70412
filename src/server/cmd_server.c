/*
 * cmd_server.c — connection and server commands: PING, ECHO, QUIT, HELLO, AUTH, SELECT,
 * CLIENT, COMMAND (commands.c), CONFIG GET, INFO, TIME, SHUTDOWN, READONLY, READWRITE.
 */
#include "server.h"

#include "common/alloc.h"
#include "common/log.h"
#include "raftcask.h"
#include "resp/glob.h"
#include "resp/number.h"

#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#define REDIS_COMPAT_VERSION "7.0.0"

static void cmd_ping(struct client *c, size_t argc, const struct resp_arg *a)
{
    if (argc > 2)
        return reply_wrong_arity(c, "ping");
    if (argc == 2)
        resp_add_bulk(&c->out, a[1].ptr, a[1].len);
    else
        resp_add_status(&c->out, "PONG");
}

static void cmd_echo(struct client *c, size_t argc, const struct resp_arg *a)
{
    resp_add_bulk(&c->out, a[1].ptr, a[1].len);
}

static void cmd_quit(struct client *c, size_t argc, const struct resp_arg *a)
{
    resp_add_status(&c->out, "OK");
    client_close_after_reply(c);
}

static void cmd_readonly(struct client *c, size_t argc, const struct resp_arg *a)
{
    c->readonly_mode = true; /* reads are local on a single node anyway */
    resp_add_status(&c->out, "OK");
}

static void cmd_readwrite(struct client *c, size_t argc, const struct resp_arg *a)
{
    c->readonly_mode = false;
    resp_add_status(&c->out, "OK");
}

static void cmd_select(struct client *c, size_t argc, const struct resp_arg *a)
{
    int64_t db;
    if (!arg_to_i64(&a[1], &db))
        return reply_not_integer(c);
    if (db != 0)
        return reply_error(c, "ERR DB index is out of range");
    resp_add_status(&c->out, "OK");
}

static void cmd_time(struct client *c, size_t argc, const struct resp_arg *a)
{
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    char buf[24];
    resp_add_array(&c->out, 2);
    resp_add_bulk(&c->out, buf, resp_ll2str(buf, tv.tv_sec));
    resp_add_bulk(&c->out, buf, resp_ll2str(buf, tv.tv_usec));
}

/* ============================== authentication ============================== */

static bool password_ok(struct client *c, const struct resp_arg *user, const struct resp_arg *pass)
{
    const char *secret = c->srv->cfg->requirepass;
    if (user && !arg_is(user, "default"))
        return false;
    return pass->len == strlen(secret) && memcmp(pass->ptr, secret, pass->len) == 0;
}

static void cmd_auth(struct client *c, size_t argc, const struct resp_arg *a)
{
    if (argc > 3)
        return reply_syntax_error(c);
    if (!c->srv->cfg->requirepass[0] && argc == 2)
        return reply_error(c, "ERR AUTH <password> called without any password configured "
                              "for the default user. Are you sure your configuration is "
                              "correct?");
    if (!password_ok(c, argc == 3 ? &a[1] : NULL, &a[argc - 1]))
        return reply_error(c, "WRONGPASS invalid username-password pair or user is disabled.");
    c->authenticated = true;
    resp_add_status(&c->out, "OK");
}

static bool valid_client_name(const struct resp_arg *a)
{
    for (size_t i = 0; i < a->len; i++)
        if (a->ptr[i] < '!' || a->ptr[i] > '~')
            return false;
    return true;
}

/* HELLO [protover [AUTH username password] [SETNAME name]] */
static void cmd_hello(struct client *c, size_t argc, const struct resp_arg *a)
{
    int64_t proto = 2;
    if (argc >= 2) {
        if (!arg_to_i64(&a[1], &proto))
            return reply_error(c, "ERR Protocol version is not an integer or out of range");
        if (proto != 2)
            return reply_error(c, "NOPROTO unsupported protocol version");
    }
    /* Every option is checked before AUTH takes effect, as in Redis: a HELLO refused for a
     * bad name or option does not authenticate the connection. */
    const struct resp_arg *name = NULL, *auth = NULL;
    for (size_t i = 2; i < argc; i++) {
        if (arg_is(&a[i], "AUTH") && i + 2 < argc) {
            auth = &a[i + 1];
            i += 2;
        } else if (arg_is(&a[i], "SETNAME") && i + 1 < argc) {
            name = &a[++i];
            /* As CLIENT SETNAME: a newline in a name forged lines of CLIENT LIST. */
            if (!valid_client_name(name))
                return reply_error(c, "ERR Client names cannot contain spaces, newlines or "
                                      "special characters.");
        } else {
            return reply_errorf(c, "ERR Syntax error in HELLO option '%.*s'",
                                (int)(a[i].len > 40 ? 40 : a[i].len), a[i].ptr);
        }
    }
    if (auth && !password_ok(c, &auth[0], &auth[1]))
        return reply_error(c, "WRONGPASS invalid username-password pair or user is disabled.");
    if (auth)
        c->authenticated = true;
    if (!c->authenticated)
        return reply_error(c, "NOAUTH HELLO must be called with the client already "
                              "authenticated, otherwise the HELLO <proto> AUTH <user> <pass> "
                              "option can be used to authenticate the client and select the "
                              "RESP protocol version at the same time");
    if (name)
        snprintf(c->name, sizeof c->name, "%.*s", (int)name->len, name->ptr);
    struct resp_buf *b = &c->out;
    resp_add_array(b, 14);
    resp_add_bulk_cstr(b, "server");
    resp_add_bulk_cstr(b, "redis");
    resp_add_bulk_cstr(b, "version");
    resp_add_bulk_cstr(b, REDIS_COMPAT_VERSION);
    resp_add_bulk_cstr(b, "proto");
    resp_add_int(b, 2);
    resp_add_bulk_cstr(b, "id");
    resp_add_int(b, (int64_t)c->id);
    resp_add_bulk_cstr(b, "mode");
    resp_add_bulk_cstr(b, "standalone");
    resp_add_bulk_cstr(b, "role");
    resp_add_bulk_cstr(b, "master");
    resp_add_bulk_cstr(b, "modules");
    resp_add_empty_array(b);
}

/* ============================== CLIENT ============================== */

static void client_kill(struct client *c, size_t argc, const struct resp_arg *a)
{
    struct server *s = c->srv;
    const struct resp_arg *addr = NULL;
    int64_t id = -1;
    if (argc == 3) {
        addr = &a[2]; /* old form: CLIENT KILL addr:port */
    } else {
        for (size_t i = 2; i + 1 < argc; i += 2) {
            if (arg_is(&a[i], "ID")) {
                if (!arg_to_i64(&a[i + 1], &id))
                    return reply_error(c, "ERR client-id should be greater than 0");
            } else if (arg_is(&a[i], "ADDR")) {
                addr = &a[i + 1];
            } else if (arg_is(&a[i], "SKIPME") || arg_is(&a[i], "TYPE") || arg_is(&a[i], "USER") ||
                       arg_is(&a[i], "LADDR")) {
                continue;
            } else {
                return reply_syntax_error(c);
            }
        }
        if (argc % 2 != 0)
            return reply_syntax_error(c);
    }
    int64_t killed = 0;
    for (struct client *o = s->clients; o; o = o->next) {
        if (o->closing)
            continue;
        bool match =
            (id < 0 || (uint64_t)id == o->id) &&
            (!addr || (strlen(o->addr) == addr->len && memcmp(o->addr, addr->ptr, addr->len) == 0));
        if (match && (id >= 0 || addr)) {
            killed++;
            if (o == c)
                client_close_after_reply(o);
            else
                client_close_after_reply(o), o->out.len = 0;
        }
    }
    if (argc == 3) {
        if (killed == 0)
            return reply_error(c, "ERR No such client");
        resp_add_status(&c->out, "OK");
    } else {
        resp_add_int(&c->out, killed);
    }
}

/* Subcommand arities (Redis convention), so errors read as Redis 7's
 * "wrong number of arguments for 'client|setname' command". */
struct subcommand {
    const char *name;
    int arity;
};

/* 0 when the subcommand exists and its arity holds; otherwise the error is replied. */
static int check_subcommand(struct client *c, const char *cmd, const struct subcommand *subs,
                            size_t n, size_t argc, const struct resp_arg *a)
{
    for (size_t i = 0; i < n; i++) {
        if (!arg_is(&a[1], subs[i].name))
            continue;
        int ar = subs[i].arity;
        if ((ar > 0 && argc != (size_t)ar) || (ar < 0 && argc < (size_t)-ar)) {
            char lower[32];
            size_t k = 0;
            for (; subs[i].name[k] && k < sizeof lower - 1; k++)
                lower[k] = (char)(subs[i].name[k] | 0x20);
            lower[k] = '\0';
            reply_errorf(c, "ERR wrong number of arguments for '%s|%s' command", cmd, lower);
            return -1;
        }
        return 0;
    }
    char upper[16];
    size_t k = 0;
    for (; cmd[k] && k < sizeof upper - 1; k++)
        upper[k] = (char)(cmd[k] & ~0x20);
    upper[k] = '\0';
    reply_errorf(c, "ERR unknown subcommand '%.*s'. Try %s HELP.",
                 (int)(a[1].len > 40 ? 40 : a[1].len), a[1].ptr, upper);
    return -1;
}

static const struct subcommand client_subs[] = {
    {"ID", 2},    {"SETNAME", 3}, {"GETNAME", 2}, {"SETINFO", 4},
    {"LIST", -2}, {"INFO", 2},    {"KILL", -3},
};

static void cmd_client(struct client *c, size_t argc, const struct resp_arg *a)
{
    struct resp_buf *b = &c->out;
    if (check_subcommand(c, "client", client_subs, sizeof client_subs / sizeof *client_subs, argc,
                         a) != 0)
        return;
    if (arg_is(&a[1], "ID") && argc == 2) {
        resp_add_int(b, (int64_t)c->id);
    } else if (arg_is(&a[1], "SETNAME") && argc == 3) {
        if (!valid_client_name(&a[2]))
            return reply_error(c, "ERR Client names cannot contain spaces, newlines or special "
                                  "characters.");
        snprintf(c->name, sizeof c->name, "%.*s", (int)a[2].len, a[2].ptr);
        resp_add_status(b, "OK");
    } else if (arg_is(&a[1], "GETNAME") && argc == 2) {
        if (c->name[0])
            resp_add_bulk_cstr(b, c->name);
        else
            resp_add_null(b);
    } else if (arg_is(&a[1], "SETINFO") && argc == 4) {
        bool lib_name = arg_is(&a[2], "LIB-NAME"), lib_ver = arg_is(&a[2], "LIB-VER");
        if (!lib_name && !lib_ver)
            return reply_errorf(c, "ERR Unrecognized option '%.*s'",
                                (int)(a[2].len > 40 ? 40 : a[2].len), a[2].ptr);
        if (!valid_client_name(&a[3]))
            return reply_error(c, "ERR lib-name and lib-ver cannot contain spaces, newlines or "
                                  "special characters.");
        if (lib_name)
            snprintf(c->lib_name, sizeof c->lib_name, "%.*s", (int)a[3].len, a[3].ptr);
        else
            snprintf(c->lib_ver, sizeof c->lib_ver, "%.*s", (int)a[3].len, a[3].ptr);
        resp_add_status(b, "OK");
    } else if (arg_is(&a[1], "LIST")) {
        struct resp_buf lines;
        resp_buf_init(&lines);
        for (struct client *o = c->srv->clients; o; o = o->next)
            client_list_line(o, &lines);
        resp_add_bulk(b, lines.data, lines.len);
        resp_buf_free(&lines);
    } else if (arg_is(&a[1], "INFO") && argc == 2) {
        struct resp_buf line;
        resp_buf_init(&line);
        client_list_line(c, &line);
        resp_add_bulk(b, line.data, line.len);
        resp_buf_free(&line);
    } else if (arg_is(&a[1], "KILL") && argc >= 3) {
        client_kill(c, argc, a);
    } else {
        reply_errorf(c,
                     "ERR unknown subcommand or wrong number of arguments for '%.*s'. Try "
                     "CLIENT HELP.",
                     (int)(a[1].len > 40 ? 40 : a[1].len), a[1].ptr);
    }
}

/* ============================== CONFIG ============================== */

struct config_reply {
    struct resp_buf items;
    size_t count;
    const struct server *srv;
};

static void add_config_item(const char *name, const char *value, void *ctx)
{
    struct config_reply *r = ctx;
    /* Settings a node derives at its first start (and keeps in node.conf): what is in force,
     * not the flag as given (often empty). */
    char buf[300];
    const struct server *s = r->srv;
    if (s && !strcmp(name, "id")) {
        snprintf(buf, sizeof buf, "%" PRIu64, s->self.id);
        value = buf;
    } else if (s && !strcmp(name, "advertise")) {
        value = s->self.client_addr;
    } else if (s && !strcmp(name, "peer-advertise")) {
        value = s->self.peer_addr;
    } else if (s && !strcmp(name, "peer-bind")) {
        cluster_peer_bind(s->cfg, buf, sizeof buf);
        value = buf;
    }
    resp_add_bulk_cstr(&r->items, name);
    resp_add_bulk_cstr(&r->items, value);
    r->count++;
}

/* Redis settings that clients and tools read (redis-benchmark asks for save and appendonly),
 * answered with what is true of raftcask. */
static const char *const redis_compat[][2] = {
    {"save", ""},
    {"appendonly", "no"},
    {"databases", "1"},
    {"maxmemory", "0"},
    {"maxmemory-policy", "noeviction"},
    {"cluster-enabled", "no"},
};

static const struct subcommand config_subs[] = {{"GET", -3}, {"SET", -4}, {"RESETSTAT", 2}};

static void cmd_config(struct client *c, size_t argc, const struct resp_arg *a)
{
    if (check_subcommand(c, "config", config_subs, sizeof config_subs / sizeof *config_subs, argc,
                         a) != 0)
        return;
    if (arg_is(&a[1], "GET") && argc >= 3) {
        struct config_reply r = {.srv = c->srv};
        resp_buf_init(&r.items);
        for (size_t i = 2; i < argc; i++) {
            rc_config_visit(c->srv->cfg, a[i].ptr, a[i].len, add_config_item, &r);
            for (size_t j = 0; j < sizeof redis_compat / sizeof *redis_compat; j++)
                if (resp_glob_match(a[i].ptr, a[i].len, redis_compat[j][0],
                                    strlen(redis_compat[j][0]), 1))
                    add_config_item(redis_compat[j][0], redis_compat[j][1], &r);
        }
        resp_add_array(&c->out, r.count * 2);
        resp_buf_append(&c->out, r.items.data, r.items.len);
        resp_buf_free(&r.items);
    } else if (arg_is(&a[1], "SET")) {
        reply_error(c, "ERR CONFIG SET is not supported: set options with flags or the config "
                       "file and restart");
    } else if (arg_is(&a[1], "RESETSTAT") && argc == 2) {
        memset(&c->srv->stats, 0, sizeof c->srv->stats);
        resp_add_status(&c->out, "OK");
    } else {
        reply_errorf(c,
                     "ERR unknown subcommand or wrong number of arguments for '%.*s'. Try "
                     "CONFIG HELP.",
                     (int)(a[1].len > 40 ? 40 : a[1].len), a[1].ptr);
    }
}

/* ============================== INFO ============================== */

size_t server_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

static bool section_wanted(size_t argc, const struct resp_arg *a, const char *name)
{
    if (argc == 1)
        return true;
    for (size_t i = 1; i < argc; i++)
        if (arg_is(&a[i], name) || arg_is(&a[i], "all") || arg_is(&a[i], "everything") ||
            arg_is(&a[i], "default"))
            return true;
    return false;
}

#define ADD(...) (n += snprintf(buf + n, sizeof buf - (size_t)n, __VA_ARGS__))

static void cmd_info(struct client *c, size_t argc, const struct resp_arg *a)
{
    struct server *s = c->srv;
    char buf[8192];
    int n = 0;
    uint64_t uptime = ((uint64_t)server_now_ms() - s->start_ms) / 1000;
    struct rc_store_stats st;
    rc_store_stats(s->store, &st);
    if (section_wanted(argc, a, "server")) {
        struct utsname u;
        uname(&u);
        char host[256];
        int port = 0;
        rc_config_split_hostport(s->cfg->bind, host, &port);
        ADD("# Server\r\nredis_version:%s\r\nraftcask_version:%s\r\nredis_mode:standalone\r\n"
            "os:%s %s %s\r\narch_bits:64\r\nmultiplexing_api:libuv\r\nprocess_id:%d\r\n"
            "tcp_port:%d\r\nuptime_in_seconds:%llu\r\nuptime_in_days:%llu\r\n"
            "executable:raftcask\r\nconfig_file:%s\r\n\r\n",
            REDIS_COMPAT_VERSION, RC_VERSION, u.sysname, u.release, u.machine, (int)getpid(), port,
            (unsigned long long)uptime, (unsigned long long)(uptime / 86400),
            s->cfg->config_file ? s->cfg->config_file : "");
    }
    if (section_wanted(argc, a, "clients"))
        ADD("# Clients\r\nconnected_clients:%zu\r\nmaxclients:%llu\r\nblocked_clients:0\r\n\r\n",
            s->nclients, (unsigned long long)s->cfg->maxclients);
    if (section_wanted(argc, a, "memory")) {
        struct mallinfo2 mi = mallinfo2();
        ADD("# Memory\r\nused_memory:%zu\r\nused_memory_human:%.2fM\r\nused_memory_rss:%zu\r\n"
            "keydir_memory:%llu\r\nmaxmemory:0\r\nmem_allocator:libc\r\n\r\n",
            mi.uordblks, (double)mi.uordblks / (1024 * 1024), server_rss_bytes(),
            (unsigned long long)st.keydir_bytes);
    }
    if (section_wanted(argc, a, "persistence"))
        ADD("# Persistence\r\nloading:0\r\nasync_loading:0\r\nrdb_changes_since_last_save:0\r\n"
            "rdb_bgsave_in_progress:0\r\naof_enabled:0\r\nstore_files:%llu\r\n"
            "store_live_bytes:%llu\r\nstore_dead_bytes:%llu\r\nstore_merges:%llu\r\n"
            "applied_revision:%llu\r\nstore_syncs:%llu\r\nstore_sync_failures:%llu\r\n\r\n",
            (unsigned long long)st.files, (unsigned long long)st.live_bytes,
            (unsigned long long)st.dead_bytes, (unsigned long long)st.merges,
            (unsigned long long)st.applied_revision, (unsigned long long)s->syncs,
            (unsigned long long)s->sync_failures);
    if (section_wanted(argc, a, "stats"))
        ADD("# Stats\r\ntotal_connections_received:%llu\r\ntotal_commands_processed:%llu\r\n"
            "total_net_input_bytes:%llu\r\ntotal_net_output_bytes:%llu\r\n"
            "rejected_connections:%llu\r\nexpired_keys:%llu\r\nentries_applied:%llu\r\n"
            "protocol_errors:%llu\r\n\r\n",
            (unsigned long long)s->stats.connections_received,
            (unsigned long long)s->stats.commands_processed,
            (unsigned long long)s->stats.net_input_bytes,
            (unsigned long long)s->stats.net_output_bytes,
            (unsigned long long)s->stats.connections_rejected,
            (unsigned long long)s->stats.expired_keys, (unsigned long long)s->stats.entries_applied,
            (unsigned long long)s->stats.protocol_errors);
    if (section_wanted(argc, a, "replication")) {
        struct raft_status rs;
        raft_node_status(s->raft, &rs);
        char leader[CLUSTER_ADDR_MAX] = "";
        cluster_leader_addr(s, leader, sizeof leader);
        if (rs.role == RAFT_LEADER) {
            ADD("# Replication\r\nrole:master\r\nconnected_slaves:%u\r\n\r\n",
                rs.config.n_voters + rs.config.n_learners - 1);
        } else {
            char host[256] = "";
            int port = 0;
            if (leader[0])
                rc_config_split_hostport(leader, host, &port);
            ADD("# Replication\r\nrole:slave\r\nmaster_host:%s\r\nmaster_port:%d\r\n"
                "master_link_status:%s\r\n\r\n",
                host, port, leader[0] ? "up" : "down");
        }
    }
    if (section_wanted(argc, a, "keyspace")) {
        ADD("# Keyspace\r\n");
        if (st.keys)
            ADD("db0:keys=%llu,expires=%llu,avg_ttl=0\r\n", (unsigned long long)st.keys,
                (unsigned long long)st.keys_with_expiry);
    }
    if (n > (int)sizeof buf - 1)
        n = (int)sizeof buf - 1;
    struct resp_buf raft;
    resp_buf_init(&raft);
    if (section_wanted(argc, a, "raft"))
        cluster_info(s, &raft);
    if (raft.len && (size_t)n + raft.len < sizeof buf) {
        memcpy(buf + n, raft.data, raft.len);
        n += (int)raft.len;
    }
    resp_buf_free(&raft);
    resp_add_bulk(&c->out, buf, (size_t)n);
}

/* ============================== SHUTDOWN ============================== */

static void cmd_shutdown(struct client *c, size_t argc, const struct resp_arg *a)
{
    for (size_t i = 1; i < argc; i++) {
        if (arg_is(&a[i], "ABORT"))
            return reply_error(c, "ERR No shutdown in progress.");
        if (!arg_is(&a[i], "NOSAVE") && !arg_is(&a[i], "SAVE") && !arg_is(&a[i], "NOW") &&
            !arg_is(&a[i], "FORCE"))
            return reply_syntax_error(c);
    }
    rc_info("SHUTDOWN requested by client %llu (%s)", (unsigned long long)c->id, c->addr);
    server_shutdown(c->srv, 0);
}

/* ============================== the table ============================== */

#define F CMD_FAST
#define N CMD_NOAUTH
#define A CMD_ADMIN

static const struct command rows[] = {
    {"ping", -1, F, 0, 0, 0, cmd_ping, "connection", "1.0.0", "[message]",
     "Returns PONG, or the message."},
    {"echo", 2, F, 0, 0, 0, cmd_echo, "connection", "1.0.0", "message", "Returns the message."},
    {"quit", -1, F | N, 0, 0, 0, cmd_quit, "connection", "1.0.0", "",
     "Closes the connection after replying OK."},
    {"hello", -1, F | N, 0, 0, 0, cmd_hello, "connection", "6.0.0",
     "[protover [AUTH username password] [SETNAME name]]",
     "Handshakes: protocol 2 only for now; returns server properties."},
    {"auth", -2, F | N, 0, 0, 0, cmd_auth, "connection", "1.0.0", "[username] password",
     "Authenticates the connection (--requirepass)."},
    {"select", 2, F, 0, 0, 0, cmd_select, "connection", "1.0.0", "index",
     "Selects database 0, the only one."},
    {"client", -2, 0, 0, 0, 0, cmd_client, "connection", "2.4.0",
     "ID|SETNAME name|GETNAME|SETINFO LIB-NAME|LIB-VER value|LIST|INFO|KILL ...",
     "Inspects and manages client connections."},
    {"readonly", 1, F, 0, 0, 0, cmd_readonly, "connection", "3.0.0", "",
     "Serves this connection's reads from local state (cluster)."},
    {"readwrite", 1, F, 0, 0, 0, cmd_readwrite, "connection", "3.0.0", "",
     "Back to the configured read consistency."},
    {"command", -1, 0, 0, 0, 0, cmd_command, "server", "2.8.13",
     "[COUNT|LIST|INFO [name ...]|DOCS [name ...]]", "Describes the commands."},
    {"config", -2, A, 0, 0, 0, cmd_config, "server", "2.0.0", "GET pattern [pattern ...]",
     "Shows the options (read-only)."},
    {"info", -1, 0, 0, 0, 0, cmd_info, "server", "1.0.0", "[section ...]",
     "Returns information and statistics about the server."},
    {"time", 1, F, 0, 0, 0, cmd_time, "server", "2.6.0", "",
     "Returns the server's time: seconds and microseconds."},
    {"shutdown", -1, A, 0, 0, 0, cmd_shutdown, "server", "1.0.0", "[NOSAVE|SAVE] [NOW] [FORCE]",
     "Stops this node cleanly (the store is closed, nothing is lost)."},
};

const struct command_table server_commands = {rows, sizeof rows / sizeof *rows};
