"""Where the corpus audio comes from: per-package extraction and path -> label tables.

Every source is a :class:`SourceSpec`: the Debian packages it needs, which members of
their ``.deb`` to extract, and a ``scan`` function that turns the extracted tree into
:class:`Item` records (one per source file or render job). The regex tables below are
hand-curated: a file is used only if one of its package's patterns matches its path
(first match wins, matching is on the lower-cased path relative to the package root).

Grouping: :func:`variant_stem` strips one trailing variant number
(``pig_01`` -> ``pig``, ``breakglass05`` -> ``breakglass``, ``bullet-rifle-3x`` ->
``bullet-rifle``) so that variants of one recording share a split group. Identical files
(same bytes) inside a source are kept once.

Licences are the ones stated in each package's ``debian/copyright`` (per kit for
hydrogen-drumkits, per file for sonic-pi-samples where the file lists them).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# --------------------------------------------------------------------------------------
# records


@dataclass
class Item:
    """One unit of work for the builder: a source file (or render job) and its metadata.

    ``loader`` says how to get the audio: ``("file", path)``, ``("zip", archive, member)``,
    ``("espeak", voice, text)`` or ``("score", music21_path)``.
    """

    key: str
    label: str | None
    category: str
    source: str
    group: str
    license: str
    loader: tuple
    max_segments: int = 4
    bandwidth_hz: int | None = None
    extra: dict = field(default_factory=dict)
    package: str = ""


@dataclass
class SourceSpec:
    """A corpus source: the Debian packages it reads and a scan function.

    ``scan(src_root, labels, **options)`` gets the folder holding one extracted tree per
    package (``src_root / package``).
    """

    name: str
    packages: tuple[str, ...]
    scan: Callable[..., list[Item]]
    description: str
    heavy: bool = False
    needs: tuple[str, ...] = ()  # external programs


_VARIANT = re.compile(r"([-_. ]?\d+x|[-_. ]?\d+[a-z]?)$")


def variant_stem(relpath: str) -> str:
    """Path without extension and without one trailing variant number.

    >>> variant_stem("sound/misc/breakglass05.ogg")
    'sound/misc/breakglass'
    >>> variant_stem("data/sound/animals/bird2_03.ogg")
    'data/sound/animals/bird2'
    """
    p = relpath.rsplit(".", 1)[0] if "." in relpath.rsplit("/", 1)[-1] else relpath
    head, _, stem = p.rpartition("/")
    new = _VARIANT.sub("", stem) or stem
    return f"{head}/{new}" if head else new


def match_label(rules: list[tuple[str, str | None]], path: str) -> str | None:
    """First rule whose regex matches ``path`` (lower-cased); ``None`` if none or a skip rule."""
    low = path.lower()
    for pattern, label in rules:
        if re.search(pattern, low):
            return label
    return None


#: package -> regex on the package-relative path whose first group refines the split source
#: (a voice family, a kit, a civilisation's voices): see ``separation.data.splits``.
SOURCE_UNITS: dict[str, str] = {
    "hedgewars-data": r"/sounds/voices/([a-z]+)",
    "redeclipse-data": r"/sounds/(voice|announcer)/",
    "0ad-data": r"^audio/voice/([^/]+)/",
    "ktuberling-data": r"/sounds/([a-z]+)",
}


def source_unit(pkg: str, relpath: str) -> str:
    """The split source of a file of ``pkg``: the package, or ``pkg:refinement`` (see ``SOURCE_UNITS``)."""
    pat = SOURCE_UNITS.get(pkg)
    m = re.search(pat, relpath.lower()) if pat else None
    return f"{pkg}:{m.group(1)}" if m else pkg


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


AUDIO_EXT = (".wav", ".ogg", ".oga", ".flac")

# --------------------------------------------------------------------------------------
# curated sound-effect tables (package -> [(regex on relative path, label | None)])

SFX_RULES: dict[str, list[tuple[str, str | None]]] = {
    "ufoai-sound": [
        (r"^sound/ambience/arcticwind", "wind"),
        (r"^sound/ambience/cricket", "crickets"),
        (r"^sound/ambience/(fire\d*|smallfire|firesoft)\.ogg$", "fire"),
        (r"^sound/ambience/thunder\d", "thunder"),
        (r"^sound/ambience/(water\d*|waterfontain)\.ogg$", "water"),
        (r"^sound/doors/door\d-(open|close)", "door"),
        (r"^sound/footsteps/(carpet|dirt|grass|gravel|metal|sand|snow|stone|tile|wood)\d*\.ogg$", "footsteps"),
        (r"^sound/misc/breakglass", "glass breaking"),
        (r"^sound/weapons/bullet-(pistol|rifle|smg|sniper|shotgun)", "gunshot"),
        (r"^sound/weapons/explosion(-grenade|-rocket)?\.ogg$", "explosion"),
        (r"^sound/(soldiers|civilians)/(female|civfem)", "woman screaming"),
        (r"^sound/(soldiers|civilians)/(male|civmale)", "man screaming"),
    ],
    "wesnoth-1.16-data": [
        (r"/sounds/ambient/birds\d", "birds"),
        (r"/sounds/ambient/campfire", "fire"),
        (r"/sounds/bell\.wav$", "bell"),
        (r"/sounds/(cross)?bow(-puny)?(-fire)?(-miss)?\.ogg$", "arrow shot"),
        (r"/sounds/sword-\d", "sword clash"),
        (r"/sounds/explosion\.ogg$", "explosion"),
        (r"/sounds/(gunshot\.wav|thunderstick\.ogg)$", "gunshot"),
        (r"/sounds/horse-(elf-)?canter", "horse"),
        (r"/sounds/horse-(hit|die)", "horse"),
        (r"/sounds/wolf-(growl|hit|die)", "wolf"),
        (r"/sounds/human-female-(hit|die)", "woman screaming"),
        (r"/sounds/human-(old-)?(hit|die)", "man screaming"),
    ],
    "minetest-data": [
        (r"env_sounds_water", "water"),
        (r"/fire_(fire|small|large)", "fire"),
        (r"/tnt_explode", "explosion"),
        (r"/doors_(door|steel_door|glass_door|fencegate)_(open|close)", "door"),
        (r"/default_(wood|gravel|snow|grass|sand|dirt|hard|metal|ice|glass|water)_footstep", "footsteps"),
        (r"/default_break_glass", "glass breaking"),
    ],
    "sonic-pi-samples": [
        (r"/(bd_[a-z0-9]+|drum_heavy_kick|drum_bass_(hard|soft))\.flac$", "kick drum"),
        (r"/(drum_snare_(hard|soft)|sn_[a-z]+)\.flac$", "snare drum"),
        (r"/drum_cymbal_(closed|open|pedal)\.flac$", "hi-hat"),
        (r"/drum_(cymbal|splash)_(hard|soft)\.flac$", "cymbal"),
        (r"/drum_tom_", "tom-tom"),
        (r"/drum_cowbell", "cowbell"),
        (r"/tabla_", "tabla"),
        (r"/guit_", "electric guitar"),
        (r"/ambi_piano", "piano"),
        (r"/perc_bell", "bell"),
        (r"/perc_snap", "finger snapping"),
    ],
    "sound-theme-freedesktop": [
        (r"/stereo/bell\.oga$", "bell"),
        (r"/stereo/camera-shutter\.oga$", "camera shutter"),
        (r"/stereo/(phone-incoming-call|phone-outgoing-calling)\.oga$", "telephone ringing"),
    ],
    "megaglest-data": [
        (r"/tilesets/[^/]+/sounds/wind\.", "wind"),
        (r"/tilesets/[^/]+/sounds/rain\.", "rain"),
        (r"/tilesets/[^/]+/sounds/wolf\.", "wolf"),
        (r"/tilesets/[^/]+/sounds/(chicken|rooster)\.", "chicken"),
        (r"/tilesets/[^/]+/sounds/mudchute_cow", "cow"),
        (r"/core/water_sounds/water\d", "water"),
        (r"/commondata/sounds/cow_", "cow"),
        (r"/commondata/sounds/pig_", "pig"),
        (r"/commondata/sounds/anvil\d", "hammer on anvil"),
        (r"/commondata/sounds/horseman_walk", "horse"),
        (r"/commondata/sounds/swordman_attack", "sword clash"),
        (r"/commondata/sounds/archer_attack", "arrow shot"),
        (r"/commondata/sounds/worker_harvest_wood", "chopping wood"),
        (r"/units/chicken/sounds/", "chicken"),
        (r"/units/sheep/sounds/", "sheep"),
        (r"/units/elephant/sounds/ele(\d|attack)", "elephant"),
        (r"/units/bull/sounds/bull_(ack|select|die)", "cow"),
        (r"/units/beehive/sounds/bee", "bees buzzing"),
        (r"/units/wild_sow/sounds/pig_", "pig"),
    ],
    "widelands-data": [
        (r"/sound/animals/bird\d", "birds"),
        (r"/sound/animals/crickets", "crickets"),
        (r"/sound/animals/wolf", "wolf"),
        (r"/sound/farm/horse", "horse"),
        (r"/sound/farm/sheep", "sheep"),
        (r"/sound/farm/ox", "cow"),
        (r"/critters/duck/duck", "duck"),
        (r"/sound/atlanteans/saw/(benchsaw|sawing)", "sawing"),
        (r"/sound/sawmill/sawmill", "sawing"),
        (r"/sound/hammering/hammering", "hammering"),
        (r"/sound/smiths/(smith|toolsmith)_", "hammer on anvil"),
        (r"/sound/woodcutting/(fast_)?woodcutting", "chopping wood"),
    ],
    "supertuxkart-data": [
        (r"/sfx/cow\.ogg$|/library/.*/cow\.ogg$|/tracks/.*/cow\.ogg$", "cow"),
        (r"/sheep\.ogg$", "sheep"),
        (r"/steamlocomotive\.ogg$", "steam train"),
        (r"/exotic-birds", "birds"),
        (r"/sfx/anvil\.ogg$", "hammer on anvil"),
        (r"/sfx/(engine_large|engine_small|car_accel|car_revup)\.ogg$", "car engine"),
        (r"/sfx/airplane_jetengine\.ogg$", "jet engine"),
        (r"/sfx/horn\.ogg$", "car horn"),
        (r"/sfx/explosion\.ogg$", "explosion"),
        (r"/sfx/thunder\.ogg$", "thunder"),
        (r"/sfx/rain\.ogg$", "rain"),
        (r"/sfx/(river_loop|waterfall_loop_2|splash)\.ogg$", "water"),
        (r"/sfx/wilhelmscream\.ogg$", "man screaming"),
        (r"/sfx/clock\.ogg$", "clock ticking"),
        (r"/sfx/fireworks_show\.ogg$", "fireworks"),
        (r"/sfx/skid\.ogg$", "tires skidding"),
        (r"/sfx/hammer\.ogg$", "hammering"),
        (r"/sfx/crash\d*\.ogg$", "car crash"),
    ],
    "redeclipse-data": [
        (r"/ambience/(creek|river|water|waterfall[a-z_]*\d*|cavedrip)\.ogg$", "water"),
        (r"/ambience/fire\.ogg$", "fire"),
        (r"/ambience/nightcrickets\.ogg$", "crickets"),
        (r"/ambience/(storm)?rain\.ogg$", "rain"),
        (r"/ambience/stormbolts\.ogg$", "thunder"),
        (r"/ambience/([a-z]*wind\d*)\.ogg$", "wind"),
        (r"/ambience/distant_cars\.ogg$", "traffic"),
        (r"/ambience/(morph/)?machine\d*\.ogg$", "machinery"),
        (r"/weapons/(pistol|rifle|smg|shotgun)/primary\d*\.ogg$", "gunshot"),
        (r"/weapons/(explode\d*|mine/explode\d*|rifle/explode\d*|shotgun/explode\d*)\.ogg$", "explosion"),
        (r"/weapons/flamer/primary\.ogg$", "flamethrower"),
        (r"/player/(concstep|footstep)\d*\.ogg$", "footsteps"),
        (r"/sounds/(voice|announcer)/", "person speaking"),
    ],
    "hedgewars-data": [
        (r"/sounds/voices/", "person speaking"),
        (r"/sounds/explosion\.ogg$", "explosion"),
        (r"/sounds/bee\.ogg$", "bees buzzing"),
        (r"/sounds/(splash|droplet\d)\.ogg$", "water"),
        (r"/sounds/steps\.ogg$", "footsteps"),
        (r"/sounds/hammer\.ogg$", "hammering"),
        (r"/sounds/(shotgunfire|gun|minigun)\.ogg$", "gunshot"),
        (r"/sounds/whipcrack\.ogg$", "whip crack"),
        (r"/sounds/flamethrower\.ogg$", "flamethrower"),
        (r"/sounds/(drillgun|pickhammer)\.ogg$", "drilling"),
        (r"/sounds/(plane|rcplane)\.ogg$", "airplane"),
        (r"/sounds/shutterclick\.ogg$", "camera shutter"),
        (r"/sounds/whistle\.ogg$", "whistle"),
        (r"/sounds/kiss\.ogg$", "kiss"),
    ],
    "freedroidrpg-data": [
        (r"/effects/glass_break\.ogg$", "glass breaking"),
        (r"/effects/cameratakespicture\.ogg$", "camera shutter"),
        (r"/item_sounds/swing_then_hit_\d\.ogg$", "sword clash"),
        (r"/item_sounds/tux_footstep\.ogg$", "footsteps"),
        (r"/effects/tux_ingame_comments/", "person speaking"),
    ],
    "lmms-common": [
        (r"/drums/(bassdrum\w*|kick(_acoustic|_hard|_soft|_long)?\d*)\.ogg$", "kick drum"),
        (r"/drums/snare(_acoustic|_muffled|_rim|_short)?\d*\.ogg$", "snare drum"),
        (r"/drums/hihat_\w+\.ogg$", "hi-hat"),
        (r"/drums/(crash|ride)\d*\.ogg$", "cymbal"),
        (r"/drums/tom(_hi|_low|_mid)?\d*\.ogg$", "tom-tom"),
        (r"/drums/clap\d*\.ogg$", "hand clap"),
        (r"/drums/shaker\d*\.ogg$", "shaker"),
        (r"/drums/wood\d*\.ogg$", "woodblock"),
        (r"/instruments/cello\d*\.ogg$", "cello"),
        (r"/instruments/(church_organ|e_organ)\d*\.ogg$", "organ"),
        (r"/instruments/(piano|e_piano_accord)\d*\.ogg$", "piano"),
        (r"/instruments/flute\d*\.ogg$", "flute"),
        (r"/instruments/harpsichord\d*\.ogg$", "harpsichord"),
        (r"/instruments/steel_guitar01\.ogg$", "acoustic guitar"),
        (r"/instruments/steel_guitar_\w+_distorted\d*\.ogg$", "electric guitar"),
        (r"/instruments/trumpet\d*\.ogg$", "trumpet"),
        (r"/instruments/violin_\w+\.ogg$", "violin"),
        (r"/instruments/bassslap\d*\.ogg$", "bass guitar"),
        (r"/misc/applause\d*\.ogg$", "applause"),
        (r"/misc/raving_crowd\d*\.ogg$", "crowd cheering"),
        (r"/effects/wind_chimes\d*\.ogg$", "wind chimes"),
    ],
    "ktuberling-data": [
        (r"/sounds/it/", None),  # no Italian anywhere (the Italian Asterisk voice is reserved)
        (r"/sounds/[^/]+/[^/]+\.(ogg|wav|flac)$", "person speaking"),
    ],
    # 0 A.D. audio inside public.zip
    "0ad-data": [
        (r"^audio/ambient/weather/rain", "rain"),
        (r"^audio/ambient/weather/thunder", "thunder"),
        (r"^audio/ambient/weather/(wind|windgust|windleaves|windstorm)_", "wind"),
        (r"^audio/ambient/water/(river|waterfall|wave)", "water"),
        (r"^audio/ambient/dayscape/", "birds"),
        (r"^audio/actor/fauna/animal/cattle", "cow"),
        (r"^audio/actor/fauna/animal/chicken", "chicken"),
        (r"^audio/actor/fauna/animal/elephant", "elephant"),
        (r"^audio/actor/fauna/(animal/horse|death/death_horse)", "horse"),
        (r"^audio/actor/mounted/movement/mstep", "horse"),
        (r"^audio/actor/fauna/animal/pig", "pig"),
        (r"^audio/actor/fauna/animal/sheep", "sheep"),
        (r"^audio/actor/fauna/death/goat", "goat"),
        (r"^audio/actor/fauna/animal/lion", "lion roaring"),
        (r"^audio/actor/(singlesteps/|human/movement/footsteps/|human/movement/hstep)", "footsteps"),
        (r"^audio/actor/human/death/female_death", "woman screaming"),
        (r"^audio/actor/human/death/male_death", "man screaming"),
        (r"^audio/resource/lumbering/lumber_tree_", "chopping wood"),
        (r"^audio/resource/mining/mine_", "pickaxe"),
        (r"^audio/resource/construction/con_saw", "sawing"),
        (r"^audio/attack/weapon/(sword_attack|swordhit)", "sword clash"),
        (r"^audio/attack/weapon/bow_attack", "arrow shot"),
        (r"^audio/attack/weapon/musket", "gunshot"),
        (r"^audio/voice/global/civ_dog_", "dog barking"),
        (r"^audio/voice/[^/]+/civ/civ_female", "woman speaking"),
        (r"^audio/voice/[^/]+/civ/civ_male", "man speaking"),
    ],
}

#: licence per package (debian/copyright), used unless a finer rule applies.
PACKAGE_LICENSES: dict[str, str] = {
    "ufoai-sound": "GPL-2+ (some CC-BY-3.0/CC-BY-SA-3.0/PD; see debian/copyright)",
    "wesnoth-1.16-data": "GPL-2+",
    "minetest-data": "CC-BY-SA-3.0",
    "sonic-pi-samples": "CC0",
    "sound-theme-freedesktop": "CC-BY-3.0",
    "megaglest-data": "CC-BY-SA-3.0",
    "widelands-data": "GPL-2+",
    "hydrogen-drumkits": "GPL-2",
    "hydrogen-data": "GPL-2+",
    "0ad-data": "CC-BY-SA-3.0",
    "supertuxkart-data": "CC-BY-SA-3.0/CC-BY-3.0/CC0/PD per file (see debian/copyright)",
    "redeclipse-data": "CC-BY-SA-3.0+ (some CC-BY/CC0; see debian/copyright)",
    "hedgewars-data": "GFDL-1.3 (sounds; Droplet CC-BY-SA-3.0), music GPL-2",
    "freedroidrpg-data": "GPL-2+",
    "lmms-common": "GPL-2+ (mostly; see debian/copyright)",
    "ktuberling-data": "GPL-2+",
    "asterisk-core-sounds-en-wav": "CC-BY-SA-3.0",
    "asterisk-core-sounds-es-wav": "CC-BY-SA-3.0",
    "asterisk-core-sounds-fr-wav": "CC-BY-SA-3.0",
    "asterisk-core-sounds-ru-wav": "CC-BY-3.0",
}

#: per-kit licences of hydrogen-drumkits (debian/copyright).
HYDROGEN_KIT_LICENSES: dict[str, str] = {
    "ElectricEmpireKit": "GPL-2+",
    "HardElectro1": "GPL-2+",
    "VariBreaks": "GPL-2+",
    "Millo-Drums_v.1": "GPL-2",
    "Millo_MultiLayered2": "GPL-2",
    "Millo_MultiLayered3": "GPL-2",
    "ColomboAcousticDrumkit": "GPL-2+ with composition exception",
    "circAfrique v4": "CC-BY-SA-3.0",
    "BJA_Pacific": "CC-BY-SA-3.0-us",
    "Gimme A Hand 1.0": "GPL-2",
    "The Black Pearl 1.0": "GPL-2",
    "rumpf_kit_z01_h2": "CC-BY-3.0",
    "Audiophob": "CC0",
    "ForzeeStereo": "GPL-2",
}

#: hydrogen instrument name (lower-cased, ``_``/``.`` -> space) -> label; ``None`` skips.
HYDROGEN_RULES: list[tuple[str, str | None]] = [
    (r"fx|stick|rim ?click|click|whistle|empty|^none$|^\d+$|sample:|conga|agogo|clave|waterglass|(^|varibreaks )drum \d", None),
    (r"kick|bass ?drum|bassdrum|\bbd\d*\b|\bk\b", "kick drum"),
    (r"snare|\bsn\b", "snare drum"),
    (r"hi-?hat|\bhh\b|hat|\bchh\b|\bohh\b", "hi-hat"),
    (r"crash|ride|china|splash|cymbal|cra rock", "cymbal"),
    (r"tom", "tom-tom"),
    (r"clap", "hand clap"),
    (r"cowbell", "cowbell"),
    (r"tambourine", "tambourine"),
    (r"djembe", "djembe"),
    (r"bongo", "bongo"),
    (r"cajon", "cajon"),
    (r"woodblock", "woodblock"),
    (r"finger snap", "finger snapping"),
    (r"maraca", "maracas"),
]

#: labels per source kind that are not in SFX_RULES / HYDROGEN_RULES (for the coverage test).
SPEECH_LABELS = ("woman speaking", "man speaking")
MUSIC_LABELS = ("music",)

# --------------------------------------------------------------------------------------
# scanners


def _files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXT)


def _dedupe(items: list[Item], hashes: list[str]) -> list[Item]:
    seen: set[str] = set()
    out = []
    for it, h in zip(items, hashes):
        if h in seen:
            continue
        seen.add(h)
        out.append(it)
    return out


def _category(label: str, labels: dict) -> str:
    return labels[label]["category"] if label in labels else "sfx"


def _sonic_pi_licenses(root: Path) -> dict[str, str]:
    """basename -> licence from the DEP-5 stanzas of sonic-pi-samples' copyright."""
    out: dict[str, str] = {}
    cps = list(root.rglob("copyright"))
    if not cps:
        return out
    files: list[str] = []
    in_files = False
    for line in cps[0].read_text(errors="replace").splitlines():
        if line.startswith("Files:"):
            files = line[6:].split()
            in_files = True
        elif in_files and line.startswith(" ") and not line.strip().startswith("."):
            files += line.split()
        elif line.startswith("License:"):
            lic = line[8:].strip()
            for f in files:
                out[f.rsplit("/", 1)[-1]] = lic
            files, in_files = [], False
        else:
            in_files = False
    return out


