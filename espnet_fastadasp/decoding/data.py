"""Kaldi-style data directories: reading ``key value`` files and loading audio safely.

A data dir holds ``wav.scp`` (``utt path``, ``utt cmd |`` pipe, or ``utt ark:offset``; with a
``segments`` file the keys of wav.scp are recordings), ``text``, ``utt2spk`` and, for us, a
``prompt`` file with the task prompt of every utterance. Everything that can go wrong with an
utterance raises :class:`AudioError` naming the utterance and its source, never a silent wrong
result. Documented handling, not errors: a different sample rate is resampled to the model's
(polyphase, scipy), multi-channel audio is averaged to mono, and audio longer than one encoder
window is split into consecutive windows (clips) that the prompt then carries one after another.
"""

from __future__ import annotations

import io
import logging
import math
import os
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


#: How far a segment may end past its recording (clipped there), as Kaldi's extract-segments
#: ``--max-overshoot`` (default 0.5 s); further is an error.
SEGMENT_OVERSHOOT_SECONDS = 0.5
#: where the audio goes in a prompt template
AUDIO_PLACEHOLDER = "{audio}"


class DataError(ValueError):
    """A data file is missing or malformed; the message names the file (and line)."""


class AudioError(DataError):
    """An utterance's audio cannot be used; the message names the utterance and its source."""


