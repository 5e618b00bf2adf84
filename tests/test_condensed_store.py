import h5py
import numpy as np
import pytest
import torch

from dcforget.condensed_store import CondensedFileError, CondensedSet, read_condensed, write_condensed
from dcforget.errors import OutputExistsError


def _set(**kw):
    # deliberately not class-major: the writer must sort rows and carry the buckets along
    labels = torch.tensor([1, 0, 1, 0])
    base = dict(
        images=torch.rand(4, 3, 8, 8),
        labels=labels,
        bucket_indptr=torch.tensor([0, 2, 3, 6, 7]),
        bucket_indices=torch.tensor([0, 5, 1, 2, 3, 4, 6]),
        source_indices=torch.tensor([-1, 1, -1, 6]),
        method="fdm",
        dataset="synthetic",
        num_classes=2,
        norm_mean=(0.5,) * 3,
        norm_std=(0.25,) * 3,
        train_size=8,
        train_fingerprint="ab" * 32,
        config={"a": 1},
    )
    base.update(kw)
    return CondensedSet(**base)


def test_round_trip_class_major(tmp_path):
    cs = _set()
    path = write_condensed(tmp_path / "c.h5", cs)
    back = read_condensed(path)
    order = [1, 3, 0, 2]
    assert back.labels.tolist() == [0, 0, 1, 1]
    assert torch.equal(back.images, cs.images[order])
    assert [back.bucket(j).tolist() for j in range(4)] == [[1], [6], [0, 5], [2, 3, 4]]
    assert back.source_indices.tolist() == [1, 6, -1, -1]
    assert back.class_offsets.tolist() == [0, 2, 4] and back.config == {"a": 1}
    with h5py.File(path) as f:
        assert f.attrs["schema"] == "dcforget.condensed_set" and f.attrs["pixel_space"] == "unit"
        assert list(f["class_offsets"][()]) == [0, 2, 4] and f.attrs["kornia_version"]


def test_no_overwrite_without_force(tmp_path):
    path = write_condensed(tmp_path / "c.h5", _set())
    with pytest.raises(OutputExistsError):
        write_condensed(path, _set())
    write_condensed(path, _set(method="kmeans"), force=True)
    assert read_condensed(path).method == "kmeans"


def _corrupt(tmp_path, edit):
    path = write_condensed(tmp_path / "c.h5", _set())
    with h5py.File(path, "a") as f:
        edit(f)
    return path


def _replace(name, value):
    def edit(f):
        del f[name]
        f[name] = value

    return edit


@pytest.mark.parametrize(
    "edit, msg",
    [
        (lambda f: f.attrs.__setitem__("schema", "someone.else"), "not a dcforget condensed set"),
        (lambda f: f.attrs.__setitem__("schema_version", 2), "newer than this toolkit"),
        (lambda f: f["images"].__setitem__((0, 0, 0, 0), np.nan), "NaN"),
        (_replace("labels", np.array([0, 0, 1, 5])), "labels outside"),
        (_replace("buckets/indptr", np.array([0, 1, 2, 6, 5])), "buckets/indptr"),
        (_replace("buckets/indices", np.array([1, 6, 0, 5, 2, 3, 99])), "outside the training set"),
        (_replace("provenance/source_indices", np.array([1, 6, -2, -1])), "source_indices"),
        (_replace("class_offsets", np.array([0, 3, 4])), "class_offsets"),
        (lambda f: f.__delitem__("labels"), "missing"),
        (_replace("images", np.zeros((4, 3, 9, 9), dtype=np.float32)), "expected float32"),
        (lambda f: f.attrs.__setitem__("pixel_space", "zca"), "pixel_space"),
    ],
)
def test_reader_rejects_corrupt_files(tmp_path, edit, msg):
    path = _corrupt(tmp_path, edit)
    with pytest.raises(CondensedFileError, match=msg) as info:
        read_condensed(path)
    assert "\n" not in str(info.value)