def scan_rules(pkg: str, root: Path, labels: dict, max_segments: int = 6) -> list[Item]:
    """Items of a package whose files map to labels through ``SFX_RULES[pkg]``."""
    rules = SFX_RULES[pkg]
    licenses = _sonic_pi_licenses(root) if pkg == "sonic-pi-samples" else {}
    matched = []
    for path in _files_under(root):
        rel = path.relative_to(root).as_posix()
        label = match_label(rules, rel)
        if label is not None:
            matched.append((path, rel, label))
    # ids and groups are relative to the deepest folder shared by the package's used files
    prefix = os.path.commonpath([os.path.dirname(rel) for _, rel, _ in matched]) if matched else ""
    items, hashes = [], []
    for path, full, label in matched:
        rel = full[len(prefix) + 1:] if prefix else full
        lic = licenses.get(path.name, licenses.get("*", PACKAGE_LICENSES[pkg]))
        if pkg == "minetest-data" and "/doors/" in full:
            lic = "CC-BY-3.0"
        items.append(Item(key=f"{pkg}/{rel.rsplit('.', 1)[0]}", label=label, category=_category(label, labels),
                          source=source_unit(pkg, full), group=f"{pkg}:{variant_stem(rel)}", license=lic,
                          loader=("file", str(path)), max_segments=max_segments, package=pkg))
        hashes.append(_sha1(path))
    return _dedupe(items, hashes)


