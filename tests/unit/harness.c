/* harness.c — runs the TEST()s of one test binary, each in a forked child (see test.h). */
#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_TESTS 512

static struct {
    const char *name;
    test_fn fn;
} tests[MAX_TESTS];
static int test_count;
static char tmpdir_path[4096];
static const char *current_test;

void test_register(const char *name, test_fn fn)
{
    if (test_count == MAX_TESTS) {
        fprintf(stderr, "too many tests\n");
        exit(2);
    }
    tests[test_count].name = name;
    tests[test_count].fn = fn;
    test_count++;
}

void test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "  %s:%d: [%s] ", file, line, current_test ? current_test : "?");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    fflush(stderr);
    _exit(1); /* skip leak checks: a failed test may leave state behind on purpose */
}

const char *test_tmpdir(void)
{
    if (tmpdir_path[0])
        return tmpdir_path;
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir_path, sizeof tmpdir_path, "%s/rctest.XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(tmpdir_path)) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        _exit(1);
    }
    return tmpdir_path;
}

uint64_t test_seed(uint64_t fallback)
{
    const char *s = getenv("TEST_SEED");
    return s ? strtoull(s, NULL, 0) : fallback;
}

uint64_t test_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void test_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(data, 1, len, f) != len) || fclose(f) != 0)
        test_fail(__FILE__, __LINE__, "cannot write %s: %s", path, strerror(errno));
}

void test_copy_dir(const char *from, const char *to)
{
    if (mkdir(to, 0755) != 0 && errno != EEXIST)
        test_fail(__FILE__, __LINE__, "mkdir %s: %s", to, strerror(errno));
    DIR *d = opendir(from);
    if (!d)
        test_fail(__FILE__, __LINE__, "opendir %s: %s", from, strerror(errno));
    struct dirent *e;
    char src[4600], dst[4600];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || strcmp(e->d_name, "LOCK") == 0)
            continue;
        snprintf(src, sizeof src, "%s/%s", from, e->d_name);
        snprintf(dst, sizeof dst, "%s/%s", to, e->d_name);
        FILE *in = fopen(src, "rb");
        if (!in)
            test_fail(__FILE__, __LINE__, "open %s: %s", src, strerror(errno));
        FILE *out = fopen(dst, "wb");
        if (!out)
            test_fail(__FILE__, __LINE__, "create %s: %s", dst, strerror(errno));
        char buf[65536];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, in)) > 0)
            if (fwrite(buf, 1, n, out) != n)
                test_fail(__FILE__, __LINE__, "write %s", dst);
        fclose(in);
        if (fclose(out) != 0)
            test_fail(__FILE__, __LINE__, "close %s", dst);
    }
    closedir(d);
}

void test_remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[4600];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    const char *t = getenv("TEST_TIMEOUT");
    int timeout_s = t ? atoi(t) : 120;
    int passed = 0, failed = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);

    for (int i = 0; i < test_count; i++) {
        if (filter && !strstr(tests[i].name, filter))
            continue;
        /* The parent picks the directory so it can remove it whatever the child did. */
        tmpdir_path[0] = '\0';
        test_tmpdir();
        double start = now_ms();
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 2;
        }
        if (pid == 0) {
            current_test = tests[i].name;
            alarm((unsigned)timeout_s);
            tests[i].fn();
            exit(0); /* exit, not _exit: LeakSanitizer checks the child at exit */
        }
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        double ms = now_ms() - start;
        nftw(tmpdir_path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            passed++;
            printf("ok   %s (%.0f ms)\n", tests[i].name, ms);
        } else {
            failed++;
            if (WIFSIGNALED(status))
                printf("FAIL %s (signal %d%s)\n", tests[i].name, WTERMSIG(status),
                       WTERMSIG(status) == SIGALRM ? ": timed out" : "");
            else
                printf("FAIL %s (exit %d)\n", tests[i].name, WEXITSTATUS(status));
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
