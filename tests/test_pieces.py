"""Piece manifests: hashing, canonical JSON round trip, strict parsing of hostile input."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pagefault.errors import FormatError, NotFound
from pagefault.manifest import (
    BLAKE3,
    PieceHasher,
    PieceManifest,
    hash_piece,
    piece_count,
    piece_matches,
)

PIECE = 16 * 1024
MD5_LIKE = "md5:" + "0" * 64  # an unknown algorithm prefix
SHORT_B3 = "blake3:" + "0" * 63


@given(data=st.binary(max_size=5 * PIECE), splits=st.lists(st.integers(0, 5 * PIECE), max_size=6))
def test_hasher_matches_hashing_each_piece(data: bytes, splits: list[int]) -> None:
    hasher = PieceHasher(PIECE)
    cuts = sorted({0, len(data), *(s for s in splits if s <= len(data))})
    for start, end in itertools.pairwise(cuts):
        hasher.update(data[start:end])
    digest = hasher.finish("f.safetensors")
    expected = [hashlib.sha256(data[i : i + PIECE]).hexdigest() for i in range(0, len(data), PIECE)]
    assert list(digest.pieces) == expected
    assert digest.size == len(data)
    assert len(digest.pieces) == piece_count(len(data), PIECE)


@given(data=st.binary(max_size=3 * PIECE), splits=st.lists(st.integers(0, 3 * PIECE), max_size=4))
def test_blake3_hasher_matches_the_reference_and_records_no_v2_roots(
    data: bytes, splits: list[int]
) -> None:
    hasher = PieceHasher(PIECE, BLAKE3)
    cuts = sorted({0, len(data), *(s for s in splits if s <= len(data))})
    for start, end in itertools.pairwise(cuts):
        hasher.update(data[start:end])
    digest = hasher.finish("f.safetensors")
    pieces = [data[i : i + PIECE] for i in range(0, len(data), PIECE)]
    assert list(digest.pieces) == ["blake3:" + blake3.blake3(p).hexdigest() for p in pieces]
    assert digest.roots == ()
    assert all(piece_matches([p], d) for p, d in zip(pieces, digest.pieces, strict=True))
    if pieces:
        assert not piece_matches([pieces[0] + b"!"], digest.pieces[0])
        manifest = PieceManifest(PIECE, (digest,))
        assert PieceManifest.from_json(manifest.to_json(), name="m.json").algorithm == BLAKE3


def test_round_trip_and_identity() -> None:
    hasher = PieceHasher(PIECE)
    hasher.update(b"x" * (PIECE + 3))
    manifest = PieceManifest(PIECE, (hasher.finish("a.safetensors"),))
    again = PieceManifest.from_json(manifest.to_json(), name="m.json")
    assert again == manifest
    assert again.manifest_id == manifest.manifest_id
    assert again.file("a.safetensors").piece_range(1, PIECE) == (PIECE, PIECE + 3)
    assert hash_piece([b"x" * 3]) == hashlib.sha256(b"xxx").hexdigest()
    with pytest.raises(NotFound, match="b.safetensors"):
        manifest.file("b.safetensors")


def _doc(**changes: object) -> bytes:
    body: dict[str, object] = {
        "format": "pagefault-manifest/1",
        "piece_size": PIECE,
        "files": [{"name": "a.safetensors", "size": 3, "pieces": ["0" * 64]}],
    }
    body.update(changes)
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff", "not valid JSON"),
        (b"[]", "not a piece manifest"),
        (_doc(format="other/1"), "not a piece manifest"),
        (_doc(piece_size=1000), "power of two"),
        (_doc(piece_size=True), "power of two"),
        (_doc(piece_size=1 << 40), "power of two"),
        (_doc(files=[]), "non-empty list"),
        (_doc(files=["x"]), "must be an object"),
        (_doc(files=[{"name": "../x", "size": 3, "pieces": ["0" * 64]}]), "name"),
        (_doc(files=[{"name": "a.safetensors", "size": -1, "pieces": []}]), "non-negative"),
        (_doc(files=[{"name": "a.safetensors", "size": 3, "pieces": []}]), "need 1 piece"),
        (_doc(files=[{"name": "a.safetensors", "size": 3, "pieces": ["G" * 64]}]), "not a digest"),
        (
            _doc(files=[{"name": "a.safetensors", "size": 3, "pieces": ["md5:" + "0" * 64]}]),
            "digest",
        ),
        (
            _doc(files=[{"name": "a.safetensors", "size": 3, "pieces": ["blake3:" + "0" * 63]}]),
            "digest",
        ),
        (
            _doc(
                files=[
                    {"name": "a.safetensors", "size": 3, "pieces": ["0" * 64]},
                    {"name": "b.safetensors", "size": 3, "pieces": ["blake3:" + "0" * 64]},
                ]
            ),
            "mix hash algorithms",
        ),
        (
            _doc(
                files=[
                    {
                        "name": "a.safetensors",
                        "size": 3,
                        "pieces": ["blake3:" + "0" * 64],
                        "roots": ["blake3:" + "0" * 64],
                    }
                ]
            ),
            r"roots\[0\] is not a digest \(64 lowercase hex digits\)",
        ),
        (_doc(files=[{"name": "a.safetensors", "size": 0, "pieces": []}] * 2), "listed twice"),
    ],
)
def test_hostile_manifests_raise_format_error(data: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        PieceManifest.from_json(data, name="m.json")


@given(st.binary(max_size=512))
def test_fuzz_never_raises_untyped(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        PieceManifest.from_json(data, name="m.json")