def scan_zip_rules(pkg: str, archives: list[Path], labels: dict, strip: str = "",
                   max_segments: int = 6) -> list[Item]:
    """Like :func:`scan_rules` for audio inside zip archives (``.pk3``, ``public.zip``)."""
    rules = SFX_RULES[pkg]
    items, hashes = [], []
    for arc in archives:
        with zipfile.ZipFile(arc) as z:
            for info in sorted(z.infolist(), key=lambda i: i.filename):
                name = info.filename
                if info.is_dir() or not name.lower().endswith(AUDIO_EXT):
                    continue
                rel = name[len(strip):] if strip and name.startswith(strip) else name
                label = match_label(rules, rel)
                if label is None:
                    continue
                items.append(Item(key=f"{pkg}/{rel.rsplit('.', 1)[0]}", label=label,
                                  category=_category(label, labels), source=source_unit(pkg, rel),
                                  group=f"{pkg}:{variant_stem(rel)}", license=PACKAGE_LICENSES[pkg],
                                  loader=("zip", str(arc), name), max_segments=max_segments, package=pkg))
                hashes.append(f"{info.CRC}:{info.file_size}")
    return _dedupe(items, hashes)


def scan_ufoai(root: Path, labels: dict, **_) -> list[Item]:
    return scan_zip_rules("ufoai-sound", sorted(root.rglob("*.pk3")), labels)


