/*
 * commands.c — the command table: lookup, dispatch, and everything generated from it
 * (COMMAND, COMMAND COUNT|INFO|DOCS|LIST, docs/COMMANDS.md).
 *
 * The rows live in the cmd_*.c files, one table per family; this file joins them into one
 * index sorted by name for lookup. Dispatch checks the arity and authentication the row
 * declares, then calls the row's handler.
 */
#include "server.h"

#include "common/alloc.h"
#include "raftcask.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct command_table *const families[] = {
    &string_commands, &keyspace_commands, &server_commands, &cluster_commands, &snapshot_commands};
#define NFAMILIES (sizeof families / sizeof *families)

static const struct command **index_by_name;
static size_t index_count;

static int cmp_by_name(const void *a, const void *b)
{
    return strcmp((*(const struct command *const *)a)->name,
                  (*(const struct command *const *)b)->name);
}

int commands_init(void)
{
    size_t n = 0;
    for (size_t f = 0; f < NFAMILIES; f++)
        n += families[f]->count;
    index_by_name = rc_malloc(n * sizeof *index_by_name);
    if (!index_by_name)
        return RC_ENOMEM;
    index_count = 0;
    for (size_t f = 0; f < NFAMILIES; f++)
        for (size_t i = 0; i < families[f]->count; i++)
            index_by_name[index_count++] = &families[f]->rows[i];
    qsort(index_by_name, index_count, sizeof *index_by_name, cmp_by_name);
    return 0;
}

void commands_free(void)
{
    rc_free(index_by_name);
    index_by_name = NULL;
    index_count = 0;
}

const struct command *command_lookup(const char *name, size_t len)
{
    if (len == 0 || len > 32)
        return NULL;
    char lower[33];
    for (size_t i = 0; i < len; i++)
        lower[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i]);
    lower[len] = '\0';
    size_t lo = 0, hi = index_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(index_by_name[mid]->name, lower);
        if (c == 0)
            return index_by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

void command_foreach(void (*fn)(const struct command *cmd, void *ctx), void *ctx)
{
    for (size_t f = 0; f < NFAMILIES; f++)
        for (size_t i = 0; i < families[f]->count; i++)
            fn(&families[f]->rows[i], ctx);
}

size_t command_count(void)
{
    return index_count;
}

/* ============================== dispatch ============================== */

static void reply_unknown(struct client *c, size_t argc, const struct resp_arg *argv)
{
    /* Redis's wording and limits: the name (up to 128 bytes), then arguments quoted while
     * the quoted text is under 128 bytes, each cut to what is left of those 128. */
    char args[160] = "";
    size_t n = 0;
    for (size_t i = 1; i < argc && n < 128; i++)
        n += (size_t)snprintf(args + n, sizeof args - n, "'%.*s' ",
                              (int)(argv[i].len < 128 - n ? argv[i].len : 128 - n), argv[i].ptr);
    reply_errorf(c, "ERR unknown command '%.*s', with args beginning with: %s",
                 (int)(argv[0].len > 128 ? 128 : argv[0].len), argv[0].ptr, args);
}

/* A write naming a key longer than --max-key-size is refused (in order) before anything is
 * proposed; the key positions come from the table row. */
static bool key_over_limit(const struct client *c, const struct command *cmd, size_t argc,
                           const struct resp_arg *argv)
{
    if (cmd->first_key <= 0)
        return false;
    size_t last =
        cmd->last_key < 0 ? (size_t)((int64_t)argc + cmd->last_key) : (size_t)cmd->last_key;
    for (size_t i = (size_t)cmd->first_key; i <= last && i < argc; i += (size_t)cmd->key_step)
        if (argv[i].len > c->srv->cfg->max_key_size)
            return true;
    return false;
}

/* The checks command_dispatch makes before routing, in its order: the error to answer, or
 * NULL when the command goes on. */
