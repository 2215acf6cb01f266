"""What a call plays and what it keeps: tone, echo, silence or a WAV file; a WAV recording.

A source hands out one 20 ms frame (160 G.711 bytes) per call of `frame()`; everything it
plays is encoded once, up front, so the 50 frames a second cost a slice each. `echo` plays back
the payloads received (the codec is the same both ways), through a bounded queue. WAV files are
read and written with the standard `wave` module, 8 kHz mono 16-bit only (sipua does not
resample): anything else is refused with a `MediaSourceError` that says what the file is.
"""

from __future__ import annotations

import math
import struct
import wave
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from sipua.media import g711
from sipua.media.errors import MediaSourceError
from sipua.media.g711 import Codec

SAMPLE_RATE: Final = 8000
FRAME_SAMPLES: Final = 160  # 20 ms at 8 kHz
#: Longest WAV file played (10 minutes); it is held encoded in memory.
MAX_FILE_SECONDS: Final = 600
#: Longest recording kept (1 hour); later audio is not written.
MAX_RECORD_SECONDS: Final = 3600
#: Received frames an echo holds before it drops the oldest (1 s).
ECHO_QUEUE_FRAMES: Final = 50
DEFAULT_TONE_HZ: Final = 1000
_TONE_AMPLITUDE: Final = 8000  # about -12 dBFS


class MediaSource(Protocol):
    """Gives the next 20 ms of audio, encoded."""

    def frame(self) -> bytes: ...

    def received(self, payload: bytes) -> None:
        """A payload that arrived (the echo source plays it back; others ignore it)."""


@dataclass(frozen=True, slots=True)
class MediaSpec:
    """A parsed `--media` value: `tone[:HZ]`, `echo`, `silence` or `file:PATH`."""

    kind: str
    tone_hz: int = DEFAULT_TONE_HZ
    path: Path | None = None


def parse_media_spec(text: str) -> MediaSpec:
    """Reads a media choice as given on the command line or in the configuration.

    Raises:
        MediaSourceError: not one of `tone`, `tone:HZ` (50-3900), `echo`, `silence`,
            `file:PATH.wav`.
    """
    kind, _, arg = text.partition(":")
    if kind in ("echo", "silence") and not arg:
        return MediaSpec(kind)
    if kind == "tone":
        if not arg:
            return MediaSpec("tone")
        if arg.isascii() and arg.isdigit() and 50 <= int(arg) <= 3900:
            return MediaSpec("tone", tone_hz=int(arg))
        raise MediaSourceError(f"tone frequency {arg[:16]!r} is not 50-3900 Hz")
    if kind == "file" and arg:
        return MediaSpec("file", path=Path(arg))
    raise MediaSourceError(
        f"media {text[:64]!r} is not tone, tone:HZ, echo, silence or file:PATH.wav"
    )


class LoopSource:
    """Plays encoded audio in a loop, one frame at a time (tone, silence, file)."""

    def __init__(self, encoded: bytes) -> None:
        if not encoded:
            raise MediaSourceError("nothing to play: the audio is empty")
        repeats = -(-FRAME_SAMPLES // len(encoded)) if len(encoded) < FRAME_SAMPLES else 1
        self._data = encoded * repeats
        self._offset = 0

    def frame(self) -> bytes:
        end = self._offset + FRAME_SAMPLES
        chunk = self._data[self._offset : end]
        if len(chunk) < FRAME_SAMPLES:
            end = FRAME_SAMPLES - len(chunk)
            chunk += self._data[:end]
        self._offset = end % len(self._data)
        return chunk

    def received(self, payload: bytes) -> None:
        return None


class EchoSource:
    """Plays back what was received, 20 ms later; silence when nothing is queued."""

    def __init__(self, codec: Codec) -> None:
        self._silence = bytes([g711.SILENCE_BYTE[codec]]) * FRAME_SAMPLES
        self._queue: deque[bytes] = deque(maxlen=ECHO_QUEUE_FRAMES)

    def frame(self) -> bytes:
        return self._queue.popleft() if self._queue else self._silence

    def received(self, payload: bytes) -> None:
        self._queue.append(payload)


def tone_pcm(hz: int, seconds: float = 1.0) -> bytes:
    """A sine wave as 16-bit PCM at 8 kHz (one second: a whole number of periods)."""
    count = int(SAMPLE_RATE * seconds)
    step = 2 * math.pi * hz / SAMPLE_RATE
    return struct.pack(
        f"<{count}h", *(round(_TONE_AMPLITUDE * math.sin(step * n)) for n in range(count))
    )


def read_wav(path: Path) -> bytes:
    """The 16-bit PCM of an 8 kHz mono WAV file.

    Raises:
        MediaSourceError: unreadable, not WAV, not 8 kHz mono 16-bit, or longer than
            `MAX_FILE_SECONDS`.
    """
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            frames = wav.getnframes()
            if (channels, width, rate) != (1, 2, SAMPLE_RATE):
                raise MediaSourceError(
                    f"{path} is {rate} Hz, {channels} channel(s), {8 * width}-bit; sipua plays "
                    "8000 Hz mono 16-bit WAV (convert it, e.g. sox IN -r 8000 -c 1 -b 16 OUT.wav)"
                )
            if frames > MAX_FILE_SECONDS * SAMPLE_RATE:
                raise MediaSourceError(f"{path} is longer than {MAX_FILE_SECONDS} s")
            return wav.readframes(frames)
    except (OSError, EOFError, wave.Error) as exc:
        raise MediaSourceError(f"cannot play {path}: {exc}") from None


def make_source(spec: MediaSpec, codec: Codec) -> MediaSource:
    """The source that plays `spec` in `codec`.

    Raises:
        MediaSourceError: the file cannot be played.
    """
    if spec.kind == "echo":
        return EchoSource(codec)
    if spec.kind == "silence":
        return LoopSource(bytes([g711.SILENCE_BYTE[codec]]) * FRAME_SAMPLES)
    if spec.kind == "tone":
        return LoopSource(g711.encode(codec, tone_pcm(spec.tone_hz)))
    assert spec.path is not None
    return LoopSource(g711.encode(codec, read_wav(spec.path)))


class WavRecorder:
    """Writes the audio received to an 8 kHz mono 16-bit WAV file (at most an hour)."""

    def __init__(self, path: Path, codec: Codec) -> None:
        self.path = path
        self.codec = codec  # of the payloads written; a new media plan may change it
        self._samples = 0
        try:
            # Opened here, not by wave: a wave.open that fails half-way leaves an object
            # whose finaliser raises.
            self._file = path.open("wb")
        except OSError as exc:
            raise MediaSourceError(f"cannot record to {path}: {exc}") from None
        self._wav = wave.open(self._file, "wb")  # noqa: SIM115 - closed by close()
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(SAMPLE_RATE)

    def write(self, payload: bytes) -> None:
        """Records one received G.711 payload (dropped once the hour is full)."""
        if self._samples + len(payload) > MAX_RECORD_SECONDS * SAMPLE_RATE:
            return
        self._samples += len(payload)
        try:
            self._wav.writeframesraw(g711.decode(self.codec, payload))
        except OSError as exc:
            raise MediaSourceError(f"cannot record to {self.path}: {exc}") from None

    def close(self) -> None:
        try:
            self._wav.close()  # writes the header's sizes; the file is ours to close
        except OSError as exc:
            raise MediaSourceError(f"cannot finish the recording {self.path}: {exc}") from None
        finally:
            self._file.close()