def scan_0ad(root: Path, labels: dict, **_) -> list[Item]:
    zips = sorted(root.rglob("public.zip"))
    return scan_zip_rules("0ad-data", zips, labels)


def _pkg_scanner(pkg: str, max_segments: int = 6):
    def scan(root: Path, labels: dict, **_) -> list[Item]:
        return scan_rules(pkg, root, labels, max_segments=max_segments)

    return scan


def scan_hydrogen(root: Path, labels: dict, max_layers: int = 4, pkg: str = "hydrogen-drumkits", **_) -> list[Item]:
    """Drum pieces from each kit's ``drumkit.xml``: label from the instrument name,
    group = kit + instrument, at most ``max_layers`` velocity layers (evenly spread).
    The split source is the kit (``PACKAGE:KIT``)."""
    import xml.etree.ElementTree as ET

    items, hashes = [], []
    for xml in sorted(root.rglob("drumkit.xml")):
        kit_dir = xml.parent
        kit = kit_dir.name
        try:
            tree = ET.parse(xml).getroot()
        except ET.ParseError:
            continue
        for ins in tree.iter():
            if not ins.tag.endswith("instrument"):
                continue
            names = [c.text or "" for c in ins if c.tag.endswith("name")]
            if not names:
                continue
            name = names[0].strip()
            norm = re.sub(r"[_.]", " ", name.lower())
            label = match_label(HYDROGEN_RULES, norm)
            if label is None:
                continue
            files = [c.text for c in ins.iter() if c.tag.endswith("filename") and c.text]
            files = [kit_dir / f for f in dict.fromkeys(files) if (kit_dir / f).is_file()]
            if not files:
                continue
            if len(files) > max_layers:
                idx = sorted({round(i * (len(files) - 1) / (max_layers - 1)) for i in range(max_layers)})
                files = [files[i] for i in idx]
            for f in files:
                items.append(Item(key=f"{pkg}/{kit}/{f.stem}", label=label,
                                  category=_category(label, labels), source=f"{pkg}:{kit}",
                                  group=f"{pkg}:{kit}/{name}",
                                  license=HYDROGEN_KIT_LICENSES.get(kit, PACKAGE_LICENSES[pkg]),
                                  loader=("file", str(f)), max_segments=1, package=pkg))
                hashes.append(_sha1(f))
    return _dedupe(items, hashes)


