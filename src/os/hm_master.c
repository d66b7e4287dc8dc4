/*
 * hm_master.c: the master process.  It sits between main() (which has
 * loaded and validated the configuration into a cycle) and the workers:
 * it opens the logs, binds the listening sockets (hm_listen.c), writes the
 * pid file, forks one worker per slot and then only supervises.  It never
 * touches a client connection and needs no event loop: signals set flags,
 * and a ppoll() with the signals unblocked only while it sleeps is the
 * whole main loop (no race between checking a flag and sleeping).
 *
 * Supervision: a worker that dies is restarted on the same slot and the
 * same sockets (the master keeps every listening socket open for its whole
 * life, so connections queued in the kernel are served by the successor).
 * A worker that dies within HM_CRASH_WINDOW_MS of its start is restarted
 * after a delay that doubles from HM_BACKOFF_MIN_MS to HM_BACKOFF_MAX_MS;
 * the delay resets once a worker has lived HM_BACKOFF_RESET_MS.
 *
 * Signals (shared/CLI.md): QUIT graceful stop, TERM/INT fast stop, USR1
 * reopen logs, HUP reload (a new cycle and new workers on the same
 * sockets; the old workers drain; an invalid file changes nothing), USR2
 * binary upgrade (the binary at our path is started with our sockets in
 * HAMLYN_FDS; once it reports ready on a pipe we drain and exit; if it
 * fails or is not ready within 30 s we stop it and keep serving).
 */
#include "hm_core.h"
#include "hm_cycle.h"
#include "hm_log.h"
#include "hm_module.h"
#include "hm_worker.h"
#include "hm_os.h"
#include "hm_admin.h"
#include "hm_metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define HM_CRASH_WINDOW_MS    2000
#define HM_BACKOFF_MIN_MS     100
#define HM_BACKOFF_MAX_MS     5000
#define HM_BACKOFF_RESET_MS   10000
#define HM_QUIT_MARGIN_MS     5000  /* after shutdown_timeout_s: KILL */
#define HM_TERM_WAIT_MS       3000  /* fast stop: TERM, then KILL */
#define HM_DAEMON_READY_S     30
#define HM_UPGRADE_READY_MS   30000 /* USR2: new master must be ready */

typedef struct {
    pid_t    pid;                   /* 0 = not running */
    uint64_t started_ms;
    uint64_t restart_at_ms;         /* when pid == 0: spawn at this time */
    int      backoff_ms;            /* current crash-loop delay */
    unsigned restarts;
} hm_master_worker_t;

static void master_upgrade_failed(pid_t pid, const char *how);

static volatile sig_atomic_t sig_quit, sig_term, sig_reopen, sig_reload,
                             sig_upgrade, sig_child;

static hm_cycle_t          *master_cycle;
static hm_master_worker_t  *workers;
static int                  nworkers;
static pid_t                master_pid;
static int                  ready_fd = -1;  /* -d: tells the parent we run */
static int                  wready_fd = -1; /* workers say they accept */
static int                  nwready;        /* ... this many so far */
static int                  starting;       /* until they all did */
static uint64_t             start_deadline_ms;
static int                  start_failed;   /* a worker died before that */
static int                  pid_file_written;
static int                  daemonized;     /* stderr is the error log */

/* Binary upgrade (USR2), old master's side. */
static char                *exe_path;       /* the binary, at start */
static char               **master_argv;
static pid_t                upgrade_pid;    /* new master, until ready */
static pid_t                upgrade_pgid;   /* its process group */
static int                  upgrade_fd = -1;  /* its readiness pipe */
static uint64_t             upgrade_deadline_ms;
static char                *oldbin_path;    /* pid_file.oldbin */
static int                  upgraded_away;  /* new master ready: drain */
static int                  upgraded_from;  /* this master was exec'd */

/* Workers of previous generations, draining after a reload. */
static pid_t               *old_pids;
static int                  nold;
static uint64_t             old_deadline_ms;

/* Privileges the workers switch to (resolved once, in the master). */
static int                  switch_user;
static uid_t                worker_uid;
static gid_t                worker_gid;

static void
master_signal(int signo)
{
    switch (signo) {
    case SIGQUIT: sig_quit = 1; break;
    case SIGTERM:
    case SIGINT:  sig_term = 1; break;
    case SIGUSR1: sig_reopen = 1; break;
    case SIGHUP:  sig_reload = 1; break;
    case SIGUSR2: sig_upgrade = 1; break;
    case SIGCHLD: sig_child = 1; break;
    }
}

static const int master_signals[] = {
    SIGQUIT, SIGTERM, SIGINT, SIGUSR1, SIGHUP, SIGUSR2, SIGCHLD
};

/*
 * Installs the flag-setting handlers and blocks the signals: they are
 * only delivered inside ppoll() in the main loop.  Workers inherit the
 * blocked mask and unblock once their own handlers are in place.
 */
static void
master_init_signals(void)
{
    struct sigaction sa;
    sigset_t         set;
    size_t           i;

    sigemptyset(&set);
    for (i = 0; i < hm_nelem(master_signals); i++) {
        sigaddset(&set, master_signals[i]);
    }
    sigprocmask(SIG_BLOCK, &set, NULL);

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = master_signal;
    sigfillset(&sa.sa_mask);
    for (i = 0; i < hm_nelem(master_signals); i++) {
        sigaction(master_signals[i], &sa, NULL);
    }
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}

/* In a new worker: default dispositions again (the mask stays blocked;
 * hm_worker_main() unblocks after installing its handlers). */
static void
worker_reset_signals(void)
{
    struct sigaction sa;
    size_t           i;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    for (i = 0; i < hm_nelem(master_signals); i++) {
        sigaction(master_signals[i], &sa, NULL);
    }
}

/* Pins the calling worker to its CPU per runtime.cpu_affinity. */
static void
worker_pin_cpu(hm_conf_runtime_t *rt, int slot)
{
    cpu_set_t set;
    long      ncpu;
    int       cpu;

    if (rt->cpu_affinity == HM_AFFINITY_OFF) {
        return;
    }
    if (rt->cpu_affinity == HM_AFFINITY_LIST && rt->ncpus > 0) {
        cpu = rt->cpus[(size_t) slot % rt->ncpus];
    } else {
        ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        cpu = slot % (int) (ncpu > 0 ? ncpu : 1);
    }
    if (cpu < 0 || cpu >= CPU_SETSIZE) {
        hm_log_warn(NULL, "worker slot %d: CPU %d is out of range; not "
                    "pinned", slot, cpu);
        return;
    }
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) < 0) {
        hm_log_warn(NULL, "worker slot %d: sched_setaffinity(CPU %d) "
                    "failed: %s; not pinned", slot, cpu, strerror(errno));
        return;
    }
    hm_log_debug(NULL, "worker slot %d pinned to CPU %d", slot, cpu);
}

