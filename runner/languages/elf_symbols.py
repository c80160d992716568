"""The functions a shared library exports, read from its ELF dynamic symbol table.

Reading the file (instead of loading it) lets the ``solve`` check run on a machine without a
GPU, and needs neither ``nm`` nor a third-party ELF library. Only 64-bit little-endian ELF
(x86-64, aarch64 Linux) is read; anything else gives ``None`` and the caller skips the check.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import List, Optional

SHT_DYNSYM = 11
STT_FUNC, STT_GNU_IFUNC = 2, 10
STB_GLOBAL, STB_WEAK = 1, 2
STV_HIDDEN, STV_INTERNAL = 2, 1
SHN_UNDEF = 0


def exported_functions(path: Path) -> Optional[List[str]]:
    """Names of the functions ``path`` defines and exports (global or weak, visible), or None
    when the file is not a 64-bit little-endian ELF file this reader understands."""
    try:
        data = Path(path).read_bytes()
        return _parse(data)
    except (OSError, struct.error, IndexError, ValueError):
        return None


def _parse(data: bytes) -> Optional[List[str]]:
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:  # ELFCLASS64, ELFDATA2LSB
        return None
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    if shoff == 0 or shentsize < 64:
        return None
    sections = []
    for i in range(shnum):
        (_, sh_type, _, _, sh_offset, sh_size, sh_link, _, _,
         sh_entsize) = struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
        sections.append((sh_type, sh_offset, sh_size, sh_link, sh_entsize))
    names: List[str] = []
    for sh_type, offset, size, link, entsize in sections:
        if sh_type != SHT_DYNSYM or entsize < 24:
            continue
        _, str_offset, str_size, _, _ = sections[link]
        strings = data[str_offset:str_offset + str_size]
        for k in range(size // entsize):
            st_name, st_info, st_other, st_shndx, _, _ = struct.unpack_from(
                "<IBBHQQ", data, offset + k * entsize)
            kind, binding, visibility = st_info & 0xF, st_info >> 4, st_other & 0x3
            if (kind in (STT_FUNC, STT_GNU_IFUNC) and binding in (STB_GLOBAL, STB_WEAK)
                    and visibility not in (STV_HIDDEN, STV_INTERNAL) and st_shndx != SHN_UNDEF):
                end = strings.index(b"\0", st_name)
                names.append(strings[st_name:end].decode("utf-8", errors="replace"))
    return names