ASTERISK_LANGS = ("en", "es", "fr", "ru")


def asterisk_transcripts(root: Path) -> dict[str, str]:
    """``relative/key`` -> text from ``core-sounds-XX.txt.gz`` files under ``root``."""
    out: dict[str, str] = {}
    for gz in root.rglob("core-sounds-*.txt.gz"):
        for line in gzip.open(gz, "rt", errors="replace"):
            if line.startswith(";") or ":" not in line:
                continue
            k, _, v = line.partition(":")
            out[k.strip()] = v.strip()
    return out


def scan_asterisk(root: Path, labels: dict, **_) -> list[Item]:
    """Real IVR prompts (8 kHz, one woman per language): label ``woman speaking``."""
    items, hashes = [], []
    for lang in ASTERISK_LANGS:
        pkg = f"asterisk-core-sounds-{lang}-wav"
        base = root / pkg
        texts = asterisk_transcripts(root / f"asterisk-core-sounds-{lang}")
        for path in _files_under(base):
            voice_dir = next((p for p in path.parents if p.parent.name == "sounds"), None)
            rel = path.relative_to(voice_dir).as_posix() if voice_dir else path.name
            if rel.startswith("silence/"):
                continue
            key = rel.rsplit(".", 1)[0]
            items.append(Item(key=f"{pkg}/{key}", label="woman speaking", category="speech", source=pkg,
                              group=f"{pkg}:{variant_stem(rel)}", license=PACKAGE_LICENSES[pkg], package=pkg,
                              loader=("file", str(path)), max_segments=2, bandwidth_hz=4000,
                              extra={"lang": lang, "text": texts.get(key, "")}))
            hashes.append(_sha1(path))
    return _dedupe(items, hashes)


