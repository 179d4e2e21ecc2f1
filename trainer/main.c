// main.c — the `modrwkv` command line: dispatches subcommands, parses their options, prints one-line
// errors ("modrwkv: error: ...") with a non-zero exit status. Each subcommand has --help.
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/data_cli.h"
#include "datasets/tokenizer.h"
#include "trainer/bench.h"
#include "trainer/cache_features.h"
#include "trainer/checkpoint.h"
#include "trainer/config.h"
#include "experiments/demo.h"
#include "experiments/eval.h"
#include "experiments/report.h"
#include "experiments/slurm_submit.h"
#include "experiments/sweep.h"
#include "trainer/adapter.h"
#include "trainer/generate.h"
#include "trainer/safetensors.h"
#include "trainer/modrwkv.h"
#include "trainer/modrwkv_branch.h"
#include "trainer/npy.h"
#include "trainer/rwkv7_init.h"
#include "trainer/tensorinspect.h"
#include "trainer/train.h"

typedef struct Command {
    const char* name;
    int (*run)(int argc, char** argv);
    const char* summary;
} Command;

// Parses a non-negative integer option value or exits with a message naming the option.
static long parse_long(const char* opt, const char* s) {
    char* end;
    long v = strtol(s, &end, 10);
    if (!*s || *end) fatal("--%s expects an integer, got '%s'", opt, s);
    return v;
}

static double parse_double(const char* opt, const char* s) {
    char* end;
    double v = strtod(s, &end);
    if (!*s || *end) fatal("--%s expects a number, got '%s'", opt, s);
    return v;
}

// getopt's own messages are off (opterr = 0): the offending argument is named here, on one line.
static void unknown_option(const char* cmd, char** argv) {
    fatal("%s: unknown option or missing value in '%s': run `modrwkv %s --help`", cmd, argv[optind - 1], cmd);
}

// ---------------------------------------------------------------------------------------------------- init

static const char* INIT_HELP =
    "usage: modrwkv init --n-layer L --n-embd C --vocab V [--head-size 64] [--init official|random]\n"
    "                    [--seed S] [--lora-decay D --lora-a D --lora-value D --lora-gate D]\n"
    "                    [--dtype fp32|bf16] --out FILE.pth\n"
    "Creates a fresh RWKV-7 (x070) model and writes it as an official RWKV-LM .pth.\n"
    "  --init official  RWKV-LM train_temp initialisation (default)\n"
    "  --init random    every tensor from a small normal distribution (tests, gradient checks)\n"
    "  LoRA ranks default to the official formulas of n_embd; --dtype defaults to fp32.\n";

