from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pytest
from support import colour_npz, image_folder

from src.data import DataError, load_dataset, read_idx, write_idx
from src.data import readers as data


@pytest.fixture(autouse=True)
def no_download_no_system_copy(monkeypatch, tmp_path):
    """Tests never reach the network nor a copy of the data installed on this machine."""

    def offline(name):
        raise OSError("no network in tests")

    monkeypatch.setattr(data, "_download", offline)
    monkeypatch.setattr(data, "SYSTEM_COPIES", {"fashion_mnist": tmp_path / "no-system-copy"})


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_loads_as_float_images_in_unit_range(idx_folder, gz):
    dataset = load_dataset("mnist", path=str(idx_folder(gz=gz)), cache_dir=None)
    assert dataset.train_images.shape == (300, 28, 28, 1)
    assert dataset.test_images.shape == (100, 28, 28, 1)
    assert dataset.train_images.dtype == np.float32
    assert dataset.train_images.min() >= 0 and dataset.train_images.max() == 1.0
    np.testing.assert_array_equal(dataset.train_labels[:12], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1])
    assert dataset.source == str(idx_folder(gz=gz))


def test_idx_round_trip_preserves_bytes(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        write_idx(tmp_path / name, array)
        np.testing.assert_array_equal(read_idx(tmp_path / name), array)


def test_npz_in_keras_layout_loads(npz_file):
    dataset = load_dataset("mnist", path=str(npz_file), cache_dir=None, train_size=20, test_size=5)
    assert dataset.train_images.shape == (20, 28, 28, 1)
    assert dataset.test_labels.tolist() == [0, 1, 2, 3, 4]


def test_sizes_keep_the_first_images(idx_folder):
    full = load_dataset("mnist", path=str(idx_folder()), cache_dir=None)
    part = load_dataset("mnist", path=str(idx_folder()), cache_dir=None, train_size=7, test_size=3)
    np.testing.assert_array_equal(part.train_images, full.train_images[:7])
    np.testing.assert_array_equal(part.test_labels, full.test_labels[:3])
    assert part.checksum == full.checksum  # the checksum is of the files, not the subset


def test_digits_are_offline_28x28_and_split_80_20():
    dataset = load_dataset("digits")
    assert dataset.train_images.shape == (1438, 28, 28, 1)
    assert dataset.test_images.shape == (359, 28, 28, 1)
    assert set(np.unique(dataset.train_labels)) == set(range(10))


def test_keras_cache_is_used_before_the_system_copy(tmp_path, idx_folder, monkeypatch):
    cache = tmp_path / "keras-datasets"
    cache.mkdir()
    idx_folder().rename(cache / "fashion-mnist")
    monkeypatch.setattr(data, "SYSTEM_COPIES", {"fashion_mnist": tmp_path / "elsewhere"})
    dataset = load_dataset("fashion_mnist", cache_dir=str(cache))
    assert dataset.source == str(cache / "fashion-mnist")


def test_system_copy_is_used_when_the_cache_is_empty(tmp_path, idx_folder, monkeypatch):
    folder = idx_folder()
    monkeypatch.setattr(data, "SYSTEM_COPIES", {"fashion_mnist": folder})
    dataset = load_dataset("fashion_mnist", cache_dir=str(tmp_path / "empty-cache"))
    assert dataset.source == str(folder)


def test_keras_cache_npz_for_mnist(tmp_path, npz_file):
    cache = tmp_path / "cache"
    cache.mkdir()
    npz_file.rename(cache / "mnist.npz")
    assert load_dataset("mnist", cache_dir=str(cache)).source == str(cache / "mnist.npz")


def test_download_is_the_last_resort(monkeypatch, npz_file):
    arrays = dict(np.load(npz_file))
    monkeypatch.setattr(
        data,
        "_download",
        lambda name: (arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"]),
    )
    assert load_dataset("mnist", cache_dir=None).source == "downloaded by tf.keras.datasets.mnist"


def test_nothing_found_says_what_was_tried_and_how_to_fix(tmp_path):
    with pytest.raises(DataError) as error:
        load_dataset("fashion_mnist", cache_dir=str(tmp_path / "cache"))
    message = str(error.value)
    assert "\n" not in message
    assert str(tmp_path / "cache" / "fashion-mnist") in message
    assert "no-system-copy" in message
    assert "download through Keras (no network in tests)" in message
    assert "dataset-fashion-mnist" in message and "dataset.path=" in message


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match="dataset.path .* does not exist"):
        load_dataset("mnist", path=str(tmp_path / "nope.npz"))


def _corrupt(folder: Path, stem: str, mutate) -> None:
    path = folder / f"{stem}.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(mutate(raw)))


@pytest.mark.parametrize(
    "stem, mutate, message",
    [
        ("train-images-idx3-ubyte", lambda raw: raw[:-100], "truncated or padded"),
        ("train-images-idx3-ubyte", lambda raw: b"\x00\x00\x0d\x03" + raw[4:], "bad magic number"),
        ("t10k-labels-idx1-ubyte", lambda raw: raw[:6], "truncated IDX header"),
    ],
)
def test_corrupt_idx_files_are_named(idx_folder, stem, mutate, message):
    folder = idx_folder()
    _corrupt(folder, stem, mutate)
    with pytest.raises(DataError, match=message) as error:
        load_dataset("mnist", path=str(folder))
    assert stem in str(error.value)


def test_gzip_that_is_not_gzip(idx_folder):
    folder = idx_folder()
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot be read"):
        load_dataset("mnist", path=str(folder))


def test_missing_idx_file_is_named(idx_folder):
    folder = idx_folder()
    (folder / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match="has no t10k-images-idx3-ubyte"):
        load_dataset("mnist", path=str(folder))


def test_truncated_npz(npz_file):
    npz_file.write_bytes(npz_file.read_bytes()[:500])
    with pytest.raises(DataError, match="is not a readable .npz file"):
        load_dataset("mnist", path=str(npz_file))


@pytest.mark.parametrize(
    "change, message",
    [
        (
            dict(x_train=np.zeros((10, 32, 32), np.uint8)),
            r"training images have shape \(10, 32, 32\)",
        ),
        (dict(y_test=np.full(50, 12, np.uint8)), "test labels range 12..12, expected 0..9"),
        (dict(y_train=np.zeros(3, np.uint8)), "200 training images but labels of shape"),
        (dict(x_test=np.full((50, 28, 28), 0.5)), "must be pixel bytes 0..255"),
    ],
)
def test_wrong_contents_are_named(npz_file, change, message):
    arrays = dict(np.load(npz_file))
    arrays.update(change)
    np.savez(npz_file, **arrays)
    with pytest.raises(DataError, match=message):
        load_dataset("mnist", path=str(npz_file))


def test_npz_missing_arrays(tmp_path):
    path = tmp_path / "partial.npz"
    np.savez(path, x_train=np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(DataError, match="lacks the arrays y_train, x_test, y_test"):
        load_dataset("mnist", path=str(path))


def test_jobs_in_one_process_share_one_read_only_copy_of_their_data(compose_config, idx_folder):
    from src.experiment import load_data

    folder = idx_folder(gz=True)
    first = load_data(compose_config("dataset=mnist", f"dataset.path={folder}"))
    again = load_data(compose_config("dataset=mnist", f"dataset.path={folder}", "seed=5"))
    assert again is first  # a sweep's next job: no second read, checksum or scaling
    with pytest.raises(ValueError, match="read-only"):
        first.test_images[0, 0, 0, 0] = 1.0  # one job cannot change what the next one sees
    smaller = load_data(
        compose_config("dataset=mnist", f"dataset.path={folder}", "dataset.test_size=20")
    )
    assert smaller is not first and len(smaller.test_images) == 20


def test_an_npz_of_any_shape_and_class_count_loads_with_its_class_names(tmp_path):
    from src.data import load_npz, prepare

    dataset = prepare(load_npz(str(colour_npz(tmp_path / "rgb.npz"))))
    assert dataset.input_shape == (32, 32, 3) and dataset.num_classes == 5
    assert dataset.class_names == tuple(f"class {k}" for k in range(5))
    assert dataset.train_images.dtype == np.float32 and dataset.train_images.max() <= 1.0
    # Without class names in the file: the numbers, as many as the labels need.
    plain = prepare(load_npz(str(colour_npz(tmp_path / "plain.npz", names=False))))
    assert plain.class_names == ("0", "1", "2", "3", "4")
    # The config's names win, and must cover the labels.
    named = prepare(load_npz(str(tmp_path / "plain.npz")), class_names=list("abcde"))
    assert named.class_names == tuple("abcde")
    with pytest.raises(DataError, match=r"training labels range 0..4, expected 0..2"):
        prepare(load_npz(str(tmp_path / "plain.npz")), class_names=list("abc"))


BAD_LABELS = {
    "nan": (np.array([0.0, np.nan] * 60), "labels must be integers, got values such as nan"),
    "fractions": (np.arange(120) % 10 + 0.5, "labels must be integers, got values such as 0.5"),
    "strings": (np.array(["cat", "dog"] * 60), "labels must be integers, got <U3 values"),
    "negative": (np.arange(120) % 5 - 1, "labels range -1..3, expected 0 or more"),
}


@pytest.mark.parametrize("labels, message", BAD_LABELS.values(), ids=BAD_LABELS.keys())
def test_labels_that_are_not_class_numbers_are_refused_in_one_line(tmp_path, labels, message):
    from src.data import load_npz, prepare

    path = colour_npz(tmp_path / "rgb.npz", names=False)
    arrays = dict(np.load(path))
    arrays["y_train"] = labels
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message):
        prepare(load_npz(str(path)))


def test_train_and_test_images_of_different_shapes_are_refused(tmp_path):
    from src.data import load_npz, prepare

    path = colour_npz(tmp_path / "rgb.npz")
    arrays = dict(np.load(path))
    arrays["x_test"] = arrays["x_test"][:, :28, :28]
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=r"training images are \(32, 32, 3\) but test images"):
        prepare(load_npz(str(path)))


