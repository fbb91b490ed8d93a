/* cmd_info.c — `qkit info`: version, compiler, threads and the kernels in use. */
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "../quant/cpu.h"
#include "cli.h"

int cmd_info(int argc, char **argv)
{
    int json = argc > 1 && !strcmp(argv[1], "--json");
    if (argc > 1 && !json)
        return cli_usage_error("info", "usage: qkit info [--json]");
    const char *note = q_isa_note();
    if (json) {
        printf("{\"version\": \"%s\", \"compiler\": \"%s\", \"isa_best\": \"%s\", \"isa\": \"%s\", "
               "\"threads\": %d}\n",
               "0.1.0", __VERSION__, q_isa_name(q_isa_best()), q_isa_name(q_isa_active()),
               omp_get_max_threads());
        return CLI_OK;
    }
    printf("qkit 0.1.0 (built with %s)\n", __VERSION__);
    printf("kernels:   %s (best on this CPU: %s)%s%s\n", q_isa_name(q_isa_active()),
           q_isa_name(q_isa_best()), *note ? "\nnote:      " : "", note);
    printf("threads:   %d (OpenMP; set OMP_NUM_THREADS or --threads)\n", omp_get_max_threads());
    return CLI_OK;
}
