"""UMLS language codes (MRCONSO ``LAT``) ↔ the ISO 639-1 codes the rest of kbioxlm uses."""

from __future__ import annotations

from ..errors import KbioxlmError
from ..schema import KNOWN_LANGS

# Every LAT value the UMLS Metathesaurus uses (Reference Manual, "Language abbreviations").
LAT_TO_ISO: dict[str, str] = {
    "ENG": "en", "CHI": "zh", "SPA": "es", "FRE": "fr", "GER": "de", "ITA": "it", "JPN": "ja",
    "POR": "pt", "DUT": "nl", "RUS": "ru", "KOR": "ko", "SWE": "sv", "CZE": "cs", "POL": "pl",
    "HUN": "hu", "NOR": "no", "DAN": "da", "FIN": "fi", "TUR": "tr", "GRE": "el", "HEB": "he",
    "ARA": "ar", "EST": "et", "LAV": "lv", "LIT": "lt", "HRV": "hr", "SCR": "hr", "UKR": "uk",
    "BAQ": "eu", "PER": "fa", "SLO": "sk", "SLV": "sl", "ICE": "is", "BUL": "bg", "RUM": "ro",
    "VIE": "vi", "THA": "th", "IND": "id",
}  # fmt: skip
ISO_TO_LAT: dict[str, str] = {}
for _lat, _iso in LAT_TO_ISO.items():
    ISO_TO_LAT.setdefault(_iso, _lat)


def parse_umls_languages(spec: str | None) -> set[str] | None:
    """``"ENG,CHI"`` or ``"en,zh"`` → the set of UMLS ``LAT`` codes to keep (``None``: all)."""
    if not spec:
        return None
    lats: set[str] = set()
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item.upper() in LAT_TO_ISO:
            lats.add(item.upper())
        elif item.lower() in ISO_TO_LAT:
            lats.add(ISO_TO_LAT[item.lower()])
            if item.lower() == "hr":
                lats.add("SCR")
        else:
            raise KbioxlmError(
                f"--languages: unknown language {item!r} (use UMLS codes such as ENG,CHI or ISO codes such as en,zh)"
            )
    return lats


def check_iso(lang: str, what: str) -> str:
    """An ISO 639-1 code the schema accepts, else a one-line error naming ``what``."""
    if lang.split("-")[0].lower() not in KNOWN_LANGS:
        raise KbioxlmError(f"{what}: unknown language {lang!r} (use an ISO 639-1 code such as 'en', 'zh')")
    return lang
