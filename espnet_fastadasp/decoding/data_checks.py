"""The checks of a Kaldi data dir: every rule of Kaldi's ``utils/validate_data_dir.sh --no-feats``
(with ``utils/validate_text.pl``), plus what decoding here needs.

Why Kaldi's rules and not a looser set: our data dirs are read by Kaldi's and ESPnet's own tools
(``fix_data_dir.sh``, ``copy_data_dir.sh``, ``split_data.sh``, sclite scoring by speaker), which
assume them. Kaldi's rules, as its script applies them (``LC_ALL=C``):

* ``utt2spk`` and ``spk2utt`` exist and are not empty; ``utt2spk`` has two fields a line.
* Every file checked below ends each line with a newline, and its keys (first fields) are sorted
  bytewise and unique (``sort -uC``).
* ``utt2spk`` is also sorted when sorted on the speaker (``sort -k2 -C``): the reason Kaldi wants
  speaker ids to be prefixes of utterance ids.
* ``spk2utt`` expanded line by line is exactly ``utt2spk``.
* ``text`` exists, has no non-printable characters, is valid as ``validate_text.pl`` says (no
  carriage return, no whitespace but TAB and SPACE), no ``<s>``, ``</s>`` or ``#0`` as a word, and
  lists exactly the utterances of ``utt2spk``, in order.
* ``wav.scp`` exists, has no ``~`` path; without ``segments`` it lists the utterances of
  ``utt2spk``; with ``segments`` (4 fields, end > start, the same utterances) it lists exactly the
  recordings the segments name.
* The optional files (``reco2file_and_channel``, ``feats.scp``, ``cmvn.scp``, ``spk2gender``,
  ``spk2warp``, ``utt2warp``, ``vad.scp``, ``utt2lang``, ``utt2uniq``, ``utt2dur``,
  ``utt2num_frames``, ``reco2dur``) are checked for their format and key lists when present.
* One speaker only is a warning.

Ours, on top: every file is UTF-8 without carriage returns; ``prompt`` follows the rules of a key
file, lists the utterances and carries ``{audio}`` exactly once; other per-utterance text files
(``text.*``) list the utterances; plain-file audio sources exist.

Every problem is reported (not just the first), each naming its file and line.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from espnet_fastadasp.decoding.data import AUDIO_PLACEHOLDER

#: shown per problem kind before "... and N more"
MAX_SHOWN = 5
_FIRST_FIELD = re.compile(r"[ \t]*[^ \t]*")
_ILLEGAL_WORD = re.compile(r"(?<!\w)(<s>|</s>|#0)(?!\w)")
#: files with one line per utterance, keys = utterances (Kaldi's names and ours)
PER_UTT_FILES = ("feats.scp", "utt2warp", "vad.scp", "utt2lang", "utt2uniq", "utt2dur", "utt2num_frames", "prompt")
#: files with one line per speaker
PER_SPK_FILES = ("cmvn.scp", "spk2gender", "spk2warp")


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.message}"


@dataclass
class DataDirReport:
    """What :func:`check_data_dir` found: problems (the dir is unusable) and warnings."""

    data_dir: Path
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    num_utts: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, path: Path, line: int | None, message: str) -> None:
        self.problems.append(Problem(path, line, message))

    def add_many(self, path: Path, items: Sequence[tuple[int | None, str]], what: str) -> None:
        """One problem per item, at most :data:`MAX_SHOWN`, then a count of the rest."""
        for line, message in items[:MAX_SHOWN]:
            self.add(path, line, message)
        if len(items) > MAX_SHOWN:
            self.add(path, None, f"... and {len(items) - MAX_SHOWN} more {what}")


@dataclass(frozen=True)
class Lines:
    """A file's lines (without their newlines), as Kaldi's tools see them."""

    path: Path
    lines: list[str]

    def fields(self) -> list[list[str]]:
        return [line.split() for line in self.lines]

    def keys(self) -> list[str]:
        return [(f[0] if f else "") for f in self.fields()]


def read_lines(path: Path, report: DataDirReport) -> Lines | None:
    """The lines of ``path``; its encoding, newlines and carriage returns are checked here."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        report.add(path, raw.count(b"\n", 0, exc.start) + 1, f"not UTF-8 (byte 0x{raw[exc.start]:02x})")
        return None
    if text and not text.endswith("\n"):
        report.add(path, text.count("\n") + 1, "the last line has no newline")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    crlf = [
        (i, "carriage return (CR, 0x0D): DOS line endings? (dos2unix)")
        for i, line in enumerate(lines, 1)
        if "\r" in line
    ]
    report.add_many(path, crlf, "lines with a carriage return")
    return Lines(path, lines)


