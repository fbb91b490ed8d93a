/* cli.h — the qkit command line: one function per subcommand, shared option parsing helpers,
 * status → exit code mapping, and the terminal progress bar.
 *
 * Exit codes (CONVENTIONS.md): 0 success, 1 a verification bound was exceeded, 2 bad input or
 * usage, 3 I/O failure. Only cli/ prints to stdout or calls exit(). */
#ifndef QKIT_CLI_H
#define QKIT_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "../quant/status.h"

enum { CLI_OK = 0, CLI_BOUND = 1, CLI_USAGE = 2, CLI_IO = 3 };

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
    const char *summary;
} cli_command;

int cmd_inspect(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_imatrix(int argc, char **argv);
int cmd_sweep(int argc, char **argv);
int cmd_awq(int argc, char **argv);

/* Options shared by perplexity and verify. */
typedef struct {
    const char *text;
    int n_ctx, chunks, threads, json, quiet;
} cli_eval_opts;
/* 1: argv[*i] (and its value) consumed; 0: not an evaluation option; <0: usage error printed. */
int cli_parse_eval_opts(const char *cmd, int argc, char **argv, int *i, cli_eval_opts *o);

/* Prints prefix and msg on stderr as one line: control bytes in msg (from a file or an argument)
 * are written as \n, \t or \xHH. */
void cli_error_line(const char *prefix, const char *msg);

/* Prints "qkit: <message>" to stderr (one line) and returns the exit code for status. */
int cli_fail(int status, const qk_err *err);
/* Prints "qkit <cmd>: <formatted>" to stderr and returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
int cli_exit_code(int status);

/* Parses a non-negative integer with optional K/M/G suffix (powers of 1000 for sizes like
 * llama.cpp's --split-max-size, plain for counts); -1 on malformed input. */
int64_t cli_parse_size(const char *s);
int cli_parse_int(const char *s, long lo, long hi, long *out);

/* Split output and sharding, the same options for convert and quantize (and --shard for
 * imatrix): --split-max-size SIZE, --split-max-tensors N, --split-parts N, --shard I/N. */
typedef struct {
    uint64_t max_bytes, max_tensors;
    uint32_t parts;
    uint32_t shard_index, shard_count; /* count 0: no --shard */
} cli_split;

/* argv[*i] is one of the options above: parses its value (advancing *i) and returns 1; 0 when it
 * is none of them; -1 after printing a usage error. only_shard: --shard alone is accepted. */
int cli_parse_split(const char *cmd, int argc, char **argv, int *i, cli_split *s, int only_shard);

/* The usage lines of those options. */
#define CLI_SPLIT_USAGE                                                                        \
    "  --split-max-size SIZE         gguf-split parts OUT-0000i-of-0000N.gguf of at most SIZE\n" \
    "                                tensor data each (500M, 2G; powers of 1000)\n"             \
    "  --split-max-tensors N         at most N tensors per part\n"                              \
    "  --split-parts N               exactly N parts of balanced size\n"                        \
    "  --shard I/N                   job I (0-based) of N writes only parts p with p % N == I,\n" \
    "                                byte-identical to the same parts of an unsharded run;\n"   \
    "                                without a split option the split is N balanced parts\n"

/* ---- machine output (--json) -------------------------------------------------------------
 * Every --json document is built with cJSON and printed by cli_json_print: strings and keys
 * escaped, always valid UTF-8, never a bare NaN or Infinity. */
struct cJSON;

/* Adds key: v, or key: null when v is not finite (JSON has no NaN/Inf); -0 is written as 0.
 * Returns 1 when v was finite. */
int cli_json_number(struct cJSON *o, const char *key, double v);

/* Makes every key and string of doc valid UTF-8 (each byte that is not part of a well-formed
 * sequence becomes U+FFFD) and, when any was changed, adds "invalid_utf8_replaced": N (the number
 * of keys and strings changed) to the top-level object; prints doc on stdout (indented or one
 * line) and frees it. Returns CLI_OK, or CLI_IO when memory or stdout fails. */
int cli_json_print(struct cJSON *doc, int pretty);

/* The number of bytes of s[0..n) that are well-formed UTF-8 from the start; n when all are. */
size_t cli_utf8_valid_prefix(const char *s, size_t n);

/* When a model's figures come out NaN or Inf: names the first tensor holding a non-finite
 * weight (QK_ERANGE, "MODEL: tensor 'NAME': row R holds a non-finite value (NaN or Inf)"), or
 * says that none does. Always returns QK_ERANGE. em is a cv_eval_model (convert/eval_model.h). */
int cli_explain_nonfinite(const void *em, const char *figure, qk_err *err);

/* The number of threads a command runs with: requested (<= 0: OpenMP's default), lowered to as
 * many as the process can create under its memory limits (ulimit -v), with a warning when
 * lowered; sets OpenMP's default to it and starts OpenMP's thread pool. libgomp exits with
 * status 1 — qkit's "bound exceeded" — when it cannot create a thread, skipping every cleanup, so
 * no parallel region may be the first to need a thread. main() calls it once; commands with a
 * thread option call it again with theirs and pass the result on. */
int cli_threads(int requested);

/* Progress bar on stderr when it is a terminal, silent otherwise (pipes, CI, --json). */
typedef struct {
    int enabled;
    int64_t total;
    double t0;
    const char *what;
} cli_progress;
void cli_progress_start(cli_progress *p, const char *what, int64_t total, int quiet);
void cli_progress_update(cli_progress *p, int64_t done, double bytes_done);
void cli_progress_end(cli_progress *p);
double cli_now(void);

#endif
