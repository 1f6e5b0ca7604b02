/* diag_carry.cu - the middle pass of the chunked prefill scans of complex
 * diagonal recurrences x' = lam x + input (the S4D layer in s4.cu, S5 in
 * s5.cu): chunk states computed from a zero start are joined into true
 * ones, carry_c = lam^len carry_(c-1) + local_c, in chunk order.
 *
 * One thread per element: elements are independent and few chunks are
 * walked, so the pass is cheap next to the two passes over the tokens
 * around it.  lam^len comes from squaring in double, once per thread for
 * the full chunks and once for the last (len is up to a whole chunk: a
 * power by repeated f32 products would drift from the token walk; the CPU
 * scans do the same).  Never allocates or synchronises.
 */
#include "kernels/cuda/kc_device.cuh"

enum {
    CARRY_THREADS = 256,
    SCAN_THREADS = 1 << 16, /* (element, chunk) threads a chunked scan aims at */
    MAX_GRID_Y = 65535,     /* the chunks are a launch's blockIdx.y */
};

/* The tuning's chunk length, lengthened so that chunks times width stays
 * near SCAN_THREADS (more threads gain no parallelism on any GPU we build
 * for and cost scratch and repeated token work) and chunks within a
 * grid's y dimension (65535 blocks). */
extern "C" int kc_diag_chunk(int width, int T, const kc_tuning *t)
{
    if (width <= 0)
        return 0;
    long L = t->scan_chunk > 0 ? t->scan_chunk : 1;
    long max_chunks = SCAN_THREADS / width > 2 ? SCAN_THREADS / width : 2;
    if (max_chunks > MAX_GRID_Y)
        max_chunks = MAX_GRID_Y;
    if ((T + L - 1) / L > max_chunks)
        L = (T + max_chunks - 1) / max_chunks;
    return T > L ? (int)L : 0;
}

/* (re, im) *= (br, bi)^k. */
static __device__ void pow_mul(double br, double bi, int k, double *re, double *im)
{
    double pr = 1.0, pi = 0.0;
    for (int e = k; e; e >>= 1) {
        if (e & 1) {
            const double t = pr * br - pi * bi;
            pi = pr * bi + pi * br;
            pr = t;
        }
        const double t = br * br - bi * bi;
        bi = 2.0 * br * bi;
        br = t;
    }
    const double r = pr * *re - pi * *im;
    *im = pr * *im + pi * *re;
    *re = r;
}

__global__ void k_diag_carry(const float *lam, size_t n, float *local, int n_chunks, int len,
                             int last_len, float *state)
{
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    const size_t per = 2 * n;
    const double lr = lam[i], li = lam[n + i];
    /* lam^len once, then applied to each carry as a product */
    double wr = 1.0, wi = 0.0;
    pow_mul(lr, li, len, &wr, &wi);
    double cr = local[i], ci = local[n + i];
    for (int c = 1; c < n_chunks; c++) {
        float *loc = local + (size_t)c * per;
        double r, im;
        if (c + 1 < n_chunks) {
            r = wr * cr - wi * ci, im = wr * ci + wi * cr;
        } else {
            r = cr, im = ci;
            pow_mul(lr, li, last_len, &r, &im);
        }
        /* rounded to f32 at every chunk, as the state the token walk would hold */
        loc[i] = (float)(r + loc[i]);
        loc[n + i] = (float)(im + loc[n + i]);
        cr = loc[i], ci = loc[n + i];
    }
    state[i] = (float)cr;
    state[n + i] = (float)ci;
}

extern "C" void kc_diag_carry(const float *lam, size_t n, float *local, int n_chunks, int len,
                              int last_len, float *state, kc_stream s)
{
    if (n > 0 && n_chunks > 0)
        KC_LAUNCH(k_diag_carry, kc_div_up((long)n, CARRY_THREADS), (unsigned)CARRY_THREADS, 0, s,
                  lam, n, local, n_chunks, len, last_len, state);
}
