"""CSV files (`--dataset csv`): decode_csv's rules against a reference parse, pixel and tabular
datasets, one-line errors naming file, line and column, conversion to TFRecord and back, and
training through the CLI."""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import MNIST_DIR, assert_one_line_error, needs_mnist, run_cli, run_in_process, snapshot
from visionflow.data.catalog import DataRequest, load
from visionflow.errors import InputError
from visionflow.formats.csv_table import CsvOptions, parse_defaults, read_csv_columns, write_csv_columns


def write(path: Path, text: str) -> Path:
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def pixel_csv(path: Path, n: int, side: int = 8, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A "label,pixel0,..." file of `n` random side×side images; returns (images, labels)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, side, side), dtype=np.uint8)
    labels = rng.integers(0, classes, n)
    rows = ["label," + ",".join(f"pixel{i}" for i in range(side * side))]
    rows += [f"{l}," + ",".join(map(str, im.ravel())) for im, l in zip(images, labels)]
    write(path, "\n".join(rows) + "\n")
    return images, labels


# --- decode_csv semantics against Python's csv module --------------------------------------

cell = st.one_of(st.integers(-10**6, 10**6).map(str),
                 st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda v: repr(float(v))),
                 st.just(""))


@st.composite
def tables(draw) -> tuple[str, list[list[str]], str, list[bool]]:
    columns = draw(st.integers(2, 6))
    rows = draw(st.lists(st.lists(cell, min_size=columns, max_size=columns), min_size=1, max_size=30))
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    quoted = draw(st.lists(st.booleans(), min_size=columns, max_size=columns))
    return delimiter, rows, draw(st.sampled_from(["crlf", "lf"])), quoted


def _reference(rows: list[list[str]], defaults: float) -> tuple[np.ndarray, list[str]]:
    features = np.array([[float(v) if v != "" else defaults for v in row[1:]] for row in rows], dtype=np.float32)
    labels = [row[0] if row[0] != "" else f"{defaults:g}" for row in rows]
    return features, labels


@given(tables())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_reads_what_pythons_csv_module_reads(tmp_path_factory, table) -> None:
    delimiter, rows, newline, quoted = table
    path = tmp_path_factory.mktemp("csv") / "t.csv"
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n" if newline == "crlf" else "\n",
                        quoting=csv.QUOTE_MINIMAL)
    header = [f"c{i}" for i in range(len(rows[0]))]
    writer.writerow(header)
    writer.writerows(rows)
    text = buffer.getvalue()
    for j, q in enumerate(quoted):  # quote the chosen columns' fields: "1.5" is the number 1.5, as in decode_csv
        if q:
            text = "\n".join(_quote_column(line, j, delimiter) if i else line
                             for i, line in enumerate(text.split("\n")))
    path.write_text(text)
    got = read_csv_columns(path, CsvOptions(delimiter=delimiter, column_defaults="-7", label_column="c0"))
    features, labels = _reference(rows, -7.0)
    np.testing.assert_array_equal(got.features, features)
    assert [str(v) for v in got.labels] == labels
    assert got.feature_names == tuple(header[1:])


def _quote_column(line: str, column: int, delimiter: str) -> str:
    end = "\r" if line.endswith("\r") else ""
    fields = line[: len(line) - len(end)].split(delimiter)
    if len(fields) > column and fields[column]:
        fields[column] = f'"{fields[column]}"'
    return delimiter.join(fields) + end