def check_sorted_unique(lines: Lines, report: DataDirReport) -> None:
    """Kaldi's ``check_sorted_and_uniq``: keys in bytewise (``LC_ALL=C``) order, each once."""
    keys = lines.keys()
    bad = []
    for i in range(1, len(keys)):
        if keys[i] == keys[i - 1]:
            bad.append((i + 1, f"duplicate key {keys[i]!r}"))
        elif _c_order(keys[i]) < _c_order(keys[i - 1]):
            bad.append((i + 1, f"not sorted: {keys[i]!r} after {keys[i - 1]!r} (sort with LC_ALL=C)"))
    report.add_many(lines.path, bad, "unsorted or duplicate keys")


def _c_order(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def check_same_keys(lines: Lines, expected: Sequence[str], what: str, report: DataDirReport) -> None:
    """The keys of ``lines`` are exactly ``expected``, in the same order (Kaldi compares lists)."""
    keys = lines.keys()
    if keys == list(expected):
        return
    have, want = set(keys), set(expected)
    missing = [k for k in expected if k not in have]
    extra = [k for k in keys if k not in want]
    if missing:
        report.add(lines.path, None, f"{len(missing)} {what} missing, e.g. {_show(missing)}")
    if extra:
        line = keys.index(extra[0]) + 1
        report.add(lines.path, line, f"{len(extra)} key(s) that are not {what}, e.g. {_show(extra)}")
    if not missing and not extra:
        first = next(i for i, (a, b) in enumerate(zip(keys, expected, strict=False)) if a != b)
        report.add(lines.path, first + 1, f"{what} in another order than expected ({keys[first]!r})")


def _show(items: Sequence[str]) -> str:
    return ", ".join(items[:MAX_SHOWN]) + (", ..." if len(items) > MAX_SHOWN else "")


def check_fields(lines: Lines, ok: Callable[[list[str]], bool], want: str, report: DataDirReport) -> None:
    bad = [
        (i, f"bad line {line!r} (want {want})")
        for i, (line, f) in enumerate(zip(lines.lines, lines.fields(), strict=True), 1)
        if not ok(f)
    ]
    report.add_many(lines.path, bad, "bad lines")


def check_utt2spk(utt2spk: Lines, spk2utt: Lines, report: DataDirReport, spk_sort: bool = True) -> None:
    check_fields(utt2spk, lambda f: len(f) == 2, "<utt> <speaker>", report)
    check_sorted_unique(utt2spk, report)
    if spk_sort:
        for i in range(1, len(utt2spk.lines)):
            if _speaker_order(utt2spk.lines[i]) < _speaker_order(utt2spk.lines[i - 1]):
                report.add(
                    utt2spk.path,
                    i + 1,
                    "utt2spk is not in sorted order when sorted first on speaker-id (Kaldi: fix this by making "
                    f"speaker-ids prefixes of utt-ids): {utt2spk.lines[i]!r} after {utt2spk.lines[i - 1]!r}",
                )
                break
    check_sorted_unique(spk2utt, report)
    expanded = [f"{utt} {f[0]}" for f in spk2utt.fields() if f for utt in f[1:]]
    pairs = [" ".join(f[:2]) for f in utt2spk.fields()]
    if expanded != pairs:
        first = next(
            (i for i, (a, b) in enumerate(zip(pairs, expanded, strict=False)) if a != b), min(len(pairs), len(expanded))
        )
        report.add(
            spk2utt.path,
            None,
            f"spk2utt and utt2spk do not match (from utt2spk line {first + 1}; "
            "rebuild it with utils/utt2spk_to_spk2utt.pl)",
        )


def _speaker_order(line: str) -> tuple[bytes, bytes]:
    """``sort -k2``'s key (from the blank before field 2 to the end) then the whole line."""
    rest = line[_FIRST_FIELD.match(line).end() :]
    return _c_order(rest), _c_order(line)


def _non_printable(ch: str) -> bool:
    """Not ``[:print:]`` nor ``[:space:]`` in C.UTF-8: control, line/paragraph separators, unassigned."""
    if ch.isspace():
        return False
    return unicodedata.category(ch) in ("Cc", "Zl", "Zp", "Cn", "Cs")


def check_text(text: Lines, report: DataDirReport) -> None:
    """Kaldi's checks of ``text`` (validate_data_dir.sh's and validate_text.pl's)."""
    if not text.lines:
        report.add(text.path, None, "empty file")
    bad_print = [
        (i, f"non-printable character U+{ord(c):04X}")
        for i, line in enumerate(text.lines, 1)
        for c in line
        if _non_printable(c)
    ]
    report.add_many(text.path, bad_print, "non-printable characters")
    bad_space = [
        (i, f"disallowed whitespace U+{ord(c):04X} (only TAB and SPACE)")
        for i, line in enumerate(text.lines, 1)
        for c in line
        if c.isspace() and c not in "\t \r"  # CR has its own message (read_lines)
    ]
    report.add_many(text.path, bad_space, "disallowed whitespace")
    illegal = [
        (i, f"illegal symbol {m.group(1)!r}")
        for i, line in enumerate(text.lines, 1)
        for m in _ILLEGAL_WORD.finditer(line)
    ]
    report.add_many(text.path, illegal, "illegal symbols")
    check_sorted_unique(text, report)


def check_wav_and_segments(d: Path, utts: list[str], report: DataDirReport) -> list[str] | None:
    """wav.scp and segments; returns the recording ids (None when there are no segments)."""
    wav = read_lines(d / "wav.scp", report) if (d / "wav.scp").is_file() else None
    has_segments = (d / "segments").is_file()
    if wav is None:
        if not (d / "wav.scp").is_file():
            report.add(d / "wav.scp", None, "no such file" + (" (segments exists)" if has_segments else ""))
        return None
    check_sorted_unique(wav, report)
    tilde = [
        (i, "do not use ~ in wav.scp (fopen does no tilde expansion)")
        for i, f in enumerate(wav.fields(), 1)
        if len(f) > 1 and f[1].startswith("~")
    ]
    report.add_many(wav.path, tilde, "lines with ~")
    no_value = [(i, f"no audio source for {f[0]!r}") for i, f in enumerate(wav.fields(), 1) if len(f) == 1]
    report.add_many(wav.path, no_value, "lines without a source")
    if not has_segments:
        check_same_keys(wav, utts, "utterances of utt2spk", report)
        return None
    seg = read_lines(d / "segments", report)
    if seg is None:
        return None
    check_sorted_unique(seg, report)
    check_fields(seg, _good_segment, "<utt> <recording> <start> <end> with end > start", report)
    check_same_keys(seg, utts, "utterances of utt2spk", report)
    recordings = sorted({f[1] for f in seg.fields() if len(f) > 1}, key=_c_order)
    check_same_keys(wav, recordings, "recordings of segments", report)
    return recordings


def _good_segment(f: list[str]) -> bool:
    if len(f) != 4:
        return False
    try:
        return float(f[3]) > float(f[2])
    except ValueError:
        return False


def _positive(value: str, integer: bool = False) -> bool:
    try:
        x = float(value)
    except ValueError:
        return False
    return x > 0 and (not integer or x == int(x))


def check_optional_files(
    d: Path, utts: list[str], speakers: list[str], recordings: list[str] | None, report: DataDirReport
) -> None:
    formats: dict[str, tuple[Callable[[list[str]], bool], str]] = {
        "spk2gender": (lambda f: len(f) == 2 and f[1] in ("m", "f"), "<speaker> m|f"),
        "spk2warp": (lambda f: len(f) == 2 and _positive(f[1]) and 0.5 < float(f[1]) < 1.5, "<speaker> 0.5..1.5"),
        "utt2warp": (lambda f: len(f) == 2 and _positive(f[1]) and 0.5 < float(f[1]) < 1.5, "<utt> 0.5..1.5"),
        "utt2dur": (lambda f: len(f) == 2 and _positive(f[1]), "<utt> <seconds > 0>"),
        "utt2num_frames": (lambda f: len(f) == 2 and _positive(f[1], integer=True), "<utt> <frames, integer > 0>"),
        "reco2dur": (lambda f: len(f) == 2 and _positive(f[1]), "<recording> <seconds > 0>"),
        "reco2file_and_channel": (lambda f: len(f) == 3 and f[2] in ("A", "B", "1"), "<recording> <file> A|B"),
    }
    for name in (*PER_UTT_FILES, *PER_SPK_FILES, "reco2dur", "reco2file_and_channel"):
        if not (d / name).is_file() or name == "prompt":
            continue
        lines = read_lines(d / name, report)
        if lines is None:
            continue
        check_sorted_unique(lines, report)
        if name in formats:
            check_fields(lines, *formats[name], report)
        if name in PER_SPK_FILES:
            check_same_keys(lines, speakers, "speakers of spk2utt", report)
        elif name in ("reco2dur", "reco2file_and_channel"):
            check_same_keys(lines, recordings if recordings is not None else utts, "recordings", report)
        else:
            check_same_keys(lines, utts, "utterances of utt2spk", report)
    r2fc = d / "reco2file_and_channel"
    if r2fc.is_file() and any(line.split()[2:3] == ["1"] for line in r2fc.read_text(errors="replace").splitlines()):
        report.warnings.append(Problem(r2fc, None, "the channel should be marked as A or B, not 1"))


def check_prompt(prompt: Lines, utts: list[str], report: DataDirReport) -> None:
    check_sorted_unique(prompt, report)
    check_same_keys(prompt, utts, "utterances of utt2spk", report)
    counts = [
        (i, line.count(AUDIO_PLACEHOLDER), k)
        for i, (line, k) in enumerate(zip(prompt.lines, prompt.keys(), strict=True), 1)
    ]
    report.add_many(
        prompt.path,
        [(i, f"no {AUDIO_PLACEHOLDER} placeholder for {k}") for i, n, k in counts if n == 0],
        "prompts without the placeholder",
    )
    report.add_many(
        prompt.path,
        [(i, f"{AUDIO_PLACEHOLDER} more than once for {k} (want one)") for i, n, k in counts if n > 1],
        "prompts with several placeholders",
    )


def check_audio_files(d: Path, report: DataDirReport) -> None:
    """Plain-file sources of wav.scp exist (pipes and ark offsets are checked when read)."""
    wav = d / "wav.scp"
    if not wav.is_file():
        return
    absent = []
    for i, line in enumerate(wav.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        parts = line.split(maxsplit=1)
        if len(parts) < 2:
            continue
        src = parts[1].strip()
        if not src.endswith("|") and ":" not in src and not Path(src).is_file():
            absent.append((i, f"audio file of {parts[0]!r} does not exist: {src}"))
    report.add_many(wav, absent, "missing audio files")


def check_data_dir(
    data_dir: str | Path, spk_sort: bool = True, need_prompt: bool = True, check_audio: bool = True
) -> DataDirReport:
    """All checks of a data dir (see the module docstring); nothing is raised, everything reported."""
    d = Path(data_dir)
    report = DataDirReport(d)
    if not d.is_dir():
        report.add(d, None, "no such directory")
        return report
    for name in ("utt2spk", "spk2utt"):
        if not (d / name).is_file():
            report.add(
                d / name,
                None,
                "no such file"
                + (" (make it: utils/utt2spk_to_spk2utt.pl utt2spk > spk2utt)" if name == "spk2utt" else ""),
            )
        elif (d / name).stat().st_size == 0:
            report.add(d / name, None, "empty file")
    if not report.ok:
        return report
    utt2spk, spk2utt = read_lines(d / "utt2spk", report), read_lines(d / "spk2utt", report)
    if utt2spk is None or spk2utt is None:
        return report
    check_utt2spk(utt2spk, spk2utt, report, spk_sort=spk_sort)
    utts = utt2spk.keys()
    speakers = spk2utt.keys()
    report.num_utts = len(utts)
    if len(speakers) == 1:
        report.warnings.append(Problem(d / "spk2utt", None, "only one speaker (Kaldi: probably a bad idea)"))
    text = read_lines(d / "text", report) if (d / "text").is_file() else None
    if text is None:
        if not (d / "text").is_file():
            report.add(d / "text", None, "no such file")
    else:
        check_text(text, report)
        check_same_keys(text, utts, "utterances of utt2spk", report)
    recordings = check_wav_and_segments(d, utts, report)
    check_optional_files(d, utts, speakers, recordings, report)
    for extra in _per_utt_text_files(d):
        lines = read_lines(extra, report)
        if lines is not None:
            check_sorted_unique(lines, report)
            check_same_keys(lines, utts, "utterances of utt2spk", report)
    if need_prompt:
        if not (d / "prompt").is_file():
            report.add(d / "prompt", None, "no such file (one '<utt> <prompt with {audio}>' line per utterance)")
        else:
            prompt = read_lines(d / "prompt", report)
            if prompt is not None:
                check_prompt(prompt, utts, report)
    if check_audio:
        check_audio_files(d, report)
    return report


def _per_utt_text_files(d: Path) -> Iterable[Path]:
    return sorted(p for p in d.glob("text.*") if p.is_file())
