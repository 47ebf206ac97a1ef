"""Random identifiers: file GUIDs, trace ids, payload tokens.

Why not `uuid.uuid4()`: importing uuid on Linux imports `platform` (and runs its regexes), some 5 ms of every
pilot's start-up for sixteen random bytes. The strings made here are what uuid4() makes: RFC 4122 version 4.
"""

import os


def new_hex_uuid() -> str:
    """A random RFC 4122 version-4 UUID as 32 lower-case hex digits (as uuid.uuid4().hex)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # variant RFC 4122
    return raw.hex()


def new_uuid() -> str:
    """The same, 8-4-4-4-12 with dashes (as str(uuid.uuid4()))."""
    text = new_hex_uuid()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
