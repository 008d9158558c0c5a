"""Fetch and verify the CMP Facade base set: ``python -m assignment_lib.download [--dest DIR] [--url URL]``.

Downloads the official archive ``CMP_facade_DB_base.zip`` from the dataset page
(https://cmp.felk.cvut.cz/~tylecr1/facade/, Tyleček and Šára, GCPR 2013, licence CC BY-SA), unpacks
it into ``DEST`` (default ``<repo>/datasets/cmp_facade``) and checks the sha256 of every file against
``datasets/cmp_facade_base.sha256``. The archive's own checksum is not known, so files are verified
one by one; the archive may hold them at its top level or under one top folder.

The archive is unpacked into ``DEST.partial`` and renamed to ``DEST`` only after every file has
verified, so a failed run never leaves a half-valid ``DEST``. Offline, the connection fails after a
short timeout with a message saying where to put the files by hand.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from assignment_lib.config import REPO_ROOT

URL = "http://cmp.felk.cvut.cz/~tylecr1/facade/CMP_facade_DB_base.zip"
MANIFEST = REPO_ROOT / "datasets" / "cmp_facade_base.sha256"
DEFAULT_DEST = REPO_ROOT / "datasets" / "cmp_facade"
CONNECT_TIMEOUT_S = 10


class DownloadError(RuntimeError):
    """Download, unpacking or verification failed; the message names the file or URL and what to do."""


def _manual_hint(dest: Path) -> str:
    return (
        "Download CMP_facade_DB_base.zip by hand from https://cmp.felk.cvut.cz/~tylecr1/facade/ and "
        f"unpack it so that {dest}/base/ and {dest}/label_names.txt exist (or put it anywhere and set "
        "CMP_FACADE_ROOT to that folder)."
    )


def read_manifest(path: Path = MANIFEST) -> dict[str, str]:
    """Parse ``sha256sum`` lines into ``{relative path: hex digest}``.

    Raises:
        DownloadError: the manifest is missing or a line is malformed (names the line).
    """
    entries = {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as err:
        raise DownloadError(f"cannot read the checksum list {path}: {err}") from err
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64:
            raise DownloadError(f"{path}:{n}: malformed line {line!r} (expected '<sha256>  <path>')")
        entries[name.strip()] = digest.lower()
    return entries


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def verify(folder: Path, manifest: dict[str, str]) -> None:
    """Check that every manifest file exists under ``folder`` with the listed sha256.

    Raises:
        DownloadError: naming the first missing file or the files whose checksum differs.
    """
    bad = []
    for name, expected in sorted(manifest.items()):
        path = folder / name
        if not path.is_file():
            raise DownloadError(f"missing file {name} (expected at {path}); the archive is incomplete")
        if sha256_file(path) != expected:
            bad.append(name)
    if bad:
        raise DownloadError(
            f"sha256 mismatch for {len(bad)} file(s): {', '.join(bad[:10])}{' ...' if len(bad) > 10 else ''} "
            "(corrupt download or a modified archive)"
        )


def fetch(url: str, out: Path, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Stream ``url`` (http, https or file) to ``out``.

    Raises:
        DownloadError: unreachable URL or failed transfer.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(out, "wb") as f:
            total = int(response.headers.get("Content-Length") or 0)
            try:
                from tqdm import tqdm
                bar = tqdm(total=total or None, unit="B", unit_scale=True, desc="download", disable=None)
            except ImportError:  # pragma: no cover - tqdm is a dependency of the kit
                bar = None
            for chunk in iter(lambda: response.read(1 << 20), b""):
                f.write(chunk)
                if bar is not None:
                    bar.update(len(chunk))
            if bar is not None:
                bar.close()
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise DownloadError(f"cannot download {url}: {err}") from err


def _top_prefix(names: list[str]) -> str:
    """The folder inside the archive that holds ``label_names.txt`` ('' or 'top/')."""
    for name in names:
        p = PurePosixPath(name)
        if p.name == "label_names.txt" and len(p.parts) <= 2:
            return "" if len(p.parts) == 1 else p.parts[0] + "/"
    return ""


def unpack(archive: Path, dest: Path) -> None:
    """Unpack ``archive`` into ``dest``, dropping one top folder if the files sit under one.

    Raises:
        DownloadError: not a zip file, or a member path that would leave ``dest``.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            prefix = _top_prefix([m.filename for m in members])
            for m in members:
                if not m.filename.startswith(prefix):
                    continue
                rel = PurePosixPath(m.filename[len(prefix):])
                if rel.is_absolute() or ".." in rel.parts:
                    raise DownloadError(f"unsafe member path {m.filename!r} in {archive}")
                target = dest.joinpath(*rel.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(m) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
    except zipfile.BadZipFile as err:
        raise DownloadError(f"{archive} is not a valid zip archive: {err}") from err


def download(dest: Path = DEFAULT_DEST, url: str = URL, manifest: Path = MANIFEST,
             timeout: float = CONNECT_TIMEOUT_S) -> Path:
    """Download, unpack and verify the base set into ``dest``; return ``dest``.

    If ``dest`` already holds a verified copy, nothing is downloaded.

    Raises:
        DownloadError: unreachable URL (with how to install the data by hand), bad archive, or a
            file missing / failing its sha256 (named).
    """
    dest = Path(dest).expanduser().resolve()
    expected = read_manifest(manifest)
    if (dest / "base").is_dir():
        try:
            verify(dest, expected)
            print(f"{dest} already holds a verified copy of the CMP Facade base set")
            return dest
        except DownloadError as err:
            raise DownloadError(f"{dest} exists but does not verify ({err}); move it away and retry") from err
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    archive = partial / "CMP_facade_DB_base.zip"
    try:
        try:
            fetch(url, archive, timeout)
        except DownloadError as err:
            raise DownloadError(f"{err}. {_manual_hint(dest)}") from err
        unpack(archive, partial)
        archive.unlink()
        verify(partial, expected)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.rename(dest)
    print(f"CMP Facade base set: {len(expected)} files verified in {dest}")
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m assignment_lib.download", description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help=f"target folder (default {DEFAULT_DEST})")
    parser.add_argument("--url", default=URL, help=f"archive URL, http(s) or file:// (default {URL})")
    args = parser.parse_args(argv)
    try:
        download(args.dest, args.url)
    except DownloadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
