"""CSV files as typed columns: the tutorials' `TextLineReader` + `decode_csv(line, record_defaults)`.

A file (`.csv`, or `.csv.gz` decompressed on the fly) becomes one label column and D numeric
feature columns, read by pyarrow's CSV reader: whole with all cores when the file is at most 512 MiB of plain
text, else streamed block by block (8 MiB of text at a time) — never as Python lists: each
block is parsed straight to uint8
(pixels: pyarrow itself rejects anything but an integer 0–255) or float32 (tabular features,
then checked finite) and packed into one (rows, D) array before the next is read.

decode_csv's semantics:
- the first line is a header when a column is text there and a number (or empty) on line 2 —
  so a headerless file with a text label column keeps its first record — or as `header` says;
- `label_column` is a column's name or its index (negative counts from the end); by default the
  column named "label" (any case), else the first;
- `column_defaults` fill empty fields (`record_defaults`): one value for every column, one entry
  per column ("" for a required column), or NAME=VALUE pairs; a column without a default is
  required, and an empty field in it is an error;
- fields may be quoted (RFC 4180: `"1,5"` is one field, `""` an escaped quote); `delimiter` is
  one character.

A problem — a field that is not a number, a record with the wrong number of fields, an empty
required field, a pixel outside 0–255 — is one `InputError` naming the file, the line and the
column.  The fast reader only notices that something is wrong; the file is then scanned again
with Python's `csv` module up to the first bad record, so the message gives the exact line even
when quoted fields span lines.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional, Sequence

from ..errors import InputError

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

#: The most values (rows × feature columns) one file may hold: 2·10⁹ pixels is 2 GB as uint8.
MAX_VALUES = 2_000_000_000
#: Text per block of the streaming reader (bytes): big enough that per-block work is noise.
BLOCK_BYTES = 8 << 20
#: Plain files up to this size are parsed by pyarrow's multi-threaded reader in one call (its
#: typed columns take no more memory than the result); larger ones, and gzip, stream by block.
WHOLE_FILE_BYTES = 512 << 20


@dataclass(frozen=True)
class CsvOptions:
    """How the lines of a CSV file become a label and features (saved with every run trained on CSV).

    `label_column`: a column name or index as text ("label", "0", "-1"); None picks the column
    named "label" (any case) or else the first.  `header`: True, False, or None to detect it.
    `column_defaults`: as `--column-defaults` takes it (see `parse_defaults`); None makes
    every column required.  `image_shape`: (H, W) or (H, W, C) of pixel columns; None infers a
    square greyscale image from pixel-like data, () reads the columns as tabular features.
    `regression`: the label column holds numbers to predict (float targets), not classes.
    """

    label_column: Optional[str] = None
    header: Optional[bool] = None
    delimiter: str = ","
    column_defaults: Optional[str] = None
    image_shape: Optional[tuple[int, ...]] = None
    regression: bool = False

    def __post_init__(self) -> None:
        if len(self.delimiter) != 1 or self.delimiter in "\"\r\n":
            raise InputError(f"--delimiter must be one character other than a quote or newline, got {self.delimiter!r}")
        if self.image_shape and (len(self.image_shape) not in (2, 3) or min(self.image_shape) < 1):
            raise InputError(f"--image-shape must be H,W or H,W,C of positive sizes, got {self.image_shape}")


@dataclass(frozen=True)
class CsvColumns:
    """One file read: `features` (N, D) float32 — or uint8 when read as pixels — and `labels` (N,):
    int64 when every label is an integer, else the label column's text (a numpy object array,
    ints where a block held only integers); `names` are all the columns (from the header when
    `header`, else column0, column1, …)."""

    path: str
    names: tuple[str, ...]
    label_name: str
    feature_names: tuple[str, ...]
    features: "np.ndarray"
    labels: "np.ndarray"
    header: bool = True


def parse_image_shape(text: str) -> Optional[tuple[int, ...]]:
    """`--image-shape`: "28,28" or "32,32,3" → a tuple; "auto" → None; "none" → () (tabular)."""
    text = text.strip().lower()
    if text == "auto":
        return None
    if text in ("none", "tabular"):
        return ()
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        raise InputError(f"--image-shape {text!r}: expected H,W or H,W,C (or auto, none)") from None
    CsvOptions(image_shape=shape)
    return shape


def parse_defaults(spec: Optional[str], names: Sequence[str], path: str) -> list[Optional[float]]:
    """The default of each column (None: required) from `--column-defaults`.

    "0" gives every column the default 0; "0,,1.5" gives one entry per column, empty meaning
    required (decode_csv's record_defaults); "age=30,fare=0" names columns, the others required.
    """
    if spec is None or spec.strip() == "":
        return [None] * len(names)
    parts = [part.strip() for part in spec.split(",")]

    def number(text: str, what: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise InputError(f"{path}: --column-defaults: {what} {text!r} is not a number") from None
        if not math.isfinite(value):
            raise InputError(f"{path}: --column-defaults: {what} {text!r} is not a finite number")
        return value

    if any("=" in part for part in parts):
        out: list[Optional[float]] = [None] * len(names)
        for part in parts:
            name, sep, value = part.partition("=")
            if not sep or name.strip() not in names:
                raise InputError(f"{path}: --column-defaults: {part!r} names no column (columns: "
                                 f"{', '.join(names[:5])}{', ...' if len(names) > 5 else ''})")
            out[names.index(name.strip())] = number(value.strip(), f"the default of {name.strip()}")
        return out
    if len(parts) == 1:
        return [number(parts[0], "the default")] * len(names)
    if len(parts) != len(names):
        raise InputError(f"{path}: --column-defaults gives {len(parts)} defaults for {len(names)} columns")
    return [number(part, f"the default of {name}") if part else None for part, name in zip(parts, names)]


def _open_text(path: Path) -> io.TextIOBase:
    # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8") is not part of the first column's name
    raw = gzip.open(path, "rt", encoding="utf-8-sig", newline="") if path.name.endswith(".gz") else \
        open(path, encoding="utf-8-sig", newline="")
    return raw  # type: ignore[return-value]


def _records(path: Path, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(line number where the record ends, fields) of every non-empty record."""
    try:
        with _open_text(path) as f:
            reader = csv.reader(f, delimiter=delimiter, strict=True)
            for fields in reader:
                if fields:
                    yield reader.line_num, fields
    except (csv.Error, UnicodeDecodeError, OSError, EOFError) as e:
        raise InputError(f"{path}: not readable as CSV text ({e})") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class _Layout:
    """What line 1 (and line 2) say: the column names, whether line 1 is a header, the label
    column's index, and the first few data records, read in one pass over the file's start."""

    names: tuple[str, ...]
    header: bool
    label: int
    first: list[list[str]]


def _layout(path: Path, options: CsvOptions, peek: int = 1) -> _Layout:
    """The file's layout, with up to `peek` (at least 1) data records."""
    records = _records(path, options.delimiter)
    head = [fields for _, (_, fields) in zip(range(peek + 1), records)]
    if not head:
        raise InputError(f"{path}: empty file (no records)")
    fields = head[0]
    header = options.header if options.header is not None else _looks_like_header(fields, head[1] if len(head) > 1
                                                                                    else None)
    names = tuple(f.strip() for f in fields) if header else tuple(f"column{i}" for i in range(len(fields)))
    if header and len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise InputError(f"{path}: line 1: column name {duplicate!r} appears twice in the header")
    if len(names) < 2:
        raise InputError(f"{path}: {len(names)} column; a label and at least one feature column are needed")
    data = head[1:] if header else head[:peek]
    return _Layout(names, header, _label_index(path, names, options.label_column, header), data)


def _looks_like_header(fields: list[str], second: Optional[list[str]]) -> bool:
    """Whether line 1 names the columns: some column is text there but a number on line 2 (as
    csv.Sniffer judges it), so a headerless file with a text label column ("5.1,3.5,setosa") keeps
    its first record.  With one line only: whether any of its fields is text."""
    text = [i for i, f in enumerate(fields) if f.strip() and not _is_number(f)]
    if second is None or not text:
        return bool(text)
    below = [second[i] if i < len(second) else "" for i in text]
    if any(_is_number(g) for g in below):
        return True
    return all(not g.strip() for g in below)  # text above empty fields only: a header over sparse data


def _label_index(path: Path, names: tuple[str, ...], column: Optional[str], header: bool) -> int:
    if column is None:
        lowered = [n.lower() for n in names]
        return lowered.index("label") if header and "label" in lowered else 0
    if column in names:
        return names.index(column)
    try:
        index = int(column)
    except ValueError:
        raise InputError(f"{path}: --label-column {column!r}: no such column"
                         f"{'' if header else ' (the file has no header: give an index)'}") from None
    if not -len(names) <= index < len(names):
        raise InputError(f"{path}: --label-column {index} is outside the {len(names)} columns")
    return index % len(names)


def peek_records(path: str | Path, options: CsvOptions, count: int) -> tuple[tuple[str, ...], int, list[list[str]]]:
    """(column names, the label column's index, the fields of the first `count` data records)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    layout = _layout(path, options, count)
    return layout.names, layout.label, layout.first


def line_of_record(path: str | Path, options: CsvOptions, index: int) -> int:
    """The line on which data record `index` (0-based, after any header) ends."""
    path = Path(path)
    header = _layout(path, options).header
    records = _records(path, options.delimiter)
    for i, (line, _) in enumerate(records):
        if i - int(header) == index:
            return line
    raise InputError(f"{path}: has no record {index}")


def read_csv_columns(path: str | Path, options: CsvOptions, pixels: bool = False) -> CsvColumns:
    """Every record of `path` as features and label text (see the module docstring).

    `pixels`: the feature columns are pixel values, returned as uint8 (integers 0–255 only).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    layout = _layout(path, options)
    names, header, label = layout.names, layout.header, layout.label
    defaults = parse_defaults(options.column_defaults, names, str(path))
    feature_idx = [i for i in range(len(names)) if i != label]
    if pixels:
        for i in feature_idx:
            if defaults[i] is not None and not (0 <= defaults[i] <= 255 and defaults[i] == int(defaults[i])):
                raise InputError(f"{path}: --column-defaults: the default {defaults[i]:g} of column {names[i]!r} "
                                 "is not a pixel value (an integer 0-255)")
    feature_type = pa.uint8() if pixels else pa.float64()  # float64 parses faster; rounded to float32 below
    reader_options = pacsv.ReadOptions(column_names=list(names), skip_rows=1 if header else 0,
                                       block_size=BLOCK_BYTES)
    whole = path.stat().st_size <= WHOLE_FILE_BYTES and not path.name.endswith(".gz")
    # Labels parsed as numbers when the first one is one (casting text afterwards costs more than the
    # whole parse), and quoted newlines (rare, a third of the parse's time) allowed only on a retry.
    attempts = [(pa.string(), False), (pa.string(), True)]
    first = layout.first
    if options.regression or (first and len(first[0]) > label and first[0][label].strip().lstrip("+-").isdigit()):
        attempts.insert(0, (pa.float64() if options.regression else pa.int64(), False))
    for label_type, newlines in attempts:
        types = {name: (label_type if i == label else feature_type) for i, name in enumerate(names)}
        convert = pacsv.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=True,
                                       quoted_strings_can_be_null=True)
        parse = pacsv.ParseOptions(delimiter=options.delimiter, newlines_in_values=newlines)
        features: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        rows = 0
        try:
            batches = (pacsv.read_csv(str(path), read_options=reader_options, parse_options=parse,
                                      convert_options=convert).to_batches() if whole else
                       pacsv.open_csv(str(path), read_options=reader_options, parse_options=parse,
                                      convert_options=convert))
            for batch in batches:
                block = _block_features(batch, feature_idx, defaults, pixels)
                text = _block_labels(batch.column(label), defaults[label])
                if block is None or text is None:
                    raise _diagnose(path, options, layout, defaults, pixels)
                rows += len(text)
                if rows * len(feature_idx) > MAX_VALUES:
                    raise InputError(f"{path}: more than {MAX_VALUES:,} values ({rows:,} records of "
                                     f"{len(feature_idx):,} columns so far); split the file")
                features.append(block)
                labels.append(text)
            break
        except pa.ArrowInvalid as e:
            if (label_type, newlines) == attempts[-1]:
                raise _diagnose(path, options, layout, defaults, pixels, str(e)) from None
        except (OSError, EOFError) as e:  # a truncated or corrupt gzip stream
            raise InputError(f"{path}: cannot be read ({e})") from None
    if rows == 0:
        raise InputError(f"{path}: no records after the header")
    return CsvColumns(str(path), names, names[label], tuple(names[i] for i in feature_idx),
                      np.concatenate(features), np.concatenate(labels), header)