static int cmd_init(int argc, char** argv) {
    static struct option opts[] = {{"n-layer", 1, 0, 'L'}, {"n-embd", 1, 0, 'C'}, {"vocab", 1, 0, 'V'},
                                   {"head-size", 1, 0, 'H'}, {"init", 1, 0, 'i'}, {"seed", 1, 0, 's'},
                                   {"lora-decay", 1, 0, 'w'}, {"lora-a", 1, 0, 'a'}, {"lora-value", 1, 0, 'v'},
                                   {"lora-gate", 1, 0, 'g'}, {"dtype", 1, 0, 'd'}, {"out", 1, 0, 'o'},
                                   {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    RWKV7Config c = {.head_size = 64};
    const char *kind = "official", *out = NULL, *dtype = "fp32";
    long seed = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'L': c.n_layer = (int)parse_long("n-layer", optarg); break;
        case 'C': c.n_embd = (int)parse_long("n-embd", optarg); break;
        case 'V': c.vocab_size = (int)parse_long("vocab", optarg); break;
        case 'H': c.head_size = (int)parse_long("head-size", optarg); break;
        case 'i': kind = optarg; break;
        case 's': seed = parse_long("seed", optarg); break;
        case 'w': c.d_decay = (int)parse_long("lora-decay", optarg); break;
        case 'a': c.d_a = (int)parse_long("lora-a", optarg); break;
        case 'v': c.d_value = (int)parse_long("lora-value", optarg); break;
        case 'g': c.d_gate = (int)parse_long("lora-gate", optarg); break;
        case 'd': dtype = optarg; break;
        case 'o': out = optarg; break;
        case 'h': fputs(INIT_HELP, stdout); return 0;
        default: unknown_option("init", argv);
        }
    }
    if (!out) fatal("init: --out FILE.pth is required (see `modrwkv init --help`)");
    if (strcmp(kind, "official") != 0 && strcmp(kind, "random") != 0)
        fatal("init: --init must be official or random, got '%s'", kind);
    if (strcmp(dtype, "fp32") != 0 && strcmp(dtype, "bf16") != 0) fatal("init: --dtype must be fp32 or bf16");
    Backend* be = backend_cpu_create(0);
    Error e = {{0}};
    RWKV7* m = rwkv7_create(&c, be, &e);
    if (!m) fatal("init: %s", e.msg);
    rwkv7_init(m, strcmp(kind, "official") == 0 ? RWKV7_INIT_OFFICIAL : RWKV7_INIT_RANDOM, (uint64_t)seed);
    if (model_export(out, m, "pth", strcmp(dtype, "bf16") == 0 ? DT_BF16 : DT_F32, &e) != 0) fatal("%s", e.msg);
    printf("wrote %s: RWKV-7 L%d C%d V%d head %d, LoRA %d/%d/%d/%d, %zu parameters (%s init, %s)\n", out,
           m->cfg.n_layer, m->cfg.n_embd, m->cfg.vocab_size, m->cfg.head_size, m->cfg.d_decay, m->cfg.d_a,
           m->cfg.d_value, m->cfg.d_gate, m->n_params, kind, dtype);
    rwkv7_free(m);
    backend_destroy(be);
    return 0;
}

// ---------------------------------------------------------------------------------------------------- train

static const char* TRAIN_HELP =
    "usage: modrwkv train CONFIG.yaml [--set key=value ...] [--resume auto|CKPT] [--stop-at-step N]\n"
    "Trains an RWKV-7 model as CONFIG.yaml says (keys below; --set overrides one key, repeatable).\n"
    "  --resume auto   continue from the newest checkpoint in the run directory (fresh start if none)\n"
    "  --resume CKPT   continue from that checkpoint\n"
    "  --stop-at-step N  save a checkpoint and stop after step N (as if preempted)\n"
    "The run directory holds config.yaml, metrics.jsonl and checkpoints/step-XXXXXXXX.safetensors.\n\n"
    "Configuration keys:\n";

static int cmd_train(int argc, char** argv) {
    static struct option opts[] = {{"set", 1, 0, 's'}, {"resume", 1, 0, 'r'}, {"stop-at-step", 1, 0, 'x'},
                                   {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    Config cfg;
    config_defaults(&cfg);
    char** sets = xcalloc((size_t)argc, sizeof(char*));
    int n_sets = 0, ch;
    TrainOptions o = {.progress = isatty(STDOUT_FILENO)};
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 's': sets[n_sets++] = optarg; break;
        case 'r': o.resume = optarg; break;
        case 'x': o.stop_at_step = (int)parse_long("stop-at-step", optarg); break;
        case 'h': fputs(TRAIN_HELP, stdout); config_print_keys(stdout); free(sets); return 0;
        default: unknown_option("train", argv);
        }
    }
    if (optind != argc - 1) fatal("train: give exactly one CONFIG.yaml (see `modrwkv train --help`)");
    Error e = {{0}};
    if (config_load(&cfg, argv[optind], &e) != 0) fatal("%s", e.msg);
    for (int i = 0; i < n_sets; i++)
        if (config_set(&cfg, sets[i], &e) != 0) fatal("%s", e.msg);
    free(sets);
    if (config_validate(&cfg, &e) != 0) fatal("%s", e.msg);
    o.comm = comm_world_create(&argc, &argv, &e);  // MPI when started by mpirun/srun, else one rank
    if (!o.comm) fatal("%s", e.msg);
    if (comm_rank(o.comm) != 0) o.progress = 0;
    if (train_run(&cfg, &o, &e) != 0) {
        if (comm_size(o.comm) > 1) fatal("rank %d: %s", comm_rank(o.comm), e.msg);
        fatal("%s", e.msg);
    }
    comm_free(o.comm);
    return 0;
}

