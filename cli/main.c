/* main.c — subcommand dispatch, signal handling and exit codes. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../formats/outfile.h"
#include "cli.h"

#ifndef QKIT_VERSION
#define QKIT_VERSION "0.1.0"
#endif

static const cli_command COMMANDS[] = {
    {"convert", cmd_convert, "convert a Hugging Face checkpoint folder to GGUF (f16, bf16, f32 or quantized)"},
    {"tokenize", cmd_tokenize, "tokenize a text with a GGUF or HF folder's tokenizer, as llama-tokenize"},
    {"inspect", cmd_inspect, "show metadata and tensors of a .gguf, .safetensors or HF folder"},
    {"perplexity", cmd_perplexity, "perplexity of a model on a text, as llama-perplexity"},
    {"verify", cmd_verify, "compare candidates with a reference: PPL, KL divergence, CI bounds"},
    {"quantize", cmd_quantize, "quantize a GGUF like llama-quantize: mixes, importance matrices, report"},
    {"awq", cmd_awq, "activation-aware weight quantization (AWQ) on CPU: AutoAWQ, compressed-tensors or GGUF output"},
    {"sweep", cmd_sweep, "quantize to several schemes and compare them (table, JSON, SVG chart)"},
    {"imatrix", cmd_imatrix, "collect an importance matrix with qkit's engine, as llama-imatrix; merge partial ones"},
    {"info", cmd_info, "show version, build and the kernels in use"},
    {"synth", cmd_synth, "write a random-weight HF checkpoint shaped like a real config.json"},
};

/* A half-written temporary must not outlive an interrupted run. */
static void on_signal(int sig)
{
    if (of_defer_signal(sig)) /* a split set is being renamed: raised again when it is whole */
        return;
    of_remove_all_temporaries();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void usage(FILE *f)
{
    fprintf(f, "qkit %s — convert, quantize and verify LLM weights\n\nusage: qkit COMMAND [ARGS]\n\n",
            QKIT_VERSION);
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(f, "  %-12s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(f, "\nRun 'qkit COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal);
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return CLI_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("qkit %s\n", QKIT_VERSION);
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (!strcmp(argv[1], COMMANDS[i].name)) {
            cli_threads(0); /* OpenMP's pool exists before any work (see cli.h) */
            return COMMANDS[i].run(argc - 1, argv + 1);
        }
    fprintf(stderr, "qkit: unknown command '%s' (run 'qkit --help')\n", argv[1]);
    return CLI_USAGE;
}
