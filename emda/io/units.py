"""Length units of image metadata, as nanometres.

NGFF names its space units by UDUNITS-2 ("angstrom", "micrometer", ...); ImageJ and OME
TIFF write short forms ("nm", "µm", "Å"). A unit emda does not know is an error naming it,
never a silent 1: reading angstrom as nanometres is a 10x error in every size.
"""

from __future__ import annotations

from emda.errors import EmdaError

_PREFIXES = {
    "yocto": 1e-15, "zepto": 1e-12, "atto": 1e-9, "femto": 1e-6, "pico": 1e-3, "nano": 1.0,
    "micro": 1e3, "milli": 1e6, "centi": 1e7, "deci": 1e8, "": 1e9, "deca": 1e10,
    "hecto": 1e11, "kilo": 1e12, "mega": 1e15, "giga": 1e18, "tera": 1e21, "peta": 1e24,
    "exa": 1e27, "zetta": 1e30, "yotta": 1e33,
}  # fmt: skip
_SHORT = {
    "pm": 1e-3, "nm": 1.0, "um": 1e3, "µm": 1e3, "μm": 1e3, "\\u00b5m": 1e3, "mm": 1e6,
    "cm": 1e7, "m": 1e9, "å": 0.1, "\\u00c5": 0.1, "angstrom": 0.1,
    "micron": 1e3, "microns": 1e3, "inch": 2.54e7, "foot": 3.048e8, "yard": 9.144e8,
    "mile": 1.609344e12, "parsec": 3.0856775814913673e25,
}  # fmt: skip
NM_PER_UNIT: dict[str, float] = {
    **{f"{prefix}meter": factor for prefix, factor in _PREFIXES.items()},
    **_SHORT,
}


def nm_per(unit: str | None, where: object) -> float:
    """How many nanometres one ``unit`` is; None or "" (no unit given) counts as nm."""
    if unit is None or str(unit).strip() == "":
        return 1.0
    key = str(unit).strip().lower()
    key = key.replace("metre", "meter")  # British spelling
    if key not in NM_PER_UNIT:
        raise EmdaError(f"{where}: unknown length unit {unit!r}; give the voxel size with "
                        "--voxel-size Z,Y,X (nm)")  # fmt: skip
    return NM_PER_UNIT[key]
