"""The one place that knows what a call recording's size means: MixMonitor writes 8 kHz,
16-bit, mono PCM WAV with a 44-byte header."""

from __future__ import annotations

WAV_HEADER_BYTES = 44
PCM_BYTES_PER_SECOND = 8000 * 2  # 8 kHz, 16-bit, mono


def seconds_of_pcm_wav(size_bytes: int) -> float:
    """Seconds of audio in a MixMonitor WAV of this many bytes (0 for a bare header)."""
    return max(0.0, (size_bytes - WAV_HEADER_BYTES) / PCM_BYTES_PER_SECOND)
