"""scripts/jpeg_pack.py: the GPU kit's lossless pack of a zip of JPEG files."""

import io
import lzma
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import jpeg_pack  # noqa: E402


def _jpeg(seed: int, quality: int = 90, size: int = 32) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _zip(path: Path) -> list[tuple[str, bytes, tuple]]:
    """A zip like the datasets': a folder entry, JPEGs of two encoder settings, a text file."""
    members = [("data/", b"", (2020, 1, 1, 0, 0, 0))]
    members += [(f"data/train/c{i % 2}/{i:04d}.jpg", _jpeg(i), (2021, 2, 3, 4, 5, 6 + 2 * (i % 3))) for i in range(12)]
    members += [("data/test/c0/0000.jpg", _jpeg(99, quality=50, size=16), (2022, 1, 1, 0, 0, 0)),
                ("data/README.md", b"not a JPEG\n", (2023, 5, 6, 7, 8, 10))]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data, date_time in members:
            archive.writestr(zipfile.ZipInfo(name, date_time=date_time), data)
    return members


def test_pack_then_unpack_gives_every_member_back_byte_for_byte_with_its_name_and_date(tmp_path):
    members = _zip(tmp_path / "set.zip")
    summary = jpeg_pack.pack(tmp_path / "set.zip", tmp_path / "set.jpack")
    assert summary["members"] == len(members)
    assert len(summary["headers"]) == 2  # one per encoder setting, stored once
    assert jpeg_pack.unpack(tmp_path / "set.jpack", tmp_path / "back.zip") == len(members)
    with zipfile.ZipFile(tmp_path / "back.zip") as archive:
        infos = archive.infolist()
        assert [i.filename for i in infos] == [m[0] for m in members]
        assert [archive.read(i) for i in infos] == [m[1] for m in members]
        assert [i.date_time for i in infos] == [m[2] for m in members]
        assert archive.testzip() is None
    assert not (tmp_path / "back.zip.partial").exists()


def test_the_shared_header_is_stored_once_so_the_pack_is_smaller_than_the_bodies_and_headers(tmp_path):
    _zip(tmp_path / "set.zip")
    jpeg_pack.pack(tmp_path / "set.zip", tmp_path / "set.jpack")
    with lzma.open(tmp_path / "set.jpack") as stream:
        (length,) = struct.unpack("<Q", stream.read(8))
        stream.read(length)
        bodies = stream.read()
    header, body = jpeg_pack.split_jpeg(_jpeg(0))
    assert header and body.startswith(b"\xff\xda") and len(header) > 300
    assert body in bodies and header not in bodies


def test_a_pack_whose_contents_changed_is_refused_and_writes_no_zip(tmp_path):
    _zip(tmp_path / "set.zip")
    jpeg_pack.pack(tmp_path / "set.zip", tmp_path / "set.jpack")
    with lzma.open(tmp_path / "set.jpack") as stream:
        raw = bytearray(stream.read())
    raw[-20] ^= 0xFF  # one byte of the last JPEG's scan
    with lzma.open(tmp_path / "bad.jpack", "wb") as out:
        out.write(bytes(raw))
    with pytest.raises(ValueError, match="do not match the pack's digest"):
        jpeg_pack.unpack(tmp_path / "bad.jpack", tmp_path / "back.zip")
    assert not (tmp_path / "back.zip").exists() and not (tmp_path / "back.zip.partial").exists()

    with lzma.open(tmp_path / "short.jpack", "wb") as out:
        out.write(bytes(raw[:-100]))
    with pytest.raises(ValueError, match="truncated"):
        jpeg_pack.unpack(tmp_path / "short.jpack", tmp_path / "back.zip")


def test_the_command_line_packs_unpacks_and_names_a_missing_source(tmp_path, capsys):
    _zip(tmp_path / "set.zip")
    assert jpeg_pack.main(["pack", str(tmp_path / "set.zip"), str(tmp_path / "set.jpack")]) == 0
    assert jpeg_pack.main(["unpack", str(tmp_path / "set.jpack"), str(tmp_path / "back.zip")]) == 0
    assert '"members": 15' in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        jpeg_pack.main(["unpack", str(tmp_path / "nothing.jpack"), str(tmp_path / "x.zip")])
    assert exit_info.value.code == 2
    assert "nothing.jpack does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x.zip").exists()
    (tmp_path / "plain.jpack").write_bytes(b"PK\x03\x04 a zip, not a pack")
    with pytest.raises(ValueError, match="is not a jpeg-pack-1 file"):
        jpeg_pack.unpack(tmp_path / "plain.jpack", tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists()