def read_key_value(path: str | Path, allow_empty_value: bool = True) -> dict[str, str]:
    """``key value`` lines into a dict, as Kaldi reads them: the key is the first field, the value
    the rest of the line; fields are separated by spaces or tabs. Duplicates, and bytes that are
    not UTF-8, are errors naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    out: dict[str, str] = {}
    for lineno, line in enumerate(_read_utf8(path).splitlines(), 1):
        fields = line.strip().split(maxsplit=1)
        if not fields:
            continue
        key, value = fields[0], (fields[1] if len(fields) > 1 else "")
        if not value and not allow_empty_value:
            raise DataError(f"{path}:{lineno}: no value for key {key!r}")
        if key in out:
            raise DataError(f"{path}:{lineno}: duplicate key {key!r}")
        out[key] = value
    return out


def _read_utf8(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        lineno = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(
            f"{path}:{lineno}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column {column}); convert the file, "
            "e.g. iconv -f latin1 -t utf-8"
        ) from None


@dataclass(frozen=True)
class Segment:
    recording: str
    start: float
    end: float | None


def read_segments(path: str | Path) -> dict[str, Segment]:
    """``utt rec start end`` lines (end <= 0 or '-1' means to the end of the recording)."""
    out = {}
    for key, value in read_key_value(path, allow_empty_value=False).items():
        parts = value.split()
        try:
            rec, start, end = parts[0], float(parts[1]), float(parts[2])
        except (IndexError, ValueError):
            raise DataError(f"{path}: bad segment line for {key!r}: {value!r} (want: utt rec start end)") from None
        if not (math.isfinite(start) and math.isfinite(end)):
            raise DataError(f"{path}: segment {key!r} has a bound that is not a number: {value!r}")
        if start < 0:
            raise DataError(f"{path}: segment {key!r} starts before 0 ({start})")
        if end > 0 and end <= start:
            raise DataError(f"{path}: segment {key!r} ends ({end}) before it starts ({start})")
        out[key] = Segment(rec, start, end if end > 0 else None)
    return out


#: a WAV data-chunk size at or above this (or 0) means "unknown": what a writer to a pipe puts
#: there, as sox does (0x7ffff000), since it cannot go back and fill the size in
STREAMED_WAV_SIZE = 0x7FFF_F000


def wav_shortfall(head: bytes, total_bytes: int) -> tuple[int, int] | None:
    """(promised, present) bytes of samples of a RIFF/WAVE stream whose data chunk is cut short.

    ``head``: the stream's first bytes (its chunk headers); ``total_bytes``: its whole length.
    None when it is not a WAV, the data is complete, or the header gives no length (streamed).
    Why: libsndfile decodes a truncated WAV without complaint, returning what is there.
    """
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(head):
        chunk, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if chunk == b"data":
            if size == 0 or size >= STREAMED_WAV_SIZE:
                return None
            present = total_bytes - (pos + 8)
            return (size, present) if present < size else None
        pos += 8 + size + (size & 1)
    return None


def _truncated(source: str, promised: int, present: int) -> RuntimeError:
    return RuntimeError(
        f"truncated WAV: its header promises {promised} bytes of samples, {source!r} holds {max(present, 0)} "
        f"({100 * max(present, 0) / promised:.0f} %): a partial copy or download?"
    )


def _read_source(source: str) -> tuple[np.ndarray, int]:
    """Samples (float32, [T] or [T, C]) and rate from a wav.scp value."""
    import soundfile as sf

    if source.endswith("|"):
        proc = subprocess.run(source[:-1], shell=True, capture_output=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"pipe exited {proc.returncode}: {proc.stderr.decode(errors='replace').strip()[-300:]}")
        short = wav_shortfall(proc.stdout[:65536], len(proc.stdout))
        if short is not None:
            raise _truncated(source, *short)
        data, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=False)
        return data, rate
    if _is_ark(source):
        import kaldiio

        loaded = kaldiio.load_mat(source)
        if not isinstance(loaded, tuple):
            raise RuntimeError("ark entry holds a matrix, not audio (rate, samples)")
        rate, data = loaded
        data = np.asarray(data)
        if np.issubdtype(data.dtype, np.integer):
            data = data.astype(np.float32) / float(np.iinfo(data.dtype).max + 1)
        return data.astype(np.float32), int(rate)
    _check_file(source)
    data, rate = sf.read(source, dtype="float32", always_2d=False)
    return data, rate


def _check_file(source: str) -> None:
    """The file exists and, if a WAV, holds all the data its header promises."""
    if not Path(source).is_file():
        raise FileNotFoundError(f"no such file: {source}")
    with open(source, "rb") as f:
        short = wav_shortfall(f.read(65536), os.fstat(f.fileno()).st_size)
    if short is not None:
        raise _truncated(source, *short)


def _is_ark(source: str) -> bool:
    head, sep, tail = source.rpartition(":")
    return bool(sep) and tail.isdigit() and not Path(source).is_file()


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling (scipy), exact for integer ratios like 48k -> 16k."""
    if rate == target:
        return wave
    from scipy.signal import resample_poly

    g = math.gcd(int(rate), int(target))
    return resample_poly(wave, target // g, rate // g).astype(np.float32)


class AudioReader:
    """Loads an utterance's waveform from a data dir, mono float32 at ``sampling_rate``."""

    def __init__(
        self,
        wav_scp: str | Path,
        segments: str | Path | None = None,
        sampling_rate: int = 16000,
        min_seconds: float = 0.05,
        max_seconds: float = 3600.0,
    ) -> None:
        self.wav_scp_path = Path(wav_scp)
        self.sources = read_key_value(wav_scp, allow_empty_value=False)
        self.segments = read_segments(segments) if segments else None
        self.sampling_rate = sampling_rate
        self.min_seconds = min_seconds
        self.max_seconds = max_seconds

    def keys(self) -> list[str]:
        return list(self.segments) if self.segments is not None else list(self.sources)

    def __contains__(self, key: str) -> bool:
        return key in (self.segments if self.segments is not None else self.sources)

    def _locate(self, key: str) -> tuple[Segment | None, str, str]:
        """(segment or None, recording id, its wav.scp value)."""
        seg = None
        if self.segments is not None:
            if key not in self.segments:
                raise AudioError(f"utterance {key!r} is not in the segments file")
            seg = self.segments[key]
            rec = seg.recording
        else:
            rec = key
        if rec not in self.sources:
            raise AudioError(f"utterance {key!r}: recording {rec!r} is not in {self.wav_scp_path}")
        return seg, rec, self.sources[rec]

    def _span(self, key: str, seg: Segment | None, rec: str, frames: int, rate: int) -> tuple[int, int]:
        """The [start, end) frames of the utterance in a recording of ``frames`` at ``rate``."""
        if seg is None:
            return 0, frames
        start = int(round(seg.start * rate))
        end = frames if seg.end is None else int(round(seg.end * rate))
        if start >= frames:
            lasts = frames / rate
            raise AudioError(f"utterance {key!r}: segment starts at {seg.start}s but {rec!r} lasts {lasts:.2f}s")
        if end > frames + SEGMENT_OVERSHOOT_SECONDS * rate:
            raise AudioError(
                f"utterance {key!r}: segment ends at {seg.end}s but {rec!r} lasts {frames / rate:.2f}s "
                f"(more than the {SEGMENT_OVERSHOOT_SECONDS:g}s tolerated, as Kaldi's extract-segments)"
            )
        return start, min(end, frames)

    def _check_seconds(self, key: str, seconds: float, source: str) -> None:
        if seconds < self.min_seconds:
            raise AudioError(f"utterance {key!r}: audio is empty or too short ({seconds:.3f}s) in {source!r}")
        if seconds > self.max_seconds:
            raise AudioError(
                f"utterance {key!r}: audio is {seconds:.1f}s, longer than max_seconds={self.max_seconds:g} ({source!r})"
            )

    def probe(self, key: str) -> float:
        """Check ``key``'s audio without decoding it: that it exists, its header, that its data is
        complete, its segment bounds and length; returns its seconds. Raises what ``__call__``
        would for the same faults. A file costs its header; a pipe or ark entry is read in full
        (its length is known no other way)."""
        seg, rec, source = self._locate(key)
        if source.endswith("|") or _is_ark(source):
            return len(self(key)) / self.sampling_rate
        import soundfile as sf

        try:
            _check_file(source)
            info = sf.info(source)
        except Exception as exc:  # noqa: BLE001 - every failure to read becomes a named error
            raise AudioError(f"utterance {key!r}: cannot read audio {source!r}: {exc}") from exc
        start, end = self._span(key, seg, rec, info.frames, info.samplerate)
        seconds = (end - start) / info.samplerate
        self._check_seconds(key, seconds, source)
        return seconds

    def __call__(self, key: str) -> np.ndarray:
        seg, rec, source = self._locate(key)
        try:
            wave, rate = _read_source(source)
        except Exception as exc:  # noqa: BLE001 - every failure to read becomes a named error
            raise AudioError(f"utterance {key!r}: cannot read audio {source!r}: {exc}") from exc
        if wave.ndim == 2:
            wave = wave.mean(axis=1)
        start, end = self._span(key, seg, rec, len(wave), rate)
        wave = wave[start:end]
        if rate != self.sampling_rate:
            logger.debug("utterance %s: resampling %d Hz -> %d Hz", key, rate, self.sampling_rate)
            wave = resample(wave, rate, self.sampling_rate)
        self._check_seconds(key, len(wave) / self.sampling_rate, source)
        if not np.isfinite(wave).all():
            raise AudioError(f"utterance {key!r}: audio contains NaN or inf ({source!r})")
        peak = float(np.abs(wave).max())
        if peak > 1.0 + 1e-3:
            # integer PCM is scaled to [-1, 1] on reading, so this is float audio at another scale
            logger.warning(
                "utterance %s: samples reach %.3g, outside [-1, 1] (%s); decoded as they are", key, peak, source
            )
        return np.ascontiguousarray(wave, dtype=np.float32)


def check_template(template: str) -> None:
    """A prompt template must hold exactly one ``{audio}``: where the audio goes."""
    count = template.count(AUDIO_PLACEHOLDER)
    if count != 1:
        what = "no" if count == 0 else f"{count}"
        raise DataError(
            f"prompt {template!r} has {what} {AUDIO_PLACEHOLDER} placeholder(s); want exactly one, where the audio goes"
        )


def check_entries(inputs: Inputs, keys: Sequence[str], prompt: str | None) -> dict[str, str]:
    """Every fault of the data found without a model: key -> what is wrong (empty if none).

    Why: one bad utterance should not end a job after the model has loaded and hours of
    decoding; all of them are found up front, cheaply (:meth:`AudioReader.probe`), and listed
    together. Checks: the key's audio (existence, header, completeness, segment bounds, length)
    and its prompt (present, exactly one ``{audio}``)."""
    bad: dict[str, str] = {}
    for key in keys:
        try:
            if inputs.prompts is not None and key not in inputs.prompts:
                raise DataError(f"utterance {key!r} has no prompt")
            template = inputs.prompts[key] if inputs.prompts is not None else prompt
            if template is not None:
                try:
                    check_template(template)
                except DataError as exc:
                    raise DataError(f"utterance {key!r}: {exc}") from None
            inputs.audio.probe(key)
        except DataError as exc:
            bad[key] = str(exc)
    return bad


def split_windows(wave: np.ndarray, window: int, min_tail: int = 1600) -> list[np.ndarray]:
    """Consecutive windows of at most ``window`` samples.

    A final piece shorter than ``min_tail`` samples (0.1 s at 16 kHz: under 3 audio tokens) is
    dropped, unless it is the only piece.
    """
    if len(wave) <= window:
        return [wave]
    clips = [wave[i : i + window] for i in range(0, len(wave), window)]
    if len(clips) > 1 and len(clips[-1]) < min_tail:
        clips = clips[:-1]
    return clips


def read_keys(path: str | Path) -> list[str]:
    """The first column of a key file (a wav.scp split, or a plain list)."""
    return list(read_key_value(path))


def batched(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@dataclass
class Inputs:
    """Where the data comes from: the reader for each name of --data_path_and_name_and_type."""

    audio: AudioReader
    prompts: dict[str, str] | None


def resolve_inputs(
    data_path_and_name_and_type: Sequence[str], sampling_rate: int = 16000, max_audio_seconds: float = 3600.0
) -> Inputs:
    """Parse ``path,name,type`` triples: a ``sound`` (wav.scp), optional ``segments``, ``text`` prompts.

    ``sampling_rate`` is what the audio is resampled to when read; checking the data
    (:func:`check_entries`) does not need it, so it may be set on ``inputs.audio`` once the
    model's processor is known."""
    sound, segments, prompts = None, None, None
    for triple in data_path_and_name_and_type:
        parts = triple.split(",")
        if len(parts) != 3:
            raise DataError(f"--data_path_and_name_and_type {triple!r}: want path,name,type")
        path, name, kind = parts
        if kind in ("sound", "kaldi_ark", "pipe"):
            sound = path
        elif kind == "segments":
            segments = path
        elif kind == "text" and name == "prompt":
            prompts = read_key_value(path, allow_empty_value=False)
        else:
            raise DataError(f"--data_path_and_name_and_type {triple!r}: unknown name/type {name}/{kind}")
    if sound is None:
        raise DataError("--data_path_and_name_and_type needs a wav.scp entry of type sound")
    if segments is None and (Path(sound).parent / "segments").is_file():
        segments = str(Path(sound).parent / "segments")
    reader = AudioReader(sound, segments, sampling_rate=sampling_rate, max_seconds=max_audio_seconds)
    return Inputs(reader, prompts)
