"""Writing Kaldi data dirs that Kaldi's own tools accept as they are.

Kaldi sorts everything with ``LC_ALL=C`` and wants ``utt2spk`` sorted by utterance and by speaker
at once, which holds when every utterance id starts with its speaker id
(:func:`speaker_prefixed`, Kaldi's documented way). :func:`write_data_dir` writes the tables
sorted bytewise, derives ``spk2utt`` from ``utt2spk``, and checks the result with
:func:`espnet_fastadasp.decoding.data_checks.check_data_dir`, so a writer can never leave a dir
that ``validate_data_dir.sh`` would refuse.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from espnet_fastadasp.decoding.data import DataError
from espnet_fastadasp.decoding.data_checks import check_data_dir


def speaker_prefixed(utt: str, speaker: str) -> str:
    """``utt`` with ``speaker-`` in front, unless it already starts so (LibriSpeech's ids do).

    sclite's ``-i rm`` takes the speaker of an utterance id up to its first ``-``, so a speaker id
    with a ``-`` in it is refused here: per-speaker scores would be wrong."""
    if "-" in speaker or not speaker or any(c.isspace() for c in speaker):
        raise DataError(f"speaker id {speaker!r} must be non-empty, without '-' or whitespace")
    return utt if utt.startswith(f"{speaker}-") else f"{speaker}-{utt}"


def c_sorted(keys: Sequence[str]) -> list[str]:
    """Bytewise order of UTF-8 (``LC_ALL=C sort``); for ``str`` the same as code point order."""
    return sorted(keys, key=lambda k: k.encode("utf-8"))


def write_data_dir(
    out_dir: str | Path,
    utt2spk: Mapping[str, str],
    tables: Mapping[str, Mapping[str, str]],
    check_audio: bool = True,
) -> Path:
    """Write ``utt2spk``, ``spk2utt`` and every ``tables[name]`` (``{utt: value}``) as ``name``.

    Values are written as they are (a value must be one line); keys must all be in ``utt2spk``.
    Raises :class:`DataError` naming the problems if the result is not a valid Kaldi data dir.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    utts = c_sorted(list(utt2spk))
    for name, table in tables.items():
        extra = sorted(set(table) - set(utt2spk))
        if extra:
            raise DataError(f"{out / name}: keys without a speaker: {', '.join(extra[:5])}")
        bad = [k for k, v in table.items() if "\n" in v or "\r" in v]
        if bad:
            raise DataError(f"{out / name}: multi-line value for {', '.join(bad[:5])}")
    files: dict[str, list[str]] = {"utt2spk": [f"{u} {utt2spk[u]}" for u in utts]}
    spk2utt: dict[str, list[str]] = {}
    for u in utts:
        spk2utt.setdefault(utt2spk[u], []).append(u)
    files["spk2utt"] = [f"{s} {' '.join(spk2utt[s])}" for s in c_sorted(list(spk2utt))]
    for name, table in tables.items():
        files[name] = [f"{u} {table[u]}" if table[u] else u for u in utts if u in table]
    for name, lines in files.items():
        (out / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    report = check_data_dir(out, need_prompt="prompt" in tables, check_audio=check_audio)
    if not report.ok:
        raise DataError(f"{out}: the written data dir is not valid:\n" + "\n".join(map(str, report.problems)))
    return out