/* Switches the calling worker to runtime.user/group.  Returns HM_ERROR
 * (logged) when it cannot: the worker must not go on as root then. */
static int
worker_drop_privileges(hm_conf_runtime_t *rt)
{
    if (!switch_user) {
        return HM_OK;
    }
    if (initgroups(rt->user, worker_gid) < 0) {
        hm_log_error(NULL, "initgroups(\"%s\") failed: %s", rt->user,
                     strerror(errno));
        return HM_ERROR;
    }
    if (setgid(worker_gid) < 0) {
        hm_log_error(NULL, "setgid(%d) failed: %s", (int) worker_gid,
                     strerror(errno));
        return HM_ERROR;
    }
    if (setuid(worker_uid) < 0) {
        hm_log_error(NULL, "setuid(%d) failed: %s", (int) worker_uid,
                     strerror(errno));
        return HM_ERROR;
    }
    return HM_OK;
}

/*
 * Forks the worker of <slot>.  In the child: default signal handlers,
 * only this slot's sockets, pinned, privileges dropped, parent-death
 * signal set, then hm_worker_main() (never returns).  In the master:
 * records the pid; on fork failure schedules a retry.
 */
static void
master_spawn(int slot)
{
    hm_master_worker_t *w = &workers[slot];
    hm_conf_runtime_t  *rt = &master_cycle->conf->runtime;
    pid_t               pid;
    int                 mslot;

    mslot = hm_metrics_acquire(hm_metrics_shm, slot);   /* admin helper */
    pid = fork();
    if (pid != 0) {
        hm_metrics_owned(hm_metrics_shm, mslot, pid > 0 ? (int) pid : 0);
    }
    if (pid < 0) {
        w->backoff_ms = hm_min(hm_max(w->backoff_ms * 2, HM_BACKOFF_MIN_MS),
                               HM_BACKOFF_MAX_MS);
        w->restart_at_ms = hm_now_ms() + (uint64_t) w->backoff_ms;
        hm_log_error(NULL, "fork() for worker slot %d failed: %s; retrying "
                     "in %.1fs", slot, strerror(errno),
                     w->backoff_ms / 1000.0);
        return;
    }

    if (pid == 0) {
        worker_reset_signals();
        if (ready_fd >= 0) {
            close(ready_fd);
            ready_fd = -1;
        }
        if (upgrade_fd >= 0) {
            close(upgrade_fd);
            upgrade_fd = -1;
        }
        if (wready_fd >= 0) {
            close(wready_fd);
            wready_fd = -1;
        }
        hm_listen_close_others(master_cycle, slot);
        hm_admin_child(slot);
        hm_metrics_attach(mslot);
        worker_pin_cpu(rt, slot);
        if (worker_drop_privileges(rt) != HM_OK) {
            _exit(2);
        }
        /* After the credential change, which clears it. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != master_pid) {
            _exit(0);
        }
        hm_worker_main(master_cycle, slot);
    }

    w->pid = pid;
    w->started_ms = hm_now_ms();
    hm_log_info(NULL, "worker %d started (slot %d)", (int) pid, slot);
}

/*
 * Crash-loop backoff: the delay before restarting a worker that lived
 * <lived_ms>.  One that died within HM_CRASH_WINDOW_MS of its start waits
 * HM_BACKOFF_MIN_MS, then twice as long each time, up to
 * HM_BACKOFF_MAX_MS; one that lived HM_BACKOFF_RESET_MS resets the delay;
 * in between it is restarted at once without resetting it.  Updates
 * *backoff_ms (the slot's state) and returns the delay in ms.
 */
int
hm__master_backoff(int *backoff_ms, uint64_t lived_ms)
{
    if (lived_ms >= HM_BACKOFF_RESET_MS) {
        *backoff_ms = 0;
    }
    if (lived_ms >= HM_CRASH_WINDOW_MS) {
        return 0;
    }
    *backoff_ms = *backoff_ms == 0
                  ? HM_BACKOFF_MIN_MS
                  : hm_min(*backoff_ms * 2, HM_BACKOFF_MAX_MS);
    return *backoff_ms;
}

/* Describes a wait status: "exited with status 1", "was killed by signal
 * 9 (Killed)". */
static void
describe_status(int status, char *buf, size_t len)
{
    if (WIFEXITED(status)) {
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        snprintf(buf, len, "was killed by signal %d (%s)%s", WTERMSIG(status),
                 strsignal(WTERMSIG(status)),
                 WCOREDUMP(status) ? ", core dumped" : "");
    } else {
        snprintf(buf, len, "changed state 0x%x", status);
    }
}

/*
 * Collects every exited child.  While running, schedules the restart of
 * the slot (with crash-loop backoff) and logs it at error level; while
 * stopping, only logs.  Returns the number of workers still running.
 */
static int
master_live(void)
{
    int i, live = 0;

    for (i = 0; i < nworkers; i++) {
        live += workers[i].pid != 0;
    }
    for (i = 0; i < nold; i++) {
        live += old_pids[i] != 0;
    }
    return live;
}

/* Forgets an old-generation worker that exited; 1 if <pid> was one. */
static int
master_reap_old(pid_t pid, const char *how)
{
    int i;

    for (i = 0; i < nold; i++) {
        if (old_pids[i] == pid) {
            old_pids[i] = 0;
            hm_log_info(NULL, "old worker %d %s", (int) pid, how);
            return 1;
        }
    }
    return 0;
}

/*
 * Collects every exited child.  While running, schedules the restart of
 * the slot (with crash-loop backoff) and logs it at error level; while
 * stopping, and for old workers draining after a reload, only logs.
 * Returns the number of workers still running (both generations).
 */
static int
master_reap(int stopping)
{
    hm_master_worker_t *w;
    uint64_t            now, lived;
    pid_t               pid;
    char                how[128];
    int                 status, slot;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        hm_metrics_reaped(hm_metrics_shm, (int) pid);
        describe_status(status, how, sizeof(how));
        for (slot = 0; slot < nworkers; slot++) {
            if (workers[slot].pid == pid) {
                break;
            }
        }
        if (slot == nworkers) {
            if (pid == upgrade_pid) {
                master_upgrade_failed(pid, how);
            } else {
                master_reap_old(pid, how);
            }
            continue;
        }
        w = &workers[slot];
        w->pid = 0;
        if (stopping) {
            hm_log_info(NULL, "worker %d (slot %d) %s", (int) pid, slot, how);
            continue;
        }
        if (starting) {
            /* Starting (-d, binary upgrade) and not all accepting yet:
             * no restart; this start failed, and the parent (or the old
             * master, which then keeps serving) is told by our exit. */
            hm_log_error(NULL, "worker %d (slot %d) %s before it was "
                         "accepting; stopping", (int) pid, slot, how);
            start_failed = 1;
            sig_term = 1;
            continue;
        }
        now = hm_now_ms();
        lived = now - w->started_ms;
        w->restart_at_ms = now + (uint64_t) hm__master_backoff(&w->backoff_ms,
                                                               lived);
        w->restarts++;
        hm_metrics_worker_restart();
        hm_log_error(NULL, "worker %d (slot %d) %s; restarting in %.1fs",
                     (int) pid, slot, how,
                     (double) (w->restart_at_ms - now) / 1000.0);
    }
    return master_live();
}

/* Sends <signo> to every worker, old generations included. */
static void
master_signal_workers(int signo)
{
    int i;

    for (i = 0; i < nworkers; i++) {
        if (workers[i].pid != 0) {
            kill(workers[i].pid, signo);
        }
    }
    for (i = 0; i < nold; i++) {
        if (old_pids[i] != 0) {
            kill(old_pids[i], signo);
        }
    }
}

/* Old-generation workers still running; the list keeps only those (with
 * reloads coming faster than old workers finish it would otherwise only
 * grow). */
static int
master_old_live(void)
{
    int i, n = 0;

    for (i = 0; i < nold; i++) {
        if (old_pids[i] != 0) {
            old_pids[n++] = old_pids[i];
        }
    }
    nold = n;
    return n;
}

/* SIGKILLs the old-generation workers still draining and reaps them. */
static void
master_kill_old(void)
{
    int i;

    for (i = 0; i < nold; i++) {
        if (old_pids[i] != 0) {
            hm_log_warn(NULL, "old worker %d still running after its "
                        "shutdown deadline; killing it", (int) old_pids[i]);
            kill(old_pids[i], SIGKILL);
            waitpid(old_pids[i], NULL, 0);
            old_pids[i] = 0;
        }
    }
    nold = 0;
}

/* Makes the log files the workers' so they can reopen them on USR1. */
static void
master_chown_logs(hm_conf_runtime_t *rt)
{
    if (!switch_user) {
        return;
    }
    if (rt->error_log_path != NULL && strcmp(rt->error_log_path, "stderr")
        && chown(rt->error_log_path, worker_uid, worker_gid) < 0)
    {
        hm_log_warn(NULL, "chown(%s) failed: %s", rt->error_log_path,
                    strerror(errno));
    }
    if (rt->access_log_path != NULL && strcmp(rt->access_log_path, "stdout")
        && strcmp(rt->access_log_path, "off")
        && chown(rt->access_log_path, worker_uid, worker_gid) < 0)
    {
        hm_log_warn(NULL, "chown(%s) failed: %s", rt->access_log_path,
                    strerror(errno));
    }
}

/*
 * Raises the open file limit the workers inherit to what
 * runtime.max_connections may use: a relayed connection holds up to six
 * descriptors (client, upstream, two splice pipes), plus 1024 for
 * listening sockets, logs, cached pipes and idle upstream connections;
 * at most fs.nr_open.  The soft limit goes up to the hard one, and a
 * master running as root raises the hard one too (as HAProxy does;
 * nginx needs worker_rlimit_nofile).  When the limit is below even one
 * descriptor per connection (nginx's check) it says so, at warn level:
 * beyond the limit, accept() fails with EMFILE and new connections wait
 * in the kernel's queue.
 */
static void
master_raise_nofile(const hm_conf_runtime_t *rt)
{
    struct rlimit rl, want_rl;
    unsigned long nr_open = 1048576;
    rlim_t        want, need, max;
    FILE         *f;

    max = (rlim_t) (rt->max_connections > 0 ? rt->max_connections : 10000);
    want = max * 6 + 1024;
    need = max + 1024;
    f = fopen("/proc/sys/fs/nr_open", "re");
    if (f != NULL) {
        if (fscanf(f, "%lu", &nr_open) != 1) {
            nr_open = 1048576;
        }
        fclose(f);
    }
    if (want > (rlim_t) nr_open) {
        want = (rlim_t) nr_open;
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want) {
        return;
    }
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) {
        want_rl.rlim_cur = want;
        want_rl.rlim_max = want;
        if (setrlimit(RLIMIT_NOFILE, &want_rl) == 0) {
            return;                 /* root: the hard limit went up too */
        }
    }
    want_rl.rlim_max = rl.rlim_max;
    want_rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want
                       ? want : rl.rlim_max;
    if (want_rl.rlim_cur > rl.rlim_cur
        && setrlimit(RLIMIT_NOFILE, &want_rl) == 0)
    {
        rl.rlim_cur = want_rl.rlim_cur;
    }
    if (rl.rlim_cur < need && rl.rlim_cur < want) {
        hm_log_warn(NULL, "runtime.max_connections %d exceeds the open file "
                    "limit of %llu (each connection holds 2 to 6 files; "
                    "raise it with ulimit -n, or LimitNOFILE= under "
                    "systemd)", rt->max_connections,
                    (unsigned long long) rl.rlim_cur);
    }
}

