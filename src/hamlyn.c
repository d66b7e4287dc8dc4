/*
 * hamlyn.c: main.  The command line of shared/CLI.md:
 *
 *   hamlyn [-c FILE] [-t] [-s reload|reopen|quit|stop|upgrade]
 *          [--trust-report[=json]] [-d] [-V] [-h]
 *
 * Every mode first loads the configuration into a cycle (hm_cycle_new:
 * the JSON loader, certificates and keys, TLS contexts, module
 * postconfig), except -V and -h.  -t stops there; -s only reads
 * runtime.pid_file and signals the running master; with no mode the cycle
 * goes to the master (src/os/hm_master.c), which forks the workers.
 *
 * Exit codes: 0 success; 1 invalid configuration or failure to start or
 * to signal; 2 bad command line.
 */
#include "hm_core.h"
#include "hm_cycle.h"
#include "hm_log.h"
#include "hm_module.h"
#include "hm_tls.h"
#include "hm_trust.h"
#include "hm_os.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <jansson.h>
#include <uv.h>

/* From http-parser: only src/http/hm_http_parse.c includes its header. */
unsigned long http_parser_version(void);

typedef struct {
    const char *conf_path;
    const char *signal_name;
    int         test;
    int         version;
    int         help;
    int         daemonize;
    int         trust_report;      /* 1 text, 2 json */
} hm_cmdline_t;

static const struct {
    const char *name;
    int         signo;
} hm_signal_names[] = {
    { "reload",  SIGHUP },
    { "reopen",  SIGUSR1 },
    { "quit",    SIGQUIT },
    { "stop",    SIGTERM },
    { "upgrade", SIGUSR2 },
};

static void
usage(FILE *out)
{
    fprintf(out,
        "Usage: hamlyn [-c FILE] [-t] [-s SIGNAL] [--trust-report[=json]] "
        "[-d] [-V] [-h]\n"
        "\n"
        "  -c FILE        configuration file (default " HM_CONF_PATH ")\n"
        "  -t             test the configuration and exit\n"
        "  -s SIGNAL      send SIGNAL to the running master "
        "(reload, reopen, quit, stop, upgrade)\n"
        "  --trust-report[=json]  print where TLS ends for every site\n"
        "  -d             daemonize\n"
        "  -V, --version  show versions and compiled-in modules\n"
        "  -h, --help     show this help\n");
}

/*
 * Parses argv into cl.  Single-letter options may be grouped as with
 * nginx ("-tc FILE", "-tcFILE"): -c and -s take the rest of the word or
 * the next argument.  Returns HM_OK, or HM_ERROR after printing what was
 * wrong and the usage to stderr.
 */
static int
parse_args(int argc, char **argv, hm_cmdline_t *cl)
{
    const char *a, *p;
    int         i;

    for (i = 1; i < argc; i++) {
        a = argv[i];
        if (strcmp(a, "--version") == 0) {
            cl->version = 1;
        } else if (strcmp(a, "--help") == 0) {
            cl->help = 1;
        } else if (strcmp(a, "--trust-report") == 0) {
            cl->trust_report = 1;
        } else if (strcmp(a, "--trust-report=json") == 0) {
            cl->trust_report = 2;
        } else if (strncmp(a, "--trust-report=", 15) == 0) {
            fprintf(stderr, "hamlyn: unknown trust report format \"%s\" "
                    "(use --trust-report or --trust-report=json)\n", a + 15);
            goto bad;
        } else if (a[0] != '-' || a[1] == '\0' || a[1] == '-') {
            fprintf(stderr, "hamlyn: invalid option: \"%s\"\n", a);
            goto bad;
        } else {
            for (p = a + 1; *p != '\0'; p++) {
                switch (*p) {
                case 't':
                    cl->test = 1;
                    continue;
                case 'd':
                    cl->daemonize = 1;
                    continue;
                case 'V':
                    cl->version = 1;
                    continue;
                case 'h':
                case '?':
                    cl->help = 1;
                    continue;
                case 'c':
                case 's':
                    break;
                default:
                    fprintf(stderr, "hamlyn: invalid option: \"%s\"\n", a);
                    goto bad;
                }
                /* -c / -s: the rest of this word, or the next one */
                if (p[1] == '\0' && i + 1 >= argc) {
                    fprintf(stderr, "hamlyn: option \"-%c\" requires an "
                            "argument\n", *p);
                    goto bad;
                }
                if (*p == 'c') {
                    cl->conf_path = p[1] != '\0' ? p + 1 : argv[++i];
                } else {
                    cl->signal_name = p[1] != '\0' ? p + 1 : argv[++i];
                }
                break;
            }
        }
    }
    return HM_OK;

bad:
    usage(stderr);
    return HM_ERROR;
}

