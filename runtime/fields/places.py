"""Where a Chinese phone number is registered, from the number ranges the
`phonenumbers` geocoder knows: a mobile's province and city (江苏省常州市),
a landline's area. Fills the fields marked `fill_from_phone` on save."""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import geocoder

# a province-level name: a province, an autonomous region, a special
# administrative region, or (alone) a municipality such as 北京市
_PROVINCE = re.compile(r"^(.+?(?:省|自治区|特别行政区))(.*)$")
_SUFFIX = re.compile(r"(省|市|壮族自治区|回族自治区|维吾尔自治区|自治区|特别行政区)$")


@dataclass(frozen=True)
class Place:
    province: str      # 江苏省
    city: str          # 常州市 (a municipality is its own city: 北京市)
    province_en: str   # Jiangsu


def place_of(number: str | None, region: str = "CN") -> Place | None:
    """The place of a Chinese number, None for another country's, an
    invalid one or a range the geocoder does not place."""
    if not number:
        return None
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return None
    if parsed.country_code != 86 or not phonenumbers.is_valid_number(parsed):
        return None
    chinese = geocoder.description_for_number(parsed, "zh")
    english = geocoder.description_for_number(parsed, "en")
    if not chinese or not english or chinese == "中国":
        return None
    match = _PROVINCE.match(chinese)
    province, city = (match.group(1), match.group(2) or match.group(1)) if match else (chinese, chinese)
    return Place(province=province, city=city, province_en=english.split(", ")[-1])


def option_for(place: Place, name: str, options) -> str | None:
    """The picklist value naming `name` (the place's province or city): an
    option labelled with it (江苏, 江苏省), or for the province one whose
    value is its English name (`jiangsu`, `inner_mongolia`)."""
    value = re.sub(r"[^a-z]+", "_", place.province_en.lower()).strip("_") if name == place.province else None
    short = _SUFFIX.sub("", name)
    for option in options:
        if option.retired:
            continue
        if value and option.value == value:
            return option.value
        labels = option.label.values() if isinstance(option.label, dict) else [option.label or ""]
        if any(label and _SUFFIX.sub("", label) == short for label in labels):
            return option.value
    return None
