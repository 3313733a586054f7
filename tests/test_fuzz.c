/*
 * test_fuzz.c - a seeded random fuzzer of every public entry point.
 *
 *   test_fuzz [--calls N] [--seed S] [--one I] [--backend cpu|cuda]
 *             [--valid-only] [--ref-every K] [--keep-going] [-v]
 *
 *   --calls N      about N API calls in all (default 20000)
 *   --seed S       base seed (default: LA_FUZZ_SEED, else from the time and pid)
 *   --one I        replay iteration I alone (every valid call then goes to the
 *                  reference); each iteration draws from its own RNG, set
 *                  from the base seed and its index, so this is the same
 *                  iteration (the two-thread ones depend on timing as well)
 *   --backend      cpu (default) or cuda: the calls with tensors in device
 *                  memory (copied up before, down after each call)
 *   --valid-only   no deliberate mistakes, only valid calls
 *   --ref-every K  compare about one valid call in K with the fp64 reference
 *                  (default 20; decode in place always)
 *   --keep-going   go on after a failure (default: stop at the first)
 *
 * Iterations (see fuzz.h for the files): mostly one to three generated calls
 * on one handle (through their own entry points or la_execute), each after
 * up to three deliberate mistakes in it; sometimes
 * the helpers, workspace queries of problems too large to run, or two threads
 * on one handle (or on two).  Any
 * failure prints the command that replays its iteration; so does a
 * sanitizer's report (through its death callback).  The exit status is 0
 * only when no check failed.
 */
#define _POSIX_C_SOURCE 200809L

#include "fuzz.h"

#include <dlfcn.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- failures --------------------------------------------------------------------------- */

#define MAX_CLASSES 64
#define PRINT_PER_CLASS 3 /* later failures of a class are counted, not printed */

static struct {
    char name[40];
    long count;
    uint64_t first;
} g_classes[MAX_CLASSES];
static int g_nclasses;
static long g_failures;

static long *class_count(const char *cls, uint64_t index) {
    for (int i = 0; i < g_nclasses; i++)
        if (!strcmp(g_classes[i].name, cls)) return &g_classes[i].count;
    if (g_nclasses == MAX_CLASSES) return &g_classes[MAX_CLASSES - 1].count;
    snprintf(g_classes[g_nclasses].name, sizeof g_classes[0].name, "%s", cls);
    g_classes[g_nclasses].first = index;
    return &g_classes[g_nclasses++].count;
}

static int vfail(fz_ctx_t *x, const char *cls, const char *fmt, va_list ap) {
    long *n = class_count(cls, x->index);
    x->failures++;
    g_failures++;
    if ((*n)++ < PRINT_PER_CLASS) {
        printf("FAIL iteration %llu [%s]: ", (unsigned long long)x->index, cls);
        vprintf(fmt, ap);
        printf("\n");
        fflush(stdout);
    }
    return 0;
}

int fz_fail(fz_ctx_t *x, const char *cls, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(x, cls, fmt, ap);
    va_end(ap);
    return 0;
}

/* ---- replay commands, also from a sanitizer's report or a crash --------------------------- */

static char g_replay[256];

static void replay_command(const fz_opts_t *o, uint64_t index, char *buf, size_t len) {
    snprintf(buf, len, "test_fuzz%s --seed 0x%016llx --one %llu%s",
             o->backend == LA_BACKEND_CUDA ? " --backend cuda" : "", (unsigned long long)o->base_seed,
             (unsigned long long)index, o->valid_only ? " --valid-only" : "");
}

static void print_replay_at_death(void) { fprintf(stderr, "\nreplay: %s\n", g_replay); }

#if defined(__GNUC__)
/* Present when a sanitizer runtime is linked in: it calls back before it ends the process. */
extern void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));
#endif

#if defined(__SANITIZE_ADDRESS__)
/* A library asking for absurd memory gets NULL (and must report it), not an
 * abort of the whole run. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }
#endif

static void on_fatal_signal(int sig) {
    static const char head[] = "\nfatal signal; replay: ";
    ssize_t unused = write(2, head, sizeof head - 1);
    unused = write(2, g_replay, strlen(g_replay));
    unused = write(2, "\n", 1);
    (void)unused;
    signal(sig, SIG_DFL);
    raise(sig);
}

typedef void (*set_death_callback_fn)(void (*callback)(void));

static void install_death_reports(void) {
    int sanitized = 0;
#if defined(__GNUC__)
    if (__sanitizer_set_death_callback) {
        __sanitizer_set_death_callback(print_replay_at_death);
        sanitized = 1;
    }
#endif
    /* GCC's UBSan is a shared runtime of its own, with its own callback list. */
    void *ubsan = dlopen("libubsan.so.1", RTLD_NOW | RTLD_NOLOAD);
    void *sym = ubsan ? dlsym(ubsan, "__sanitizer_set_death_callback") : NULL;
    if (sym) {
        set_death_callback_fn set;
        memcpy(&set, &sym, sizeof set); /* object pointer -> function pointer, POSIX style */
        set(print_replay_at_death);
        sanitized = 1;
    }
    if (sanitized) return; /* the sanitizers own the fatal signals */
    signal(SIGSEGV, on_fatal_signal);
    signal(SIGBUS, on_fatal_signal);
    signal(SIGABRT, on_fatal_signal);
    signal(SIGFPE, on_fatal_signal);
}

