// demo.h — `modrwkv demo`: the embedded end-to-end ModRWKV demo on a laptop CPU, with no download.
//
// Contract (runs/demo/ by default; every stage is a normal run directory with config.yaml, metrics.jsonl and
// checkpoints/, resumed with --resume auto, so an interrupted demo continues where it stopped):
//   data/                  the demo shards (`modrwkv data demo --tokenizer bytes`: digit image QA, spoken digits, text)
//   stage0-text/           a tiny RWKV-7 pretrained on the text passages: "the pretrained checkpoint"
//   vision-encoder/        a tiny SigLIP-style ViT trained from scratch on the digit QA together with a copy of
//                          the stage-0 backbone (no pretrained encoder can be downloaded); only the encoder is
//                          kept; audio-encoder/ likewise, a tiny Whisper-style encoder on the spoken digits
//   vision-stage1/         stage 1: a fresh projector only (encoder and backbone frozen)
//   vision-stage2/         stage 2: projector + backbone, from stage 1; audio-stage1/, audio-stage2/ likewise
//   compare-pretrained/, compare-random/
//                          the paper's central finding at small scale: stage 2 from the stage-0 backbone vs a
//                          random backbone, everything else fixed (encoder, fresh projector, data, steps)
//   eval-digits.json, eval-speech.json   held-out test split: digit QA accuracy, ASR word error rate
//   report.md              the table printed at the end, and how every number was measured
// Returns the process exit status.
#pragma once

int demo_main(int argc, char** argv);
