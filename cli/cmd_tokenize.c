/* cmd_tokenize.c — `qkit tokenize MODEL (-p TEXT | -f FILE) [--ids] [--no-bos] [--parse-special]
 * [--show-count]`: llama-tokenize's output for a GGUF file or a Hugging Face folder. */
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
    "                     [--show-count]\n"
    "\n"
    "MODEL is a .gguf file or a Hugging Face folder (config.json and tokenizer files suffice).\n"
    "Prints one token per line as `id -> 'piece'`, or with --ids one list [1, 2, 3] like\n"
    "llama-tokenize --ids. The text is taken literally: special-token text such as <s> stays\n"
    "text unless --parse-special is given; --no-bos adds neither BOS nor EOS.\n";

typedef struct {
    const char *model, *prompt, *file;
    int ids, no_bos, parse_special, show_count;
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
    size_t len = a.prompt ? strlen(a.prompt) : 0;
    /* a missing --file is bad input (exit 2); any other refusal an I/O failure */
    if (a.file && (rc = qk_file_read(a.file, QK_FILE_NO_LIMIT, &text, &len, &err)))
        return cli_fail(rc == QK_ENOTFOUND ? QK_EFORMAT : rc, &err);
    tok_vocab *v = NULL;
    tok_ids ids = {0};
    unsigned flags = (a.no_bos ? 0 : TOK_ADD_SPECIAL) | (a.parse_special ? TOK_PARSE_SPECIAL : 0);
    rc = load_vocab(a.model, &v, &err);
    if (!rc)
        rc = tok_encode(v, a.file ? text : a.prompt, len, flags, &ids, &err);
    if (!rc)
        rc = print_tokens(v, &ids, &a, &err);
    tok_ids_free(&ids);
    tok_vocab_free(v);
    free(text);
    return rc ? cli_fail(rc, &err) : CLI_OK;
}