#: espeak-ng voice variants by the gender espeak-ng lists for them.
ESPEAK_MALE = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "adam", "john", "paul", "robert", "max", "edward")
ESPEAK_FEMALE = ("f1", "f2", "f3", "f4", "f5", "Alicia", "Andrea", "Annie", "aunty", "belinda", "linda",
                 "steph", "anika", "grandma")
ESPEAK_LANGS = {"en": "en-us", "es": "es", "fr": "fr-fr", "ru": "ru"}


def scan_espeak(root: Path, labels: dict, seed: int = 0, per_voice: int = 6, **_) -> list[Item]:
    """Synthetic speech: asterisk transcript sentences read by espeak-ng voice variants.

    Group = language + voice variant; split source = the voice variant in every language
    (a held-out voice family is never heard in training).
    """
    import random

    items = []
    for lang, voice in ESPEAK_LANGS.items():
        texts = asterisk_transcripts(root / f"asterisk-core-sounds-{lang}")
        sentences = sorted({t for t in texts.values() if len(t.split()) >= 5 and len(t) <= 160})
        if not sentences:
            continue
        for variant in ESPEAK_MALE + ESPEAK_FEMALE:
            label = "man speaking" if variant in ESPEAK_MALE else "woman speaking"
            rng = random.Random(f"{seed}:{lang}:{variant}")
            for i, text in enumerate(rng.sample(sentences, min(per_voice, len(sentences)))):
                items.append(Item(key=f"espeak-ng/{lang}-{variant}/{i:02d}", label=label, category="speech",
                                  source=f"espeak-ng:{variant}", group=f"espeak-ng:{voice}+{variant}",
                                  package="espeak-ng",
                                  license="GPL-3+ (espeak-ng); text CC-BY-SA-3.0 (asterisk prompts)",
                                  loader=("espeak", f"{voice}+{variant}", text), max_segments=1,
                                  extra={"lang": lang, "text": text, "synthetic": True}))
    return items


MUSIC_RULES: dict[str, list[tuple[str, str | None]]] = {
    "widelands-data": [(r"/data/music/[^/]+\.ogg$", "music")],
    "megaglest-data": [(r"/music/[^/]+\.ogg$", "music")],
    "wesnoth-1.16-music": [(r"/music/[^/]+\.ogg$", "music")],
    "supertuxkart-data": [(r"/data/music/[^/]+\.ogg$", "music")],
    "redeclipse-data": [(r"/sounds/music/[^/]+\.ogg$", "music")],
    "hedgewars-data": [(r"/data/music/[^/]+\.ogg$", "music")],
    "freedroidrpg-data": [(r"/sound/music/[^/]+\.ogg$", "music")],
}
#: soundtracks inside zip archives: package -> (archive file glob, member regex)
MUSIC_ZIP_RULES: dict[str, tuple[str, str]] = {"ufoai-music": ("*.pk3", r"^music/[^/]+\.ogg$"),
                                               "0ad-data": ("public.zip", r"^audio/music/.+\.ogg$")}
MUSIC_LICENSES = {"widelands-data": "GPL-2+", "megaglest-data": "CC-BY-SA-3.0", "wesnoth-1.16-music": "GPL-2+",
                  "supertuxkart-data": "CC-BY-SA-3.0/CC-BY-3.0/CC0 per track (see debian/copyright)",
                  "redeclipse-data": "CC-BY-SA-3.0", "hedgewars-data": "GPL-2", "freedroidrpg-data": "GPL-2+",
                  "ufoai-music": "GPL-2+ (some CC-BY/CC-BY-SA; see debian/copyright)", "0ad-data": "CC-BY-SA-3.0"}


def scan_music(root: Path, labels: dict, max_segments: int = 6, **_) -> list[Item]:
    """Mixed game soundtracks cut into segments: label ``music``; group = track; split source =
    the game's soundtrack (``PACKAGE:music``, apart from the game's sound effects)."""
    items, hashes = [], []
    for pkg, rules in MUSIC_RULES.items():
        base = root / pkg
        for path in _files_under(base):
            rel = path.relative_to(base).as_posix()
            if match_label(rules, rel) is None:
                continue
            lic = MUSIC_LICENSES[pkg]
            if pkg == "widelands-data" and re.search(r"ingame_2[456]\.ogg$", rel):
                lic = "CC-BY-SA-3.0"
            items.append(Item(key=f"{pkg}/{path.parent.name}/{path.stem}", label="music", category="music",
                              source=f"{pkg}:music",
                              group=f"{pkg}:{rel}", license=lic, loader=("file", str(path)),
                              max_segments=max_segments, package=pkg))
            hashes.append(_sha1(path))
    for pkg, (arc_glob, pattern) in MUSIC_ZIP_RULES.items():
        for arc in sorted((root / pkg).rglob(arc_glob)):
            with zipfile.ZipFile(arc) as z:
                for info in sorted(z.infolist(), key=lambda i: i.filename):
                    if info.is_dir() or not re.search(pattern, info.filename.lower()):
                        continue
                    stem = info.filename.rsplit(".", 1)[0]
                    items.append(Item(key=f"{pkg}/{stem}", label="music", category="music", source=f"{pkg}:music",
                                      group=f"{pkg}:{info.filename}", license=MUSIC_LICENSES[pkg],
                                      loader=("zip", str(arc), info.filename), max_segments=max_segments,
                                      package=pkg))
                    hashes.append(f"{info.CRC}:{info.file_size}")
    return _dedupe(items, hashes)