// ---------------------------------------------------------------------------------------------------- tokenizer choice

// --vocab FILE / --bytes / the checkpoint's own tokenizer / by vocabulary size.
static Tokenizer* choose_tokenizer(const char* vocab, int bytes, const char* ckpt_tok, int model_vocab) {
    Error e = {{0}};
    const char* spec = bytes ? "bytes" : vocab ? vocab : ckpt_tok ? ckpt_tok : model_vocab <= 256 ? "bytes" : "world";
    if (strncmp(spec, "world:", 6) == 0) spec += 6;
    Tokenizer* t = tokenizer_from_spec(spec, &e);
    if (!t) fatal("%s", e.msg);
    return t;
}

// Any model file as a ModRWKV: an official .pth, or a native checkpoint with its adapter and encoders.
static ModRWKV* load_any(const char* path, Backend* be, char** tok) {
    Error e = {{0}};
    ModRWKV* m = modrwkv_load(path, be, tok, &e);
    if (!m) fatal("%s", e.msg);
    return m;
}

// ---------------------------------------------------------------------------------------------------- logits

static const char* LOGITS_HELP =
    "usage: modrwkv logits --ckpt FILE (--tokens 1,2,3 | --text STR) [--vocab FILE | --bytes]\n"
    "                      [--mode parallel|rnn] --out FILE.npy\n"
    "Writes float32 [T, V] logits for every position as a NumPy .npy file.\n"
    "  --mode parallel  one forward over all tokens (default); rnn: one token at a time with state\n";

static int32_t* parse_ids(const char* s, size_t* n) {
    int32_t* ids = NULL;
    *n = 0;
    char* copy = xstrdup(s);
    for (char* tok = strtok(copy, ", "); tok; tok = strtok(NULL, ", ")) {
        ids = xrealloc(ids, (*n + 1) * sizeof(int32_t));
        ids[(*n)++] = (int32_t)parse_long("tokens", tok);
    }
    free(copy);
    return ids;
}

static int cmd_logits(int argc, char** argv) {
    static struct option opts[] = {{"ckpt", 1, 0, 'c'}, {"tokens", 1, 0, 't'}, {"text", 1, 0, 'x'},
                                   {"vocab", 1, 0, 'v'}, {"bytes", 0, 0, 'b'}, {"mode", 1, 0, 'm'},
                                   {"out", 1, 0, 'o'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    const char *ckpt = NULL, *tokens = NULL, *text = NULL, *vocab = NULL, *mode = "parallel", *out = NULL;
    int bytes = 0, ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': ckpt = optarg; break;
        case 't': tokens = optarg; break;
        case 'x': text = optarg; break;
        case 'v': vocab = optarg; break;
        case 'b': bytes = 1; break;
        case 'm': mode = optarg; break;
        case 'o': out = optarg; break;
        case 'h': fputs(LOGITS_HELP, stdout); return 0;
        default: unknown_option("logits", argv);
        }
    }
    if (!ckpt || !out || (!tokens == !text)) fatal("logits: need --ckpt, --out and one of --tokens/--text (see --help)");
    if (strcmp(mode, "parallel") != 0 && strcmp(mode, "rnn") != 0) fatal("logits: --mode must be parallel or rnn");
    Backend* be = backend_cpu_create(0);
    char* ckpt_tok = NULL;
    ModRWKV* mm = load_any(ckpt, be, &ckpt_tok);  // an adapter of the checkpoint applies
    RWKV7* m = mm->lm;
    int V = m->cfg.vocab_size;
    size_t n = 0;
    int32_t* ids;
    if (tokens) {
        ids = parse_ids(tokens, &n);
    } else {
        Tokenizer* tok = choose_tokenizer(vocab, bytes, ckpt_tok, V);
        tokenizer_encode(tok, text, strlen(text), &ids, &n);
        tokenizer_free(tok);
    }
    if (n == 0) fatal("logits: no tokens to run");
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V) fatal("logits: token %d is outside the vocabulary 0..%d of %s", ids[i], V - 1, ckpt);
    float* logits = xmalloc(n * (size_t)V * sizeof(float));
    if (strcmp(mode, "parallel") == 0) {
        RWKV7Acts* a = rwkv7_acts_create(m, 1, (int)n, 0);
        rwkv7_forward(m, a, ids, NULL);
        memcpy(logits, a->logits, n * (size_t)V * sizeof(float));
        rwkv7_acts_free(m, a);
    } else {
        RWKV7Acts* a = rwkv7_acts_create(m, 1, 1, 0);
        RWKV7State* s = rwkv7_state_create(m, 1);
        for (size_t t = 0; t < n; t++) {
            rwkv7_forward(m, a, ids + t, s);
            memcpy(logits + t * V, a->logits, (size_t)V * sizeof(float));
        }
        rwkv7_state_free(m, s);
        rwkv7_acts_free(m, a);
    }
    size_t shape[2] = {n, (size_t)V};
    Error e = {{0}};
    if (npy_write_f32(out, logits, 2, shape, &e) != 0) fatal("%s", e.msg);
    printf("wrote %s: logits [%zu, %d] (%s mode)\n", out, n, V, mode);
    free(logits);
    free(ids);
    free(ckpt_tok);
    modrwkv_free(mm);
    backend_destroy(be);
    return 0;
}

