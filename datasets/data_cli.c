// data_cli.c — `modrwkv data SUBCOMMAND ...`: option parsing for the data tools (datasets/data_tools.h).
//
// Contract: every subcommand has --help; bad usage and failures print one line "modrwkv: error: ..." and exit 1
// (fatal); success returns 0. `convert` runs in parallel when started by mpirun / an MPI launcher (rank and world
// from OMPI_COMM_WORLD_RANK/SIZE or PMI_RANK/SIZE, or --rank/--world): each rank writes its own shards and part
// manifest; rank 0 then waits (bounded by --merge-timeout) until every rank's part manifest exists and merges
// them into manifest.json. A rank that fails leaves `convert.rank-NNNNN.failed` (its message) so that rank 0
// stops waiting at once and reports it.
#include "datasets/data_cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "datasets/data_tools.h"
#include "datasets/demo_data.h"
#include "datasets/shard.h"
#include "kernels/common.h"

static const char* DATA_HELP =
    "usage: modrwkv data SUBCOMMAND [options]   (modrwkv data SUBCOMMAND --help for each)\n\n"
    "subcommands:\n"
    "  convert   convert LLaVA JSON, WebDataset tars, an audio folder, JSONL or binidx into HDF5 shards\n"
    "  merge     merge the part manifests of a parallel conversion (done by convert's rank 0)\n"
    "  inspect   counts, modalities, token histogram and a sample of a dataset dir or shard file\n"
    "  verify    check a dataset: checksums, offsets, placeholders == media\n"
    "  demo      build the demo datasets (digit image QA, spoken digits, text)\n"
    "  bench     measure the loader's samples/s and MB/s on a dataset\n"
    "  cache-features  run a frozen encoder once and store its features in a copy of the dataset\n";

static const char* CONVERT_HELP =
    "usage: modrwkv data convert --from FORMAT INPUT --out DIR [options]\n"
    "Converts a dataset into HDF5 shards <DIR>/<split>-NNNNNN.h5 + <DIR>/manifest.json (datasets/FORMAT.md).\n"
    "  --from llava-json   --json FILE [--images DIR]   LLaVA list of {id, image, conversations}; images are\n"
    "                      relative to --images (default: the JSON's directory)\n"
    "  --from webdataset   --tar 'shards-{000000..000009}.tar'   members grouped by key: jpg/jpeg/png, txt, json\n"
    "                      (\"conversations\"), wav/flac; image+txt = caption, audio+txt = transcription,\n"
    "                      txt alone = document; other extensions are ignored (and counted)\n"
    "  --from audio-folder --root DIR   LibriSpeech layout: *.trans.txt lines `<utt-id> WORDS` + <utt-id>.flac|.wav\n"
    "  --from jsonl-text   --in FILE [--key text]   one document per line (field --key), every token trained\n"
    "  --from binidx       --in PREFIX   the documents of PREFIX.idx / PREFIX.bin\n"
    "options:\n"
    "  --out DIR              output directory (created)\n"
    "  --split NAME           shard name prefix (default train)\n"
    "  --shard-size N|NKB|NMB|NGB   roll shards after N samples or about that many bytes (1 KB = 1024 B;\n"
    "                         default: no limit beyond the format's per-file limits)\n"
    "  --compression none|gzip|gzip:L|L   gzip level L 0..9 for tokens, masks, offsets, audio (default 4)\n"
    "  --tokenizer world|bytes|VOCAB   (default world)\n"
    "  --image-tokens N       placeholder tokens per image (default 576)\n"
    "  --audio-tokens-per-s N placeholder tokens per second of audio (default 50)\n"
    "  --rank R --world W     this process's part of a parallel conversion (default: from mpirun's environment\n"
    "                         OMPI_COMM_WORLD_RANK/SIZE or PMI_RANK/SIZE, else 0 of 1)\n"
    "  --merge-timeout S      rank 0 waits at most S seconds for the other ranks (default 3600)\n"
    "  --skip-bad             warn about and count bad samples instead of stopping at the first\n"
    "The chat template is \\x16User: ...\\x17\\x16Assistant: ...\\x17; only the assistant answers (and their\n"
    "closing \\x17) are trained. The same input gives byte-identical shards.\n";