def test_a_users_own_loader_outside_src_works_by_target(user_package):
    from src.data import load_configured

    user_package(
        "mydata.loaders",
        "import numpy as np\n"
        "from src.data import Loaded\n\n"
        "def stripes(count=30, size=12):\n"
        "    labels = np.arange(count) % 3\n"
        "    images = np.zeros((count, size, size), np.uint8)\n"
        "    for image, label in zip(images, labels):\n"
        "        image[:, label::3] = 255\n"
        "    return Loaded(images, labels, images[:9], labels[:9], source='stripes',\n"
        "                  class_names=('a', 'b', 'c'))\n",
    )
    spec = {"_target_": "mydata.loaders.stripes", "name": "stripes", "size": 10}
    dataset = load_configured({**spec, "train_size": 20, "test_size": None, "class_names": None})
    assert dataset.input_shape == (10, 10, 1) and len(dataset.train_images) == 20
    assert dataset.class_names == ("a", "b", "c") and dataset.source == "stripes"
    from src.common.errors import UserError

    with pytest.raises(UserError, match="unknown key dataset.colour: mydata.loaders.stripes takes"):
        load_configured({**spec, "colour": 1})


def test_an_image_folder_loads_resized_with_folder_names_as_classes(tmp_path):
    from src.data import load_image_folder, prepare

    root = image_folder(tmp_path / "pets")
    dataset = prepare(load_image_folder(str(root), image_size=[16, 12]))
    assert dataset.input_shape == (16, 12, 3)
    assert dataset.class_names == ("cat", "dog", "eel")
    assert len(dataset.train_images) == 12 and len(dataset.test_images) == 6
    np.testing.assert_array_equal(dataset.train_labels, [0] * 4 + [1] * 4 + [2] * 4)
    # Solid red stays red through the PNG and the JPEG (lossy: within a few levels).
    assert np.allclose(dataset.train_images[0].mean(axis=(0, 1)), [250 / 255, 0, 0], atol=0.02)
    assert np.allclose(dataset.train_images[1].mean(axis=(0, 1)), [250 / 255, 0, 0], atol=0.03)
    grey = prepare(load_image_folder(str(root), image_size=[8, 8], mode="L"))
    assert grey.input_shape == (8, 8, 1)