def _block_features(batch: "pa.RecordBatch", columns: list[int], defaults: list[Optional[float]],
                    pixels: bool) -> Optional["np.ndarray"]:
    """(rows, D) of one block with empty fields defaulted; None when a value breaks a rule
    (an empty field without a default, a tabular value that is not finite)."""
    import numpy as np
    import pyarrow as pa

    part = batch.select(columns)
    if any(column.null_count for column in part.columns):
        filled = []
        for column, i in zip(part.columns, columns):
            if column.null_count and defaults[i] is None:
                return None
            filled.append(column.fill_null(pa.scalar(defaults[i]).cast(column.type)) if column.null_count else column)
        part = pa.record_batch(filled, names=part.schema.names)
    values = np.asarray(part.to_tensor(row_major=True))
    if not pixels:
        values = values.astype(np.float32)
        if not np.isfinite(values).all():  # also what overflowed float32
            return None
    return values


def _block_labels(column: "pa.Array", default: Optional[float]) -> Optional["np.ndarray"]:
    """One block's labels: int64 when every one is an integer (cast in C++, no Python objects),
    else the text as an object array; None when one is empty and the label has no default."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if column.null_count:
        if default is None:
            return None
        text = str(int(default)) if default == int(default) else repr(default)
        column = column.fill_null(pa.scalar(default if not pa.types.is_string(column.type) else text).cast(column.type))
    if not pa.types.is_string(column.type):
        return column.to_numpy()
    try:
        return pc.cast(column, pa.int64()).to_numpy()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return column.to_numpy(zero_copy_only=False)


def _diagnose(path: Path, options: CsvOptions, layout: _Layout, defaults: list[Optional[float]], pixels: bool,
              arrow_message: str = "") -> InputError:
    """The first bad record of `path`, found by reading it again with Python's csv module."""
    names, header, label = layout.names, layout.header, layout.label
    records = _records(path, options.delimiter)
    if header:
        next(records, None)
    for line, fields in records:
        if len(fields) != len(names):
            return InputError(f"{path}: line {line}: {len(fields)} fields, expected {len(names)} (as the "
                              f"{'header' if header else 'first line'} has)")
        for i, (field, name) in enumerate(zip(fields, names)):
            where = f"{path}: line {line}, column {name!r}"
            if field == "":
                if defaults[i] is None:
                    return InputError(f"{where}: empty field, and the column has no default (--column-defaults)")
                continue
            if i == label:
                continue
            try:
                value = float(field)
            except ValueError:
                return InputError(f"{where}: {field!r} is not a number")
            if not math.isfinite(value):
                return InputError(f"{where}: {field!r} is not a finite number")
            if pixels and not (field.strip().isdigit() and value <= 255):
                return InputError(f"{where}: pixel value {field!r} is not an integer in 0-255")
    return InputError(f"{path}: not readable as CSV ({arrow_message or 'a value breaks the rules above'})")


def write_csv_columns(path: str | Path, labels: "np.ndarray", features: "np.ndarray", feature_names: Sequence[str],
                      label_name: str = "label") -> None:
    """Write `labels` (N,) and `features` (N, D) as a CSV file with a header, atomically; `.gz` in
    the name compresses it.  Integers are written as integers (pixels as 0–255), floats as the
    shortest text that reads back to the same float32."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from ..core.fsio import atomic_write

    columns = [pa.array(labels)] + [pa.array(features[:, j]) for j in range(features.shape[1])]
    table = pa.Table.from_arrays(columns, names=[label_name, *feature_names])

    def write(temp: Path) -> None:
        with pa.output_stream(str(temp), compression="gzip" if str(path).endswith(".gz") else None) as out:
            pacsv.write_csv(table, out, pacsv.WriteOptions(quoting_style="none"))

    atomic_write(path, write)
