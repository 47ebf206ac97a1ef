"""Secrets out of what is logged or reported: credentials in URLs (user:password@, and S3 keys in the netloc).

Job secrets, pilotSecrets, tokens and proxies are never logged in the first place (they are fields the code
does not print); this is for text that has to be shown but may carry a credential: URLs.
"""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(://)[^/@\s]*@")


def mask(url: str) -> str:
    """The URL with any user:password@ replaced by ***@, for logs and diagnostics."""
    return _USERINFO.sub(r"\1***@", url)
