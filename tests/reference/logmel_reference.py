#!/usr/bin/python3
"""logmel_reference.py — independent float64 reference of Whisper's log-mel front end, and the generator of
tests/reference/vectors/logmel.safetensors (read by tests/test_logmel.c).

Contract:
  * Written from the description of Whisper's audio.py (log_mel_spectrogram) and librosa.filters.mel
    (Slaney mel scale, htk=False, norm="slaney"); neither package is used: the filterbank comes from the
    Slaney formulas below in numpy float64, the STFT from torch.stft in float64 (n_fft 400, hop 160,
    periodic Hann window, center=True, pad_mode="reflect"), the last frame dropped, power |X|^2,
    log10(max(mel, 1e-10)), clamp at (max - 8), (x + 4) / 4.  Output frame-major (n_frames, n_mels).
  * `/usr/bin/python3 tests/reference/logmel_reference.py` (re)writes the vectors file; `--check`
    recomputes and compares with the committed file without writing (exit 0 = identical bytes).
    Deterministic: fixed seeds, float64 arithmetic on float32 audio, results rounded to float32.
  * Clips (audio stored as float32 unless noted):
      chirp      1.3 s (20800 samples) chirp 100 Hz -> 6 kHz plus noise, no padding: 130 frames
      odd        3217 samples of noise bursts, no padding (reflect at both ends, partial hop): 20 frames
      short30    0.7 s (11200 samples) of tones padded to 30 s: 3000 frames; stored are the first 96
                 frames ("head") and one row ("tail_row") that every frame from 96 on equals (checked here)
      long30     31 s of integer-LCG noise (NOT stored: tests/test_logmel.c regenerates it exactly, see
                 lcg_audio) trimmed to 30 s: frames 0..15 ("head") and 2984..2999 ("last"); 80 mels only
    each with 80 and 128 mels except long30; plus the filterbanks "filters_80" and "filters_128" (n_mels, 201).
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "vectors", "logmel.safetensors")

SR, N_FFT, HOP = 16000, 400, 160
N_SAMPLES = 30 * SR


# ------------------------------------------------------------------------------------------ Slaney mel filters
def hz_to_mel(f):
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3.0, 1000.0
    logstep = math.log(6.4) / 27.0
    lin = f / f_sp
    log = min_log_hz / f_sp + np.log(np.maximum(f, 1e-300) / min_log_hz) / logstep
    return np.where(f >= min_log_hz, log, lin)


def mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3.0, 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filters(n_mels):
    """(n_mels, 201) float64: triangles between mel-spaced edges, each scaled by 2 / (width in Hz)."""
    fft_freqs = np.linspace(0.0, SR / 2.0, N_FFT // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(SR / 2.0), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    w = np.zeros((n_mels, N_FFT // 2 + 1))
    for i in range(n_mels):
        rise = -ramps[i] / widths[i]
        fall = ramps[i + 2] / widths[i + 1]
        w[i] = np.maximum(0.0, np.minimum(rise, fall))
    w *= (2.0 / (edges[2:n_mels + 2] - edges[:n_mels]))[:, None]
    return w


# ------------------------------------------------------------------------------------------ log-mel
def log_mel(audio_f32, n_mels, pad30):
    x = torch.from_numpy(audio_f32.astype(np.float64))
    if pad30:
        x = x[:N_SAMPLES]
        x = torch.nn.functional.pad(x, (0, N_SAMPLES - x.shape[0]))
    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64)
    stft = torch.stft(x, N_FFT, HOP, window=window, center=True, pad_mode="reflect", return_complex=True)
    power = stft[..., :-1].abs() ** 2                        # (201, n_frames)
    mel = torch.from_numpy(mel_filters(n_mels)) @ power       # (n_mels, n_frames)
    lg = torch.clamp(mel, min=1e-10).log10()
    lg = torch.maximum(lg, lg.max() - 8.0)
    lg = (lg + 4.0) / 4.0
    return lg.T.contiguous().numpy()                          # (n_frames, n_mels)


# ------------------------------------------------------------------------------------------ clips
def chirp_clip():
    rng = np.random.default_rng(1234)
    t = np.arange(20800) / SR
    f0, f1, dur = 100.0, 6000.0, 1.3
    phase = 2 * np.pi * (f0 * t + (f1 - f0) / (2 * dur) * t * t)
    x = 0.5 * np.sin(phase) + 0.05 * rng.standard_normal(t.shape)
    return x.astype(np.float32)


def odd_clip():
    rng = np.random.default_rng(77)
    x = rng.uniform(-0.8, 0.8, 3217)
    x[1000:1600] *= 0.01          # a quiet stretch: the max - 8 clamp has work to do
    return x.astype(np.float32)


def short30_clip():
    t = np.arange(11200) / SR
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1870 * t) * np.exp(-3 * t)
    return x.astype(np.float32)


def lcg_audio(n):
    """Exact in any language: state = state * 1103515245 + 12345 mod 2^31; sample = ((state >> 7) / 2^24
    * 2 - 1) * amp with amp = 2^-(1 + (i / 16000) % 4); every step is exact in float32 (24-bit values
    scaled by powers of two), so C and numpy produce the same bits."""
    out = np.empty(n, dtype=np.float32)
    s = 42
    for i in range(n):
        s = (s * 1103515245 + 12345) % (1 << 31)
        u = (s >> 7) / float(1 << 24)                 # 24-bit fraction: exact
        amp = 2.0 ** -(1 + (i // 16000) % 4)           # 1/2, 1/4, 1/8, 1/16 by second
        out[i] = np.float32((u * 2.0 - 1.0) * amp)
    return out


# ------------------------------------------------------------------------------------------ safetensors
def safetensors_bytes(tensors):
    header, blobs, off = {}, [], 0
    for name, arr in tensors:
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        data = arr.tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    return struct.pack("<Q", len(hj)) + hj + b"".join(blobs)


def build():
    tensors = []
    for n_mels in (80, 128):
        tensors.append((f"filters_{n_mels}", mel_filters(n_mels)))
    for name, audio in (("chirp", chirp_clip()), ("odd", odd_clip())):
        tensors.append((f"{name}.audio", audio))
        for n_mels in (80, 128):
            tensors.append((f"{name}.mel_{n_mels}", log_mel(audio, n_mels, pad30=False)))
    audio = short30_clip()
    tensors.append(("short30.audio", audio))
    for n_mels in (80, 128):
        full = log_mel(audio, n_mels, pad30=True)
        assert full.shape == (3000, n_mels)
        tail = full[96:].astype(np.float32)
        assert np.all(tail == tail[-1:]), "short30: frames from 96 on are not all equal"
        tensors.append((f"short30.head_{n_mels}", full[:96]))
        tensors.append((f"short30.tail_row_{n_mels}", full[-1]))
    audio = lcg_audio(31 * SR)
    full = log_mel(audio, 80, pad30=True)
    assert full.shape == (3000, 80)
    tensors.append(("long30.head_80", full[:16]))
    tensors.append(("long30.last_80", full[-16:]))
    return safetensors_bytes(tensors)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed file, write nothing")
    args = ap.parse_args()
    data = build()
    if args.check:
        with open(OUT, "rb") as f:
            same = f.read() == data
        print(f"{OUT}: {'identical' if same else 'DIFFERS'}")
        return 0 if same else 1
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "wb") as f:
        f.write(data)
    print(f"wrote {OUT} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