def test_reader_rejects_truncated_and_foreign_files(tmp_path):
    path = write_condensed(tmp_path / "c.h5", _set())
    data = path.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CondensedFileError, match="truncated"):
        read_condensed(cut)
    txt = tmp_path / "t.h5"
    txt.write_text("hello")
    with pytest.raises(CondensedFileError, match="not a readable HDF5"):
        read_condensed(txt)
    with pytest.raises(CondensedFileError, match="does not exist"):
        read_condensed(tmp_path / "none.h5")


def test_writer_refuses_invalid_sets(tmp_path):
    with pytest.raises(CondensedFileError, match="NaN"):
        write_condensed(tmp_path / "x.h5", _set(images=torch.full((4, 3, 8, 8), float("nan"))))
    with pytest.raises(CondensedFileError, match="labels outside"):
        write_condensed(tmp_path / "x.h5", _set(labels=torch.tensor([0, 1, 2, 1])))
    assert not (tmp_path / "x.h5").exists()


def _whole_class(**kw):
    # 8 training images, classes {0,1,2,3} and {4,5,6,7}, two images per class, each standing for its whole class
    base = dict(
        images=torch.rand(4, 3, 8, 8),
        labels=torch.tensor([0, 0, 1, 1]),
        bucket_indptr=torch.tensor([0, 4, 8, 12, 16]),
        bucket_indices=torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7]),
        source_indices=torch.full((4,), -1),
        method="dm",
        dataset="synthetic",
        num_classes=2,
        norm_mean=(0.5,) * 3,
        norm_std=(0.25,) * 3,
        train_size=8,
        train_fingerprint="ab" * 32,
        influence="class",
    )
    base.update(kw)
    return CondensedSet(**base)


@pytest.mark.parametrize(
    "kw, msg",
    [
        (
            {
                "bucket_indptr": torch.tensor(
                    [0, 2, 4, 6, 8]
                ),  # sub-class buckets (DM-labelled K-means, or old herding)
                "bucket_indices": torch.tensor([0, 1, 2, 3, 4, 5, 6, 7]),
            },
            "whole class",
        ),
        (
            {
                "bucket_indptr": torch.tensor([0, 4, 7, 11, 15]),  # bucket 1 misses image 3
                "bucket_indices": torch.tensor([0, 1, 2, 3, 0, 1, 2, 4, 5, 6, 7, 4, 5, 6, 7]),
            },
            "bucket 1",
        ),
        ({"bucket_indices": torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 3, 5, 6, 7, 3, 5, 6, 7])}, "exactly one class"),
        ({"train_size": 9}, "covering all 9"),
    ],
)
def test_class_influence_needs_buckets_that_are_whole_classes(tmp_path, kw, msg):
    assert read_condensed(write_condensed(tmp_path / "ok.h5", _whole_class())).influence == "class"
    with pytest.raises(CondensedFileError, match=msg):
        write_condensed(tmp_path / "x.h5", _whole_class(**kw))
    assert not (tmp_path / "x.h5").exists()
    # a file that claims class influence for sub-class buckets (another tool, an older toolkit) is refused on load
    path = write_condensed(tmp_path / "sub.h5", _whole_class(influence="bucket", **kw))
    with h5py.File(path, "a") as f:
        f["provenance"].attrs["influence"] = "class"
    with pytest.raises(CondensedFileError, match=msg):
        read_condensed(path)


def test_pixel_range_attribute_round_trips(tmp_path):
    unit = write_condensed(tmp_path / "u.h5", _set())
    free = write_condensed(tmp_path / "f.h5", _set(pixel_range="unconstrained"))
    with h5py.File(unit) as f, h5py.File(free) as g:
        assert f.attrs["pixel_range"] == "unit" and g.attrs["pixel_range"] == "unconstrained"
    assert read_condensed(free).pixel_range == "unconstrained" and read_condensed(unit).pixel_range == "unit"