/* ---- iterations ----------------------------------------------------------------------------- */

/* The index-th value of the splitmix64 sequence started at the base seed. */
static uint64_t iteration_seed(uint64_t base, uint64_t index) {
    uint64_t st = base + index * 0x9e3779b97f4a7c15ull;
    return tu_splitmix64(&st);
}

static void describe(const fz_call_t *c) {
    const la_problem_t *p = &c->p;
    printf("    %s decay %d B %lld H %lld N %lld D %lld E %lld%s%s%s%s scale %g max_seqlen %lld\n", fz_op_name(c->op),
           (int)p->decay, (long long)p->batch, (long long)p->heads, (long long)p->seqlen, (long long)p->dim_qk,
           (long long)p->dim_v, p->cu_seqlens ? " packed" : "", p->cu_seqlens_on_device ? " (device offsets)" : "",
           c->inplace ? " in-place" : "", c->odd_strides ? " odd-strides" : "", (double)p->scale,
           (long long)p->max_seqlen);
}

/* Generated calls on one handle (one to three, so that the workspace and
 * settings of one call meet the next): a few mistakes in each, then the
 * call itself. */
static void iter_call(fz_ctx_t *x, tu_rng_t *r) {
    la_handle_t *h = NULL;
    la_status_t st = fz_create(&h, x->o->backend);
    if (st != LA_STATUS_SUCCESS || !h) {
        fz_fail(x, "create", "la_create returned %s", fz_status_name(st) ? fz_status_name(st) : "?");
        return;
    }
    fz_check_message(x, h, LA_STATUS_SUCCESS, "la_create");
    x->check_mode = LA_CHECK_VALUES_DEFERRED; /* a new handle's (the header) */
    const int calls = 1 + (tu_below(r, 4) == 0) + (tu_below(r, 8) == 0);
    for (int k = 0; k < calls; k++) {
        fz_call_t *c = calloc(1, sizeof *c);
        if (!c) exit(2);
        fz_gen_valid(c, r, x->o->device);
        if (x->o->verbose) describe(c);
        fz_random_settings(x, h, r, x->o->device);
        /* The mistakes draw from their own stream: with or without them the
         * valid call is the same. */
        tu_rng_t mr;
        tu_rng_seed(&mr, tu_rng_next(r));
        int mistakes = x->o->valid_only ? 0 : (int)tu_below(&mr, 4);
        for (int i = 0; i < mistakes; i++) fz_exercise_mutation(x, h, c, &mr);
        fz_exercise_valid(x, h, c, r);
        fz_call_free(c);
        free(c);
    }
    /* Caller memory stays the caller's: neither replacing it nor destroying
     * the handle frees it (AddressSanitizer reports a double free below). */
    void *ws[2] = {NULL, NULL};
    if (!x->o->device && tu_below(r, 4) == 0) {
        for (int i = 0; i < 2; i++) {
            ws[i] = malloc(64);
            st = fz_set_workspace(h, ws[i], 64);
            if (st != LA_STATUS_SUCCESS) fz_fail(x, "setting-rejected", "la_set_workspace returned %d", (int)st);
            else fz_check_message(x, h, st, "la_set_workspace");
        }
    }
    st = fz_destroy(h);
    free(ws[0]);
    free(ws[1]);
    if (st != LA_STATUS_SUCCESS)
        fz_fail(x, "destroy", "la_destroy returned %s", fz_status_name(st) ? fz_status_name(st) : "?");
}

static void run_iteration(fz_ctx_t *x) {
    tu_rng_t r;
    tu_rng_seed(&r, x->seed);
    uint64_t u = tu_below(&r, 1000);
    if (x->o->verbose)
        printf("iteration %llu (seed 0x%016llx)\n", (unsigned long long)x->index, (unsigned long long)x->seed);
    if (u < 40) fz_iter_helpers(x, &r);
    else if (u < 60) fz_iter_sizes(x, &r);
    else if (u < 62) fz_iter_busy(x, &r);
    else iter_call(x, &r);
}

/* ---- command line ---------------------------------------------------------------------------- */

static void usage(void) {
    fprintf(stderr, "usage: test_fuzz [--calls N] [--seed S] [--one I] [--backend cpu|cuda] [--valid-only]\n"
                    "                 [--ref-every K] [--keep-going] [-v]\n"
                    "env: LA_FUZZ_SEED=<base seed>\n");
}