/*
 * Resolves runtime.user/group when the master runs as root.  Logs and
 * returns HM_ERROR for an unknown user or group.
 */
static int
master_resolve_user(hm_conf_runtime_t *rt)
{
    struct passwd *pw;
    struct group  *gr;

    if (geteuid() != 0) {
        if (rt->user != NULL) {
            hm_log_warn(NULL, "runtime.user \"%s\" is ignored: the master "
                        "is not running as root", rt->user);
        }
        return HM_OK;
    }
    if (rt->user == NULL) {
        hm_log_warn(NULL, "workers run as root: runtime.user is not set");
        return HM_OK;
    }
    pw = getpwnam(rt->user);
    if (pw == NULL) {
        hm_log_error(NULL, "runtime.user: no user named \"%s\"", rt->user);
        return HM_ERROR;
    }
    worker_uid = pw->pw_uid;
    worker_gid = pw->pw_gid;
    if (rt->group != NULL) {
        gr = getgrnam(rt->group);
        if (gr == NULL) {
            hm_log_error(NULL, "runtime.group: no group named \"%s\"",
                         rt->group);
            return HM_ERROR;
        }
        worker_gid = gr->gr_gid;
    }
    switch_user = 1;
    return HM_OK;
}

/*
 * -d: detaches from the terminal (fork, setsid, fork), with stdin and
 * stdout on /dev/null and stderr on the error log (or /dev/null when the
 * log is stderr).  The original process waits until the daemon says it
 * is serving (ready_fd) and exits 0, or 1 if the daemon failed.  Returns
 * HM_OK in the daemon.
 */