/* -V: versions of everything Hamlyn is built with, and its modules. */
static void
show_version(void)
{
    char          mods[512];
    unsigned long hp = http_parser_version();

    hm_modules_names(mods, sizeof(mods));
    printf("hamlyn version %s\n", HAMLYN_VERSION);
    printf("TLS: %s (%s)\n", HM_BORINGSSL_DESC, hm_tls_version());
    printf("libuv: %s\n", uv_version_string());
    printf("http-parser: %lu.%lu.%lu\n", (hp >> 16) & 255, (hp >> 8) & 255,
           hp & 255);
    printf("jansson: %s\n", JANSSON_VERSION);
    /* no trailing blank without arguments (nginx's form) */
    printf("configure arguments:%s%s\n", HM_CONFIGURE_ARGS[0] ? " " : "",
           HM_CONFIGURE_ARGS);
    printf("modules: %s\n", mods);
}

/*
 * Finds runtime.pid_file in the configuration file without validating the
 * rest: -s must be able to stop a master (or ask it to reload) even when
 * the file was broken since it started.  Relative paths are relative to
 * the file's folder, as in the loader.  Returns a malloc'd absolute path,
 * or NULL (*why says whether the key is absent or the file unreadable).
 */
static char *
find_pid_file(const char *path, const char **why)
{
    json_error_t  jerr;
    json_t       *root, *rt, *pf;
    const char   *v;
    char         *res;
    static char   reason[256];

    root = json_load_file(path, 0, &jerr);
    if (root == NULL) {
        /* with jansson's reason: a missing file, or where the syntax
         * breaks */
        if (jerr.line > 0) {
            snprintf(reason, sizeof(reason), "cannot be read as JSON "
                     "(line %d: %s)", jerr.line, jerr.text);
        } else {
            snprintf(reason, sizeof(reason), "cannot be read as JSON (%s)",
                     jerr.text);
        }
        *why = reason;
        return NULL;
    }
    rt = json_object_get(root, "runtime");
    pf = rt != NULL ? json_object_get(rt, "pid_file") : NULL;
    v = json_string_value(pf);
    if (v == NULL || v[0] == '\0') {
        *why = "has no runtime.pid_file";
        json_decref(root);
        return NULL;
    }
    res = hm_conf_resolve_path(path, v);
    json_decref(root);
    return res;
}

/*
 * -s: sends the signal named <name> to the master whose pid is in the
 * configuration's runtime.pid_file.  Returns the exit code.
 */
static int
send_signal(const char *pid_file, const char *name)
{
    char        buf[64], *end;
    size_t      i;
    ssize_t     n;
    long        pid;
    FILE       *f;
    int         signo = 0;

    for (i = 0; i < hm_nelem(hm_signal_names); i++) {
        if (strcmp(name, hm_signal_names[i].name) == 0) {
            signo = hm_signal_names[i].signo;
        }
    }
    HM_ASSERT(signo != 0);          /* checked in main() */

    f = fopen(pid_file, "re");
    if (f == NULL) {
        fprintf(stderr, "hamlyn: cannot open pid file %s: %s (is hamlyn "
                "running?)\n", pid_file, strerror(errno));
        return 1;
    }
    n = (ssize_t) fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n > 0 ? n : 0] = '\0';
    errno = 0;
    pid = strtol(buf, &end, 10);
    if (errno != 0 || end == buf || pid <= 1 || pid > INT32_MAX
        || (*end != '\0' && *end != '\n'))
    {
        fprintf(stderr, "hamlyn: invalid pid in %s\n", pid_file);
        return 1;
    }
    if (kill((pid_t) pid, 0) == 0 && !hm_pid_is_hamlyn((pid_t) pid)) {
        /* A stale pid file whose pid now belongs to another program
         * (after a crash or a reboot): signalling it would stop that. */
        fprintf(stderr, "hamlyn: process %ld (from %s) is not hamlyn: "
                "hamlyn is not running (stale pid file); nothing sent\n",
                pid, pid_file);
        return 1;
    }
    if (kill((pid_t) pid, signo) < 0) {
        if (errno == ESRCH) {
            fprintf(stderr, "hamlyn: no process %ld (from %s): hamlyn is "
                    "not running (stale pid file)\n", pid, pid_file);
        } else {
            fprintf(stderr, "hamlyn: cannot signal process %ld (from %s): "
                    "%s\n", pid, pid_file, strerror(errno));
        }
        return 1;
    }
    return 0;
}

