"""Random identifiers: file GUIDs, trace ids, payload tokens.

Why not `uuid.uuid4()`: importing uuid on Linux imports `platform` (and runs its regexes), some 5 ms of every
pilot's start-up for sixteen random bytes. The strings made here are what uuid4() makes: RFC 4122 version 4.
"""

import os


def new_uuid() -> str:
    """A random RFC 4122 version-4 UUID, 8-4-4-4-12 lower-case hex (as str(uuid.uuid4()))."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # variant RFC 4122
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def new_hex_uuid() -> str:
    """The same UUID as 32 hex digits without dashes (as uuid.uuid4().hex)."""
    return new_uuid().replace("-", "")
