# level_env.sh - sourced by the bench scripts: at_level LEVEL CMD... runs
# CMD at one of ssmd's CPU kernel levels.  "best" is the best this CPU
# runs, in the environment as it is; any other name goes to SSMD_CPU.  An
# AVX2 level (avx2, avx2-plain) stands in for an AVX2-only machine, whose
# OpenBLAS (prefill's sgemm) runs its AVX2 kernels too, so it also gets
# OPENBLAS_CORETYPE=Haswell.  Some hosts set OPENBLAS_CORETYPE for every
# process: bench_engine prints the kernels OpenBLAS ran.
at_level() {
    local level=$1
    shift
    case $level in
    best) "$@" ;;
    avx2*) SSMD_CPU=$level OPENBLAS_CORETYPE=Haswell "$@" ;;
    *) SSMD_CPU=$level "$@" ;;
    esac
}
