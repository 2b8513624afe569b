"""Where rows come from: scikit-learn's bundled sets, the seed CSVs, CSV/Parquet files, frames.

Every reader returns a :class:`pandas.DataFrame` and, where the source knows it, the name of its
target column. Problems with a file raise :class:`~nmsnn.errors.DataError` naming the file.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import io
import logging
import lzma
import zipfile
from collections import Counter
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import pandas as pd
from sklearn import datasets as skdatasets

from nmsnn.errors import DataError

log = logging.getLogger(__name__)

CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".data")  # .data: UCI's comma-separated files
PARQUET_SUFFIXES = (".parquet", ".pq")
EXCEL_SUFFIXES = (".xlsx", ".xlsm")
# a CSV compressed as a whole (data.csv.gz): read into memory, then as the CSV it holds
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zip")
# values that mean "missing" beside pandas' own (NA, N/A, null, an empty cell, ...)
MISSING_MARKS = ["?"]
# delimiters a CSV may use instead of the one its suffix implies, in the order they are tried
OTHER_DELIMITERS = (";", "\t", "|", ",")


_NOTED: set[tuple[Path, str]] = set()  # (file, what) logged already: the report reads a file again


def _note_once(path: Path, what: str, message: str, *args: object, level: int = logging.INFO) -> None:
    """Log ``message`` about ``path`` once per process and ``what``."""
    if (path, what) not in _NOTED:
        _NOTED.add((path, what))
        log.log(level, message, path, *args)


def _sklearn(loader: Callable[..., object]) -> Callable[[], tuple[pd.DataFrame, str]]:
    def load() -> tuple[pd.DataFrame, str]:
        bunch = loader(as_frame=True)
        frame = bunch.frame.copy()
        names = getattr(bunch, "target_names", None)
        if (
            names is not None
            and len(names) == frame["target"].nunique()
            and frame["target"].dtype.kind in "iu"
        ):
            frame["target"] = [str(names[i]) for i in frame["target"]]
        return frame, "target"

    return load


def _seed_csv(filename: str, target: str) -> Callable[[], tuple[pd.DataFrame, str]]:
    def load() -> tuple[pd.DataFrame, str]:
        with resources.as_file(resources.files("nmsnn.data.files") / filename) as path:
            return pd.read_csv(path), target

    return load


def _synthetic_binary() -> tuple[pd.DataFrame, str]:
    """The seed notebook's synthetic set: ``make_classification(n_samples=10000, random_state=1)``."""
    x, y = skdatasets.make_classification(n_samples=10000, random_state=1)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])])
    frame["target"] = y
    return frame, "target"


BUNDLED: dict[str, Callable[[], tuple[pd.DataFrame, str]]] = {
    "breast_cancer": _sklearn(skdatasets.load_breast_cancer),
    "iris": _sklearn(skdatasets.load_iris),
    "wine": _sklearn(skdatasets.load_wine),
    "digits": _sklearn(skdatasets.load_digits),
    "diabetes": _sklearn(skdatasets.load_diabetes),
    "seed_iris": _seed_csv("iris_data.csv", "target"),
    "seed_house": _seed_csv("house_price_data.csv", "house_price"),
    "synthetic_binary": _synthetic_binary,
}


def load_bundled(name: str) -> tuple[pd.DataFrame, str]:
    """A bundled dataset (no download) and its target column."""
    if name not in BUNDLED:
        raise DataError(f"unknown bundled dataset {name!r}; choose one of {sorted(BUNDLED)}.")
    return BUNDLED[name]()


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV (``.csv``, ``.tsv``, ``.txt``, also compressed), Parquet (``.parquet``,
    ``.pq``) or Excel (``.xlsx``, ``.xlsm``: the first sheet) file.

    Raises :class:`DataError` for a missing, empty, header-only or unreadable file, or duplicate
    column names.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found.")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a CSV or Parquet file.")
    try:
        return _read_table(path)
    except PermissionError:
        raise DataError(f"{path}: permission denied: this user may not read the file.") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read the file ({err.strerror or err}).") from None