def test_header_detection_label_column_and_defaults(tmp_path) -> None:
    path = write(tmp_path / "a.csv", "1,2,3\n4,5,6\n")
    no_header = read_csv_columns(path, CsvOptions())
    assert no_header.names == ("column0", "column1", "column2") and len(no_header.labels) == 2
    assert read_csv_columns(path, CsvOptions(header=True)).names == ("1", "2", "3")
    last = read_csv_columns(path, CsvOptions(label_column="-1"))
    assert list(last.labels) == [3, 6] and last.features.tolist() == [[1, 2], [4, 5]]
    named = write(tmp_path / "b.csv", "x,label,y\n1,0,2\n3,1,\n")
    got = read_csv_columns(named, CsvOptions(column_defaults="y=9.5"))
    assert got.label_name == "label" and got.features.tolist() == [[1, 2], [3, 9.5]]
    assert parse_defaults("0,,1", ["a", "b", "c"], "f") == [0.0, None, 1.0]
    with pytest.raises(InputError, match="gives 2 defaults for 3 columns"):
        parse_defaults("0,1", ["a", "b", "c"], "f")
    with pytest.raises(InputError, match="'z=1' names no column"):
        parse_defaults("z=1", ["a", "b", "c"], "f")


@pytest.mark.parametrize("text, fragments", [
    ("label,a,b\n0,1,2\n1,x,3\n", ["bad.csv: line 3, column 'a'", "'x' is not a number"]),
    ("label,a,b\n0,1,2\n1,3\n", ["bad.csv: line 3: 2 fields, expected 3"]),
    ("label,a,b\n0,1,2\n1,,3\n", ["bad.csv: line 3, column 'a'", "empty field", "no default"]),
    ("label,a,b\n0,1,2\n,1,3\n", ["bad.csv: line 3, column 'label'", "empty field"]),
    ('label,a,b\n"x\ny",1,2\nz,5,nan\n', ["bad.csv: line 4, column 'b'", "not a finite number"]),  # a quoted newline
    ("label,a,b\n0,1,2\n1,1,inf\n", ["bad.csv: line 3, column 'b'", "not a finite number"]),
])
def test_bad_records_name_file_line_and_column(tmp_path, text, fragments) -> None:
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(InputError) as e:
        read_csv_columns(path, CsvOptions(image_shape=()))
    for fragment in fragments:
        assert fragment in str(e.value), str(e.value)


def test_pixels_must_be_bytes_and_gzip_streams(tmp_path) -> None:
    images, labels = pixel_csv(tmp_path / "p.csv.gz", 50)
    got = read_csv_columns(tmp_path / "p.csv.gz", CsvOptions(), pixels=True)
    assert got.features.dtype == np.uint8
    np.testing.assert_array_equal(got.features.reshape(-1, 8, 8), images)
    write(tmp_path / "q.csv", "label,p0,p1\n0,1,2\n1,256,0\n")
    with pytest.raises(InputError, match=r"q.csv: line 3, column 'p0': pixel value '256' is not an integer in 0-255"):
        read_csv_columns(tmp_path / "q.csv", CsvOptions(), pixels=True)
    (tmp_path / "cut.csv.gz").write_bytes((tmp_path / "p.csv.gz").read_bytes()[:-40])
    with pytest.raises(InputError, match="cut.csv.gz"):
        read_csv_columns(tmp_path / "cut.csv.gz", CsvOptions(), pixels=True)


def test_many_blocks_stream_in_order(tmp_path, monkeypatch) -> None:
    import visionflow.formats.csv_table as table

    monkeypatch.setattr(table, "BLOCK_BYTES", 4096)  # 30 blocks for this file
    images, labels = pixel_csv(tmp_path / "big.csv", 600, side=10)
    got = read_csv_columns(tmp_path / "big.csv", CsvOptions(), pixels=True)
    np.testing.assert_array_equal(got.features.reshape(-1, 10, 10), images)
    assert got.labels.astype(int).tolist() == labels.tolist()


# --- datasets ---------------------------------------------------------------------------------

