/* cmd_info.c — `qkit info [--json] [-q]`: version, compiler, threads and the kernels in use. */
#include <cJSON.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "../quant/cpu.h"
#include "cli.h"

static const char USAGE[] = "usage: qkit info [--json] [-q]";

int cmd_info(int argc, char **argv)
{
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return puts(USAGE), CLI_OK;
        else if (strcmp(argv[i], "-q") && strcmp(argv[i], "--quiet")) /* nothing to silence */
            return cli_usage_error("info", "unexpected argument '%s'\n%s", argv[i], USAGE);
    }
    const char *note = q_isa_note();
    if (json) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "version", "0.1.0");
        cJSON_AddStringToObject(d, "compiler", __VERSION__);
        cJSON_AddStringToObject(d, "isa_best", q_isa_name(q_isa_best()));
        cJSON_AddStringToObject(d, "isa", q_isa_name(q_isa_active()));
        if (*note)
            cJSON_AddStringToObject(d, "note", note);
        cJSON_AddNumberToObject(d, "threads", omp_get_max_threads());
        return cli_json_print(d, 0);
    }
    printf("qkit 0.1.0 (built with %s)\n", __VERSION__);
    printf("kernels:   %s (best on this CPU: %s)%s%s\n", q_isa_name(q_isa_active()),
           q_isa_name(q_isa_best()), *note ? "\nnote:      " : "", note);
    printf("threads:   %d (OpenMP; set OMP_NUM_THREADS or --threads)\n", omp_get_max_threads());
    return CLI_OK;
}
