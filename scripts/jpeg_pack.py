"""A lossless, compact form of a zip of small JPEG files, for carrying a dataset where transfers
are capped (the GPU kit: scripts/gpu_bundle.sh packs, scripts/gpu_check.sh unpacks).

A 32x32 CIFAR-10 JPEG is about 920 bytes, of which the first 609 (SOI, JFIF, quantisation and
Huffman tables, frame header: everything before the start-of-scan marker ``FF DA``) are the
same in every file. The pack stores each distinct header once and, per member, the index of its
header and the bytes after it, xz-compressed as one stream:

    pack  = xz( u64 little-endian n | index (n bytes of UTF-8 JSON) | bodies, concatenated )
    index = {"format": "jpeg-pack-1", "headers": [hex, ...], "digest": sha256 hex,
             "members": [[name, header (-1: the member is stored whole), body bytes,
                          [year, month, day, hour, minute, second]], ...]}
    member bytes = headers[header] + body      (body alone where header is -1)

``digest`` is the sha256 over every member's name and bytes, in order
(``name``, ``0x00``, 8-byte little-endian length, bytes), so ``unpack`` proves that each member
it writes is the original, byte for byte. The rebuilt zip holds the same members, in the same
order, with the same names, dates and contents (stored, uncompressed); the zip file itself may
differ in its bookkeeping bytes, which no reader of the members sees.

    python scripts/jpeg_pack.py pack   cifar10-jpeg.zip cifar10-jpeg.zip.jpack
    python scripts/jpeg_pack.py unpack cifar10-jpeg.zip.jpack cifar10-jpeg.zip
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import struct
import sys
import zipfile
from collections.abc import Iterable
from pathlib import Path

FORMAT = "jpeg-pack-1"
START_OF_SCAN = b"\xff\xda"


def add_member(digest: "hashlib._Hash", name: str, data: bytes) -> None:
    """Feed one member to a :func:`content_digest`: name, 0x00, u64 length, bytes."""
    digest.update(name.encode() + b"\x00" + struct.pack("<Q", len(data)) + data)


def content_digest(members: Iterable[tuple[str, bytes]]) -> str:
    """sha256 over (name, 0x00, u64 length, bytes) of every member, in order."""
    digest = hashlib.sha256()
    for name, data in members:
        add_member(digest, name, data)
    return digest.hexdigest()


def split_jpeg(data: bytes) -> tuple[bytes, bytes] | None:
    """(header up to the start-of-scan marker, the rest), or None where ``data`` is not a JPEG."""
    if not data.startswith(b"\xff\xd8"):
        return None
    scan = data.find(START_OF_SCAN)
    return (data[:scan], data[scan:]) if scan > 0 else None


def pack(source: Path, target: Path) -> dict:
    """Write the pack of the zip ``source`` to ``target``; return its index (without the members)."""
    headers: dict[bytes, int] = {}
    members, bodies, originals = [], [], []
    with zipfile.ZipFile(source) as archive:
        for info in archive.infolist():
            data = archive.read(info)
            originals.append((info.filename, data))
            parts = None if info.is_dir() else split_jpeg(data)
            if parts is None:
                header_id, body = -1, data
            else:
                header_id, body = headers.setdefault(parts[0], len(headers)), parts[1]
            members.append([info.filename, header_id, len(body), list(info.date_time)])
            bodies.append(body)
    index = {"format": FORMAT, "headers": [h.hex() for h in headers], "digest": content_digest(originals),
             "members": members}
    encoded = json.dumps(index, separators=(",", ":")).encode()
    with lzma.open(target, "wb", preset=9 | lzma.PRESET_EXTREME) as out:
        out.write(struct.pack("<Q", len(encoded)))
        out.write(encoded)
        for body in bodies:
            out.write(body)
    return {k: v for k, v in index.items() if k != "members"} | {"members": len(members)}


def read_members(packed: Path) -> Iterable[tuple[list, bytes]]:
    """Yield (member entry, the member's original bytes) from a pack, in order."""
    with lzma.open(packed, "rb") as stream:
        try:
            (length,) = struct.unpack("<Q", stream.read(8))
            index = json.loads(stream.read(length))
        except (lzma.LZMAError, EOFError, struct.error, ValueError) as err:
            raise ValueError(f"{packed} is not a {FORMAT} file ({err}): write it with `jpeg_pack.py pack`") from None
        if not isinstance(index, dict) or index.get("format") != FORMAT:
            raise ValueError(f"{packed} is not a {FORMAT} file: write it with `jpeg_pack.py pack`")
        headers = [bytes.fromhex(h) for h in index["headers"]]
        yield index, b""
        for entry in index["members"]:
            _, header_id, size, _ = entry
            body = stream.read(size)
            if len(body) != size:
                raise ValueError(f"{packed} ends inside member {entry[0]}: the file is truncated")
            yield entry, (headers[header_id] + body if header_id >= 0 else body)


def unpack(packed: Path, target: Path) -> int:
    """Rebuild the zip at ``target`` from the pack; check every member against the digest.

    Writes to ``target`` only once the digest matched (a temporary file beside it until then);
    returns the number of members.
    """
    members = read_members(packed)
    index, _ = next(members)
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    count = 0
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as archive:
        for (name, _, _, date_time), data in members:
            add_member(digest, name, data)
            archive.writestr(zipfile.ZipInfo(name, date_time=tuple(date_time)), data)
            count += 1
    if digest.hexdigest() != index["digest"]:
        partial.unlink()
        raise ValueError(f"{packed}: the rebuilt members do not match the pack's digest; pack the source again")
    partial.replace(target)
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, source, target in (("pack", "a zip of JPEG files", "the pack to write"),
                                 ("unpack", "a pack written by `pack`", "the zip to write")):
        command = commands.add_parser(name)
        command.add_argument("source", type=Path, help=source)
        command.add_argument("target", type=Path, help=target)
    args = parser.parse_args(argv)
    if not args.source.is_file():
        parser.error(f"{args.source} does not exist or is not a file")
    if args.command == "pack":
        summary = pack(args.source, args.target)
        print(json.dumps({"packed": str(args.source), "to": str(args.target), "members": summary["members"],
                          "headers": len(summary["headers"]), "bytes": args.target.stat().st_size,
                          "source_bytes": args.source.stat().st_size}))
    else:
        count = unpack(args.source, args.target)
        print(json.dumps({"unpacked": str(args.source), "to": str(args.target), "members": count,
                          "bytes": args.target.stat().st_size}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
