"""bin/demo.py, the README's main job: every method runs and the table says what it promises."""

from __future__ import annotations

from espnet_fastadasp.bin import demo
from espnet_fastadasp.core.config import METHODS


def test_demo_table(tmp_path, capsys):
    demo.main(["--checkpoint", str(tmp_path / "ckpt"), "--max_new_tokens", "4"])
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.split() and line.split()[0] in METHODS]
    assert [r[0] for r in rows] == [m for m in METHODS for _ in (range(3) if m == "fastadasp" else range(1))]
    by_name = {(r[0], r[1]): r for r in rows}
    none = by_name[("none", "constant")]
    assert none[2] == none[4] and none[5:] == ["0.0%", "0.0%", "True", "True"]
    for r in rows:
        assert r[-1] == "True", f"{r[0]}/{r[1]}: the shared-prompt beam search differs from plain generate"
        if r[0] not in ("none", "h2o"):
            assert int(r[4]) < int(r[2]) and 25.0 <= float(r[5].rstrip("%")) <= 35.0  # target 30 %
    assert by_name[("h2o", "constant")][5] == "0.0%"  # h2o evicts cache entries, not prefill FLOPs
    assert (tmp_path / "ckpt" / "config.json").is_file() and "checkpoint:" in out