static const char* MERGE_HELP =
    "usage: modrwkv data merge --out DIR --world W\n"
    "Merges DIR/manifest.rank-NNNNN.json of W ranks into DIR/manifest.json (convert's rank 0 does this itself;\n"
    "use it after rerunning a failed rank by hand with --rank/--world).\n";

static const char* INSPECT_HELP =
    "usage: modrwkv data inspect DIR|FILE.h5\n"
    "Prints sample and token counts, modalities, a token-length histogram and one sample with its media.\n";

static const char* VERIFY_HELP =
    "usage: modrwkv data verify DIR\n"
    "Checks every shard of a dataset: sha256 against the manifest, offsets, placeholders == media. Exit 1 with\n"
    "a one-line message naming the shard and sample on the first problem.\n";

static const char* DEMO_HELP =
    "usage: modrwkv data demo --out DIR [--digits FILE.csv.gz] [--image-size N] [--seed S] [--tokenizer world|bytes]\n"
    "                         [--short-range]\n"
    "Builds the demo datasets from real data (datasets/demo_data.h): DIR/digits_qa (image QA on the handwritten\n"
    "digits; default file datasets/demo/digits.csv.gz of the source tree), DIR/spoken_digits (speech\n"
    "synthesised by espeak-ng) and DIR/text, each with train / val / test splits that share no source item.\n"
    "--image-size defaults to 32 pixels, --seed to 1. --tokenizer bytes and --short-range (each digit question its own\n"
    "sample, the image or clip at the end of the user turn) make the data of the CPU demo (`modrwkv demo`).\n";

static const char* BENCH_HELP =
    "usage: modrwkv data bench DIR [--image-size N] [--seconds S]\n"
    "Streams DIR with the loader (images decoded and resized to N x N, default 224) for S seconds (default 5)\n"
    "and prints samples/s and MB/s.\n";

// ---------------------------------------------------------------------------------------------------- parsing

static void reset_getopt(void) {
    optind = 0;   // GNU getopt: full re-initialisation, scanning starts at argv[1]
    opterr = 0;
}

static long parse_long(const char* cmd, const char* opt, const char* s) {
    char* end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno != 0 || v < 0)
        fatal("data %s: --%s expects a non-negative integer, got '%s'", cmd, opt, s);
    return v;
}

static void unknown_option(const char* cmd, char** argv) {
    fatal("data %s: unknown option or missing value in '%s': run `modrwkv data %s --help`", cmd, argv[optind - 1], cmd);
}

// "1000" (samples), "64KB", "512MB", "2GB" (bytes, 1024-based).
static void parse_shard_size(const char* s, ConvertOptions* o) {
    char* end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    long long unit = 0;
    if (strcmp(end, "") == 0) unit = 0;
    else if (strcasecmp(end, "B") == 0) unit = 1;
    else if (strcasecmp(end, "KB") == 0) unit = 1LL << 10;
    else if (strcasecmp(end, "MB") == 0) unit = 1LL << 20;
    else if (strcasecmp(end, "GB") == 0) unit = 1LL << 30;
    else unit = -1;
    if (end == s || errno != 0 || v <= 0 || unit < 0 || (unit > 0 && v > (1LL << 62) / unit))
        fatal("data convert: --shard-size expects N (samples) or N followed by KB, MB or GB, got '%s'", s);
    if (unit == 0) o->shard_samples = v;
    else o->shard_bytes = v * unit;
}

static int parse_compression(const char* s) {
    if (strcmp(s, "none") == 0) return 0;
    if (strcmp(s, "gzip") == 0) return 4;
    const char* level = strncmp(s, "gzip:", 5) == 0 ? s + 5 : s;
    if (strlen(level) == 1 && level[0] >= '0' && level[0] <= '9') return level[0] - '0';
    fatal("data convert: --compression expects none, gzip, gzip:L or a level L in 0..9, got '%s'", s);
}

// The rank and world an MPI launcher put in the environment (Open MPI, then MPICH/Hydra/Slurm's PMI).
static void rank_from_environment(ConvertOptions* o) {
    static const char* const NAMES[][2] = {{"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"}, {"PMI_RANK", "PMI_SIZE"}};
    for (int i = 0; i < 2; i++) {
        const char* r = getenv(NAMES[i][0]);
        const char* w = getenv(NAMES[i][1]);
        if (!r || !w) continue;
        o->rank = (int)parse_long("convert", NAMES[i][0], r);
        o->world = (int)parse_long("convert", NAMES[i][1], w);
        return;
    }
}

