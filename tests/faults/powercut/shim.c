/* Power-cut shim for RELIABILITY F-06 (LD_PRELOAD), for tests only.
 *
 * Model: a write to a file whose path starts with $POWERCUT_PREFIX is durable only once an
 * fsync/fdatasync of that file returned. On the $POWERCUT_AT-th write to such files, before
 * that write happens, every tracked file is put back as it was at its last sync (its old
 * bytes, kept in an undo log since that sync, and its size then), and the process dies by
 * SIGKILL: what an fsync promised survives, nothing written after it does. This is the
 * harshest drop of a volatile write cache; it does not model torn sectors, reordering
 * inside a synced range, or directory entries (files it created stay).
 *
 * I/O: intercepts write, pwrite, pwrite64, ftruncate, fsync, fdatasync; reads the old bytes
 * with pread before each tracked write. Builds with: gcc -shared -fPIC -o shim.so shim.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

struct undo { off_t off; size_t len; char *old; struct undo *next; };
struct file { dev_t dev; ino_t ino; int fd; off_t synced_size; struct undo *log; };

#define MAXFILES 64
static struct file files[MAXFILES];
static int nfiles;
static long writes, cut_at = -1;
static const char *prefix;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static ssize_t (*real_pwrite64)(int, const void *, size_t, off64_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_write)(int, const void *, size_t);
static int (*real_ftruncate)(int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);

static void init(void) {
    if (real_pwrite64) return;
    real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
    real_pwrite = dlsym(RTLD_NEXT, "pwrite");
    real_write = dlsym(RTLD_NEXT, "write");
    real_ftruncate = dlsym(RTLD_NEXT, "ftruncate");
    real_fsync = dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    prefix = getenv("POWERCUT_PREFIX");
    const char *at = getenv("POWERCUT_AT");
    cut_at = at ? atol(at) : -1;
}

/* The tracked file behind fd, or NULL. Called with mu held. */
static struct file *tracked(int fd) {
    char link[64], path[4096];
    struct stat st;
    if (!prefix || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return NULL;
    for (int i = 0; i < nfiles; i++)
        if (files[i].dev == st.st_dev && files[i].ino == st.st_ino) return &files[i];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return NULL;
    path[n] = 0;
    if (strncmp(path, prefix, strlen(prefix)) != 0 || nfiles == MAXFILES) return NULL;
    struct file *f = &files[nfiles++];
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    f->fd = dup(fd);
    f->synced_size = st.st_size; /* everything before this process is durable */
    f->log = NULL;
    return f;
}

static void remember(struct file *f, off_t off, size_t len) {
    struct undo *u = malloc(sizeof *u);
    u->old = malloc(len ? len : 1);
    ssize_t got = pread(f->fd, u->old, len, off);
    u->off = off;
    u->len = got > 0 ? (size_t)got : 0;
    u->next = f->log;
    f->log = u;
}

static void power_cut(void) {
    for (int i = 0; i < nfiles; i++) {
        for (struct undo *u = files[i].log; u; u = u->next) /* newest first */
            if (u->len) real_pwrite64(files[i].fd, u->old, u->len, u->off);
        real_ftruncate(files[i].fd, files[i].synced_size);
        real_fsync(files[i].fd);
    }
    kill(getpid(), SIGKILL);
    for (;;) pause();
}

static void before_write(int fd, off_t off, size_t len) {
    init();
    pthread_mutex_lock(&mu);
    struct file *f = tracked(fd);
    if (f) {
        if (++writes == cut_at) power_cut();
        remember(f, off, len);
    }
    pthread_mutex_unlock(&mu);
}

static void synced(int fd) {
    init();
    pthread_mutex_lock(&mu);
    struct file *f = tracked(fd);
    if (f) {
        struct stat st;
        while (f->log) {
            struct undo *u = f->log;
            f->log = u->next;
            free(u->old);
            free(u);
        }
        if (fstat(fd, &st) == 0) f->synced_size = st.st_size;
    }
    pthread_mutex_unlock(&mu);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off) {
    before_write(fd, off, n);
    return real_pwrite64(fd, buf, n, off);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    before_write(fd, off, n);
    return real_pwrite(fd, buf, n, off);
}

ssize_t write(int fd, const void *buf, size_t n) {
    init();
    off_t off = lseek(fd, 0, SEEK_CUR);
    if (off >= 0) before_write(fd, off, n);
    return real_write(fd, buf, n);
}

int ftruncate(int fd, off_t len) {
    init();
    struct stat st;
    if (fstat(fd, &st) == 0 && len < st.st_size) before_write(fd, len, st.st_size - len);
    return real_ftruncate(fd, len);
}

int fsync(int fd) {
    init();
    int rc = real_fsync(fd);
    if (rc == 0) synced(fd);
    return rc;
}

int fdatasync(int fd) {
    init();
    int rc = real_fdatasync(fd);
    if (rc == 0) synced(fd);
    return rc;
}
