/*
 * main.c — the raftcask binary: options from flags and the config file, then the server.
 * Bad options or an unusable --dir end the process with exit status 1 and one clear line.
 */
#include "cluster/snapstream.h"
#include "common/fileio.h"
#include "common/log.h"
#include "raftcask.h"
#include "server/config.h"
#include "server/server.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    struct rc_config cfg;
    char err[512];
    if (rc_config_init(&cfg) != 0) {
        fprintf(stderr, "raftcask: out of memory\n");
        return 1;
    }
    int exit_code = 1;
    if (rc_config_parse_args(&cfg, argc, argv, err, sizeof err) != 0 ||
        rc_config_validate(&cfg, err, sizeof err) != 0) {
        fprintf(stderr, "raftcask: %s\n", err);
        goto out;
    }
    if (cfg.show_help) {
        rc_config_usage(stdout);
        exit_code = 0;
        goto out;
    }
    if (cfg.show_version) {
#ifdef RC_DEBUG
        printf("raftcask %s (debug build: sanitizers, failpoints)\n", RC_VERSION);
#else
        printf("raftcask %s\n", RC_VERSION);
#endif
        exit_code = 0;
        goto out;
    }
    if (cfg.print_commands_md) {
        if (commands_init() == 0) {
            commands_print_markdown(stdout);
            commands_free();
            exit_code = 0;
        }
        goto out;
    }
    if (cfg.parse_snapshot[0]) {
        int rc = snapshot_print_resp(cfg.parse_snapshot, stdout);
        if (rc != 0)
            fprintf(stderr, "raftcask: cannot read the snapshot '%s': %s\n", cfg.parse_snapshot,
                    rc_strerror(rc));
        exit_code = rc == 0 ? 0 : 1;
        goto out;
    }
    FILE *logfile = NULL;
    if (cfg.logfile[0]) {
        logfile = fopen(cfg.logfile, "a");
        if (!logfile) {
            fprintf(stderr, "raftcask: cannot open --logfile '%s': %s\n", cfg.logfile,
                    strerror(errno));
            goto out;
        }
        rc_log_set_file(logfile);
    }
    if (rc_mkdir_p(cfg.dir) != 0) {
        fprintf(stderr, "raftcask: cannot create --dir '%s': %s\n", cfg.dir, strerror(errno));
    } else {
        exit_code = server_run(&cfg);
    }
    if (logfile) {
        rc_log_set_file(NULL);
        fclose(logfile);
    }
out:
    rc_config_free(&cfg);
    return exit_code;
}