static int
master_daemonize(void)
{
    int   p[2], fd;
    char  c;
    pid_t pid;
    struct pollfd pfd;

    if (pipe2(p, O_CLOEXEC) < 0) {
        hm_log_error(NULL, "pipe() failed: %s", strerror(errno));
        return HM_ERROR;
    }
    pid = fork();
    if (pid < 0) {
        hm_log_error(NULL, "fork() failed: %s", strerror(errno));
        return HM_ERROR;
    }
    if (pid > 0) {
        close(p[1]);
        waitpid(pid, NULL, 0);
        pfd.fd = p[0];
        pfd.events = POLLIN;
        if (poll(&pfd, 1, HM_DAEMON_READY_S * 1000) == 1
            && read(p[0], &c, 1) == 1 && c == 'R')
        {
            _exit(0);
        }
        fprintf(stderr, "hamlyn: the daemon did not start; see the error "
                "log\n");
        _exit(1);
    }
    close(p[0]);
    if (setsid() < 0) {
        _exit(1);
    }
    pid = fork();
    if (pid < 0) {
        _exit(1);
    }
    if (pid > 0) {
        _exit(0);
    }
    ready_fd = p[1];
    daemonized = 1;
    if (chdir("/") < 0) {
        /* paths are absolute already */
    }
    fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
        dup2(fd, 0);
        dup2(fd, 1);
        dup2(hm_log_fd() > 2 ? hm_log_fd() : fd, 2);
        if (fd > 2) {
            close(fd);
        }
    }
    return HM_OK;
}

static int
master_write_pid_file(const char *path)
{
    char buf[32];
    int  fd, n;

    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        hm_log_error(NULL, "runtime.pid_file: cannot create %s: %s", path,
                     strerror(errno));
        return HM_ERROR;
    }
    n = snprintf(buf, sizeof(buf), "%d\n", (int) getpid());
    if (write(fd, buf, (size_t) n) != n) {
        hm_log_error(NULL, "runtime.pid_file: cannot write %s: %s", path,
                     strerror(errno));
        close(fd);
        return HM_ERROR;
    }
    close(fd);
    pid_file_written = 1;
    return HM_OK;
}

/*
 * True when pid is a live hamlyn process: it exists (kill(pid, 0), EPERM
 * counts) and its executable (/proc/PID/exe) or, if that cannot be read,
 * its argv[0] (/proc/PID/cmdline) has "hamlyn" in its base name.
 */
int
hm_pid_is_hamlyn(pid_t pid)
{
    char        path[64], buf[4096];
    const char *base;
    ssize_t     n;
    int         fd;

    if (pid <= 0 || (kill(pid, 0) < 0 && errno != EPERM)) {
        return 0;
    }
    snprintf(path, sizeof(path), "/proc/%d/exe", (int) pid);
    n = readlink(path, buf, sizeof(buf) - 1);
    if (n <= 0) {
        snprintf(path, sizeof(path), "/proc/%d/cmdline", (int) pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            return 0;
        }
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0) {
            return 0;
        }
    }
    buf[n] = '\0';                 /* cmdline: argv[0] ends at its NUL */
    base = strrchr(buf, '/');
    base = base != NULL ? base + 1 : buf;
    return strstr(base, "hamlyn") != NULL;
}

/*
 * Refuses a second master for the same pid file: when path names a live
 * hamlyn process other than us, logs "another hamlyn master (pid N) is
 * running with pid file F" and returns HM_ERROR (SO_REUSEPORT would let
 * both bind, and we would take the pid file over).  A stale pid file
 * (dead process, or a pid reused by something else) is reported and left
 * for master_write_pid_file() to replace.  Not called for the new binary
 * of a USR2 upgrade (the old master is alive by design).
 */
static int
master_check_pid_file(const char *path)
{
    char    buf[32];
    ssize_t n;
    long    pid;
    int     fd;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return HM_OK;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        return HM_OK;
    }
    buf[n] = '\0';
    pid = strtol(buf, NULL, 10);
    if (pid <= 0 || pid > INT32_MAX || (pid_t) pid == getpid()) {
        return HM_OK;
    }
    if (hm_pid_is_hamlyn((pid_t) pid)) {
        hm_log_error(NULL, "another hamlyn master (pid %ld) is running with "
                     "pid file %s", pid, path);
        if (hm_log_fd() > 2) {
            fprintf(stderr, "hamlyn: another hamlyn master (pid %ld) is "
                    "running with pid file %s\n", pid, path);
        }
        return HM_ERROR;
    }
    hm_log_warn(NULL, "runtime.pid_file: %s names pid %ld, which is not a "
                "running hamlyn; replacing the stale pid file", path, pid);
    return HM_OK;
}

/* Removes the pid file if it still names this process. */
static void
master_remove_pid_file(const char *path)
{
    char    buf[32];
    ssize_t n;
    int     fd;

    if (path == NULL || !pid_file_written) {
        return;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n > 0) {
        buf[n] = '\0';
        if (atoi(buf) == (int) getpid()) {
            unlink(path);
        }
    }
}

/* Gives each listener of conf its row of hamlyn_connections_total, by
 * name, before the workers of conf are forked (start, reload). */
static void
master_metrics_rows(hm_conf_t *conf)
{
    size_t i;

    for (i = 0; i < conf->nlisteners; i++) {
        conf->listeners[i].metrics_row =
            hm_metrics_listener_row(hm_metrics_shm, conf->listeners[i].name);
    }
}

/* Logs, at start, every plaintext leg that was accepted in writing. */
static void
master_log_risks(hm_conf_t *conf)
{
    size_t i;

    for (i = 0; i < conf->nupstreams; i++) {
        if (conf->upstreams[i].plaintext_risk != NULL) {
            hm_log_warn(NULL, "upstream %s: plaintext leg accepted: %s",
                        conf->upstreams[i].name,
                        conf->upstreams[i].plaintext_risk);
        }
        if (conf->upstreams[i].tls.present && !conf->upstreams[i].tls.verify) {
            hm_log_warn(NULL, "upstream %s: certificate verification off, "
                        "accepted: %s", conf->upstreams[i].name,
                        conf->upstreams[i].tls.accepted_risk
                        ? conf->upstreams[i].tls.accepted_risk : "");
        }
    }
}