def test_one_file_splits_the_same_way_every_time(tmp_path) -> None:
    images, labels = pixel_csv(tmp_path / "all.csv", 200)
    first = load("csv", DataRequest(data_dir=str(tmp_path / "all.csv")))
    again = load("csv", DataRequest(data_dir=str(tmp_path / "all.csv")))
    assert (len(first.train), len(first.validation), len(first.test)) == (162, 18, 20)
    assert first.image_shape == (8, 8, 1) and first.class_names == ("0", "1", "2")
    for split in ("train", "validation", "test"):
        np.testing.assert_array_equal(first.split(split).images, again.split(split).images)
    every = np.concatenate([first.train.images, first.validation.images, first.test.images])
    assert sorted(map(bytes, every)) == sorted(map(bytes, images[..., None]))  # a partition of the file


def test_folder_splits_by_file_name_and_labels_file(tmp_path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    pixel_csv(folder / "train-a.csv", 40, seed=1)
    pixel_csv(folder / "train-b.csv.gz", 30, seed=2)
    pixel_csv(folder / "test.csv", 25, seed=3)
    (folder / "labels.txt").write_text("cat\ndog\nemu\nfox\n")
    data = load("csv", DataRequest(data_dir=str(folder), validation_size=10))
    assert (len(data.train), len(data.validation), len(data.test)) == (60, 10, 25)
    assert data.class_names == ("cat", "dog", "emu", "fox")
    (folder / "labels.txt").write_text("cat\ndog\n")
    with pytest.raises(InputError, match=r"train-a.csv: line \d+, column 'label': label '2' is not one of the 2 classes"):
        load("csv", DataRequest(data_dir=str(folder)))


def test_image_shape_auto_explicit_and_tabular(tmp_path) -> None:
    pixel_csv(tmp_path / "sq.csv", 30, side=8)
    assert load("csv", DataRequest(data_dir=str(tmp_path / "sq.csv"))).image_shape == (8, 8, 1)
    colour = load("csv", DataRequest(data_dir=str(tmp_path / "sq.csv"), csv=CsvOptions(image_shape=(4, 16))))
    assert colour.image_shape == (4, 16, 1)
    rgb = load("csv", DataRequest(data_dir=str(tmp_path / "sq.csv"), csv=CsvOptions(image_shape=(4, 4, 4))))
    assert rgb.image_shape == (4, 4, 4)
    tabular = load("csv", DataRequest(data_dir=str(tmp_path / "sq.csv"), csv=CsvOptions(image_shape=())))
    assert tabular.train.images.shape[1:] == (1, 1, 64) and tabular.train.images.dtype == np.float32
    with pytest.raises(InputError, match="--image-shape 5,5 is 25 pixels, but the file has 64 feature columns"):
        load("csv", DataRequest(data_dir=str(tmp_path / "sq.csv"), csv=CsvOptions(image_shape=(5, 5))))
    write(tmp_path / "iris.csv", "sl,sw,species\n" + "5.1,3.5,setosa\n7.0,3.2,versicolor\n6.3,3.3,virginica\n" * 3)
    iris = load("csv", DataRequest(data_dir=str(tmp_path / "iris.csv"), csv=CsvOptions(label_column="species"),
                                   testing_percentage=0, validation_size=0))
    assert iris.class_names == ("setosa", "versicolor", "virginica") and iris.image_shape == (1, 1, 2)


# --- conversion and the CLI -------------------------------------------------------------------

def test_csv_to_tfrecord_and_back_keeps_every_pixel(tmp_path) -> None:
    (tmp_path / "src").mkdir()
    pixel_csv(tmp_path / "src" / "train.csv", 60)
    pixel_csv(tmp_path / "src" / "test.csv", 12, seed=5)
    assert run_cli("convert", "--dataset", "csv", "--data-dir", tmp_path / "src", "--output", tmp_path / "tf").returncode == 0
    back = run_cli("convert", "--dataset", "tfrecord", "--data-dir", tmp_path / "tf", "--output", tmp_path / "back",
                   "--format", "csv", "--compress")
    assert back.returncode == 0, back.stderr
    original = load("csv", DataRequest(data_dir=str(tmp_path / "src"), validation_size=0))
    again = load("csv", DataRequest(data_dir=str(tmp_path / "back"), validation_size=0))
    for split in ("train", "test"):
        a, b = original.split(split), again.split(split)
        order_a, order_b = np.lexsort(a.images.reshape(len(a), -1).T), np.lexsort(b.images.reshape(len(b), -1).T)
        np.testing.assert_array_equal(a.images[order_a], b.images[order_b])
        np.testing.assert_array_equal(a.labels[order_a], b.labels[order_b])


def test_writer_roundtrips_floats_exactly(tmp_path) -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 5)).astype(np.float32) * 1e3
    write_csv_columns(tmp_path / "f.csv", np.arange(40) % 4, features, [f"f{i}" for i in range(5)])
    got = read_csv_columns(tmp_path / "f.csv", CsvOptions())
    np.testing.assert_array_equal(got.features, features)


