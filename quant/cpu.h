/* cpu.h — which instruction set the kernels use.
 *
 * Contract: q_isa_active() is decided once (cpuid + xgetbv: the CPU must have the features AND the
 * OS must save the registers), then frozen. QKIT_ISA=scalar|avx2|avx512 forces a choice; forcing an
 * ISA the machine lacks falls back to the best available and q_isa_note() says so. */
#ifndef QKIT_QUANT_CPU_H
#define QKIT_QUANT_CPU_H

typedef enum { Q_ISA_SCALAR = 0, Q_ISA_AVX2 = 1, Q_ISA_AVX512 = 2, Q_ISA_NEON = 3 } q_isa;

q_isa q_isa_best(void);         /* what the machine supports */
q_isa q_isa_active(void);       /* what the kernels use */
const char *q_isa_name(q_isa isa);
const char *q_isa_note(void);   /* "" or why QKIT_ISA was not honoured */
/* Forces an ISA (tests, benchmarks); returns -1 if the machine cannot run it. */
int q_isa_set(q_isa isa);

#endif