def _read_table(path: Path) -> pd.DataFrame:
    # a pipe or process substitution (data.path=<(zcat f.csv.gz)) can be read once: read it whole
    content = None if path.is_file() else path.read_bytes()
    if (path.stat().st_size if content is None else len(content)) == 0:
        raise DataError(f"{path}: the file is empty.")
    suffix = path.suffix.lower()
    if suffix in COMPRESSED_SUFFIXES:
        content, inner = _decompress(path, suffix, content)
        if inner not in (*CSV_SUFFIXES, ""):
            raise DataError(
                f"{path}: holds a {inner!r} file; a compressed file is read as the CSV it holds "
                f"({', '.join(CSV_SUFFIXES)}); decompress other files first."
            )
        suffix = inner
    if suffix in PARQUET_SUFFIXES:
        frame = _read_parquet(path, content)
    elif suffix in EXCEL_SUFFIXES:
        frame = _read_excel(path, content)
    elif suffix in CSV_SUFFIXES or suffix == "":
        frame = _read_csv(path, "\t" if suffix == ".tsv" else ",", content)
    else:
        older = " (an .xls workbook: save it as .xlsx or CSV)" if suffix == ".xls" else ""
        raise DataError(
            f"{path}: unknown file type {suffix!r}{older}; use a CSV ({', '.join(CSV_SUFFIXES)}, also "
            f"compressed: {', '.join(COMPRESSED_SUFFIXES)}), Parquet ({', '.join(PARQUET_SUFFIXES)}) "
            f"or Excel ({', '.join(EXCEL_SUFFIXES)}) file."
        )
    if len(frame) == 0:
        raise DataError(f"{path}: the file has a header but no data rows.")
    return frame


