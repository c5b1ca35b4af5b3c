"""Reading Kaldi-style ``text`` files and pairing references with hypotheses by key.

Every scorer (:mod:`~espnet_fastadasp.evaluation.wer`, :mod:`~espnet_fastadasp.evaluation.bleu`,
:mod:`~espnet_fastadasp.evaluation.classification`) starts from the same two ``{key: value}``
dicts and must treat a partial decode the same way, so reading and key matching live here once.

All inputs are Kaldi-style ``text`` files, one ``<key> <value>`` per line (see :func:`read_text`),
read into ``dict[key, value]``. References and hypotheses are paired by key in reference order.

Key matching (all tasks)
    Every hypothesis key must be a reference key, otherwise :class:`ValueError` naming the extra
    keys. Every reference key must have a hypothesis, otherwise :class:`ValueError` naming how many
    are missing and the first few keys, because a partial decode must never be scored silently. With
    ``allow_missing=True`` missing hypotheses are scored as empty strings (they then count as
    deletions / a wrong label) and ``num_missing`` records how many there were.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

#: the name these messages had before scoring.py was split (log formats show it)
logger = logging.getLogger("espnet_fastadasp.evaluation.scoring")

_MAX_KEYS_SHOWN = 5


def read_text(path: str | Path) -> dict[str, str]:
    """Read a Kaldi-style ``<key> <value>`` file into an ordered dict.

    The key is the first whitespace-separated field, the value the rest of the line with outer
    whitespace stripped (it may be empty or contain spaces). Blank lines are ignored.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file cannot be read as UTF-8 text, or a key occurs twice.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text file not found (or not a regular file): {path}")
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read text file {path}: {e}") from e
    out: dict[str, str] = {}
    for lineno, line in enumerate(content.splitlines(), start=1):
        parts = line.strip().split(maxsplit=1)
        if not parts:
            continue
        key = parts[0]
        value = parts[1] if len(parts) > 1 else ""
        if key in out:
            raise ValueError(f"duplicate key {key!r} in {path} (line {lineno})")
        out[key] = value
    logger.debug("read %d entries from %s", len(out), path)
    return out


def _show(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_MAX_KEYS_SHOWN])
    return shown + (", ..." if len(keys) > _MAX_KEYS_SHOWN else "")


def pair_refs_hyps(
    refs: Mapping[str, str], hyps: Mapping[str, str], allow_missing: bool = False
) -> tuple[list[str], list[str], list[str], int]:
    """Pair references and hypotheses by key, in reference order.

    Returns:
        ``(keys, ref_values, hyp_values, num_missing)``.

    Raises:
        ValueError: no references; hypothesis keys absent from the references; reference keys
            without a hypothesis (unless ``allow_missing``, which scores them as empty).
    """
    if not refs:
        raise ValueError("no references to score")
    extra = [k for k in hyps if k not in refs]
    if extra:
        raise ValueError(f"{len(extra)} hypothesis key(s) not in the references: {_show(extra)}")
    missing = [k for k in refs if k not in hyps]
    if missing:
        msg = f"{len(missing)} of {len(refs)} reference key(s) have no hypothesis: {_show(missing)}"
        if not allow_missing:
            raise ValueError(msg + " (partial decode? use allow_missing to score them as empty)")
        logger.warning("%s; scoring them as empty hypotheses", msg)
    keys = list(refs)
    return keys, [refs[k] for k in keys], [hyps.get(k, "") for k in keys], len(missing)
