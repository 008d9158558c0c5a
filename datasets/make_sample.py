"""Build the bundled sample ``datasets/sample/`` from the full CMP Facade base set.

24 real pairs: 16 train, 4 val, 4 test ids drawn with ``random.Random(SEED).sample`` from the
committed lists ``datasets/splits/*.txt`` (so every sample id keeps its full-set split). Each pair is
shrunk so its longer side is at most 256 px (photo: bilinear, antialiased, JPEG quality 90;
label: NEAREST, palette PNG with the original palette); the ``.xml`` annotations use normalised
coordinates and are copied unchanged, as are ``label_names.txt`` and ``readme.txt``. The sample's
own ``splits/`` lists name exactly its ids.

Usage: ``python datasets/make_sample.py /path/to/cmp_facade``  (the folder holding ``base/``).
"""

from __future__ import annotations

import random
import shutil
import sys
from pathlib import Path

from PIL import Image

SEED = 2013
COUNTS = {"train": 16, "val": 4, "test": 4}
MAX_SIDE = 256
HERE = Path(__file__).resolve().parent
OUT = HERE / "sample"


def shrink(img: Image.Image, resample, max_side: int = MAX_SIDE) -> Image.Image:
    w, h = img.size
    if max(w, h) <= max_side:
        return img
    s = max_side / max(w, h)
    return img.resize((max(1, round(w * s)), max(1, round(h * s))), resample)


def shrink_copy(src: Path, out: Path, ids, max_side: int = MAX_SIDE, xml: bool = True) -> None:
    """Copy the pairs ``ids`` from the data root ``src`` to ``out`` (same layout), each shrunk so
    its longer side is at most ``max_side`` px (photo bilinear, JPEG quality 90; label NEAREST,
    palette kept), plus ``label_names.txt`` and ``readme.txt``; ``.xml`` annotations too if asked."""
    (out / "base").mkdir(parents=True, exist_ok=True)
    for image_id in ids:
        photo = Image.open(src / "base" / f"{image_id}.jpg").convert("RGB")
        shrink(photo, Image.Resampling.BILINEAR, max_side).save(out / "base" / f"{image_id}.jpg",
                                                                quality=90)
        label = Image.open(src / "base" / f"{image_id}.png")
        assert label.mode == "P", f"{image_id}.png is not a palette PNG"
        shrink(label, Image.Resampling.NEAREST, max_side).save(out / "base" / f"{image_id}.png")
        if xml:
            shutil.copyfile(src / "base" / f"{image_id}.xml", out / "base" / f"{image_id}.xml")
    for name in ("label_names.txt", "readme.txt"):
        shutil.copyfile(src / name, out / name)


def main(src: str) -> None:
    src = Path(src)
    rng = random.Random(SEED)
    (OUT / "splits").mkdir(parents=True, exist_ok=True)
    for split, n in COUNTS.items():
        ids = (HERE / "splits" / f"{split}.txt").read_text().split()
        chosen = sorted(rng.sample(ids, n))
        (OUT / "splits" / f"{split}.txt").write_text("".join(f"{i}\n" for i in chosen))
        shrink_copy(src, OUT, chosen)
        print(f"{split}: {chosen}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