// ---------------------------------------------------------------------------------------------------- generate

static const char* GENERATE_HELP =
    "usage: modrwkv generate --ckpt FILE --prompt STR [--image FILE.png|jpg ...] [--audio FILE.wav ...]\n"
    "                        [--vocab FILE | --bytes] [--max-tokens 200] [--temperature 1.0] [--top-p 0.85]\n"
    "                        [--seed 1] [--stop 24,0] [--stream] [--media-after]\n"
    "Continues the prompt in RNN mode (constant memory), printing text as it is generated.\n"
    "  --temperature 0 is greedy decoding. Generation stops at end of document (token 0) for World models.\n"
    "  With a multimodal checkpoint (ModRWKV: encoders + projectors) the prompt becomes the chat turn\n"
    "  \"\\x16User: <media>\\n<prompt>\\x17\\x16Assistant:\"; images and audio clips (--image, --audio, repeatable)\n"
    "  go through their encoder and projector, the prompt is read in parallel mode, and the answer is\n"
    "  decoded in RNN mode until a stop token (default: \\x17, the end of a turn (24 in World, 23 in bytes), and 0).\n"
    "  --stream prints tokens as they come (the default prints the answer when it is complete).\n"
    "  --media-after puts the media after the prompt text (\"\\x16User: <prompt>\\n<media>\\x17...\"), the layout\n"
    "  of the CPU demo's data (`modrwkv data demo --short-range`).\n";

enum { MAX_MEDIA_ARGS = 16 };

// The id of "\x17" (the end of a chat turn) in the tokenizer.
static int32_t chat_end_token(const Tokenizer* tok) {
    int32_t* ids = NULL;
    size_t n = 0;
    tokenizer_encode(tok, "\x17", 1, &ids, &n);
    int32_t id = n == 1 ? ids[0] : 24;
    free(ids);
    return id;
}

static void parse_stop(const char* list, GenerateOptions* o) {
    o->n_stop = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char* w = strtok(buf, ","); w && o->n_stop < 8; w = strtok(NULL, ","))
        o->stop[o->n_stop++] = (int32_t)parse_long("stop", w);
}