static void
master_run_exit_hooks(void)
{
    int i;

    for (i = 0; hm_modules[i] != NULL; i++) {
        if (hm_modules[i]->exit_master != NULL) {
            hm_modules[i]->exit_master(master_cycle);
        }
    }
}

static int
str_differ(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        return a != b;
    }
    return strcmp(a, b) != 0;
}

/* Writes every line the loader printed into the error log: errors at
 * error level, its warnings ("FILE: path: warning: ...") at warn level. */
static void
master_log_lines(char *text)
{
    char *line, *save = NULL;

    if (text == NULL) {
        return;
    }
    for (line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save))
    {
        if (strstr(line, ": warning: ") != NULL) {
            hm_log_warn(NULL, "reload: %s", line);
        } else {
            hm_log_error(NULL, "reload: %s", line);
        }
    }
}

/*
 * HUP: re-reads the configuration file into a new cycle.  If it is
 * invalid, every error goes to the error log and the running generation
 * keeps serving.  If it is valid, the sockets of addresses that stay are
 * moved into the new cycle (their accept queues survive), new ones are
 * bound, the new workers are started, and only then the old ones get
 * QUIT and drain at their own pace (bounded by their shutdown_timeout_s).
 */
static void
master_reload(void)
{
    hm_cycle_t         *old = master_cycle, *cycle;
    hm_conf_runtime_t  *ort = &old->conf->runtime, *rt;
    hm_master_worker_t *nw;
    FILE               *mem;
    char               *text = NULL, *path, addrs[1024];
    size_t              len = 0;
    pid_t              *quit;
    int                 nerr = 0, n, i, nquit = 0, su;
    uid_t               uid;
    gid_t               gid;

    path = hm_xstrdup(old->conf->path);
    hm_log_info(NULL, "reloading the configuration %s", path);

    mem = open_memstream(&text, &len);
    cycle = hm_cycle_new(path, mem != NULL ? mem : stderr, &nerr);
    if (mem != NULL) {
        fclose(mem);
    }
    master_log_lines(text);
    free(text);
    if (cycle == NULL) {
        hm_log_error(NULL, "reload of %s failed (%d error%s); keeping the "
                     "running configuration", path, nerr,
                     nerr == 1 ? "" : "s");
        free(path);
        return;
    }
    free(path);
    rt = &cycle->conf->runtime;
    n = rt->workers > 0 ? rt->workers : 1;

    su = switch_user;
    uid = worker_uid;
    gid = worker_gid;
    if (master_resolve_user(rt) != HM_OK
        || hm_admin_prepare(cycle->conf) != HM_OK
        || hm_listen_reuse(cycle, old, n) != HM_OK)
    {
        hm_admin_abort();
        switch_user = su;
        worker_uid = uid;
        worker_gid = gid;
        hm_log_error(NULL, "reload failed; keeping the running "
                     "configuration");
        hm_cycle_unref(cycle);
        return;
    }
    master_raise_nofile(rt);

    if (str_differ(ort->error_log_path, rt->error_log_path)
        || ort->error_log_level != rt->error_log_level)
    {
        if (hm_log_open(rt->error_log_path, rt->error_log_level) != HM_OK) {
            hm_log_error(NULL, "runtime.error_log: cannot open %s: %s; "
                         "keeping the current error log",
                         rt->error_log_path, strerror(errno));
        } else if (daemonized && hm_log_fd() > 2) {
            dup2(hm_log_fd(), 2);
        }
    }
    hm_log_set_json(rt->error_log_json);
    if (str_differ(ort->access_log_path, rt->access_log_path)
        && hm_access_log_open(rt->access_log_path) != HM_OK)
    {
        hm_log_error(NULL, "runtime.access_log: cannot open %s: %s; keeping "
                     "the current access log", rt->access_log_path,
                     strerror(errno));
    }
    master_chown_logs(rt);
    if (str_differ(ort->pid_file, rt->pid_file)) {
        master_remove_pid_file(ort->pid_file);
        pid_file_written = 0;
        if (rt->pid_file != NULL) {
            master_write_pid_file(rt->pid_file);
        }
    }

    /* The running workers become the old generation. */
    quit = hm_xcalloc((size_t) nworkers + 1, sizeof(pid_t));
    for (i = 0; i < nworkers; i++) {
        if (workers[i].pid != 0) {
            quit[nquit++] = workers[i].pid;
        }
    }
    old_pids = hm_xrealloc(old_pids, sizeof(pid_t) * (size_t) (nold + nquit));
    memcpy(old_pids + nold, quit, sizeof(pid_t) * (size_t) nquit);
    nold += nquit;
    old_deadline_ms = hm_now_ms() + (uint64_t) ort->shutdown_timeout_s * 1000
                      + HM_QUIT_MARGIN_MS;

    master_run_exit_hooks();
    hm_listen_close_all(old);       /* only what was not moved */
    hm_cycle_unref(old);
    master_cycle = cycle;
    hm_admin_commit(cycle->conf);
    hm_metrics_generation((unsigned) n, 1);
    master_metrics_rows(cycle->conf);
    for (i = 0; hm_modules[i] != NULL; i++) {
        if (hm_modules[i]->init_master != NULL
            && hm_modules[i]->init_master(cycle) != HM_OK)
        {
            hm_log_error(NULL, "module %s: init_master failed after reload",
                         hm_modules[i]->name);
        }
    }
    master_log_risks(cycle->conf);

    nw = hm_xcalloc((size_t) n, sizeof(hm_master_worker_t));
    free(workers);
    workers = nw;
    nworkers = n;
    for (i = 0; i < n; i++) {
        master_spawn(i);
    }
    for (i = 0; i < nquit; i++) {
        kill(quit[i], SIGQUIT);
    }
    free(quit);
    hm_listen_describe(cycle, addrs, sizeof(addrs));
    hm_log_info(NULL, "configuration reloaded: %d worker%s, listening on %s; "
                "%d old worker%s draining", n, n == 1 ? "" : "s", addrs,
                nquit, nquit == 1 ? "" : "s");
}

/*
 * USR2, old master's side: starts the binary now at the master's path
 * with the same arguments, handing it every listening socket through
 * HAMLYN_FDS (same accept queues, same slots) and a pipe in
 * HAMLYN_UPGRADE_FD on which it writes "R" once its workers run.  The pid
 * file moves to FILE.oldbin meanwhile.  Readiness, failure and the 30 s
 * bound are handled by the main loop (master_upgrade_ready/failed).
 */
