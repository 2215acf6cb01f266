"""Media sources and the WAV recording."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import pytest

from sipua.media import g711
from sipua.media.errors import MediaSourceError
from sipua.media.sources import (
    FRAME_SAMPLES,
    EchoSource,
    MediaSpec,
    WavRecorder,
    make_source,
    parse_media_spec,
)


def _wav(path: Path, *, rate: int = 8000, channels: int = 1, samples: int = 400) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(struct.pack(f"<{samples * channels}h", *range(samples * channels)))
    return path


def test_media_specs() -> None:
    assert parse_media_spec("tone") == MediaSpec("tone")
    assert parse_media_spec("tone:440").tone_hz == 440
    assert parse_media_spec("echo").kind == "echo"
    assert parse_media_spec("file:/tmp/a.wav").path == Path("/tmp/a.wav")
    for bad in ("tone:20", "tone:x", "beep", "file:", "echo:1"):
        with pytest.raises(MediaSourceError):
            parse_media_spec(bad)


def test_tone_and_silence_frames() -> None:
    tone = make_source(MediaSpec("tone"), "pcma")
    frames = [tone.frame() for _ in range(60)]
    assert all(len(f) == FRAME_SAMPLES for f in frames)
    assert frames[0] == frames[50]  # 1 kHz: one second holds whole periods
    pcm = struct.unpack("<160h", g711.decode("pcma", frames[0]))
    assert max(pcm) > 7000
    assert make_source(MediaSpec("silence"), "pcmu").frame() == b"\xff" * 160


def test_echo_plays_back_in_order_and_is_bounded() -> None:
    echo = EchoSource("pcmu")
    assert echo.frame() == b"\xff" * 160
    for n in range(60):
        echo.received(bytes([n]) * 160)
    assert echo.frame() == bytes([10]) * 160  # the oldest 10 were dropped (50 kept)


def test_file_source_loops_the_file(tmp_path: Path) -> None:
    source = make_source(MediaSpec("file", path=_wav(tmp_path / "a.wav")), "pcmu")
    expected = g711.encode("pcmu", struct.pack("<400h", *range(400)))
    played = b"".join(source.frame() for _ in range(5))
    assert played == (expected * 2)[:800]


@pytest.mark.parametrize(
    ("kwargs", "words"), [({"rate": 16000}, "16000 Hz"), ({"channels": 2}, "2 channel")]
)
def test_other_wav_formats_are_refused(tmp_path: Path, kwargs: dict[str, int], words: str) -> None:
    path = _wav(tmp_path / "b.wav", **kwargs)
    with pytest.raises(MediaSourceError, match=words):
        make_source(MediaSpec("file", path=path), "pcmu")
    with pytest.raises(MediaSourceError, match="cannot play"):
        make_source(MediaSpec("file", path=tmp_path / "missing.wav"), "pcmu")


def test_recording_decodes_what_was_received(tmp_path: Path) -> None:
    recorder = WavRecorder(tmp_path / "r.wav", "pcma")
    recorder.write(b"\xd5" * 160)
    recorder.write(b"\xaa" * 160)
    recorder.close()
    with wave.open(str(tmp_path / "r.wav"), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        data = wav.readframes(wav.getnframes())
    assert struct.unpack("<320h", data) == (8,) * 160 + (32256,) * 160


def test_a_recording_that_cannot_start_is_one_clear_error(tmp_path: Path) -> None:
    # wave.open on a path that fails half-way used to leave an object whose finaliser
    # raised later ("Exception ignored in: Wave_write.__del__").
    import gc
    import sys

    unraisable: list[object] = []
    hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        for path in (tmp_path / "nope" / "r.wav", tmp_path):
            with pytest.raises(MediaSourceError, match=f"cannot record to {path}"):
                WavRecorder(path, "pcmu")
        gc.collect()
    finally:
        sys.unraisablehook = hook
    assert unraisable == []
