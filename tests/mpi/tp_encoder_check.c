// tp_encoder_check.c — specification of tensor parallelism in the transformer encoders (trainer/transformer.h)
// under mpirun -np P (P = 1, 2): a ViT (SigLIP) and a Whisper encoder whose layers are split over P ranks
// (heads and MLP units) give the output, the input gradient and (gathered) every weight gradient of the whole
// encoder run on one rank, to within 1e-5 of the largest value; every rank holds the same output.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "sharding/comm.h"
#include "sharding/tensor_parallel.h"
#include "tests/testutil.h"
#include "trainer/vit.h"
#include "trainer/whisper.h"

static const double TOL = 1e-5;

// max |a - b| / max |b| over n values, printed and checked.
static int check_scaled(Comm* c, const char* name, const float* got, const float* want, size_t n) {
    double d = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)got[i] - want[i]));
        scale = fmax(scale, fabs((double)want[i]));
    }
    double rel = scale > 0 ? d / scale : d;
    char what[200];
    snprintf(what, sizeof what, "rank %d of %d: %s", comm_rank(c), comm_size(c), name);
    printf("%s: max difference %.2e of the largest value (tol %.0e)\n", what, rel, TOL);
    return check_true(what, rel <= TOL, "differs from the whole encoder on one rank");
}

// Whole-table gradient comparison: the tp ranks' gradients gathered on rank 0 against the whole encoder's.
static int check_grads(Comm* tp, const char* name, const ParamTable* local, const float* local_grads,
                       const ParamTable* full, const float* full_grads) {
    int root = comm_rank(tp) == 0;
    float* gathered = root ? xcalloc(full->n_params, sizeof(float)) : NULL;
    tp_gather_table(tp, local, local_grads, root ? full : NULL, gathered, 0);
    int fails = root ? check_scaled(tp, name, gathered, full_grads, full->n_params) : 0;
    free(gathered);
    return fails;
}

static ViTConfig vit_config(Comm* tp) {
    ViTConfig c;
    vit_config_siglip2_base_384(&c);
    c.image_size = 32;
    c.patch_size = 8;
    c.dim = 32;
    c.n_layers = 2;
    c.n_heads = 4;
    c.mlp_dim = 64;
    c.tp = tp;
    return c;
}

static int check_vit(Comm* tp, Backend* be) {
    const int B = 2;
    Error e = {{0}};
    ViTConfig wc = vit_config(NULL), lc = vit_config(tp);
    ViT *whole = vit_create(&wc, be, &e), *part = vit_create(&lc, be, &e);
    if (!whole || !part) return check_true("ViT created", 0, e.msg);
    float* wp = xcalloc(whole->table.n_params, sizeof(float));
    float* wg = xcalloc(whole->table.n_params, sizeof(float));
    float* lp = xcalloc(part->table.n_params, sizeof(float));
    float* lg = xcalloc(part->table.n_params, sizeof(float));
    vit_bind(whole, wp, wg);
    vit_init_random(whole, 7);
    tp_slice_table(&part->table, lp, &whole->table, wp, comm_rank(tp), comm_size(tp));
    vit_bind(part, lp, lg);
    TestRng r;
    test_rng_seed(&r, 11);
    size_t n_pix = (size_t)B * 3 * 32 * 32, n_out = (size_t)B * whole->n_tokens * 32;
    float *pixels = test_random_floats(&r, n_pix, -1, 1), *dout = test_random_floats(&r, n_out, -1, 1);
    float *dpix_w = xcalloc(n_pix, sizeof(float)), *dpix_l = xcalloc(n_pix, sizeof(float));
    ViTActs *aw = vit_acts_create(whole, B, 0, 1), *al = vit_acts_create(part, B, 0, 1);
    vit_forward(whole, aw, pixels);
    vit_backward(whole, aw, dout, dpix_w);
    vit_forward(part, al, pixels);
    vit_backward(part, al, dout, dpix_l);
    int fails = check_scaled(tp, "ViT output", al->out, aw->out, n_out);
    fails += check_scaled(tp, "ViT pixel gradient", dpix_l, dpix_w, n_pix);
    fails += check_grads(tp, "ViT weight gradients (gathered)", &part->table, lg, &whole->table, wg);
    vit_acts_free(whole, aw);
    vit_acts_free(part, al);
    vit_free(whole);
    vit_free(part);
    free(wp), free(wg), free(lp), free(lg), free(pixels), free(dout), free(dpix_w), free(dpix_l);
    return fails;
}

static WhisperConfig whisper_config(Comm* tp) {
    WhisperConfig c;
    whisper_config_small(&c);
    c.n_mels = 16;
    c.dim = 32;
    c.n_layers = 2;
    c.n_heads = 4;
    c.mlp_dim = 64;
    c.length_mode = WHISPER_TRUNCATE;
    c.tp = tp;
    return c;
}

static int check_whisper(Comm* tp, Backend* be) {
    const int B = 2, frames = 40;
    Error e = {{0}};
    WhisperConfig wc = whisper_config(NULL), lc = whisper_config(tp);
    Whisper *whole = whisper_create(&wc, be, &e), *part = whisper_create(&lc, be, &e);
    if (!whole || !part) return check_true("Whisper created", 0, e.msg);
    float* wp = xcalloc(whole->table.n_params, sizeof(float));
    float* wg = xcalloc(whole->table.n_params, sizeof(float));
    float* lp = xcalloc(part->table.n_params, sizeof(float));
    float* lg = xcalloc(part->table.n_params, sizeof(float));
    whisper_bind(whole, wp, wg);
    whisper_init_random(whole, 5);
    tp_slice_table(&part->table, lp, &whole->table, wp, comm_rank(tp), comm_size(tp));
    whisper_bind(part, lp, lg);
    WhisperActs *aw = whisper_acts_create(whole, B, frames, 1), *al = whisper_acts_create(part, B, frames, 1);
    TestRng r;
    test_rng_seed(&r, 13);
    size_t n_mel = (size_t)B * frames * 16, n_out = (size_t)B * aw->n_out * 32;
    float *mel = test_random_floats(&r, n_mel, -1, 1), *dout = test_random_floats(&r, n_out, -1, 1);
    float *dmel_w = xcalloc(n_mel, sizeof(float)), *dmel_l = xcalloc(n_mel, sizeof(float));
    whisper_forward(whole, aw, mel);
    whisper_backward(whole, aw, dout, dmel_w);
    whisper_forward(part, al, mel);
    whisper_backward(part, al, dout, dmel_l);
    int fails = check_scaled(tp, "Whisper output", al->out, aw->out, n_out);
    fails += check_scaled(tp, "Whisper mel gradient", dmel_l, dmel_w, n_mel);
    fails += check_grads(tp, "Whisper weight gradients (gathered)", &part->table, lg, &whole->table, wg);
    whisper_acts_free(whole, aw);
    whisper_acts_free(part, al);
    whisper_free(whole);
    whisper_free(part);
    free(wp), free(wg), free(lp), free(lg), free(mel), free(dout), free(dmel_w), free(dmel_l);
    return fails;
}

int main(int argc, char** argv) {
    Error e = {{0}};
    Comm* world = comm_world_create(&argc, &argv, &e);
    if (!world) {
        fprintf(stderr, "tp_encoder_check: %s\n", e.msg);
        return 1;
    }
    Backend* be = backend_cpu_create(1);
    int fails = check_vit(world, be) + check_whisper(world, be);
    int any = (int)comm_all_reduce_double(world, fails, COMM_MAX);
    backend_destroy(be);
    comm_free(world);
    return test_summary("tp_encoder_check", any);
}