/*
 * -s SIGNAL.  For "reload" the file is validated first and its errors are
 * printed (the running master would refuse it too); the signal is sent
 * either way, so the master logs the outcome, but the exit code is 1 then,
 * as nginx's, so that a deploy script or systemd's ExecReload sees that
 * the new configuration did not take effect.
 */
static int
signal_mode(hm_cmdline_t *cl)
{
    hm_cycle_t *cycle;
    const char *why = "";
    char       *pid_file;
    int         rc, nerrors = 0, invalid = 0;

    if (strcmp(cl->signal_name, "reload") == 0) {
        cycle = hm_cycle_new(cl->conf_path, stderr, &nerrors);
        if (cycle == NULL) {
            fprintf(stderr, "hamlyn: configuration %s has %d error%s: the "
                    "running master will keep its configuration\n",
                    cl->conf_path, nerrors, nerrors == 1 ? "" : "s");
            invalid = 1;
        } else {
            hm_cycle_unref(cycle);
        }
    }
    pid_file = find_pid_file(cl->conf_path, &why);
    if (pid_file == NULL) {
        fprintf(stderr, "hamlyn: %s %s, so the running master cannot be "
                "found\n", cl->conf_path, why);
        return 1;
    }
    rc = send_signal(pid_file, cl->signal_name);
    free(pid_file);
    return rc != 0 ? rc : invalid;
}

int
main(int argc, char **argv)
{
    hm_cmdline_t     cl;
    hm_master_opts_t opts;
    hm_cycle_t      *cycle;
    size_t           i;
    char            *abs, *master_argv[5];
    int              nerrors = 0, rc, known;

    memset(&cl, 0, sizeof(cl));
    cl.conf_path = HM_CONF_PATH;
    if (parse_args(argc, argv, &cl) != HM_OK) {
        return 2;
    }
    if (cl.help) {
        usage(stdout);
        return 0;
    }
    if (hm_modules_init() != HM_OK) {
        return 1;
    }
    if (cl.version) {
        show_version();
        return 0;
    }
    if (cl.signal_name != NULL) {
        known = 0;
        for (i = 0; i < hm_nelem(hm_signal_names); i++) {
            known |= strcmp(cl.signal_name, hm_signal_names[i].name) == 0;
        }
        if (!known) {
            fprintf(stderr, "hamlyn: invalid signal \"%s\" (use reload, "
                    "reopen, quit, stop or upgrade)\n", cl.signal_name);
            return 2;
        }
    }
    if (cl.conf_path[0] == '\0') {
        fprintf(stderr, "hamlyn: -c needs a file name\n");
        return 2;
    }

    /* -t and --trust-report win over -s, as with nginx: a command that
     * says "test" never stops or reloads a running master. */
    if (cl.signal_name != NULL && !cl.test && !cl.trust_report) {
        return signal_mode(&cl);
    }

    cycle = hm_cycle_new(cl.conf_path, stderr, &nerrors);
    if (cycle == NULL) {
        fprintf(stderr, "hamlyn: configuration %s test failed (%d error%s)\n",
                cl.conf_path, nerrors, nerrors == 1 ? "" : "s");
        return 1;
    }

    if (cl.test) {
        fprintf(stderr, "hamlyn: configuration %s is ok\n", cl.conf_path);
        hm_cycle_unref(cycle);
        return 0;
    }
    if (cl.trust_report) {
        rc = hm_trust_report(cycle->conf, stdout, cl.trust_report == 2);
        if (fflush(stdout) != 0) {
            rc = HM_ERROR;
        }
        hm_cycle_unref(cycle);
        if (rc != HM_OK) {
            fprintf(stderr, "hamlyn: cannot write the trust report\n");
            return 1;
        }
        return 0;
    }

    /* The command line a binary upgrade runs the new binary with: the
     * configuration by absolute path (a daemon works from "/"), as the
     * loader made it: symbolic links not resolved, so that the new master
     * finds the same relative paths (pid file, logs) as this one. */
    abs = hm_xstrdup(cycle->conf->path);
    master_argv[0] = argv[0];
    master_argv[1] = "-c";
    master_argv[2] = abs;
    master_argv[3] = cl.daemonize ? "-d" : NULL;
    master_argv[4] = NULL;

    opts.conf_path = master_argv[2];
    opts.daemonize = cl.daemonize;
    opts.argv = master_argv;
    rc = hm_master_run(cycle, &opts);
    free(abs);
    return rc;
}
