#include "cpu.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static unsigned long long xgetbv0(void)
{
    unsigned eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

static q_isa detect(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return Q_ISA_SCALAR;
    int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx || !fma || !f16c)
        return Q_ISA_SCALAR;
    unsigned long long xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6) /* XMM and YMM state */
        return Q_ISA_SCALAR;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return Q_ISA_SCALAR;
    int avx2 = (b >> 5) & 1;
    if (!avx2)
        return Q_ISA_SCALAR;
    int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512bw = (b >> 30) & 1,
        avx512vl = (b >> 31) & 1, vnni = (c >> 11) & 1;
    int zmm_state = (xcr0 & 0xe0) == 0xe0; /* opmask, ZMM_Hi256, Hi16_ZMM */
    if (avx512f && avx512dq && avx512bw && avx512vl && vnni && zmm_state)
        return Q_ISA_AVX512;
    return Q_ISA_AVX2;
}
#elif defined(__aarch64__)
static q_isa detect(void) { return Q_ISA_NEON; }
#else
static q_isa detect(void) { return Q_ISA_SCALAR; }
#endif

static int decided;
static q_isa best, active;
static const char *note = "";

static int runnable(q_isa want)
{
    if (want == Q_ISA_SCALAR)
        return 1;
    if (best == Q_ISA_NEON || want == Q_ISA_NEON)
        return want == best;
    return want <= best;
}

static void decide(void)
{
    if (decided)
        return;
    best = detect();
    active = best;
    const char *env = getenv("QKIT_ISA");
    if (env && *env) {
        q_isa want = best;
        if (!strcmp(env, "scalar"))
            want = Q_ISA_SCALAR;
        else if (!strcmp(env, "avx2"))
            want = Q_ISA_AVX2;
        else if (!strcmp(env, "avx512"))
            want = Q_ISA_AVX512;
        else if (!strcmp(env, "neon"))
            want = Q_ISA_NEON;
        else
            note = "QKIT_ISA not one of scalar, avx2, avx512, neon: ignored";
        if (runnable(want))
            active = want;
        else
            note = "QKIT_ISA names an instruction set this CPU lacks: using the best available";
    }
    decided = 1;
}

q_isa q_isa_best(void) { decide(); return best; }
q_isa q_isa_active(void) { decide(); return active; }
const char *q_isa_note(void) { decide(); return note; }

int q_isa_set(q_isa isa)
{
    decide();
    if (!runnable(isa))
        return -1;
    active = isa;
    return 0;
}

const char *q_isa_name(q_isa isa)
{
    static const char *const names[] = {"scalar", "avx2", "avx512", "neon"};
    return (unsigned)isa < 4 ? names[isa] : "?";
}