// Chat generation with a multimodal model: prints the answer (streamed or at the end).
static void generate_chat(ModRWKV* m, const Tokenizer* tok, const char* prompt, const char* const* images, int n_img,
                          const char* const* audio, int n_aud, const GenerateOptions* o, int stream, int media_last) {
    Error e = {{0}};
    if (n_img && !m->branch[MOD_VISION]) fatal("generate: --image given but the checkpoint has no vision encoder");
    if (n_aud && !m->branch[MOD_AUDIO]) fatal("generate: --audio given but the checkpoint has no audio encoder");
    int S = m->branch[MOD_VISION] ? m->branch[MOD_VISION]->vit->cfg.image_size : 0;
    ShardBatch* b = generate_chat_prompt(tok, prompt, images, n_img, audio, n_aud, S, media_last, &e);
    if (!b) fatal("%s", e.msg);
    int32_t* ids = NULL;
    int n = generate_multimodal(m, tok, b, o, stream ? stdout : NULL, &ids, &e);
    if (n < 0) fatal("%s", e.msg);
    if (!stream) {
        char* text = NULL;
        size_t len = 0;
        if (tokenizer_decode(tok, ids, (size_t)n, &text, &len, &e) != 0) fatal("%s", e.msg);
        fwrite(text, 1, len, stdout);
        free(text);
    }
    printf("\n");
    free(ids);
    shard_batch_free(b);
}

static int cmd_generate(int argc, char** argv) {
    static struct option opts[] = {{"ckpt", 1, 0, 'c'}, {"prompt", 1, 0, 'p'}, {"vocab", 1, 0, 'v'},
                                   {"bytes", 0, 0, 'b'}, {"max-tokens", 1, 0, 'n'}, {"temperature", 1, 0, 't'},
                                   {"top-p", 1, 0, 'P'}, {"seed", 1, 0, 's'}, {"image", 1, 0, 'i'},
                                   {"audio", 1, 0, 'a'}, {"stop", 1, 0, 'S'}, {"stream", 0, 0, 'r'},
                                   {"media-after", 0, 0, 'M'},
                                   {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    const char *ckpt = NULL, *prompt = NULL, *vocab = NULL, *stop = NULL;
    const char* images[MAX_MEDIA_ARGS];
    const char* audio[MAX_MEDIA_ARGS];
    int bytes = 0, ch, n_img = 0, n_aud = 0, stream = 0, media_last = 0;
    GenerateOptions o = {.max_tokens = 200, .temperature = 1.0f, .top_p = 0.85f, .seed = 1};
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': ckpt = optarg; break;
        case 'p': prompt = optarg; break;
        case 'v': vocab = optarg; break;
        case 'b': bytes = 1; break;
        case 'n': o.max_tokens = (int)parse_long("max-tokens", optarg); break;
        case 't': o.temperature = (float)parse_double("temperature", optarg); break;
        case 'P': o.top_p = (float)parse_double("top-p", optarg); break;
        case 's': o.seed = (uint64_t)parse_long("seed", optarg); break;
        case 'S': stop = optarg; break;
        case 'r': stream = 1; break;
        case 'M': media_last = 1; break;
        case 'i':
            if (n_img == MAX_MEDIA_ARGS) fatal("generate: at most %d --image files", MAX_MEDIA_ARGS);
            images[n_img++] = optarg;
            break;
        case 'a':
            if (n_aud == MAX_MEDIA_ARGS) fatal("generate: at most %d --audio files", MAX_MEDIA_ARGS);
            audio[n_aud++] = optarg;
            break;
        case 'h': fputs(GENERATE_HELP, stdout); return 0;
        default: unknown_option("generate", argv);
        }
    }
    if (!ckpt || !prompt) fatal("generate: --ckpt and --prompt are required (see --help)");
    if (o.top_p <= 0 || o.top_p > 1 || o.temperature < 0) fatal("generate: need --top-p in (0, 1] and --temperature >= 0");
    if (o.max_tokens < 1) fatal("generate: --max-tokens must be at least 1");
    Backend* be = backend_cpu_create(0);
    char* ckpt_tok = NULL;
    Error e = {{0}};
    ModRWKV* m = modrwkv_load(ckpt, be, &ckpt_tok, &e);
    if (!m) fatal("%s", e.msg);
    Tokenizer* tok = choose_tokenizer(vocab, bytes, ckpt_tok, m->lm->cfg.vocab_size);
    o.stop_at_eod = tokenizer_vocab_size(tok) > 256;
    if (modrwkv_has_media(m) || n_img || n_aud) {
        if (stop) {
            parse_stop(stop, &o);
        } else {  // the end of a chat turn, "\x17", in this tokenizer (24 in World, 23 in bytes), and 0
            o.stop[0] = chat_end_token(tok);
            o.stop[1] = 0;
            o.n_stop = 2;
        }
        generate_chat(m, tok, prompt, images, n_img, audio, n_aud, &o, stream, media_last);
    } else {
        if (stop) parse_stop(stop, &o);
        fputs(prompt, stdout);
        if (generate_text(m->lm, tok, prompt, &o, stdout, &e) < 0) fatal("%s", e.msg);
        printf("\n");
    }
    tokenizer_free(tok);
    free(ckpt_tok);
    modrwkv_free(m);
    backend_destroy(be);
    return 0;
}