// ---------------------------------------------------------------------------------------------------- convert

typedef struct ConvertArgs {
    const char *from, *json, *images, *tar, *root, *in, *key;
    double merge_timeout;
    int rank_given, world_given;
    ConvertOptions o;
} ConvertArgs;

static void parse_convert(int argc, char** argv, ConvertArgs* a) {
    static struct option opts[] = {
        {"from", 1, 0, 'f'}, {"json", 1, 0, 'j'}, {"images", 1, 0, 'I'}, {"tar", 1, 0, 't'}, {"root", 1, 0, 'R'},
        {"in", 1, 0, 'i'}, {"key", 1, 0, 'k'}, {"out", 1, 0, 'o'}, {"split", 1, 0, 's'}, {"shard-size", 1, 0, 'S'},
        {"compression", 1, 0, 'c'}, {"tokenizer", 1, 0, 'T'}, {"image-tokens", 1, 0, 'm'},
        {"audio-tokens-per-s", 1, 0, 'a'}, {"rank", 1, 0, 'r'}, {"world", 1, 0, 'w'}, {"merge-timeout", 1, 0, 'M'},
        {"skip-bad", 0, 0, 'b'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int ch, rank = 0, world = 1;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'f': a->from = optarg; break;
        case 'j': a->json = optarg; break;
        case 'I': a->images = optarg; break;
        case 't': a->tar = optarg; break;
        case 'R': a->root = optarg; break;
        case 'i': a->in = optarg; break;
        case 'k': a->key = optarg; break;
        case 'o': a->o.out_dir = optarg; break;
        case 's': a->o.split = optarg; break;
        case 'S': parse_shard_size(optarg, &a->o); break;
        case 'c': a->o.compression = parse_compression(optarg); break;
        case 'T': a->o.tokenizer = optarg; break;
        case 'm': a->o.image_tokens = (int)parse_long("convert", "image-tokens", optarg); break;
        case 'a': a->o.audio_tokens_per_s = (int)parse_long("convert", "audio-tokens-per-s", optarg); break;
        case 'r': rank = (int)parse_long("convert", "rank", optarg); a->rank_given = 1; break;
        case 'w': world = (int)parse_long("convert", "world", optarg); a->world_given = 1; break;
        case 'M': a->merge_timeout = (double)parse_long("convert", "merge-timeout", optarg); break;
        case 'b': a->o.skip_bad = 1; break;
        case 'h': fputs(CONVERT_HELP, stdout); exit(0);
        default: unknown_option("convert", argv);
        }
    }
    if (optind != argc)
        fatal("data convert: unexpected argument '%s' (inputs are given with options: see --help)", argv[optind]);
    if (a->rank_given != a->world_given) fatal("data convert: give --rank and --world together");
    if (a->world_given) {
        a->o.rank = rank;
        a->o.world = world;
    }
}

static const char* need(const char* value, const char* from, const char* option) {
    if (!value) fatal("data convert: --from %s needs %s (see `modrwkv data convert --help`)", from, option);
    return value;
}

static int run_converter(const ConvertArgs* a, Error* e) {
    const char* f = a->from;
    if (!f) fatal("data convert: --from is required: llava-json, webdataset, audio-folder, jsonl-text or binidx");
    if (strcmp(f, "llava-json") == 0) return convert_llava_json(need(a->json, f, "--json FILE"), a->images, &a->o, e);
    if (strcmp(f, "webdataset") == 0) return convert_webdataset(need(a->tar, f, "--tar PATTERN"), &a->o, e);
    if (strcmp(f, "audio-folder") == 0) return convert_audio_folder(need(a->root, f, "--root DIR"), &a->o, e);
    if (strcmp(f, "jsonl-text") == 0) return convert_jsonl_text(need(a->in, f, "--in FILE"), a->key, &a->o, e);
    if (strcmp(f, "binidx") == 0) return convert_binidx(need(a->in, f, "--in PREFIX"), &a->o, e);
    fatal("data convert: --from '%s' is not one of llava-json, webdataset, audio-folder, jsonl-text, binidx", f);
}