static int parse_u64(const char *s, uint64_t *v) {
    char *end;
    *v = strtoull(s, &end, 0);
    return *s && !*end;
}

static uint64_t default_seed(void) {
    const char *e = getenv("LA_FUZZ_SEED");
    uint64_t v;
    if (e && *e && parse_u64(e, &v)) return v;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t st = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
    return tu_splitmix64(&st);
}

static int parse_args(int argc, char **argv, fz_opts_t *o, int *one, uint64_t *one_index) {
    memset(o, 0, sizeof *o);
    o->calls = 20000;
    o->ref_every = 20;
    o->base_seed = default_seed();
    *one = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t n;
        if (!strcmp(a, "--calls") && v && parse_u64(v, &n)) {
            o->calls = (long long)n;
            i++;
        } else if (!strcmp(a, "--seed") && v && parse_u64(v, &n)) {
            o->base_seed = n;
            i++;
        } else if (!strcmp(a, "--one") && v && parse_u64(v, &n)) {
            *one = 1;
            *one_index = n;
            i++;
        } else if (!strcmp(a, "--ref-every") && v && parse_u64(v, &n) && n > 0) {
            o->ref_every = (int)n;
            i++;
        } else if (!strcmp(a, "--backend") && v && !strcmp(v, "cpu")) {
            o->backend = LA_BACKEND_CPU;
            i++;
        } else if (!strcmp(a, "--backend") && v && !strcmp(v, "cuda")) {
            o->backend = LA_BACKEND_CUDA;
            i++;
        } else if (!strcmp(a, "--valid-only")) o->valid_only = 1;
        else if (!strcmp(a, "--keep-going")) o->keep_going = 1;
        else if (!strcmp(a, "-v")) o->verbose = 1;
        else return 0;
    }
    o->one = *one;
    return 1;
}

/* The counts, the failure classes, and last a line with the totals (scripts
 * take the last line that mentions calls). */
static void print_summary(long long iterations, double seconds, long long valid, long long compared) {
    fz_print_call_counts();
    for (int i = 0; i < g_nclasses; i++)
        printf("failure class %-26s %6ld  (first in iteration %llu)\n", g_classes[i].name, g_classes[i].count,
               (unsigned long long)g_classes[i].first);
    printf("test_fuzz: %lld calls in %lld iterations (%.1f s); %lld valid calls succeeded, %lld compared with the "
           "fp64 reference; %ld failures\n",
           fz_calls_total(), iterations, seconds, valid, compared, g_failures);
}

int main(int argc, char **argv) {
    fz_opts_t o;
    int one;
    uint64_t one_index = 0;
    if (!parse_args(argc, argv, &o, &one, &one_index)) {
        usage();
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (o.backend == LA_BACKEND_CUDA) {
        if (!la_backend_available(LA_BACKEND_CUDA)) {
            printf("skipped: no CUDA device (or the library was built without CUDA)\n");
            return 0;
        }
        if (!tu_cuda_memory_init()) {
            printf("FAIL: the CUDA backend is available but libcuda.so.1 (the driver API) could not be loaded "
                   "to allocate device memory\n");
            return 1;
        }
        o.device = 1;
    }
    install_death_reports();
    char rerun[256];
    if (one) replay_command(&o, one_index, rerun, sizeof rerun);
    else
        snprintf(rerun, sizeof rerun, "test_fuzz%s --seed 0x%016llx --calls %lld%s",
                 o.backend == LA_BACKEND_CUDA ? " --backend cuda" : "", (unsigned long long)o.base_seed, o.calls,
                 o.valid_only ? " --valid-only" : "");
    char what[64];
    if (one) snprintf(what, sizeof what, "iteration %llu alone", (unsigned long long)one_index);
    else snprintf(what, sizeof what, "about %lld calls", o.calls);
    printf("test_fuzz: backend %s, base seed 0x%016llx, %s\nrerun: %s\n", o.backend == LA_BACKEND_CUDA ? "cuda" : "cpu",
           (unsigned long long)o.base_seed, what, rerun);

    const double t0 = tu_seconds();
    long long iterations = 0, valid = 0, compared = 0;
    for (uint64_t index = one ? one_index : 0;; index++) {
        if (!one && fz_calls_total() >= o.calls) break;
        fz_ctx_t x = {.o = &o, .index = index, .seed = iteration_seed(o.base_seed, index)};
        replay_command(&o, index, g_replay, sizeof g_replay);
        run_iteration(&x);
        iterations++;
        valid += x.valid_calls;
        compared += x.ref_compared;
        if (x.failures) {
            printf("replay: %s\n", g_replay);
            if (!o.keep_going) break;
        }
        if (one) break;
    }
    print_summary(iterations, tu_seconds() - t0, valid, compared);
    return g_failures ? 1 : 0;
}
