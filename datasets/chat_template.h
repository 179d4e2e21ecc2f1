// chat_template.h — turns a conversation (user / assistant turns, with <image> and <audio> tags) into a
// training sample's token ids, per-token loss mask and media placeholder positions; and a plain document into
// a fully trained sample.
//
// Contract (the template of reference/modrwkv-paper.md §1.5):
//   user turn       "\x16User: {text}\x17"        every token masked (loss 0)
//   assistant turn  "\x16Assistant:" + " {text}\x17"   the prefix "\x16Assistant:" masked; " {text}\x17" (the
//                                                  answer and its closing \x17) trained (loss 1)
// Turns are concatenated with nothing in between. The split after "Assistant:" is the inference prompt of the
// paper (generation starts after "\x16Assistant:" and stops at \x17), so the model learns exactly the tokens
// it will have to produce. (The paper's own code also trains "\x16Assistant: "; we mask it, as the issue asks.)
// Each piece of text between tags is tokenized on its own, so the decoded tokens are the templated text.
// A tag "<image>" / "<audio>" anywhere in a turn is replaced by the next image / audio item's n_placeholder
// copies of SHARD_PLACEHOLDER_IMAGE / SHARD_PLACEHOLDER_AUDIO (loss 0), and that item's placeholder_pos is
// set; the n-th <image> takes the n-th image item of s->media (in array order), likewise for audio, and the
// media array is then ordered by placeholder_pos. Failures (-1, "<what>: <what is wrong>"): tags and items
// of a kind do not match in number, an item's kind has no tag (time series, features), no turns, or no
// assistant turn (nothing to train on).
#pragma once
#include <stddef.h>

#include "datasets/shard.h"
#include "datasets/tokenizer.h"
#include "kernels/common.h"

typedef enum { CHAT_USER = 0, CHAT_ASSISTANT = 1 } ChatRole;

typedef struct ChatTurn {
    ChatRole role;
    const char* text;   // UTF-8 (any bytes), not necessarily NUL-terminated
    size_t len;
} ChatTurn;

// s->key and s->media[0..n_media) (payload + n_placeholder) are set by the caller; fills s->tokens,
// s->loss_mask, s->n_tokens and every placeholder_pos. On failure the caller still owns s (sample_free).
// `what` names the sample in messages ("x.json: sample 'id'").
int chat_build(const Tokenizer* tok, const ChatTurn* turns, int n_turns, Sample* s, const char* what, Error* e);

// A plain document (pre-training text): the tokens of text, every one trained, followed by the end-of-document
// token 0 (also trained) when add_eod is set. s->key is set by the caller; s gets no media.
void chat_build_document(const Tokenizer* tok, const char* text, size_t len, int add_eod, Sample* s);
