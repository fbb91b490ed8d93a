/* cmd_tokenize.c — `qkit tokenize MODEL (-p TEXT | -f FILE) [--ids] [--no-bos] [--parse-special]
 * [--show-count]`: llama-tokenize's output for a GGUF file or a Hugging Face folder. */
#include <cJSON.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../calib/tokenizer.h"
#include "../calib/tokenizer_gguf.h"
#include "../formats/gguf.h"
#include "../formats/file.h"
#include "cli.h"

static const char USAGE[] =
    "usage: qkit tokenize MODEL (-p TEXT | -f FILE) [--ids] [--no-bos] [--parse-special]\n"
    "                     [--show-count] [--no-escape] [--json] [-q]\n"
    "\n"
    "MODEL is a .gguf file or a Hugging Face folder (config.json and tokenizer files suffice).\n"
    "Prints one token per line as `id -> 'piece'`, or with --ids one list [1, 2, 3] like\n"
    "llama-tokenize --ids. The text is taken literally: special-token text such as <s> stays\n"
    "text unless --parse-special is given; --no-bos adds neither BOS nor EOS. Escapes in -p TEXT\n"
    "(\\n \\r \\t \\' \\\" \\\\ \\xHH) are processed as llama-tokenize does unless --no-escape is given;\n"
    "a file is read as it is. --json prints {model, count, ids, pieces}.\n";

typedef struct {
    const char *model, *prompt, *file;
    int ids, no_bos, parse_special, show_count, no_escape, json, quiet;
} args;

static int parse_args(int argc, char **argv, args *a, int *help)
{
    static const struct {
        const char *name;
        size_t off;
    } flags[] = {
        {"--ids", offsetof(args, ids)},
        {"--no-bos", offsetof(args, no_bos)},
        {"--parse-special", offsetof(args, parse_special)},
        {"--show-count", offsetof(args, show_count)},
        {"--no-escape", offsetof(args, no_escape)},
        {"--json", offsetof(args, json)},
        {"-q", offsetof(args, quiet)}, /* nothing to silence: the tokens are the result */
        {"--quiet", offsetof(args, quiet)},
    };
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        int matched = 0;
        for (size_t k = 0; k < sizeof flags / sizeof flags[0] && !matched; k++)
            if (!strcmp(s, flags[k].name))
                matched = *(int *)((char *)a + flags[k].off) = 1;
        if (matched)
            continue;
        if (!strcmp(s, "-h") || !strcmp(s, "--help")) {
            *help = 1;
            return CLI_OK;
        }
        int is_prompt = !strcmp(s, "-p") || !strcmp(s, "--prompt");
        if (is_prompt || !strcmp(s, "-f") || !strcmp(s, "--file")) {
            if (i + 1 >= argc)
                return cli_usage_error("tokenize", "%s needs a value", s);
            *(is_prompt ? &a->prompt : &a->file) = argv[++i];
            continue;
        }
        if (s[0] == '-' || a->model)
            return cli_usage_error("tokenize", "unexpected argument '%s' (see qkit tokenize --help)", s);
        a->model = s;
    }
    if (!a->model || !a->prompt == !a->file)
        return cli_usage_error("tokenize", "%s (see qkit tokenize --help)",
                               !a->model ? "MODEL is required" : "give exactly one of -p TEXT and -f FILE");
    return CLI_OK;
}

static int load_vocab(const char *model, tok_vocab **v, qk_err *err)
{
    struct stat st;
    if (stat(model, &st) == 0 && S_ISDIR(st.st_mode))
        return tok_vocab_load_hf(model, NULL, v, err);
    gguf_ctx *g;
    int rc = gguf_open(&g, model, err);
    if (!rc) {
        rc = tok_vocab_load_gguf(g, v, err);
        if (rc)
            qk_err_prefix(err, model);
    }
    gguf_close(g);
    return rc;
}

/* llama.cpp's string_process_escapes, in place: \n \r \t \' \" \\ and \xHH; any other
 * backslash stays as it is. Returns the new length. */
static size_t process_escapes(char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 >= n) {
            s[o++] = s[i];
            continue;
        }
        char c = s[++i];
        const char *from = "nrt'\"\\", *to = "\n\r\t'\"\\", *hit = c ? strchr(from, c) : NULL;
        if (hit) {
            s[o++] = to[hit - from];
            continue;
        }
        if (c == 'x' && i + 2 < n) {
            char hex[3] = {s[i + 1], s[i + 2], 0}, *end;
            long v = strtol(hex, &end, 16);
            if (end == hex + 2) {
                s[o++] = (char)v;
                i += 2;
                continue;
            }
        }
        s[o++] = '\\';
        s[o++] = c;
    }
    return o;
}