static void rank_file(const char* dir, const char* fmt, int rank, char* buf, size_t size) {
    char name[64];
    snprintf(name, sizeof name, fmt, rank);
    snprintf(buf, size, "%s/%s", dir, name);
}

static int file_exists(const char* path) { return access(path, F_OK) == 0; }

// A failed rank leaves its message where rank 0 looks for the part manifests.
static void write_failure(const ConvertOptions* o, const Error* e) {
    char path[4096];
    rank_file(o->out_dir, "convert.rank-%05d.failed", o->rank, path, sizeof path);
    Error ignored;
    if (mkdir_p(o->out_dir, &ignored) == 0) write_file_atomic(path, e->msg, strlen(e->msg), &ignored);
}

static void sleep_seconds(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

// Rank 0: waits for every part manifest (or a failure file), then merges.
static int wait_and_merge(const ConvertOptions* o, double timeout, Error* e) {
    double start = now_seconds();
    char path[4096], failed[4096];
    for (int r = 0; r < o->world; r++) {
        rank_file(o->out_dir, "manifest.rank-%05d.json", r, path, sizeof path);
        rank_file(o->out_dir, "convert.rank-%05d.failed", r, failed, sizeof failed);
        while (!file_exists(path)) {
            size_t len;
            Error ignored;
            char* msg = file_exists(failed) ? read_file(failed, &len, &ignored) : NULL;
            if (msg) {
                errorf(e, "data convert: rank %d failed: %s", r, msg);
                free(msg);
                return -1;
            }
            if (now_seconds() - start > timeout)
                return errorf(e, "%s: still missing after %.0f s: did rank %d of %d fail? (rerun it with --rank %d "
                                 "--world %d, then `modrwkv data merge --out %s --world %d`)",
                              path, timeout, r, o->world, r, o->world, o->out_dir, o->world);
            sleep_seconds(0.2);
        }
    }
    return shard_manifest_merge(o->out_dir, o->world, e);
}

static int cmd_convert(int argc, char** argv) {
    ConvertArgs a;
    memset(&a, 0, sizeof a);
    a.o = (ConvertOptions){.split = "train", .compression = 4, .tokenizer = "world", .image_tokens = 576,
                           .audio_tokens_per_s = 50, .rank = 0, .world = 1};
    a.merge_timeout = 3600;
    a.key = "text";
    rank_from_environment(&a.o);
    parse_convert(argc, argv, &a);
    if (!a.o.out_dir) fatal("data convert: --out DIR is required");
    if (a.o.world < 1 || a.o.rank >= a.o.world)
        fatal("data convert: rank %d of world %d is impossible (0 <= rank < world)", a.o.rank, a.o.world);
    char failed[4096];
    rank_file(a.o.out_dir, "convert.rank-%05d.failed", a.o.rank, failed, sizeof failed);
    unlink(failed);   // a previous run's
    Error e = {{0}};
    if (run_converter(&a, &e) != 0) {
        if (a.o.world > 1) write_failure(&a.o, &e);
        fatal("%s", e.msg);
    }
    if (a.o.world > 1 && a.o.rank == 0) {
        if (wait_and_merge(&a.o, a.merge_timeout, &e) != 0) fatal("%s", e.msg);
        printf("merged the manifests of %d ranks into %s/manifest.json\n", a.o.world, a.o.out_dir);
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------------- the others

static int cmd_merge(int argc, char** argv) {
    static struct option opts[] = {{"out", 1, 0, 'o'}, {"world", 1, 0, 'w'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    const char* out = NULL;
    long world = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'o': out = optarg; break;
        case 'w': world = parse_long("merge", "world", optarg); break;
        case 'h': fputs(MERGE_HELP, stdout); return 0;
        default: unknown_option("merge", argv);
        }
    }
    if (!out || world < 1) fatal("data merge: --out DIR and --world W (>= 1) are required");
    Error e = {{0}};
    if (shard_manifest_merge(out, (int)world, &e) != 0) fatal("%s", e.msg);
    printf("merged the manifests of %ld ranks into %s/manifest.json\n", world, out);
    return 0;
}

// Subcommands whose only argument is one path.
static const char* one_path(const char* cmd, const char* help, int argc, char** argv) {
    static struct option opts[] = {{"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (ch == 'h') {
            fputs(help, stdout);
            exit(0);
        }
        unknown_option(cmd, argv);
    }
    if (optind != argc - 1) fatal("data %s: give exactly one path (see `modrwkv data %s --help`)", cmd, cmd);
    return argv[optind];
}

static int cmd_inspect(int argc, char** argv) {
    const char* path = one_path("inspect", INSPECT_HELP, argc, argv);
    Error e = {{0}};
    if (data_inspect(path, stdout, &e) != 0) fatal("%s", e.msg);
    return 0;
}

static int cmd_verify(int argc, char** argv) {
    const char* path = one_path("verify", VERIFY_HELP, argc, argv);
    Error e = {{0}};
    if (data_verify(path, stdout, &e) != 0) fatal("%s", e.msg);
    return 0;
}

static int cmd_demo(int argc, char** argv) {
    static struct option opts[] = {{"out", 1, 0, 'o'}, {"digits", 1, 0, 'd'}, {"image-size", 1, 0, 'i'},
                                   {"seed", 1, 0, 's'}, {"tokenizer", 1, 0, 't'}, {"short-range", 0, 0, 'r'},
                                   {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    const char *out = NULL, *digits = MODRWKV_SOURCE_DIR "/datasets/demo/digits.csv.gz", *tokenizer = "world";
    int short_range = 0;
    long size = DEMO_IMAGE_SIZE, seed = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'o': out = optarg; break;
        case 'd': digits = optarg; break;
        case 'i': size = parse_long("demo", "image-size", optarg); break;
        case 's': seed = parse_long("demo", "seed", optarg); break;
        case 't': tokenizer = optarg; break;
        case 'r': short_range = 1; break;
        case 'h': fputs(DEMO_HELP, stdout); return 0;
        default: unknown_option("demo", argv);
        }
    }
    if (!out) fatal("data demo: --out DIR is required");
    if (optind != argc) fatal("data demo: unexpected argument '%s'", argv[optind]);
    Error e = {{0}};
    DemoOptions o;
    demo_options_default(&o, out);
    o.digits_csv_gz = digits;
    o.image_size = (int)size;
    o.seed = (uint64_t)seed;
    o.tokenizer = tokenizer;
    o.short_range = short_range;
    if (data_demo_build_with(&o, &e) != 0) fatal("%s", e.msg);
    return 0;
}

static int cmd_bench(int argc, char** argv) {
    static struct option opts[] = {{"image-size", 1, 0, 'i'}, {"seconds", 1, 0, 's'}, {"help", 0, 0, 'h'},
                                   {0, 0, 0, 0}};
    long size = 224, seconds = 5;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'i': size = parse_long("bench", "image-size", optarg); break;
        case 's': seconds = parse_long("bench", "seconds", optarg); break;
        case 'h': fputs(BENCH_HELP, stdout); return 0;
        default: unknown_option("bench", argv);
        }
    }
    if (optind != argc - 1) fatal("data bench: give exactly one dataset directory (see `modrwkv data bench --help`)");
    Error e = {{0}};
    if (data_bench(argv[optind], (int)size, (int)seconds, stdout, &e) != 0) fatal("%s", e.msg);
    return 0;
}

typedef struct DataCommand {
    const char* name;
    int (*run)(int argc, char** argv);
} DataCommand;

static const DataCommand DATA_COMMANDS[] = {
    {"convert", cmd_convert}, {"merge", cmd_merge}, {"inspect", cmd_inspect},
    {"verify", cmd_verify},   {"demo", cmd_demo},   {"bench", cmd_bench},
};

int data_main(int argc, char** argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(DATA_HELP, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof DATA_COMMANDS / sizeof DATA_COMMANDS[0]; i++) {
        if (strcmp(argv[1], DATA_COMMANDS[i].name) != 0) continue;
        reset_getopt();
        return DATA_COMMANDS[i].run(argc - 1, argv + 1);
    }
    fatal("data: unknown subcommand '%s': `modrwkv data --help` lists them", argv[1]);
}
