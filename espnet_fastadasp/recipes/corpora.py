"""Readers for the corpora of the recipes, each in its published layout, and the data-dir writer.

* LibriSpeech: ``<root>/<subset>/<spk>/<chapter>/<spk>-<chapter>-<n>.flac`` with
  ``<spk>-<chapter>.trans.txt`` (``UTT TRANSCRIPT`` lines).
* CoVoST 2 (En->De): ``covost_v2.en_de.tsv`` (columns ``path sentence translation client_id
  split``) and the Common Voice English ``clips/`` it points into (mp3 read by soundfile,
  resampled at decoding time).
* IEMOCAP: ``<root>/Session<N>/sentences/wav/<dialog>/<utt>.wav`` with
  ``Session<N>/dialog/EmoEvaluation/<dialog>.txt`` (``[start - end]\\tUTT\\tEMO\\t[v, a, d]``
  lines). The usual 4-class set: neutral, happy (happy + excited), angry, sad.

Every reader returns :class:`Utterance` records; :func:`write_data_dir` writes the Kaldi-style
dir (``wav.scp text utt2spk spk2utt prompt`` plus any extra text fields), valid for Kaldi's tools.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from espnet_fastadasp.decoding.data import DataError
from espnet_fastadasp.recipes.kaldi_dir import speaker_prefixed
from espnet_fastadasp.recipes.kaldi_dir import write_data_dir as write_data_dir_tables

IEMOCAP_4CLASS = {"neu": "neutral", "hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad"}
_IEMOCAP_LINE = re.compile(r"^\[(?P<start>[\d.]+) - (?P<end>[\d.]+)\]\t(?P<utt>\S+)\t(?P<emo>\S+)\t")


@dataclass(frozen=True)
class Utterance:
    key: str
    audio: str  # a wav.scp value: a path, or a command ending in '|'
    text: str  # the reference for the task (transcript, translation or label)
    speaker: str
    extra: dict[str, str] = field(default_factory=dict)  # more text fields, e.g. text.src


def _require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise DataError(f"{what} not found: {path} (set it in db.sh)")


def librispeech(root: str | Path, subset: str) -> list[Utterance]:
    base = Path(root) / subset
    _require_dir(base, f"LibriSpeech subset {subset!r}")
    utts = []
    for trans in sorted(base.glob("*/*/*.trans.txt")):
        for line in trans.read_text().splitlines():
            if not line.strip():
                continue
            key, _, text = line.partition(" ")
            audio = trans.parent / f"{key}.flac"
            if not audio.is_file():
                raise DataError(f"{trans}: audio for {key} missing: {audio}")
            utts.append(Utterance(key, str(audio.resolve()), text.strip(), key.split("-")[0]))
    if not utts:
        raise DataError(f"no transcripts (*.trans.txt) under {base}")
    return utts


def covost2(tsv: str | Path, clips_dir: str | Path, split: str) -> list[Utterance]:
    tsv, clips_dir = Path(tsv), Path(clips_dir)
    if not tsv.is_file():
        raise DataError(f"CoVoST 2 table not found: {tsv} (set COVOST2 in db.sh)")
    _require_dir(clips_dir, "Common Voice clips dir")
    utts = []
    with tsv.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            if row.get("split") != split:
                continue
            audio = clips_dir / row["path"]
            if not audio.is_file():
                raise DataError(f"{tsv}: clip {row['path']} missing in {clips_dir}")
            key = f"{row['client_id'][:16]}-{Path(row['path']).stem}"
            utts.append(
                Utterance(
                    key,
                    str(audio.resolve()),
                    row["translation"].strip(),
                    row["client_id"][:16],
                    {"text.src": row["sentence"].strip()},
                )
            )
    if not utts:
        raise DataError(f"{tsv}: no rows with split={split!r}")
    return utts


def iemocap(root: str | Path, sessions: Iterable[int]) -> list[Utterance]:
    root = Path(root)
    utts = []
    for n in sessions:
        sess = root / f"Session{n}"
        _require_dir(sess, f"IEMOCAP Session{n}")
        for evaluation in sorted((sess / "dialog" / "EmoEvaluation").glob("*.txt")):
            dialog = evaluation.stem
            for line in evaluation.read_text(errors="replace").splitlines():
                m = _IEMOCAP_LINE.match(line)
                if not m or m["emo"] not in IEMOCAP_4CLASS:
                    continue
                audio = sess / "sentences" / "wav" / dialog / f"{m['utt']}.wav"
                if not audio.is_file():
                    raise DataError(f"{evaluation}: audio for {m['utt']} missing: {audio}")
                speaker = m["utt"][:5] + m["utt"].split("_")[-1][0]  # e.g. Ses01F
                utts.append(Utterance(m["utt"], str(audio.resolve()), IEMOCAP_4CLASS[m["emo"]], speaker))
    if not utts:
        raise DataError(f"no 4-class IEMOCAP utterances under {root} sessions {list(sessions)}")
    return utts


def write_data_dir(utts: list[Utterance], out_dir: str | Path, prompt: str) -> Path:
    """Write wav.scp, text, utt2spk, spk2utt and prompt (one template for all, with {audio}) as a
    Kaldi-valid dir: utterance ids get their speaker id in front where they lack it (IEMOCAP's)."""
    if "{audio}" not in prompt:
        raise DataError(f"prompt {prompt!r} has no {{audio}} placeholder")
    if "\n" in prompt:
        raise DataError("a prompt must be one line; write line breaks as \\n")
    keys = [speaker_prefixed(u.key, u.speaker) for u in utts]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise DataError(f"duplicate utterance ids: {', '.join(dup[:5])}")
    tables: dict[str, dict[str, str]] = {"wav.scp": {}, "text": {}, "prompt": {}}
    for n in sorted({n for u in utts for n in u.extra}):
        tables[n] = {}
    for key, u in zip(keys, utts, strict=True):
        tables["wav.scp"][key] = u.audio
        tables["text"][key] = " ".join(u.text.split())
        tables["prompt"][key] = prompt
        for n in tables:
            if n not in ("wav.scp", "text", "prompt"):
                tables[n][key] = " ".join(u.extra.get(n, "").split())
    return write_data_dir_tables(out_dir, {k: u.speaker for k, u in zip(keys, utts, strict=True)}, tables)