/* llama-tokenize prints llama_token_to_piece(special = true). */
static int print_piece(const tok_vocab *v, int32_t id, qk_err *err)
{
    char small[256], *buf = small;
    size_t len;
    int rc = tok_token_to_piece(v, id, TOK_DECODE_SPECIAL, small, sizeof small, &len, err);
    if (!rc && len > sizeof small) {
        if (!(buf = malloc(len)))
            return qk_err_set(err, QK_ENOMEM, "tokenize: out of memory");
        rc = tok_token_to_piece(v, id, TOK_DECODE_SPECIAL, buf, len, &len, err);
    }
    if (!rc)
        fwrite(buf, 1, len, stdout);
    if (buf != small)
        free(buf);
    return rc;
}

static int print_tokens(const tok_vocab *v, const tok_ids *ids, const args *a, qk_err *err)
{
    int rc = QK_OK;
    if (a->ids)
        putchar('[');
    for (size_t i = 0; i < ids->n && !rc; i++) {
        if (a->ids) {
            printf(i ? ", %d" : "%d", ids->ids[i]);
            continue;
        }
        printf("%6d -> '", ids->ids[i]);
        rc = print_piece(v, ids->ids[i], err);
        puts("'");
    }
    if (a->ids)
        puts("]");
    if (!rc && a->show_count)
        printf("Total number of tokens: %zu\n", ids->n);
    return rc;
}

/* {model, count, ids, pieces}: pieces as llama-tokenize prints them (a piece that is part of a
 * UTF-8 character comes out as U+FFFD, flagged by cli_json_print). */
static int print_json(const tok_vocab *v, const tok_ids *ids, const args *a, qk_err *err)
{
    cJSON *d = cJSON_CreateObject(), *jid = NULL, *jp = NULL;
    cJSON_AddStringToObject(d, "model", a->model);
    cJSON_AddNumberToObject(d, "count", (double)ids->n);
    jid = cJSON_AddArrayToObject(d, "ids");
    jp = cJSON_AddArrayToObject(d, "pieces");
    size_t cap = 256;
    char *buf = malloc(cap);
    int rc = buf ? QK_OK : qk_err_set(err, QK_ENOMEM, "tokenize: out of memory");
    for (size_t i = 0; i < ids->n && !rc; i++) {
        size_t len = 0;
        rc = tok_token_to_piece(v, ids->ids[i], TOK_DECODE_SPECIAL, buf, cap, &len, err);
        if (!rc && len + 1 > cap) {
            char *grown = realloc(buf, len + 1);
            if (!grown)
                rc = qk_err_set(err, QK_ENOMEM, "tokenize: out of memory");
            else if (!(rc = tok_token_to_piece(v, ids->ids[i], TOK_DECODE_SPECIAL, grown, len + 1, &len, err)))
                cap = len + 1;
            buf = grown ? grown : buf;
        }
        if (!rc) {
            buf[len] = 0; /* a NUL inside a piece ends it here */
            cJSON_AddItemToArray(jid, cJSON_CreateNumber(ids->ids[i]));
            cJSON_AddItemToArray(jp, cJSON_CreateString(buf));
        }
    }
    free(buf);
    if (rc) {
        cJSON_Delete(d);
        return rc;
    }
    return cli_json_print(d, 0) == CLI_OK ? QK_OK : qk_err_set(err, QK_EIO, "tokenize: cannot write the output");
}

int cmd_tokenize(int argc, char **argv)
{
    args a = {0};
    int help = 0, rc = parse_args(argc, argv, &a, &help);
    if (rc || help) {
        if (help)
            fputs(USAGE, stdout);
        return rc;
    }
    qk_err err = {{0}};
    char *text = NULL;
    size_t len = 0;
    /* a missing --file is bad input (exit 2); any other refusal an I/O failure */
    if (a.file && (rc = qk_file_read(a.file, QK_FILE_NO_LIMIT, &text, &len, &err)))
        return cli_fail(rc == QK_ENOTFOUND ? QK_EFORMAT : rc, &err);
    if (a.prompt) {
        if (!(text = strdup(a.prompt)))
            return cli_fail(QK_ENOMEM, NULL);
        len = strlen(text);
        if (!a.no_escape)
            len = process_escapes(text, len);
    }
    tok_vocab *v = NULL;
    tok_ids ids = {0};
    unsigned flags = (a.no_bos ? 0 : TOK_ADD_SPECIAL) | (a.parse_special ? TOK_PARSE_SPECIAL : 0);
    rc = load_vocab(a.model, &v, &err);
    if (!rc)
        rc = tok_encode(v, text, len, flags, &ids, &err);
    if (!rc)
        rc = a.json ? print_json(v, &ids, &a, &err) : print_tokens(v, &ids, &a, &err);
    tok_ids_free(&ids);
    tok_vocab_free(v);
    free(text);
    return rc ? cli_fail(rc, &err) : CLI_OK;
}