# --------------------------------------------------------------------------------------
# instrument stems rendered from music21 scores

#: label -> (GM program, lowest MIDI note, highest MIDI note)
GM_INSTRUMENTS: dict[str, tuple[int, int, int]] = {
    "violin": (40, 55, 103),
    "viola": (41, 48, 91),
    "cello": (42, 36, 76),
    "double bass": (43, 28, 67),
    "flute": (73, 60, 96),
    "oboe": (68, 58, 91),
    "clarinet": (71, 50, 94),
    "bassoon": (70, 34, 75),
    "french horn": (60, 34, 77),
    "trumpet": (56, 54, 84),
    "trombone": (57, 40, 72),
    "tuba": (58, 28, 58),
    "piano": (0, 21, 108),
    "acoustic guitar": (24, 40, 88),
    "electric guitar": (26, 40, 88),
    "organ": (19, 24, 96),
    "harpsichord": (6, 29, 89),
    "harp": (46, 24, 103),
    "saxophone": (65, 49, 81),
    "recorder": (74, 60, 96),
    "marimba": (12, 45, 96),
    "acoustic bass": (32, 28, 55),
}

#: composers whose multi-part works are rendered (see ``separation.data.EXCLUDED_COMPOSERS``).
MUSIC21_COMPOSERS = ("bach", "palestrina", "monteverdi")

#: General MIDI soundfonts from Debian main used to render the stems: name -> (package, file, licence).
#: (The MuseScore soundfonts are reserved and never listed here.)
SOUNDFONTS: dict[str, tuple[str, str, str]] = {
    "FluidR3_GM": ("fluid-soundfont-gm", "FluidR3_GM.sf2", "MIT"),
    "TimGM6mb": ("timgm6mb-soundfont", "TimGM6mb.sf2", "GPL-2"),
    "sf_GMbank": ("csound-soundfont", "sf_GMbank.sf2", "LGPL-2.1+"),
}


def pick_soundfont(key: str, seed: int = 0) -> str:
    """The soundfont a score is rendered with (seeded hash of the score key)."""
    names = sorted(SOUNDFONTS)
    return names[int(hashlib.sha1(f"{seed}:sf:{key}".encode()).hexdigest(), 16) % len(names)]


def scan_music21(root: Path, labels: dict, seed: int = 0, scores: int = 96, windows: int = 3, **_) -> list[Item]:
    """Render jobs for multi-part music21 scores (one :class:`Item` per score; the builder
    turns it into one stem per part and window, at most ``windows`` windows). Group = score;
    each score is rendered with one soundfont of :data:`SOUNDFONTS` (seeded hash) and the
    split source is ``music21:COMPOSER+SOUNDFONT``."""
    import hashlib as _h

    from music21 import corpus

    from separation.data import EXCLUDED_COMPOSERS

    per = {}
    for comp in MUSIC21_COMPOSERS:
        paths = [Path(str(p)) for p in corpus.getComposer(comp)]
        paths = [p for p in paths if p.suffix in (".mxl", ".krn", ".xml", ".musicxml")
                 and not any(x in str(p).lower() for x in EXCLUDED_COMPOSERS)]
        paths.sort(key=lambda p: _h.sha1(f"{seed}:{p.name}:{p.parent.name}".encode()).hexdigest())
        per[comp] = paths
    chosen: list[tuple[str, Path]] = []
    i = 0
    while len(chosen) < scores and any(i < len(v) for v in per.values()):
        for comp, v in per.items():
            if i < len(v) and len(chosen) < scores:
                chosen.append((comp, v[i]))
        i += 1
    items = []
    for comp, p in chosen:
        rel = f"{comp}/{p.parent.name}/{p.stem}" if p.parent.name != comp else f"{comp}/{p.stem}"
        sfn = pick_soundfont(f"music21/{rel}", seed)
        items.append(Item(key=f"music21/{rel}", label=None, category="instrument",
                          source=f"music21:{comp}+{sfn}", group=f"music21:{rel}",
                          license=f"score: music21 corpus (BSD; see corpus notes); soundfont {sfn} "
                                  f"({SOUNDFONTS[sfn][2]})",
                          loader=("score", str(p)), max_segments=windows, package=SOUNDFONTS[sfn][0],
                          extra={"composer": comp, "soundfont": sfn}))
    return items


# --------------------------------------------------------------------------------------
# registry

#: tar globs extracted from each package's data (``dpkg-deb --fsys-tarfile | tar -x --wildcards``).
PACKAGE_GLOBS: dict[str, tuple[str, ...]] = {
    "ufoai-sound": ("*.pk3",),
    "wesnoth-1.16-data": ("*/sounds/*",),
    "minetest-data": ("*.ogg",),
    "sonic-pi-samples": ("*.flac",),
    "hydrogen-drumkits": ("*/drumkits/*",),
    "sound-theme-freedesktop": ("*.oga",),
    "megaglest-data": ("*.wav", "*.ogg"),
    "widelands-data": ("*/data/sound/*", "*/data/world/*.ogg", "*/data/music/*"),
    **{pkg: ("*.sf2",) for pkg, _, _ in SOUNDFONTS.values()},
    "hydrogen-data": ("*/drumkits/*",),
    "supertuxkart-data": ("*.ogg",),
    "redeclipse-data": ("*.ogg",),
    "hedgewars-data": ("*.ogg",),
    "freedroidrpg-data": ("*.ogg",),
    "lmms-common": ("*.ogg", "*.wav", "*.flac"),
    "ktuberling-data": ("*/sounds/*",),
    "ufoai-music": ("*.pk3",),
    "wesnoth-1.16-music": ("*.ogg",),
    "0ad-data": ("*public.zip",),
    **{f"asterisk-core-sounds-{lang}-wav": ("*.wav",) for lang in ASTERISK_LANGS},
    **{f"asterisk-core-sounds-{lang}": ("*.txt.gz",) for lang in ASTERISK_LANGS},
}


