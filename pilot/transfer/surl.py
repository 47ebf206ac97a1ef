"""LOFAR Long Term Archive SURLs: srm:// <-> gsiftp:// / https download / gfal forms, and consistency checks.

LOFAR data sit in the LTA at three dCache sites (SARA Amsterdam, Juelich, Poznan). Tokens list inputs as
``srm://<site-srm>:8443/pnfs/...`` SURLs; grid tools want other forms of the same file: gsiftp:// for
globus-url-copy, an https "SRMFifoGet" download URL for plain HTTP clients, and the full SRM v2 form
``srm://host:8443/srm/managerv2?SFN=/pnfs/...`` for gfal staging and xattr queries. The site is recognised by
host name; the table is the one of GRID_LRT's srmlist (seed-checklist §5.3), written out here as data.

A set of SURLs for one job must all come from one observation (OBSID ``L`` + 6 digits) and one site:
`check_consistent` says which entry breaks that rule. Non-LOFAR URLs pass through `rewrite` unchanged, so the
copytools may call it on every source URL.
"""

from __future__ import annotations

import re
from typing import Iterable, List, Optional, Tuple
from urllib.parse import quote

from ..masking import mask
from ..records import FrozenRecord, frozen_record

OBSID_RE = re.compile(r"(?<![A-Za-z0-9])(L\d{6})(?!\d)")
GFAL_INFIX = "/srm/managerv2?SFN="


@frozen_record
class LtaSite(FrozenRecord):
    name: str
    host_marker: str  # a host containing this belongs to the site
    srm: str  # srm://host:8443
    gsiftp: str  # gsiftp://host:2811
    http: str  # https download service; the srm:// URL is appended


SITES: Tuple[LtaSite, ...] = (
    LtaSite("sara", "grid.sara.nl", "srm://srm.grid.sara.nl:8443", "gsiftp://gridftp.grid.sara.nl:2811",
            "https://lofar-download.grid.sara.nl/lofigrid/SRMFifoGet.py?surl="),
    LtaSite("juelich", "fz-juelich.de", "srm://lofar-srm.fz-juelich.de:8443", "gsiftp://dcachepool12.fz-juelich.de:2811",
            "https://lofar-download.fz-juelich.de/webserver-lofar/SRMFifoGet.py?surl="),
    LtaSite("poznan", "lofar.psnc.pl", "srm://lta-head.lofar.psnc.pl:8443", "gsiftp://gridftp.lofar.psnc.pl:2811",
            "https://lta-download.lofar.psnc.pl/lofigrid/SRMFifoGet.py?surl="),
)

FORMS = ("srm", "gsiftp", "https", "gfal")


class SurlError(ValueError):
    """A SURL that is not a LOFAR LTA SURL, or a list that mixes observations or sites."""


def _host(url: str) -> str:
    rest = url.split("://", 1)[1] if "://" in url else ""
    return rest.split("/", 1)[0].split(":", 1)[0].lower()


def site_of(url: str) -> Optional[LtaSite]:
    """The LTA site a URL (any of the forms) points to, or None for a non-LOFAR URL."""
    url = url.strip()
    if "SRMFifoGet.py?surl=" in url:  # the https form wraps the srm:// URL
        url = url.split("surl=", 1)[1]
    host = _host(url)
    for site in SITES:
        if host == site.host_marker or host.endswith("." + site.host_marker):
            return site
    return None


def obsid_of(url: str) -> Optional[str]:
    """The observation id (``L123456``) in the path, or None."""
    found = OBSID_RE.findall(url)
    return found[-1] if found else None


def path_of(url: str) -> str:
    """The storage path (``/pnfs/...`` or at Poznan ``/lofar/...``) of any form, normalised."""
    url = url.strip()
    if "SRMFifoGet.py?surl=" in url:
        url = url.split("surl=", 1)[1]
    if GFAL_INFIX in url:
        path = url.split(GFAL_INFIX, 1)[1]
    else:
        rest = url.split("://", 1)[1] if "://" in url else url
        path = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    while path.startswith("//"):  # '//pnfs' -> '/pnfs', at Poznan '//lofar' -> '/lofar'
        path = path[1:]
    return path


def clean(line: str) -> str:
    """One line of an srm.txt file: the first field that looks like a URL (lines may carry a second column)."""
    for word in line.split():
        if "://" in word:
            return word
    return line.strip()


def convert(url: str, form: str) -> str:
    """The LOFAR URL `url` in `form` (srm | gsiftp | https | gfal); SurlError if it is not an LTA URL."""
    if form not in FORMS:
        raise SurlError(f"unknown SURL form {form!r} (one of {', '.join(FORMS)})")
    site = site_of(url)
    if site is None:
        raise SurlError(f"{mask(url)[:120]} is not on a LOFAR LTA site ({', '.join(s.name for s in SITES)})")
    path = path_of(url)
    srm = site.srm + path
    if form == "srm":
        return srm
    if form == "gsiftp":
        return site.gsiftp + path
    if form == "gfal":
        return site.srm + GFAL_INFIX + path
    return site.http + quote(srm, safe=":/")


def rewrite(url: str, scheme: str) -> str:
    """For a copytool: a LOFAR srm:// URL in the form a tool speaking `scheme` can use; anything else unchanged.

    `scheme` is what the tool wants (``gsiftp``, ``https``, ``srm``/``gfal``). Only srm:// LTA URLs are
    rewritten: a URL already in another form was chosen on purpose.
    """
    if not url.startswith("srm://") or site_of(url) is None:
        return url
    if scheme in ("srm", "gfal"):
        return convert(url, "gfal")
    if scheme in ("gsiftp", "https"):
        return convert(url, scheme)
    return url


def check_consistent(urls: Iterable[str], check_obsid: bool = True, check_location: bool = True) -> List[str]:
    """The URLs (duplicates dropped, order kept) if all share one OBSID and one LTA site; else SurlError
    naming the first entry that differs. Non-LOFAR URLs are not checked (they have neither)."""
    kept: List[str] = []
    first_obsid: Optional[Tuple[str, str]] = None
    first_site: Optional[Tuple[str, str]] = None
    for url in urls:
        url = clean(url)
        if not url or url in kept:
            continue
        site = site_of(url)
        if site is not None:
            obsid = obsid_of(url)
            if check_obsid:
                if obsid is None:
                    raise SurlError(f"no OBSID (L + 6 digits) in {mask(url)[:160]}")
                if first_obsid is None:
                    first_obsid = (obsid, url)
                elif obsid != first_obsid[0]:
                    raise SurlError(f"OBSID {obsid} of {mask(url)[:160]} differs from {first_obsid[0]} of "
                                    f"{mask(first_obsid[1])[:160]}")
            if check_location:
                if first_site is None:
                    first_site = (site.name, url)
                elif site.name != first_site[0]:
                    raise SurlError(f"{mask(url)[:160]} is at {site.name}, {mask(first_site[1])[:160]} at "
                                    f"{first_site[0]}: one job reads from one LTA site")
        kept.append(url)
    return kept