// ---------------------------------------------------------------------------------------------------- tokenize

static const char* TOKENIZE_HELP =
    "usage: modrwkv tokenize (--vocab FILE | --bytes | --tokenizer world) (--text STR | --decode 1,2,3)\n"
    "Prints the token ids of STR comma-separated on one line, or the text of the ids with --decode.\n";

static int cmd_tokenize(int argc, char** argv) {
    static struct option opts[] = {{"vocab", 1, 0, 'v'}, {"bytes", 0, 0, 'b'}, {"tokenizer", 1, 0, 'T'},
                                   {"text", 1, 0, 't'}, {"decode", 1, 0, 'd'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    const char *spec = NULL, *text = NULL, *decode = NULL;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'v': spec = optarg; break;
        case 'b': spec = "bytes"; break;
        case 'T': spec = optarg; break;
        case 't': text = optarg; break;
        case 'd': decode = optarg; break;
        case 'h': fputs(TOKENIZE_HELP, stdout); return 0;
        default: unknown_option("tokenize", argv);
        }
    }
    if (!spec || (!text == !decode)) fatal("tokenize: need --vocab FILE (or --bytes) and one of --text/--decode (see --help)");
    Error e = {{0}};
    Tokenizer* tok = tokenizer_from_spec(spec, &e);
    if (!tok) fatal("%s", e.msg);
    if (text) {
        int32_t* ids;
        size_t n;
        tokenizer_encode(tok, text, strlen(text), &ids, &n);
        for (size_t i = 0; i < n; i++) printf(i ? ",%d" : "%d", ids[i]);
        printf("\n");
        free(ids);
    } else {
        size_t n, len;
        int32_t* ids = parse_ids(decode, &n);
        char* out;
        if (tokenizer_decode(tok, ids, n, &out, &len, &e) != 0) fatal("%s", e.msg);
        fwrite(out, 1, len, stdout);
        printf("\n");
        free(out);
        free(ids);
    }
    tokenizer_free(tok);
    return 0;
}

// ---------------------------------------------------------------------------------------------------- export

static const char* EXPORT_HELP =
    "usage: modrwkv export --ckpt CKPT --format pth|safetensors --out FILE [--dtype fp32|bf16]\n"
    "       modrwkv export --ckpt CKPT --adapter-only --out FILE.safetensors\n"
    "Writes the backbone weights (no optimizer state) in the official RWKV-LM layout; .pth loads with\n"
    "torch.load and runs in the RWKV ecosystem. --dtype defaults to bf16 for pth (as official files), fp32 otherwise.\n"
    "A checkpoint trained with an adapter (Bone, Bat, LoRA) is merged into the base weights first (W += dW),\n"
    "so the file is a plain RWKV-7. --adapter-only writes just the adapter tensors, with their configuration in\n"
    "the metadata (kind, r, alpha, targets, model sizes), for use on top of the base checkpoint.\n";