def test_train_and_evaluate_on_csv_from_the_cli(tmp_path) -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 6)) * 3
    labels = rng.integers(0, 3, 300)
    features = centers[labels] + rng.normal(size=(300, 6))
    names = [f"f{i}" for i in range(6)]
    write(tmp_path / "blobs.csv", "kind," + ",".join(names) + "\n" + "".join(
        f"{['a', 'b', 'c'][l]}," + ",".join(f"{v:.4f}" for v in row) + "\n" for l, row in zip(labels, features)))
    model_dir = tmp_path / "run"
    done = run_cli("train", "--dataset", "csv", "--data-dir", tmp_path / "blobs.csv", "--label-column", "kind",
                   "--model", "dense", "--epochs", "8", "--model-dir", model_dir, "--json")
    assert done.returncode == 0, done.stderr
    assert '"accuracy"' in done.stdout
    evaluated = run_cli("evaluate", "--model-dir", model_dir, "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    import json

    result = json.loads(evaluated.stdout)
    assert result["accuracy"] >= 0.9 and result["count"] == 30  # separable blobs; chance is 1/3
    assert [c["label"] for c in result["per_class"]] == ["a", "b", "c"]


def test_bad_csv_is_one_line_and_changes_nothing(tmp_path) -> None:
    pixel_csv(tmp_path / "ok.csv", 40)
    model_dir = tmp_path / "run"
    assert run_cli("train", "--dataset", "csv", "--data-dir", tmp_path / "ok.csv", "--model", "mlp", "--steps", "5",
                   "--model-dir", model_dir).returncode == 0
    before = snapshot(model_dir)
    text = (tmp_path / "ok.csv").read_text().splitlines()
    text[7] = text[7].replace(",", ",oops", 1)
    write(tmp_path / "ok.csv", "\n".join(text) + "\n")
    proc = run_in_process("train", "--dataset", "csv", "--data-dir", tmp_path / "ok.csv", "--model", "mlp",
                          "--steps", "10", "--model-dir", model_dir)
    assert_one_line_error(proc, "ok.csv: line 8, column 'pixel0'", "'oops")
    assert snapshot(model_dir) == before
    assert_one_line_error(run_in_process("train", "--dataset", "csv", "--model-dir", tmp_path / "x"),
                          "--dataset csv needs --data-dir")
    assert_one_line_error(run_in_process("train", "--dataset", "csv", "--data-dir", tmp_path / "ok.csv",
                                         "--image-shape", "3,x", "--model-dir", tmp_path / "y"), "--image-shape")


def test_a_file_url_is_read_like_a_file(tmp_path) -> None:
    images, _ = pixel_csv(tmp_path / "remote.csv", 30)
    data = load("csv", DataRequest(data_dir=(tmp_path / "remote.csv").as_uri(), cache_dir=str(tmp_path / "cache"),
                                   validation_size=0, testing_percentage=0))
    assert sorted(map(bytes, data.train.images)) == sorted(map(bytes, images[..., None]))


@needs_mnist
def test_real_mnist_as_csv_equals_the_idx_files(tmp_path) -> None:
    from visionflow.formats.idx import read_idx

    images = read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")[:2000]
    labels = read_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz")[:2000]
    write_csv_columns(tmp_path / "mnist_test.csv.gz", labels.astype(np.int64), images.reshape(2000, -1),
                      [f"pixel{i}" for i in range(784)])
    got = read_csv_columns(tmp_path / "mnist_test.csv.gz", CsvOptions(), pixels=True)
    np.testing.assert_array_equal(got.features.reshape(-1, 28, 28), images)
    assert got.labels.astype(int).tolist() == labels.tolist()
    data = load("csv", DataRequest(data_dir=str(tmp_path / "mnist_test.csv.gz")))
    assert data.image_shape == (28, 28, 1) and data.num_classes == 10


def test_regression_from_the_cli_and_python(tmp_path) -> None:
    """A noiseless linear target: the dense regressor's R² is near 1 (0 would be the mean's)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(600, 4))
    y = x @ np.array([3.0, -2.0, 0.5, 1.0]) * 10 + 50
    write(tmp_path / "lin.csv", "a,b,c,d,target\n" + "".join(
        ",".join(f"{v:.5f}" for v in row) + f",{t:.5f}\n" for row, t in zip(x, y)))
    model_dir = tmp_path / "reg"
    done = run_cli("train", "--dataset", "csv", "--data-dir", tmp_path / "lin.csv", "--label-column", "target",
                   "--regression", "--model", "dense", "--epochs", "20", "--model-dir", model_dir, "--json")
    assert done.returncode == 0, done.stderr
    import json

    result = json.loads(done.stdout)
    assert result["r2"] > 0.95 and result["rmse"] < 0.25 * np.std(y), result
    assert "RMSE" in done.stderr and (model_dir / "regression_test.png").is_file()
    assert json.loads((model_dir / "config.json").read_text())["train"]["loss"] == "mse"
    assert_one_line_error(run_in_process("export", "--model-dir", model_dir, "--export-base", tmp_path / "e"),
                          "predicts numbers (a CSV regression)")
    from visionflow.api import Classifier

    values = Classifier(model_dir).predict(x[:50])["values"]
    assert np.corrcoef(values, y[:50])[0, 1] > 0.97
    with pytest.raises(InputError, match=r"expected \(N, 4\) feature rows"):
        Classifier(model_dir).predict(x[:5, :3])
    assert_one_line_error(run_in_process("train", "--dataset", "csv", "--data-dir", tmp_path / "lin.csv",
                                         "--regression", "--label-column", "a", "--model", "dense", "--model-dir",
                                         tmp_path / "r2", "--steps", "1", "--column-defaults", "a=x"),
                          "--column-defaults", "'x' is not a number")
    write(tmp_path / "bad.csv", "a,target\n1,2\n3,four\n")
    with pytest.raises(InputError, match=r"bad.csv: line 3, column 'target': regression target 'four' is not a finite"):
        load("csv", DataRequest(data_dir=str(tmp_path / "bad.csv"), csv=CsvOptions(label_column="target", regression=True)))


def test_python_and_keras_faces_take_a_csv_dataset(tmp_path) -> None:
    import visionflow as vf
    from visionflow import keras
    from visionflow.keras import layers

    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 3))
    labels = (x[:, 0] + x[:, 1] > 0).astype(int)
    write(tmp_path / "t.csv", "x0,x1,x2,y\n" + "".join(f"{a:.4f},{b:.4f},{c:.4f},{'yes' if l else 'no'}\n"
                                                    for (a, b, c), l in zip(x, labels)))
    options = vf.CsvOptions(label_column="y")
    clf = vf.Classifier(tmp_path / "py", model="dense", dataset="csv", data_dir=str(tmp_path / "t.csv"), csv=options,
                        epochs=5)
    assert clf.train().test.accuracy > 0.85
    assert clf.evaluate().count == 40  # re-read from the saved config: same split, same classes
    assert clf.predict(np.array([[2.0, 2.0, 0.0], [-2.0, -2.0, 0.0]]))["classes"].tolist() == [1, 0]  # ("no", "yes")
    data = vf.load_dataset("csv", tmp_path / "t.csv", csv=options)
    model = keras.Sequential([keras.Input((3,)), layers.Dense(16, activation="relu"), layers.Dense(2)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    history = model.fit(data, epochs=15, batch_size=32, verbose=0)
    assert history.history["val_accuracy"][-1] > 0.85


def test_what_a_review_found(tmp_path) -> None:
    """Headerless files with text labels, constant and float-written columns, Excel's byte-order
    mark, exact label defaults, misordered columns, and flags given to the wrong dataset."""
    headerless = write(tmp_path / "iris.data", "5.1,3.5,setosa\n7.0,3.2,versicolor\n6.3,3.3,virginica\n")
    got = read_csv_columns(headerless, CsvOptions(label_column="-1"))
    assert len(got.labels) == 3 and got.names[0] == "column0"  # the first record is data, not a header
    write(tmp_path / "short.csv", "a,b,c,label\n1,2\n3,4,5,6\n")
    with pytest.raises(InputError, match="short.csv: line 2: 2 fields, expected 4"):
        read_csv_columns(tmp_path / "short.csv", CsvOptions())
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbfx,y,z\n1,2,3\n3,4,5\n")
    assert read_csv_columns(tmp_path / "bom.csv", CsvOptions(label_column="x")).label_name == "x"
    write(tmp_path / "gap.csv", "a,target\n1,\n2,5\n")
    target = read_csv_columns(tmp_path / "gap.csv", CsvOptions(label_column="target", regression=True,
                                                               column_defaults="target=1234567"))
    assert target.labels.tolist() == [1234567.0, 5.0]
    with pytest.raises(InputError, match="'inf' is not a finite number"):
        read_csv_columns(tmp_path / "gap.csv", CsvOptions(column_defaults="inf"))
    floats = "label," + ",".join(f"p{i}" for i in range(64)) + "\n" + "".join(
        f"{k % 2}," + ",".join(f"{(k + i) % 16}.0" for i in range(64)) + "\n" for k in range(30))
    write(tmp_path / "floats.csv", floats)  # pandas writes float columns as "14.0": tabular, not pixels
    assert load("csv", DataRequest(data_dir=str(tmp_path / "floats.csv"))).train.images.dtype == np.float32
    constant = "".join(f"{i % 3},{i * 0.5},5.0\n" for i in range(60))
    write(tmp_path / "const.csv", "y,a,b\n" + constant)
    data = load("csv", DataRequest(data_dir=str(tmp_path / "const.csv")))
    from visionflow.preprocessing import fit_preprocessing

    pre = fit_preprocessing(data.train.images)
    import torch

    x = pre.normalize(torch.from_numpy(data.train.images))
    assert float(x[:, 1].abs().max()) < 1e-3 and abs(float(x[:, 0].mean())) < 1e-3  # constant → 0, not huge
    folder = tmp_path / "two"
    folder.mkdir()
    write(folder / "train.csv", "y,a,b\n0,1,2\n1,3,4\n")
    write(folder / "test.csv", "y,b,a\n0,2,1\n")
    with pytest.raises(InputError, match="feature column 1 is 'b', but in .*train.csv it is 'a'"):
        load("csv", DataRequest(data_dir=str(folder)))
    assert_one_line_error(run_in_process("train", "--dataset", "csv", "--data-dir", tmp_path / "const.csv",
                                         "--steps", "2", "--model-dir", tmp_path / "m1"), "use --model dense")
    assert_one_line_error(run_in_process("train", "--dataset", "digits", "--regression", "--steps", "2",
                                         "--model-dir", tmp_path / "m2"), "apply to --dataset csv, not digits")
