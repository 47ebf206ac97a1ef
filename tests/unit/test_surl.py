"""LOFAR LTA SURL rewrites (seed-checklist §5.3) for the three sites, and the srmlist consistency rules."""

import pytest

from pilot.masking import mask
from pilot.transfer.surl import (SurlError, check_consistent, clean, convert, obsid_of, path_of, rewrite,
                                 site_of)

SARA = "srm://srm.grid.sara.nl:8443/pnfs/grid.sara.nl/data/lofar/ops/projects/lc2_035/229507/L229507_SB150_uv.dppp.MS_f6fc7fc5.tar"
JUELICH = "srm://lofar-srm.fz-juelich.de:8443/pnfs/fz-juelich.de/data/lofar/ops/projects/lc5_020/L412345/L412345_SB001_uv.MS_abc.tar"
POZNAN = "srm://lta-head.lofar.psnc.pl:8443/lofar/ops/projects/lc7_012/L654321/L654321_SB244_uv.MS_9f.tar"

EXPECTED = {
    "sara": (SARA, "gsiftp://gridftp.grid.sara.nl:2811/pnfs/grid.sara.nl/data/lofar/ops/projects/lc2_035/229507/"
                   "L229507_SB150_uv.dppp.MS_f6fc7fc5.tar",
             "https://lofar-download.grid.sara.nl/lofigrid/SRMFifoGet.py?surl=" + SARA,
             "srm://srm.grid.sara.nl:8443/srm/managerv2?SFN=/pnfs/grid.sara.nl/data/lofar/ops/projects/lc2_035/229507/"
             "L229507_SB150_uv.dppp.MS_f6fc7fc5.tar", "L229507"),
    "juelich": (JUELICH, "gsiftp://dcachepool12.fz-juelich.de:2811/pnfs/fz-juelich.de/data/lofar/ops/projects/lc5_020/"
                         "L412345/L412345_SB001_uv.MS_abc.tar",
                "https://lofar-download.fz-juelich.de/webserver-lofar/SRMFifoGet.py?surl=" + JUELICH,
                "srm://lofar-srm.fz-juelich.de:8443/srm/managerv2?SFN=/pnfs/fz-juelich.de/data/lofar/ops/projects/"
                "lc5_020/L412345/L412345_SB001_uv.MS_abc.tar", "L412345"),
    "poznan": (POZNAN, "gsiftp://gridftp.lofar.psnc.pl:2811/lofar/ops/projects/lc7_012/L654321/L654321_SB244_uv.MS_9f.tar",
               "https://lta-download.lofar.psnc.pl/lofigrid/SRMFifoGet.py?surl=" + POZNAN,
               "srm://lta-head.lofar.psnc.pl:8443/srm/managerv2?SFN=/lofar/ops/projects/lc7_012/L654321/"
               "L654321_SB244_uv.MS_9f.tar", "L654321"),
}


@pytest.mark.parametrize("site", sorted(EXPECTED))
def test_all_forms_of_each_site(site):
    srm, gsiftp, https, gfal, obsid = EXPECTED[site]
    assert site_of(srm).name == site
    assert convert(srm, "gsiftp") == gsiftp
    assert convert(srm, "https") == https
    assert convert(srm, "gfal") == gfal
    assert convert(srm, "srm") == srm
    # and back: every form names the same file, at the same site
    for form in (gsiftp, https, gfal):
        assert site_of(form).name == site
        assert convert(form, "srm") == srm
        assert convert(form, "gfal") == gfal
    assert obsid_of(srm) == obsid


def test_double_slash_paths_are_normalised():
    assert path_of("srm://srm.grid.sara.nl:8443//pnfs/grid.sara.nl/x/L123456_SB000.tar") == \
        "/pnfs/grid.sara.nl/x/L123456_SB000.tar"
    assert convert("srm://lta-head.lofar.psnc.pl:8443//lofar/ops/L123456/f.tar", "gsiftp") == \
        "gsiftp://gridftp.lofar.psnc.pl:2811/lofar/ops/L123456/f.tar"


def test_rewrite_is_for_lofar_srm_only():
    assert rewrite(SARA, "gfal") == EXPECTED["sara"][3]
    assert rewrite(JUELICH, "gsiftp") == EXPECTED["juelich"][1]
    assert rewrite(POZNAN, "https") == EXPECTED["poznan"][2]
    for url in ("root://eos.example.org//data/f", "srm://other.example.org:8443/pnfs/x", EXPECTED["sara"][1],
                "davs://127.0.0.1:1094/f"):
        assert rewrite(url, "gfal") == url
    assert rewrite(SARA, "root") == SARA


def test_non_lofar_url_cannot_be_converted():
    with pytest.raises(SurlError, match="not on a LOFAR LTA site"):
        convert("srm://dcache.example.org:8443/pnfs/x", "gsiftp")
    with pytest.raises(SurlError, match="unknown SURL form"):
        convert(SARA, "ftp")


def test_consistency_obsid_location_duplicates():
    same = [SARA, SARA.replace("SB150", "SB151"), SARA]
    assert check_consistent(same) == same[:2]  # duplicates dropped, order kept
    with pytest.raises(SurlError, match="OBSID L229508"):
        check_consistent([SARA, SARA.replace("L229507_SB150", "L229508_SB150")])
    moved = JUELICH.replace("L412345", "L229507")
    with pytest.raises(SurlError, match="at juelich"):
        check_consistent([SARA, moved])
    assert check_consistent([SARA, moved], check_location=False) == [SARA, moved]
    with pytest.raises(SurlError, match="no OBSID"):
        check_consistent(["srm://srm.grid.sara.nl:8443/pnfs/grid.sara.nl/data/file.tar"])
    # non-LOFAR URLs have neither OBSID nor site: not checked
    assert check_consistent(["file:///tmp/a", SARA]) == ["file:///tmp/a", SARA]


def test_srm_txt_lines_and_masking():
    assert clean(f"  {SARA}   extra-column\n") == SARA
    assert clean("# just text") == "# just text"
    assert mask("https://user:secret@host/db") == "https://***@host/db"
    assert "secret" not in mask("http://a:secret@127.0.0.1:5984/x")