def test_image_folder_problems_are_named(tmp_path):
    import shutil

    from src.data import load_image_folder

    root = image_folder(tmp_path / "pets")
    shutil.rmtree(root / "test" / "dog")
    with pytest.raises(
        DataError, match="test' lacks the class folders dog|lacks the class folders dog"
    ):
        load_image_folder(str(root))
    empty = tmp_path / "empty"
    (empty / "train" / "a").mkdir(parents=True)
    (empty / "test" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no PNG or JPEG images"):
        load_image_folder(str(empty))
    with pytest.raises(DataError, match="has no train/ folder"):
        load_image_folder(str(tmp_path))


def cifar_batches(folder, per_batch=6, batches=2):
    """A small CIFAR-10 Python distribution, written as the real one is (pickled dicts with
    byte keys, rows of 3072 bytes, channel-first)."""
    import pickle

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{k}" for k in range(1, batches + 1)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(k) for k in rng.integers(0, 10, size=per_batch)]
        with open(folder / name, "wb") as stream:
            pickle.dump({b"data": data, b"labels": labels}, stream)
    return folder


def test_cifar10_from_the_keras_cache_then_an_explicit_path(tmp_path, monkeypatch):
    from src.data import CIFAR10_NAMES, load_cifar10, prepare

    cache = tmp_path / "keras"
    batches = cifar_batches(cache / "cifar-10-batches-py")
    dataset = prepare(load_cifar10(cache_dir=str(cache)))
    assert dataset.source == str(batches)
    assert dataset.input_shape == (32, 32, 3) and dataset.class_names == CIFAR10_NAMES
    assert len(dataset.train_images) == 12 and len(dataset.test_images) == 6
    # Channel-first rows become (32, 32, 3): the first row's first bytes are red's first row.
    import pickle

    with open(batches / "data_batch_1", "rb") as stream:
        row = pickle.load(stream)[b"data"][0]
    np.testing.assert_array_equal(dataset.train_images[0, 0, :, 0] * 255, row[:32].astype(float))
    # An explicit path wins over the cache; a missing one is named.
    other = cifar_batches(tmp_path / "mine", per_batch=3, batches=1)
    assert len(prepare(load_cifar10(path=str(other), cache_dir=str(cache))).train_images) == 3
    with pytest.raises(DataError, match="dataset.path .* does not exist"):
        load_cifar10(path=str(tmp_path / "nowhere"))
    # Neither: the download is tried last (no network here: it fails, and says what was tried).
    monkeypatch.setattr(
        "src.common.tf_runtime.tensorflow", lambda: (_ for _ in ()).throw(OSError("offline"))
    )
    with pytest.raises(
        DataError, match="no cifar10 data found; tried .*empty.*download through Keras"
    ):
        load_cifar10(cache_dir=str(tmp_path / "empty"))


def test_the_offline_default_names_the_data_that_is_here(tmp_path, idx_folder, monkeypatch):
    """MNIST cannot be downloaded: the error says which datasets load here without one."""
    fashion = idx_folder()
    monkeypatch.setattr(data, "SYSTEM_COPIES", {"fashion_mnist": fashion})
    monkeypatch.setenv("HOME", str(tmp_path))  # an empty Keras cache
    with pytest.raises(DataError) as error:
        load_dataset("mnist")
    message = str(error.value)
    assert "\n" not in message
    assert message.endswith(
        f"Data that is here: dataset=fashion_mnist ({fashion}), "
        "dataset=digits (scikit-learn's 8x8 digits, scaled to 28x28)"
    ), message


@pytest.mark.parametrize(
    "y_train, y_test, train_size, test_size, message",
    [
        ([0] * 6, [0, 1, 0, 1], None, None, "the training images hold 1 class (0); two or more"),
        ([0, 0, 0, 1, 1, 1], [0, 1], 3, None, "the training images hold 1 class (0); two or"),
    ],
)
def test_data_of_fewer_than_two_classes_is_refused(
    tmp_path, y_train, y_test, train_size, test_size, message
):
    """One class trains to nothing and leaves the scores nothing to compare with (the random
    logit's other class): refused as the data is read, naming the split and the way out."""
    from src.data import load_npz, prepare

    rng = np.random.default_rng(0)
    path = tmp_path / "one.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (len(y_train), 8, 8), dtype=np.uint8),
        y_train=np.array(y_train),
        x_test=rng.integers(0, 256, (len(y_test), 8, 8), dtype=np.uint8),
        y_test=np.array(y_test),
    )
    with pytest.raises(DataError, match=re.escape(message)):
        prepare(load_npz(str(path)), train_size, test_size)
    if train_size or test_size:  # all of it: two classes in each split
        prepare(load_npz(str(path)))