def scan_hydrogen_all(src_root: Path, labels: dict, **kw) -> list[Item]:
    """Kits of hydrogen-drumkits and hydrogen-data (GMRockKit, TR808)."""
    out = []
    for pkg in ("hydrogen-drumkits", "hydrogen-data"):
        out += scan_hydrogen(src_root / pkg, labels, pkg=pkg, **kw)
    return out


def _sub(pkg: str, fn: Callable[..., list[Item]]):
    def scan(src_root: Path, labels: dict, **kw) -> list[Item]:
        return fn(src_root / pkg, labels, **kw)

    return scan


SOURCES: dict[str, SourceSpec] = {
    "ufoai": SourceSpec("ufoai", ("ufoai-sound",), _sub("ufoai-sound", scan_ufoai), "UFO:AI sound effects (pk3)"),
    "wesnoth": SourceSpec("wesnoth", ("wesnoth-1.16-data",), _sub("wesnoth-1.16-data", _pkg_scanner("wesnoth-1.16-data")),
                          "Battle for Wesnoth sound effects"),
    "minetest": SourceSpec("minetest", ("minetest-data",), _sub("minetest-data", _pkg_scanner("minetest-data")),
                           "Minetest game sounds"),
    "sonic-pi": SourceSpec("sonic-pi", ("sonic-pi-samples",),
                           _sub("sonic-pi-samples", _pkg_scanner("sonic-pi-samples")), "Sonic Pi samples (mostly CC0)"),
    "hydrogen": SourceSpec("hydrogen", ("hydrogen-drumkits", "hydrogen-data"), scan_hydrogen_all,
                           "Hydrogen drum kits (real drum pieces; split source = kit)"),
    "freedesktop": SourceSpec("freedesktop", ("sound-theme-freedesktop",),
                              _sub("sound-theme-freedesktop", _pkg_scanner("sound-theme-freedesktop")),
                              "freedesktop sound theme"),
    "megaglest": SourceSpec("megaglest", ("megaglest-data",), _sub("megaglest-data", _pkg_scanner("megaglest-data")),
                            "MegaGlest unit/tileset sounds (curated)"),
    "widelands": SourceSpec("widelands", ("widelands-data",), _sub("widelands-data", _pkg_scanner("widelands-data")),
                            "Widelands animals and workplaces"),
    "asterisk": SourceSpec("asterisk", tuple(f"asterisk-core-sounds-{lang}{s}" for lang in ASTERISK_LANGS
                                             for s in ("-wav", "")),
                           scan_asterisk, "Asterisk IVR prompts, en/es/fr/ru (8 kHz, women)"),
    "espeak": SourceSpec("espeak", tuple(f"asterisk-core-sounds-{lang}" for lang in ASTERISK_LANGS), scan_espeak,
                         "espeak-ng synthetic speech (asterisk transcript sentences)", needs=("espeak-ng",)),
    "music21": SourceSpec("music21", tuple(pkg for pkg, _, _ in SOUNDFONTS.values()), scan_music21,
                          "music21 scores rendered part by part with GM soundfonts", needs=("fluidsynth",)),
    "music": SourceSpec("music", tuple(MUSIC_RULES) + tuple(MUSIC_ZIP_RULES), scan_music,
                        "game soundtracks, <=10 s segments", heavy=True),
    "0ad": SourceSpec("0ad", ("0ad-data",), _sub("0ad-data", scan_0ad), "0 A.D. sound effects (1.4 GB download)",
                      heavy=True),
    "supertuxkart": SourceSpec("supertuxkart", ("supertuxkart-data",),
                               _sub("supertuxkart-data", _pkg_scanner("supertuxkart-data")),
                               "SuperTuxKart sound effects", heavy=True),
    "redeclipse": SourceSpec("redeclipse", ("redeclipse-data",),
                             _sub("redeclipse-data", _pkg_scanner("redeclipse-data")),
                             "Red Eclipse ambience, weapons, footsteps, voices", heavy=True),
    "hedgewars": SourceSpec("hedgewars", ("hedgewars-data",), _sub("hedgewars-data", _pkg_scanner("hedgewars-data")),
                            "Hedgewars voice packs (split source = voice family) and effects"),
    "freedroidrpg": SourceSpec("freedroidrpg", ("freedroidrpg-data",),
                               _sub("freedroidrpg-data", _pkg_scanner("freedroidrpg-data")),
                               "FreedroidRPG effects and Tux's comments", heavy=True),
    "ktuberling": SourceSpec("ktuberling", ("ktuberling-data",),
                             _sub("ktuberling-data", _pkg_scanner("ktuberling-data", max_segments=1)),
                             "KTuberling spoken words, 24 languages (split source = language)"),
    "lmms": SourceSpec("lmms", ("lmms-common",), _sub("lmms-common", _pkg_scanner("lmms-common")),
                       "LMMS drum and instrument samples"),
}

#: every source is used by default (``--light`` leaves the ``heavy`` downloads out).
DEFAULT_SOURCES = tuple(SOURCES)
LIGHT_SOURCES = tuple(k for k, v in SOURCES.items() if not v.heavy)
