/*
 * Linked into the NativeAOT binary (DualChunk.Cli.csproj, target DualChunkIsaCheck): runs before main, so before
 * the .NET runtime starts. It is compiled for the same instruction set as the managed code (-march from
 * IlcInstructionSet), so the compiler's feature macros say what the binary needs. On a CPU without one of them it
 * prints one line naming what is missing and the fix, and exits 1 (the CLI's "error" code), instead of the runtime's
 * abort (exit 134) or an illegal instruction later. __builtin_cpu_supports also checks that the OS saves the
 * AVX / AVX-512 registers.
 */
#include <stdio.h>
#include <unistd.h>

#ifndef DUALCHUNK_ISA
#define DUALCHUNK_ISA "?"
#endif

/* The features of the x86-64-v2..v4 levels (what the kernels' vector paths need). A feature the compiler was told to
 * use but that is not listed here is still checked by the runtime, with its own message. */
__attribute__((constructor(101))) static void dualchunk_isa_check(void)
{
    const char *missing;
    __builtin_cpu_init();
#ifdef __SSE4_2__
    if (!__builtin_cpu_supports("sse4.2")) { missing = "SSE4.2"; goto fail; }
#endif
#ifdef __POPCNT__
    if (!__builtin_cpu_supports("popcnt")) { missing = "POPCNT"; goto fail; }
#endif
#ifdef __AVX__
    if (!__builtin_cpu_supports("avx")) { missing = "AVX"; goto fail; }
#endif
#ifdef __AVX2__
    if (!__builtin_cpu_supports("avx2")) { missing = "AVX2"; goto fail; }
#endif
#ifdef __FMA__
    if (!__builtin_cpu_supports("fma")) { missing = "FMA"; goto fail; }
#endif
#ifdef __BMI2__
    if (!__builtin_cpu_supports("bmi2")) { missing = "BMI2"; goto fail; }
#endif
#ifdef __AVX512F__
    if (!__builtin_cpu_supports("avx512f")) { missing = "AVX-512F"; goto fail; }
#endif
#ifdef __AVX512BW__
    if (!__builtin_cpu_supports("avx512bw")) { missing = "AVX-512BW"; goto fail; }
#endif
#ifdef __AVX512DQ__
    if (!__builtin_cpu_supports("avx512dq")) { missing = "AVX-512DQ"; goto fail; }
#endif
#ifdef __AVX512VL__
    if (!__builtin_cpu_supports("avx512vl")) { missing = "AVX-512VL"; goto fail; }
#endif
#ifdef __AVX512CD__
    if (!__builtin_cpu_supports("avx512cd")) { missing = "AVX-512CD"; goto fail; }
#endif
    return;
fail:
    fprintf(stderr,
        "error: this dualchunk binary was compiled for IlcInstructionSet=%s and needs %s, which this CPU lacks; "
        "publish it on this machine, or with -p:IlcInstructionSet=x86-64-v3 (any AVX2 CPU), or use the dotnet tool.\n",
        DUALCHUNK_ISA, missing);
    fflush(stderr);
    _exit(1);
}
