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

/* Options shared by perplexity and verify. */
typedef struct {
    const char *text;
    int n_ctx, chunks, threads, json;
} cli_eval_opts;
/* 1: argv[*i] (and its value) consumed; 0: not an evaluation option; <0: usage error printed. */
int cli_parse_eval_opts(const char *cmd, int argc, char **argv, int *i, cli_eval_opts *o);

/* Prints "qkit: <message>" to stderr and returns the exit code for status. */
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
