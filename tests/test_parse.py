"""The parser: well-formed programs round-trip; every kind of bad input is a VMError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import prospero_jax as pj

GOOD = """# a comment
x var-x

y var-y
c const -0.5
s add x y
   # indented comment
r max s c"""


def test_parse_reads_ids_opcodes_args_and_constants() -> None:
    p = pj.parse(GOOD)
    assert p.ids == ("x", "y", "c", "s", "r")
    assert [pj.OPS[c].name for c in p.opcodes] == ["var-x", "var-y", "const", "add", "max"]
    assert p.args.tolist() == [[-1, -1], [-1, -1], [-1, -1], [0, 1], [3, 2]]
    assert p.consts.tolist() == [0.0, 0.0, -0.5, 0.0, 0.0]


def test_program_round_trips_through_vm_text(prospero: pj.Program) -> None:
    again = pj.parse(prospero.to_vm())
    assert again == prospero
    assert again.ids == prospero.ids
    np.testing.assert_array_equal(again.consts, prospero.consts)


def test_prospero_has_the_documented_shape(prospero: pj.Program) -> None:
    assert len(prospero) == 7866
    assert prospero.histogram()["const"] == 1406
    assert not prospero.uses_z


def test_program_arrays_are_immutable(quarter: pj.Program) -> None:
    with pytest.raises(ValueError, match="read-only"):
        quarter.consts[0] = 1.0


# (text, line, message fragment): one case per kind of malformed input.
BAD = {
    "unknown opcode": ("x var-x\ny frobnicate x", 2, "unknown opcode 'frobnicate'"),
    "too few arguments": ("x var-x\ny add x", 2, "'add' takes 2 arguments, got 1"),
    "too many arguments": ("x var-x\ny neg x x", 2, "'neg' takes 1 argument, got 2"),
    "argument to an input": ("x var-x y", 1, "'var-x' takes 0 arguments, got 1"),
    "undefined argument": ("x var-x\ny add x z", 2, "argument 'z' is not defined on an earlier"),
    "forward reference": ("y neg x\nx var-x", 1, "argument 'x' is not defined on an earlier"),
    "self reference": ("x var-x\ny add y x", 2, "argument 'y' is not defined"),
    "duplicate id": ("x var-x\nx var-y", 2, "duplicate ID 'x' (first defined on line 1)"),
    "bad constant": ("c const 1.2.3", 1, "constant '1.2.3' is not a number"),
    "infinite constant": ("c const inf", 1, "constant 'inf' is not finite"),
    "nan constant": ("c const nan", 1, "constant 'nan' is not finite"),
    "overflowing constant": ("c const 1e999", 1, "constant '1e999' is not finite"),
    "constant without value": ("c const", 1, "'const' takes 1 number, got 0"),
    "missing opcode": ("x var-x\nlonely", 2, "expected 'ID OPCODE ARG...'"),
    "empty program": ("# only a comment\n\n", None, "empty program"),
    "nul bytes": ("x var-x\x00", None, "not a text file"),
}


@pytest.mark.parametrize("kind", BAD)
def test_bad_program_is_a_vm_error_naming_the_line(kind: str) -> None:
    text, line, fragment = BAD[kind]
    with pytest.raises(pj.VMError) as err:
        pj.parse(text, source="bad.vm")
    assert err.value.line == line
    assert fragment in str(err.value)
    assert str(err.value).startswith(f"bad.vm:{line}: " if line else "bad.vm: ")


def test_load_rejects_missing_binary_and_directory(tmp_path: Path) -> None:
    with pytest.raises(pj.VMError, match="no such file"):
        pj.load(tmp_path / "absent.vm")
    binary = tmp_path / "binary.vm"
    binary.write_bytes(b"x var-x\n\xff\xfe junk")
    with pytest.raises(pj.VMError, match=r"binary.vm:2: not a text file \(invalid UTF-8"):
        pj.load(binary)
    with pytest.raises(pj.VMError, match="is a directory"):
        pj.load(tmp_path)