static const char *dispatch_error(const struct client *c, const struct command *cmd, size_t argc,
                                  const struct resp_arg *argv, char *buf, size_t cap)
{
    if (!c->authenticated && !(cmd->flags & CMD_NOAUTH))
        return "NOAUTH Authentication required.";
    if ((cmd->arity > 0 && argc != (size_t)cmd->arity) ||
        (cmd->arity < 0 && argc < (size_t)-cmd->arity)) {
        snprintf(buf, cap, "ERR wrong number of arguments for '%s' command", cmd->name);
        return buf;
    }
    if ((cmd->flags & CMD_WRITE) && key_over_limit(c, cmd, argc, argv))
        return "ERR key is too large (max-key-size)";
    if ((cmd->flags & CMD_WRITE) &&
        writepath_too_large(c->srv, writepath_command_bytes(argc, argv)))
        return "ERR command too large to replicate (one write carries at most 4 MiB in a "
               "cluster, 1 GiB on a node alone)";
    return NULL;
}

bool command_would_forward(const struct client *c, size_t argc, const struct resp_arg *argv)
{
    const struct command *cmd = argc ? command_lookup(argv[0].ptr, argv[0].len) : NULL;
    char buf[96];
    return cmd && !dispatch_error(c, cmd, argc, argv, buf, sizeof buf) && cluster_forwards(c, cmd);
}

void command_dispatch(struct client *c, size_t argc, const struct resp_arg *argv)
{
    const struct command *cmd = command_lookup(argv[0].ptr, argv[0].len);
    if (!cmd) {
        reply_unknown(c, argc, argv);
        return;
    }
    snprintf(c->last_cmd, sizeof c->last_cmd, "%s", cmd->name);
    /* Errors found here go through submit_error: a write command may run while the
     * client's earlier writes are in flight, and its reply must come after theirs. */
    char buf[96];
    const char *error = dispatch_error(c, cmd, argc, argv, buf, sizeof buf);
    if (error) {
        submit_error(c, error);
        return;
    }
    if (cluster_route_command(c, cmd, argc, argv))
        return; /* deferred (linearizable read), forwarded, or redirected */
    cmd->fn(c, argc, argv);
}

/* ============================== COMMAND ============================== */

static void add_flags(struct resp_buf *b, unsigned flags)
{
    const char *names[8];
    size_t n = 0;
    if (flags & CMD_WRITE)
        names[n++] = "write";
    if (flags & CMD_READONLY)
        names[n++] = "readonly";
    if (flags & CMD_ADMIN)
        names[n++] = "admin";
    if (flags & CMD_FAST)
        names[n++] = "fast";
    if (flags & CMD_NOAUTH)
        names[n++] = "no_auth";
    resp_add_array(b, n);
    for (size_t i = 0; i < n; i++)
        resp_add_status(b, names[i]);
}

/* One COMMAND INFO entry, in Redis 7's 10-element shape. */
static void add_info(struct resp_buf *b, const struct command *cmd)
{
    resp_add_array(b, 10);
    resp_add_bulk_cstr(b, cmd->name);
    resp_add_int(b, cmd->arity);
    add_flags(b, cmd->flags);
    resp_add_int(b, cmd->first_key);
    resp_add_int(b, cmd->last_key);
    resp_add_int(b, cmd->key_step);
    resp_add_array(b, 1); /* ACL categories */
    char cat[40];
    snprintf(cat, sizeof cat, "@%s", cmd->group);
    resp_add_status(b, cat);
    resp_add_empty_array(b); /* tips */
    resp_add_empty_array(b); /* key specifications */
    resp_add_empty_array(b); /* subcommands */
}

/* One COMMAND DOCS entry: name, then a map (flat in RESP2) of summary, since, group. */
static void add_docs(struct resp_buf *b, const struct command *cmd)
{
    resp_add_bulk_cstr(b, cmd->name);
    resp_add_array(b, 8);
    resp_add_bulk_cstr(b, "summary");
    resp_add_bulk_cstr(b, cmd->summary);
    resp_add_bulk_cstr(b, "since");
    resp_add_bulk_cstr(b, cmd->since);
    resp_add_bulk_cstr(b, "group");
    resp_add_bulk_cstr(b, cmd->group);
    resp_add_bulk_cstr(b, "syntax");
    resp_add_bulk_cstr(b, cmd->syntax);
}

