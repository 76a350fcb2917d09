"""The ISA probe record: trusted only for the same CPU claims and compiler, and never
overriding a choice the user made."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from torch._inductor import config
from torch._inductor.cpu_vec_isa import valid_vec_isa_list, x86_isa_checker

from pagefault.compile.vec_isa import RECORD, vec_isa_settled

pytestmark = pytest.mark.skipif(
    not x86_isa_checker() or shutil.which("g++") is None,
    reason="needs an x86 CPU with vector ISAs and a C++ compiler",
)


def test_a_probe_writes_the_record_and_the_next_process_trusts_it(tmp_path: Path) -> None:
    with vec_isa_settled(tmp_path) as how:
        assert how == "probed" and config.cpp.vec_isa_ok is True
    assert config.cpp.vec_isa_ok is None  # restored
    record = json.loads((tmp_path / RECORD).read_text())
    assert record["isas"] == sorted(str(isa) for isa in valid_vec_isa_list())
    with vec_isa_settled(tmp_path) as how:
        assert how == "recorded" and config.cpp.vec_isa_ok is True


@pytest.mark.parametrize("damage", ["compiler", "isas", "garbage"])
def test_a_record_for_another_stack_is_probed_again(tmp_path: Path, damage: str) -> None:
    with vec_isa_settled(tmp_path):
        pass
    path = tmp_path / RECORD
    record = json.loads(path.read_text())
    if damage == "garbage":
        path.write_text("{not json")
    else:
        record[damage] = ["avx9000"] if damage == "isas" else "0" * 64
        path.write_text(json.dumps(record))
    with vec_isa_settled(tmp_path) as how:
        assert how == "probed"
    assert json.loads(path.read_text())["compiler"] != "0" * 64  # rewritten for this stack


def test_a_user_setting_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config.cpp, "vec_isa_ok", False)
    with vec_isa_settled(tmp_path) as how:
        assert how == "inductor" and config.cpp.vec_isa_ok is False
    assert not (tmp_path / RECORD).exists()