def test_a_test_slice_of_one_class_is_explained_with_a_warning(tmp_path, caplog):
    """A model may be explained on one class's images (the first test_size of a folder read
    class by class): allowed, and said, since every score is then of that class."""
    from src.data import load_npz, prepare

    rng = np.random.default_rng(0)
    path = tmp_path / "sorted.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (4, 8, 8), dtype=np.uint8),
        y_train=np.array([0, 1, 0, 1]),
        x_test=rng.integers(0, 256, (4, 8, 8), dtype=np.uint8),
        y_test=np.array([1, 1, 0, 0]),
    )
    with caplog.at_level("WARNING", logger="src.data"):
        data = prepare(load_npz(str(path)), test_size=2)
    assert list(data.test_labels) == [1, 1] and data.class_names == ("0", "1")
    (record,) = caplog.records
    assert "the test images hold 1 class (1): every explanation and score" in record.message


def test_an_image_over_the_pixel_limit_is_refused_naming_it_and_the_limit(tmp_path):
    from PIL import Image

    from src.data import load_image_folder

    root = image_folder(tmp_path / "pets", size=(20, 24))
    big = root / "train" / "dog" / "huge.png"
    Image.new("RGB", (60, 50), (0, 0, 255)).save(big)
    with pytest.raises(DataError) as error:
        load_image_folder(str(root), max_pixels=2999)
    assert str(error.value) == (
        f"{big} has 60x50 = 3,000 pixels, more than dataset.max_pixels (2,999); shrink it, "
        "remove it, or raise dataset.max_pixels"
    )
    load_image_folder(str(root), max_pixels=3000)  # at the limit: read
    # Past Pillow's own guard (twice its MAX_IMAGE_PIXELS), the project's message still wins.
    from PIL import Image as pil

    guard = pil.MAX_IMAGE_PIXELS
    try:
        pil.MAX_IMAGE_PIXELS = 100
        with pytest.raises(DataError, match=r"huge.png has 60x50"):
            load_image_folder(str(root), max_pixels=2999)
        assert pil.MAX_IMAGE_PIXELS == 100  # restored
    finally:
        pil.MAX_IMAGE_PIXELS = guard