static int cmd_export(int argc, char** argv) {
    static struct option opts[] = {{"ckpt", 1, 0, 'c'}, {"format", 1, 0, 'f'}, {"out", 1, 0, 'o'},
                                   {"dtype", 1, 0, 'd'}, {"adapter-only", 0, 0, 'a'}, {"help", 0, 0, 'h'},
                                   {0, 0, 0, 0}};
    const char *ckpt = NULL, *format = NULL, *out = NULL, *dtype = NULL;
    int ch, adapter_only = 0;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': ckpt = optarg; break;
        case 'f': format = optarg; break;
        case 'o': out = optarg; break;
        case 'd': dtype = optarg; break;
        case 'a': adapter_only = 1; break;
        case 'h': fputs(EXPORT_HELP, stdout); return 0;
        default: unknown_option("export", argv);
        }
    }
    if (!ckpt || !out || (!format && !adapter_only))
        fatal("export: --ckpt, --out and --format (or --adapter-only) are required (see --help)");
    if (!format) format = "safetensors";
    if (!dtype) dtype = strcmp(format, "pth") == 0 ? "bf16" : "fp32";
    if (strcmp(dtype, "fp32") != 0 && strcmp(dtype, "bf16") != 0) fatal("export: --dtype must be fp32 or bf16");
    Backend* be = backend_cpu_create(0);
    Error e = {{0}};
    ModRWKV* mm = modrwkv_load(ckpt, be, NULL, &e);
    if (!mm) fatal("%s", e.msg);
    RWKV7* m = mm->lm;
    if (adapter_only) {
        if (!mm->adapter) fatal("export: %s has no adapter (model.adapter.kind none): export the model instead", ckpt);
        TensorSet ts;
        tensorset_init(&ts);
        adapter_store(mm->adapter, &ts);
        if (safetensors_write(out, &ts, &e) != 0) fatal("%s", e.msg);
        printf("wrote %s (adapter only, %d tensors)\n", out, ts.n);
        tensorset_free(&ts);
    } else {
        if (mm->adapter) {
            if (adapter_merge(mm->adapter, m, &e) != 0) fatal("%s", e.msg);
            m->adapter = NULL;
            printf("merged the %s adapter into the base weights\n", adapter_kind_name(mm->adapter->cfg.kind));
        }
        if (model_export(out, m, format, strcmp(dtype, "bf16") == 0 ? DT_BF16 : DT_F32, &e) != 0) fatal("%s", e.msg);
        printf("wrote %s (%s, %s, %d tensors)\n", out, format, dtype, m->n_tensors - (m->has_block0_vres ? 0 : 3));
    }
    modrwkv_free(mm);
    backend_destroy(be);
    return 0;
}

// ---------------------------------------------------------------------------------------------------- inspect

static const char* INSPECT_HELP =
    "usage: modrwkv inspect FILE.pth|FILE.safetensors\n"
    "Lists every tensor (name, dtype, shape), the total parameter count and any checkpoint metadata.\n";

static int cmd_inspect(int argc, char** argv) {
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(INSPECT_HELP, stdout);
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-') fatal("inspect: give exactly one FILE (see `modrwkv inspect --help`)");
    Error e = {{0}};
    if (tensor_file_inspect(argv[1], stdout, &e) != 0) fatal("%s", e.msg);
    return 0;
}

// ---------------------------------------------------------------------------------------------------- data

static const char* CACHE_HELP =
    "usage: modrwkv data cache-features --encoder linear-standin --in DIR --out DIR [--f16] [--seed S] [--dim D]\n"
    "Runs a frozen encoder once over every image/audio/time-series item of a shard dataset and writes a copy\n"
    "whose media are the encoder's features (same keys, tokens, masks and shard boundaries), so that a sweep\n"
    "over projector designs never runs the encoder again. Encoders: linear-standin (a seeded random linear map\n"
    "over 4x4 image patches of 32x32 images, 20 ms audio frames and 16-step series patches; the pretrained\n"
    "SigLIP/CLIP/Whisper encoders plug into the same hook).\n";

