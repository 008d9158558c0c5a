"""Make the train/val/test id lists of the CMP Facade base set (run once; the lists are committed).

Method: sort the 378 ids ``cmp_b0001 .. cmp_b0378`` found under ``<root>/base/``, shuffle them with
``random.Random(SEED).shuffle`` (Python's Mersenne Twister: the same order on every machine and
Python 3 version), take the first 300 as train, the next 28 as val and the last 50 as test, and write
each list sorted, one id per line, to ``datasets/splits/{train,val,test}.txt``.

Usage: ``python datasets/make_splits.py /path/to/cmp_facade``  (the folder holding ``base/``).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

SEED = 2013
SIZES = {"train": 300, "val": 28, "test": 50}
OUT = Path(__file__).resolve().parent / "splits"


def main(root: str) -> None:
    ids = sorted(p.stem for p in (Path(root) / "base").glob("cmp_b*.jpg"))
    if len(ids) != sum(SIZES.values()):
        raise SystemExit(f"expected {sum(SIZES.values())} base images under {root}/base, found {len(ids)}")
    random.Random(SEED).shuffle(ids)
    OUT.mkdir(exist_ok=True)
    start = 0
    for split, n in SIZES.items():
        chosen = sorted(ids[start:start + n])
        start += n
        (OUT / f"{split}.txt").write_text("".join(f"{i}\n" for i in chosen))
        print(f"{split}: {len(chosen)} ids -> {OUT / (split + '.txt')}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