static void
master_upgrade_start(void)
{
    hm_conf_runtime_t *rt = &master_cycle->conf->runtime;
    char              *fds, num[16];
    size_t             n;
    sigset_t           all;
    pid_t              pid;
    int                p[2];

    if (upgrade_pid != 0) {
        hm_log_warn(NULL, "binary upgrade already in progress (new master "
                    "%d); USR2 ignored", (int) upgrade_pid);
        return;
    }
    if (exe_path == NULL || master_argv == NULL) {
        hm_log_error(NULL, "binary upgrade impossible: the path of the "
                     "binary is unknown");
        return;
    }
    if (pipe2(p, O_CLOEXEC) < 0) {
        hm_log_error(NULL, "binary upgrade: pipe() failed: %s",
                     strerror(errno));
        return;
    }
    if (rt->pid_file != NULL) {
        n = strlen(rt->pid_file) + sizeof(".oldbin");
        free(oldbin_path);
        oldbin_path = hm_xmalloc(n);
        snprintf(oldbin_path, n, "%s.oldbin", rt->pid_file);
        if (rename(rt->pid_file, oldbin_path) < 0) {
            hm_log_warn(NULL, "binary upgrade: cannot rename %s to %s: %s",
                        rt->pid_file, oldbin_path, strerror(errno));
        }
    }

    pid = fork();
    if (pid < 0) {
        hm_log_error(NULL, "binary upgrade: fork() failed: %s",
                     strerror(errno));
        close(p[0]);
        close(p[1]);
        if (oldbin_path != NULL) {
            rename(oldbin_path, rt->pid_file);
        }
        return;
    }
    if (pid == 0) {
        /* Its own process group until it is ready: a roll-back kills the
         * group, so nothing it started (a wrapper script's children)
         * keeps our listening sockets open. */
        (void) setpgid(0, 0);
        fds = hm_listen_export(master_cycle, 1);
        fcntl(p[1], F_SETFD, 0);
        snprintf(num, sizeof(num), "%d", p[1]);
        setenv("HAMLYN_FDS", fds, 1);
        setenv("HAMLYN_UPGRADE_FD", num, 1);
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        execv(exe_path, master_argv);
        hm_log_error(NULL, "binary upgrade: cannot execute %s: %s", exe_path,
                     strerror(errno));
        _exit(127);
    }

    close(p[1]);
    (void) setpgid(pid, pid);       /* both sides: no race with exec */
    upgrade_fd = p[0];
    upgrade_pid = pid;
    upgrade_pgid = pid;
    upgrade_deadline_ms = hm_now_ms() + HM_UPGRADE_READY_MS;
    hm_log_info(NULL, "binary upgrade: started %s as new master %d",
                exe_path, (int) pid);
}

/* The new master did not become ready: it exited (<how>), closed its
 * pipe, or the time is up.  Stops it, restores the pid file, logs why. */
static void
master_upgrade_abort(const char *why)
{
    hm_conf_runtime_t *rt = &master_cycle->conf->runtime;

    if (upgrade_fd >= 0) {
        close(upgrade_fd);
        upgrade_fd = -1;
    }
    /* The new master, its workers and whatever else it started: none may
     * live on with copies of our listening sockets (they would keep the
     * ports open after we stop, and hold them against a restart). */
    if (upgrade_pgid > 0) {
        (void) kill(-upgrade_pgid, SIGKILL);
        upgrade_pgid = 0;
    }
    if (upgrade_pid > 0) {
        (void) kill(upgrade_pid, SIGKILL);
    }
    hm_listen_steer(master_cycle, nworkers);   /* it may have re-steered */
    if (oldbin_path != NULL && rt->pid_file != NULL
        && rename(oldbin_path, rt->pid_file) < 0)
    {
        master_write_pid_file(rt->pid_file);
    }
    hm_log_error(NULL, "binary upgrade failed: %s; the old binary keeps "
                 "serving (pid file restored)", why);
}

static void
master_upgrade_failed(pid_t pid, const char *how)
{
    char why[192];

    if (upgrade_fd < 0) {
        /* already given up on, or it was ready: just collect it */
        hm_log_info(NULL, "new master %d %s", (int) pid, how);
        upgrade_pid = 0;
        return;
    }
    snprintf(why, sizeof(why), "new master %d %s before it was ready",
             (int) pid, how);
    upgrade_pid = 0;
    master_upgrade_abort(why);
}

/* Reads the readiness pipe: "R" means the new master serves. */
static void
master_upgrade_readable(void)
{
    char    c = 0, how[128];
    ssize_t n;
    pid_t   r;
    int     i, status;

    n = read(upgrade_fd, &c, 1);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
        return;
    }
    if (n == 1 && c == 'R') {
        close(upgrade_fd);
        upgrade_fd = -1;
        upgraded_away = 1;
        upgrade_pgid = 0;
        hm_log_info(NULL, "binary upgrade: new master %d is serving; "
                    "draining the old workers", (int) upgrade_pid);
        sig_quit = 1;
        return;
    }
    /* EOF: the new master is most likely exiting; report its status. */
    for (i = 0; i < 100; i++) {
        r = waitpid(upgrade_pid, &status, WNOHANG);
        if (r == upgrade_pid) {
            describe_status(status, how, sizeof(how));
            master_upgrade_failed(r, how);
            return;
        }
        if (r < 0) {
            break;
        }
        poll(NULL, 0, 10);
    }
    master_upgrade_abort("the new master closed its readiness pipe without "
                         "being ready");
}

/*
 * -d or binary upgrade: tells the waiting parent (or old master) "R" once
 * every worker has said it accepts (hm_worker_ready_fd), not as soon as
 * they are forked: a new binary whose workers die at start is then rolled
 * back instead of taking over.  Reads the workers' pipe.
 */
static void
master_workers_readable(void)
{
    char    buf[64];
    ssize_t n;

    n = read(wready_fd, buf, sizeof(buf));
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
        return;
    }
    nwready += n > 0 ? (int) n : 0;
    if (n > 0 && nwready < nworkers) {
        return;
    }
    close(wready_fd);
    wready_fd = -1;
    if (nwready < nworkers) {
        /* EOF: every worker closed its end, not all of them ready; the
         * ones that did not have exited, and master_reap() fails the
         * start when it collects them. */
        return;
    }
    starting = 0;
    if (ready_fd < 0) {
        return;
    }
    if (write(ready_fd, "R", 1) != 1) {
        /* the parent is gone: nothing to tell */
    }
    close(ready_fd);
    ready_fd = -1;
}