struct each_ctx {
    struct resp_buf *b;
    bool docs;
};

static void add_each(const struct command *cmd, void *arg)
{
    struct each_ctx *e = arg;
    if (e->docs)
        add_docs(e->b, cmd);
    else
        add_info(e->b, cmd);
}

static void add_name(const struct command *cmd, void *arg)
{
    resp_add_bulk_cstr(arg, cmd->name);
}

void cmd_command(struct client *c, size_t argc, const struct resp_arg *argv)
{
    struct resp_buf *b = &c->out;
    if (argc == 1) {
        resp_add_array(b, index_count);
        struct each_ctx e = {b, false};
        command_foreach(add_each, &e);
        return;
    }
    if (arg_is(&argv[1], "COUNT") && argc == 2) {
        resp_add_int(b, (int64_t)index_count);
    } else if (arg_is(&argv[1], "LIST") && argc == 2) {
        resp_add_array(b, index_count);
        command_foreach(add_name, b);
    } else if (arg_is(&argv[1], "INFO")) {
        if (argc == 2) {
            resp_add_array(b, index_count);
            struct each_ctx e = {b, false};
            command_foreach(add_each, &e);
            return;
        }
        resp_add_array(b, argc - 2);
        for (size_t i = 2; i < argc; i++) {
            const struct command *cmd = command_lookup(argv[i].ptr, argv[i].len);
            if (cmd)
                add_info(b, cmd);
            else
                resp_add_null(b);
        }
    } else if (arg_is(&argv[1], "DOCS")) {
        if (argc == 2) {
            resp_add_array(b, index_count * 2);
            struct each_ctx e = {b, true};
            command_foreach(add_each, &e);
            return;
        }
        size_t found = 0;
        for (size_t i = 2; i < argc; i++)
            found += command_lookup(argv[i].ptr, argv[i].len) != NULL;
        resp_add_array(b, found * 2);
        for (size_t i = 2; i < argc; i++) {
            const struct command *cmd = command_lookup(argv[i].ptr, argv[i].len);
            if (cmd)
                add_docs(b, cmd);
        }
    } else {
        reply_errorf(c, "ERR unknown subcommand '%.*s'. Try COMMAND HELP.",
                     (int)(argv[1].len > 64 ? 64 : argv[1].len), argv[1].ptr);
    }
}

/* ============================== docs/COMMANDS.md ============================== */

static void print_row(const struct command *cmd, void *arg)
{
    FILE *out = arg;
    char flags[64] = "";
    if (cmd->flags & CMD_WRITE)
        strcat(flags, "write ");
    if (cmd->flags & CMD_READONLY)
        strcat(flags, "read ");
    if (cmd->flags & CMD_ADMIN)
        strcat(flags, "admin ");
    if (cmd->flags & CMD_FAST)
        strcat(flags, "fast ");
    size_t fl = strlen(flags);
    if (fl)
        flags[fl - 1] = '\0';
    char upper[40];
    size_t i = 0;
    for (; cmd->name[i] && i < sizeof upper - 1; i++)
        upper[i] =
            (char)(cmd->name[i] >= 'a' && cmd->name[i] <= 'z' ? cmd->name[i] - 32 : cmd->name[i]);
    upper[i] = '\0';
    fprintf(out, "| `%s %s` | %d | %s | %s | %s | %s |\n", upper, cmd->syntax, cmd->arity, flags,
            cmd->group, cmd->since, cmd->summary);
}

void commands_print_markdown(FILE *out)
{
    fprintf(out, "# raftcask commands\n\n"
                 "Generated from the command table (`raftcask --commands-markdown`); do not "
                 "edit by hand.\nArity follows Redis: n means exactly n words (the name "
                 "included), -n at least n.\n\n"
                 "| command | arity | flags | group | since | summary |\n"
                 "|---|---|---|---|---|---|\n");
    command_foreach(print_row, out);
}
