// demo_data.h — the demo datasets behind `modrwkv data demo` (data_demo_build of datasets/data_tools.h is
// data_demo_build_with with the defaults below), built from real data only:
//
//   <out>/digits_qa/{train,val,test}/      image QA on the 1,797 handwritten digits of digits.csv.gz
//   <out>/spoken_digits/{train,val,test}/  spoken digits ("seven", "three one four") synthesised by espeak-ng
//   <out>/text/{train,val,test}/           the first text_passages passages of the LAMBADA test set
//   <out>/README.txt                       what is where, the templates, counts and licences
//
// Each <task>/<split> directory is one shard dataset (datasets/FORMAT.md: <split>-NNNNNN.h5 + manifest.json,
// tokenizer "world" or "bytes" (DemoOptions.tokenizer), at most DEMO_SHARD_SAMPLES samples per shard).
//
// Contract:
// - digits_qa: one sample per digit image, key "digit-NNNN" (its 0-based row in the CSV). The 8x8 image
//   (values 0..16, 16 = ink) is upscaled bilinearly to image_size x image_size, drawn as dark ink on white
//   (v -> 255 - round(255 v / 16)) and stored as grey PNG bytes (MEDIA_IMAGE_ENCODED). Three question turns
//   in a seeded order: "What digit is this?" -> "7"; "Is this digit even?" / "Is this digit odd?" ->
//   "Yes"/"No"; "Is this digit greater than <word>?" / "Is this digit less than <word>?" -> "Yes"/"No". The
//   first user turn starts with "<image>\n", which becomes image_tokens image placeholders (default 64: an
//   8 x 8 grid of patch tokens).
// - spoken_digits: 10 single digit words and 20 two-digit + 20 three-digit sequences (drawn with the seed),
//   each spoken by every installed voice of the list en-us, en-us+f3, en, en+f2, en-gb-x-rp+m3,
//   en-gb-scotland+f4, en-029, en-gb-x-gbclan+m2 (at least 3 must be installed), single words in 3
//   (rate, pitch) renditions and sequences in 1. Clips are 16 kHz mono int16 (MEDIA_AUDIO_PCM) with exactly
//   100 ms of silence before and after the speech (speech_set_silence). Turns: "<audio>\nTranscribe." ->
//   "seven three"; the audio takes ceil(duration_s * audio_tokens_per_s) placeholders (default 50 per
//   second, Whisper's 50 frames/s).
//   Key "speech-<voice>-<word_word>-r<rate>-p<pitch>".
// - text: key "lambada-NNNNN" (0-based line); the passage's tokens then the end-of-document token 0, all
//   trained (chat_build_document).
// - Chat samples use datasets/chat_template.h (user turns masked, assistant answers trained).
// - Splits never share a source item: digits by image (row), speech by (voice, utterance) combination (all
//   renditions of a combination go to one split), text by passage; each unit goes to test / val / train by
//   a seeded permutation (DEMO_TEST_PERCENT and DEMO_VAL_PERCENT, at least one unit each).
// - Deterministic: the same options give byte-identical files (speech synthesis runs in a fresh process).
//   Not thread-safe (speech.h). Every failure returns -1 with a one-line message naming the file / key; a
//   failed build leaves no manifest.json in the split it was writing.
#pragma once
#include <stdint.h>

#include "kernels/common.h"

enum {
    DEMO_IMAGE_SIZE = 32,          // pixels, the default of `modrwkv data demo --image-size`
    DEMO_IMAGE_TOKENS = 64,        // placeholders per image
    DEMO_AUDIO_TOKENS_PER_S = 50,  // placeholders per second of audio
    DEMO_TEXT_PASSAGES = 1000,
    DEMO_SHARD_SAMPLES = 256,
    DEMO_TEST_PERCENT = 10,
    DEMO_VAL_PERCENT = 10,
};

typedef struct DemoOptions {
    const char* out_dir;
    const char* digits_csv_gz;     // NULL: datasets/demo/digits.csv.gz of the source tree
    const char* text_jsonl;        // NULL: tests/data/lambada_test.jsonl of the source tree
    int image_size;                // 8..1024
    int image_tokens;              // 1..4096
    int audio_tokens_per_s;        // 1..1000
    int text_passages;             // 3.. (at most the lines of text_jsonl)
    uint64_t seed;
    const char* tokenizer;         // "world" (default) or "bytes" (the CPU demo: a 256-row head instead of 65536)
    int short_range;               // 1: the media item ends the user turn ("What digit is this?\n<image>") and each
                                   // digit question is its own sample (key digit-NNNN-qK, split by image): a tiny
                                   // byte-level backbone then sees the media right before the answer
} DemoOptions;

// Fills the defaults above (seed 1, tokenizer "world") with out_dir.
void demo_options_default(DemoOptions* o, const char* out_dir);
int data_demo_build_with(const DemoOptions* o, Error* e);