/*
 * Stopping (QUIT, TERM, or draining after a binary upgrade): the master
 * closes its copies of the listening sockets, as the workers do once they
 * stop accepting, so that new clients are refused at once instead of
 * waiting in an accept queue nobody reads until the drain ends (nginx does
 * the same).  After an upgrade the new master holds its own copies.
 */
static void
master_close_listening(void)
{
    hm_listen_close_all(master_cycle);
    if (hm_admin_fd >= 0) {
        close(hm_admin_fd);
        hm_admin_fd = -1;
    }
}

/*
 * The supervision loop: handles the signal flags, restarts dead workers
 * when their backoff has passed, and sleeps in ppoll() until a signal or
 * the next deadline.  Returns when every worker has exited after QUIT or
 * TERM (killing stragglers at the deadline).
 */
static void
master_loop(void)
{
    hm_conf_runtime_t *rt;
    sigset_t           none;
    struct timespec    ts;
    struct pollfd      pfd[2];
    uint64_t           now, wake, deadline = 0;
    int                stopping = 0, live = nworkers, slot, timed;

    sigemptyset(&none);

    for ( ;; ) {
        rt = &master_cycle->conf->runtime;
        if (sig_child) {
            sig_child = 0;
            live = master_reap(stopping);
        }
        if (sig_term && stopping != 2) {
            sig_term = 0;
            hm_log_info(NULL, "fast shutdown: stopping %d workers", live);
            stopping = 2;
            master_close_listening();
            master_signal_workers(SIGTERM);
            deadline = hm_now_ms() + HM_TERM_WAIT_MS;
        }
        if (sig_quit) {
            sig_quit = 0;
            if (!stopping) {
                hm_log_info(NULL, "graceful shutdown: draining %d workers "
                            "(up to %ds)", live, rt->shutdown_timeout_s);
                stopping = 1;
                master_close_listening();
                master_signal_workers(SIGQUIT);
                deadline = hm_now_ms()
                           + (uint64_t) rt->shutdown_timeout_s * 1000
                           + HM_QUIT_MARGIN_MS;
                if (nold > 0 && old_deadline_ms > deadline) {
                    deadline = old_deadline_ms;
                }
            }
        }
        if (sig_reopen) {
            sig_reopen = 0;
            if (hm_log_reopen() != HM_OK) {
                hm_log_error(NULL, "cannot reopen the error log: %s",
                             strerror(errno));
            }
            if (hm_access_log_reopen() != HM_OK) {
                hm_log_error(NULL, "cannot reopen the access log: %s",
                             strerror(errno));
            }
            if (daemonized && hm_log_fd() > 2) {
                dup2(hm_log_fd(), 2);
            }
            master_chown_logs(rt);
            hm_log_info(NULL, "log files reopened");
            master_signal_workers(SIGUSR1);
        }
        /* A HUP or USR2 while the first workers start waits until they
         * all accept (wready_fd), which they count on. */
        if (sig_reload && !starting) {
            sig_reload = 0;
            if (stopping) {
                hm_log_warn(NULL, "reload ignored: shutting down");
            } else if (upgrade_pid != 0) {
                hm_log_warn(NULL, "reload ignored: a binary upgrade is in "
                            "progress");
            } else {
                master_reload();
                live = master_live();
                continue;           /* rt changed */
            }
        }
        if (sig_upgrade && !starting) {
            sig_upgrade = 0;
            if (stopping) {
                hm_log_warn(NULL, "binary upgrade ignored: shutting down");
            } else {
                master_upgrade_start();
            }
        }

        now = hm_now_ms();
        wake = 0;
        if (stopping) {
            if (live == 0) {
                return;
            }
            if (now >= deadline) {
                hm_log_warn(NULL, "%d workers still running after the "
                            "shutdown deadline; killing them", live);
                master_signal_workers(SIGKILL);
                for (slot = 0; slot < nworkers; slot++) {
                    if (workers[slot].pid != 0) {
                        waitpid(workers[slot].pid, NULL, 0);
                        workers[slot].pid = 0;
                    }
                }
                master_kill_old();
                return;
            }
            wake = deadline;
        } else {
            if (master_old_live() > 0) {
                if (now >= old_deadline_ms) {
                    master_kill_old();
                    live = master_live();
                } else {
                    wake = old_deadline_ms;
                }
            }
            for (slot = 0; slot < nworkers; slot++) {
                if (workers[slot].pid != 0) {
                    continue;
                }
                if (workers[slot].restart_at_ms <= now) {
                    master_spawn(slot);
                    live += workers[slot].pid != 0;
                }
                if (workers[slot].pid == 0
                    && (wake == 0 || workers[slot].restart_at_ms < wake))
                {
                    wake = workers[slot].restart_at_ms;
                }
            }
        }

        if (upgrade_fd >= 0) {
            if (now >= upgrade_deadline_ms) {
                master_upgrade_abort("the new master was not ready within "
                                     "30 s");
                continue;
            }
            if (wake == 0 || upgrade_deadline_ms < wake) {
                wake = upgrade_deadline_ms;
            }
        }
        if (starting && !stopping) {
            if (now >= start_deadline_ms) {
                hm_log_error(NULL, "%d of %d workers not accepting within "
                             "%d s; stopping", nworkers - nwready, nworkers,
                             HM_DAEMON_READY_S);
                start_failed = 1;
                sig_term = 1;
                continue;
            }
            if (wake == 0 || start_deadline_ms < wake) {
                wake = start_deadline_ms;
            }
        }

        timed = wake != 0;
        if (timed) {
            now = hm_now_ms();
            wake = wake > now ? wake - now : 0;
            ts.tv_sec = (time_t) (wake / 1000);
            ts.tv_nsec = (long) (wake % 1000) * 1000000;
        }
        /* A closed fd (-1) is ignored by poll. */
        pfd[0].fd = upgrade_fd;
        pfd[1].fd = wready_fd;
        pfd[0].events = pfd[1].events = POLLIN;
        pfd[0].revents = pfd[1].revents = 0;
        if (ppoll(pfd, 2, timed ? &ts : NULL, &none) < 0) {
            if (errno != EINTR) {
                hm_log_error(NULL, "ppoll() failed: %s", strerror(errno));
            }
            continue;
        }
        if (upgrade_fd >= 0 && pfd[0].revents != 0) {
            master_upgrade_readable();
        }
        if (wready_fd >= 0 && pfd[1].revents != 0) {
            master_workers_readable();
        }
    }
}