// `modrwkv data cache-features` needs an encoder (trainer/), so it is handled here; the other data
// subcommands are datasets/ code (datasets/data_cli.c).
static int cmd_cache_features(int argc, char** argv) {
    static struct option opts[] = {{"encoder", 1, 0, 'E'}, {"in", 1, 0, 'i'}, {"out", 1, 0, 'o'}, {"f16", 0, 0, 'f'},
                                   {"seed", 1, 0, 's'}, {"dim", 1, 0, 'd'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    const char *encoder = "linear-standin", *in = NULL, *out = NULL;
    int f16 = 0, ch;
    LinearStandInEncoder enc;
    linear_standin_default(&enc);
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'E': encoder = optarg; break;
        case 'i': in = optarg; break;
        case 'o': out = optarg; break;
        case 'f': f16 = 1; break;
        case 's': enc.seed = (uint64_t)parse_long("seed", optarg); break;
        case 'd': enc.dim = (int)parse_long("dim", optarg); break;
        case 'h': fputs(CACHE_HELP, stdout); return 0;
        default: unknown_option("data cache-features", argv);
        }
    }
    if (!in || !out) fatal("data cache-features: --in DIR and --out DIR are required (see --help)");
    if (strcmp(encoder, "linear-standin") != 0)
        fatal("data cache-features: unknown encoder '%s': this build has linear-standin (pretrained encoders come with the multimodal model)", encoder);
    Error e = {{0}};
    if (cache_features(in, out, linear_standin_encode, &enc, f16, &e) != 0) fatal("%s", e.msg);
    printf("wrote %s: features of %s (%s encoder, dim %d, %s)\n", out, in, encoder, enc.dim, f16 ? "float16" : "float32");
    return 0;
}

static int cmd_data(int argc, char** argv) {
    if (argc >= 2 && strcmp(argv[1], "cache-features") == 0) return cmd_cache_features(argc - 1, argv + 1);
    return data_main(argc, argv);
}

// ---------------------------------------------------------------------------------------------------- dispatch

static const Command COMMANDS[] = {
    {"init", cmd_init, "create a fresh RWKV-7 model (.pth)"},
    {"train", cmd_train, "train from a YAML config (checkpoints, resume, metrics.jsonl)"},
    {"logits", cmd_logits, "write the logits of a token sequence as .npy"},
    {"generate", cmd_generate, "generate text from a prompt (RNN mode)"},
    {"tokenize", cmd_tokenize, "encode text to token ids (or decode ids)"},
    {"export", cmd_export, "export a checkpoint as an official .pth or safetensors"},
    {"inspect", cmd_inspect, "list the tensors of a .pth / .safetensors file"},
    {"bench", bench_main, "measure training and generation throughput"},
    {"data", cmd_data, "convert, inspect, verify, cache features of, and build demo training data shards"},
    {"eval", eval_main, "evaluate a checkpoint: QA accuracy, ASR WER/CER, multiple choice, LAMBADA, forecast MSE, "
                              "perplexity (writes eval.json; data parallel under mpirun)"},
    {"demo", demo_main, "the embedded end-to-end multimodal demo (CPU, no download)"},
    {"report", report_main, "compare the runs of a sweep: report.md + report.html"},
    {"sweep", sweep_main, "run a sweep of configs (run | status | expand SWEEP.yaml), skipping finished runs"},
    {"slurm", slurm_main, "submit a (multi-node) training run to Slurm (submit CONFIG.yaml --nodes N ...)"},
    {"config", config_main, "show the resolved config (show FILE [--set k=v ...]) or list every key (schema)"},
};

static void usage(FILE* f) {
    fprintf(f, "usage: modrwkv COMMAND [options]   (modrwkv COMMAND --help for each)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
}

int main(int argc, char** argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    opterr = 0;
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (strcmp(argv[1], COMMANDS[i].name) == 0) return COMMANDS[i].run(argc - 1, argv + 1);
    fatal("unknown command '%s': `modrwkv --help` lists the commands", argv[1]);
}