def _decompress(path: Path, suffix: str, content: bytes | None) -> tuple[bytes, str]:
    """The bytes a ``.gz``, ``.bz2``, ``.xz`` or single-file ``.zip`` file holds, and the suffix
    of the file they are (``data.csv.gz``: ``.csv``; a zip: its member's)."""
    raw = path.read_bytes() if content is None else content
    try:
        if suffix == ".zip":
            with zipfile.ZipFile(io.BytesIO(raw)) as archive:
                files = [m for m in archive.infolist() if not m.is_dir()]
                if len(files) != 1:
                    raise DataError(
                        f"{path}: the zip archive holds {len(files)} files "
                        f"({', '.join(m.filename for m in files[:5])}); nmsnn reads an archive of one CSV file."
                    )
                return archive.read(files[0]), Path(files[0].filename).suffix.lower()
        unpack = {".gz": gzip.decompress, ".bz2": bz2.decompress, ".xz": lzma.decompress}[suffix]
        return unpack(raw), Path(path.stem).suffix.lower()
    except DataError:
        raise
    except (OSError, EOFError, ValueError, lzma.LZMAError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: not a readable {suffix} file ({err}).") from None


def _read_excel(path: Path, content: bytes | None = None) -> pd.DataFrame:
    """The first sheet of an Excel workbook (its first row the header; cells typed as Excel
    types them: dates are dates)."""
    try:
        with pd.ExcelFile(path if content is None else io.BytesIO(content), engine="openpyxl") as book:
            sheets = book.sheet_names
            frame = book.parse(sheets[0])
    except Exception as err:  # openpyxl raises many types for a broken file
        raise DataError(f"{path}: not a readable Excel workbook ({type(err).__name__}: {err}).") from None
    if len(sheets) > 1:
        _note_once(
            path,
            "sheet",
            "%s: read its first sheet, %r, of %d (%s); save another sheet as its own file to use it.",
            sheets[0],
            len(sheets),
            ", ".join(map(repr, sheets[1:4])) + (", ..." if len(sheets) > 4 else ""),
        )
    return frame


def _read_parquet(path: Path, content: bytes | None = None) -> pd.DataFrame:
    try:
        return pd.read_parquet(path if content is None else io.BytesIO(content))
    except Exception as err:  # pyarrow raises many types for a broken file
        raise DataError(f"{path}: not a readable Parquet file ({type(err).__name__}: {err}).") from None


def _as_utf8(path: Path, raw: bytes) -> bytes:
    """A CSV's bytes as UTF-8: UTF-16 with its byte-order mark (spreadsheets' "Unicode text")
    decoded, other non-UTF-8 text read as Windows-1252 (Western European spreadsheets' CSV; bytes
    it leaves undefined as Latin-1), with a warning naming the first byte that is not UTF-8.
    Binary data is an error."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        _note_once(path, "encoding", "%s: UTF-16 text (by its byte-order mark); read as such.")
        return raw.decode("utf-16").encode("utf-8")
    if b"\0" in raw:
        raise DataError(f"{path}: not a text file (it holds binary data); expected CSV.")
    try:
        raw.decode("utf-8")
        return raw
    except UnicodeDecodeError as err:
        byte, offset = err.object[err.start], err.start
    try:
        text, encoding = raw.decode("cp1252"), "Windows-1252"
    except UnicodeDecodeError:
        text, encoding = raw.decode("latin-1"), "Latin-1"
    _note_once(
        path,
        "encoding",
        "%s: not UTF-8 text (byte %#04x at offset %d); read as %s, the encoding spreadsheet "
        "programs in Western Europe save CSV in. If its text looks wrong (in categories or labels), "
        "save the file as UTF-8 ('CSV UTF-8').",
        byte,
        offset,
        encoding,
        level=logging.WARNING,
    )
    return text.encode("utf-8")


def _delimiter(path: Path, first_line: str, sep: str) -> str:
    """The delimiter of a CSV whose first line is ``first_line``: ``sep`` (what its suffix
    implies) if the line holds it, else the first of :data:`OTHER_DELIMITERS` that it holds."""
    if sep in first_line:
        return sep
    for other in OTHER_DELIMITERS:
        if other in first_line:
            _note_once(
                path,
                "delimiter",
                "%s: the header holds no %r but %r; read with %r as the delimiter%s.",
                sep,
                other,
                other,
                " and ',' as the decimal mark where a number has one (1,5 is 1.5)" if other == ";" else "",
            )
            return other
    return sep


def _read_csv(path: Path, sep: str, content: bytes | None = None) -> pd.DataFrame:
    """``content``: the file's bytes, for a file that can be read only once (a pipe)."""
    try:
        return _parse_csv(path, sep, content)
    except UnicodeDecodeError:  # read it whole, in the encoding it seems to have
        return _parse_csv(path, sep, _as_utf8(path, path.read_bytes() if content is None else content))


def _parse_csv(path: Path, sep: str, content: bytes | None = None) -> pd.DataFrame:
    """A UTF-8 CSV (``UnicodeDecodeError`` where it is not), from ``path`` or ``content``."""
    # utf-8-sig: a byte-order mark is not part of the first column's name
    if content is None:
        opened = path.open(newline="", encoding="utf-8-sig")
    else:
        opened = io.StringIO(content.decode("utf-8-sig"), newline="")
    with opened as handle:
        sep = _delimiter(path, handle.readline(), sep)
        handle.seek(0)
        header = next(csv.reader(handle, delimiter=sep, skipinitialspace=True), [])
    duplicates = sorted(name for name, n in Counter(header).items() if n > 1)
    if duplicates:
        raise DataError(f"{path}: duplicate column names {duplicates}; rename them so each is unique.")
    # ';'-separated files come from spreadsheets that write 1,5 for 1.5 (numbers written 1.5
    # there stay text for pandas and are read as numbers by the preprocessing)
    decimal = "," if sep == ";" else "."
    try:  # "a, b" files: no leading space in names and values; "?" marks a missing value (UCI)
        frame = pd.read_csv(
            path if content is None else io.BytesIO(content),
            sep=sep,
            decimal=decimal,
            skipinitialspace=True,
            na_values=MISSING_MARKS,
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty.") from None
    except UnicodeDecodeError:  # a ValueError, but for _read_csv to read in another encoding
        raise
    except (pd.errors.ParserError, ValueError) as err:
        raise DataError(f"{path}: not a readable CSV file ({err}).") from None
    return frame