int
hm_master_run(hm_cycle_t *cycle, const hm_master_opts_t *opts)
{
    hm_conf_runtime_t *rt = &cycle->conf->runtime;
    hm_cycle_t         from;
    const char        *env;
    char               addrs[1024], exe[4096];
    ssize_t            n;
    int                i, slot, rc, inherited, p[2];

    master_cycle = cycle;
    master_pid = getpid();
    nworkers = rt->workers > 0 ? rt->workers : 1;
    master_argv = opts->argv;
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        exe_path = hm_xstrdup(exe);
    }
    env = getenv("HAMLYN_UPGRADE_FD");
    if (env != NULL) {
        ready_fd = atoi(env);
        fcntl(ready_fd, F_SETFD, FD_CLOEXEC);
        unsetenv("HAMLYN_UPGRADE_FD");
        upgraded_from = 1;
    }

    if (hm_log_open(rt->error_log_path, rt->error_log_level) != HM_OK) {
        fprintf(stderr, "hamlyn: runtime.error_log: cannot open %s: %s\n",
                rt->error_log_path, strerror(errno));
        return 1;
    }
    hm_log_set_json(rt->error_log_json);
    if (hm_access_log_open(rt->access_log_path) != HM_OK) {
        hm_log_error(NULL, "runtime.access_log: cannot open %s: %s",
                     rt->access_log_path, strerror(errno));
        if (strcmp(rt->error_log_path ? rt->error_log_path : "stderr",
                   "stderr"))
        {
            fprintf(stderr, "hamlyn: runtime.access_log: cannot open %s: "
                    "%s\n", rt->access_log_path, strerror(errno));
        }
        return 1;
    }
    if (rt->pid_file != NULL && !upgraded_from
        && getenv("HAMLYN_FDS") == NULL
        && master_check_pid_file(rt->pid_file) != HM_OK)
    {
        return 1;
    }
    if (master_resolve_user(rt) != HM_OK) {
        fprintf(stderr, "hamlyn: cannot start; see the error log\n");
        return 1;
    }
    master_chown_logs(rt);
    master_raise_nofile(rt);

    for (i = 0; hm_modules[i] != NULL; i++) {
        if (hm_modules[i]->init_master != NULL
            && hm_modules[i]->init_master(cycle) != HM_OK)
        {
            hm_log_error(NULL, "module %s: init_master failed",
                         hm_modules[i]->name);
            return 1;
        }
    }

    hm_metrics_init();              /* before any fork: shared slots */
    /* Handlers before the ports accept and the pid file exists: a HUP,
     * USR1 or USR2 sent as soon as hamlyn looks up (a deploy script's
     * "-s reload") must not meet the default action, which terminates;
     * blocked until the main loop, as always. */
    master_init_signals();
    inherited = hm_listen_inherited(&from);
    if (inherited > 0) {
        hm_log_info(NULL, "binary upgrade: adopting %d listening sockets "
                    "from master %d", inherited, (int) getppid());
    }
    /* The old master of an upgrade still holds its ports (the admin
     * listener's too, which is bound anew): no probing for others. */
    hm_listen_probe_off = upgraded_from;
    rc = hm_listen_reuse(cycle, inherited > 0 ? &from : NULL, nworkers);
    if (inherited > 0) {
        hm_listen_inherited_free(&from);
    }
    if (rc == HM_OK && hm_admin_prepare(cycle->conf) != HM_OK) {
        hm_listen_close_all(cycle);
        rc = HM_ERROR;
    }
    hm_listen_probe_off = 0;
    if (rc != HM_OK) {
        if (hm_log_fd() > 2) {
            fprintf(stderr, "hamlyn: cannot listen; see the error log\n");
        }
        master_run_exit_hooks();
        return 1;
    }

    if (opts->daemonize && !upgraded_from && master_daemonize() != HM_OK) {
        hm_listen_close_all(cycle);
        return 1;
    }
    master_pid = getpid();

    if (rt->pid_file != NULL && master_write_pid_file(rt->pid_file) != HM_OK) {
        if (hm_log_fd() > 2 && !opts->daemonize) {
            fprintf(stderr, "hamlyn: cannot write the pid file; see the "
                    "error log\n");
        }
        hm_listen_close_all(cycle);
        master_run_exit_hooks();
        return 1;
    }

    master_log_risks(cycle->conf);

    if (upgraded_from) {
        /* Back into the old master's process group (ours was only for a
         * roll-back, which now kills us and, by their parent-death
         * signal, our workers), with the workers: a terminal's ^C or a
         * group kill reaches them as before the upgrade. */
        (void) setpgid(0, getpgid(getppid()));
    }
    hm_admin_commit(cycle->conf);
    hm_metrics_generation((unsigned) nworkers, 0);
    master_metrics_rows(cycle->conf);
    workers = hm_xcalloc((size_t) nworkers, sizeof(hm_master_worker_t));
    if (ready_fd >= 0) {
        if (pipe2(p, O_CLOEXEC) == 0) {
            wready_fd = p[0];
            hm_worker_ready_fd = p[1];
            starting = 1;
            start_deadline_ms = hm_now_ms() + HM_DAEMON_READY_S * 1000;
        } else {
            hm_log_warn(NULL, "pipe() failed: %s; reporting ready before "
                        "the workers accept", strerror(errno));
        }
    }
    for (slot = 0; slot < nworkers; slot++) {
        master_spawn(slot);
    }
    if (hm_worker_ready_fd >= 0) {
        close(hm_worker_ready_fd);  /* the workers hold it now */
        hm_worker_ready_fd = -1;
    }
    hm_listen_describe(cycle, addrs, sizeof(addrs));
    hm_log_info(NULL, "hamlyn %s started, %d worker%s, listening on %s%s",
                HAMLYN_VERSION, nworkers, nworkers == 1 ? "" : "s", addrs,
                upgraded_from ? " (binary upgrade)" : "");

    if (ready_fd >= 0 && wready_fd < 0) {
        if (write(ready_fd, "R", 1) != 1) {
            /* the parent is gone: nothing to tell */
        }
        close(ready_fd);
        ready_fd = -1;
    }

    master_loop();

    cycle = master_cycle;           /* a reload may have replaced it */
    rt = &cycle->conf->runtime;
    master_run_exit_hooks();
    master_remove_pid_file(rt->pid_file);
    if (oldbin_path != NULL) {
        master_remove_pid_file(oldbin_path);
    }
    hm_listen_close_all(cycle);
    hm_log_info(NULL, "hamlyn exiting");
    free(workers);
    workers = NULL;
    free(old_pids);
    old_pids = NULL;
    nold = 0;
    hm_cycle_unref(cycle);
    return start_failed ? 1 : 0;
}
