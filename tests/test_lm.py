"""The LSTM language model (visionflow/lm): corpora and vocabularies, token streams, the carried
state, streamed evaluation, sampling, exact resume after SIGKILL, the plateau schedule, named
corpora downloaded from a local mirror with their checksums, and one-line errors."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from conftest import SHARED, child_env, run_cli
from test_remote_data import _Server
from visionflow.data.text import EOS, UNK, Vocabulary, fetch_corpus, read_corpus, tokenize
from visionflow.data.token_batches import TokenBatches
from visionflow.errors import InputError
from visionflow.lm.evaluation import evaluate_lm, sample
from visionflow.lm.training import train_lm
from visionflow.models import ModelSpec, build_model

SHAKESPEARE = SHARED / "data" / "tinyshakespeare" / "input.txt"
needs_shakespeare = pytest.mark.skipif(not SHAKESPEARE.exists(), reason=f"{SHAKESPEARE} absent (../shared not beside the checkout)")
SENTENCES = ["the cat sat on the mat", "a dog ate the N bones", "the <unk> sat", "N cats and N dogs ran",
             "the mat was red", "a cat saw a dog"]


def ptb_folder(tmp: Path, lines: int = 400, seed: int = 0) -> Path:
    """Small files in PTB's layout and conventions (lower case, N for numbers, <unk>)."""
    rng = np.random.default_rng(seed)
    folder = tmp / "ptb"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", lines), ("valid", lines // 4), ("test", lines // 4)):
        text = "".join(f" {SENTENCES[i]} \n" for i in rng.integers(0, len(SENTENCES), n))
        (folder / f"ptb.{split}.txt").write_text(text)
    return folder


def small(**extra) -> dict:
    return {"embed": 16, "hidden": 24, "layers": 2, "dropout": 0.1, "batch_size": 4, "bptt": 6, "log_every": 5,
            "checkpoint_every": 5, "eval_streams": 2, "device": "cpu", **extra}


def test_ptb_folder_reads_words_eos_and_unk(tmp_path) -> None:
    folder = ptb_folder(tmp_path)
    (folder / "ptb.test.txt").write_text(" the zebra sat \n")  # zebra: not in train
    corpus = read_corpus(folder, "word")
    assert corpus.name == "ptb" and EOS in corpus.vocab.tokens and UNK in corpus.vocab.tokens
    assert corpus.vocab.decode(corpus.test) == f"the {UNK} sat\n"
    assert corpus.vocab.tokens[0] in ("the", EOS)  # the most frequent first
    assert read_corpus(folder, "word").vocab == corpus.vocab  # the same corpus, the same ids


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=20, max_size=300).filter(lambda t: t.strip() and "\x00" not in t))
def test_char_corpora_round_trip_any_text(tmp_path_factory, text) -> None:
    path = tmp_path_factory.mktemp("c") / "any.txt"
    path.write_bytes(text.encode("utf-8"))
    corpus = read_corpus(path, "char", (0.1, 0.1))
    decoded = "".join(corpus.vocab.decode(corpus.split(s)) for s in ("train", "valid", "test"))
    assert decoded == path.read_bytes().decode("utf-8")
    assert Vocabulary.from_json(corpus.vocab.to_json(), "v") == corpus.vocab


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="ab c\n\t", max_size=12), max_size=8))
def test_word_tokens_are_the_lines_words_then_eos(lines) -> None:
    text = "\n".join(lines)
    expected = [t for line in text.splitlines() if line.split() for t in [*line.split(), EOS]]
    assert tokenize(text, "word") == expected


@pytest.mark.parametrize("content, message", [(b"", "empty"), (b"   \n\n", "empty"), (b"abc\x00\x01def", "binary"),
                                              (b"caf\xe9 au lait", "not UTF-8")])
def test_bad_corpora_are_one_line(tmp_path, content, message) -> None:
    path = tmp_path / "corpus.txt"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_corpus(path, "char")
    with pytest.raises(InputError, match="no such file"):
        read_corpus(tmp_path / "missing.txt", "char")
    proc = run_cli("lm", "train", "--corpus", str(path), "--model-dir", str(tmp_path / "m"), "--level", "char")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr
    assert not (tmp_path / "m").exists()


def test_token_streams_are_contiguous_rows_shifted_by_one() -> None:
    ids = np.arange(103)
    batches = TokenBatches(ids, streams=4, bptt=5, device="cpu")
    assert batches.steps_per_epoch == (25 - 1) // 5 and batches.batch_size == 20
    rows = [[], [], [], []]
    for x, y in batches.epoch(0):
        assert torch.equal(y.view(4, 5), x + 1)  # targets: the next token of the same row
        for b in range(4):
            rows[b] += x[b].tolist()
    assert rows == [list(range(25 * b, 25 * b + 20)) for b in range(4)]  # each row reads on where it stopped
    assert [x.tolist() for x, _ in batches.epoch(0, start=3)] == [list(batches.epoch(0))[3][0].tolist()]
    with pytest.raises(InputError, match="too few"):
        TokenBatches(np.arange(10), streams=4, bptt=5, device="cpu")


def test_streamed_evaluation_equals_one_pass_and_the_state_is_carried() -> None:
    torch.manual_seed(0)
    model = build_model(ModelSpec("lstm", 11, (0, 0, 0), {"embed": 8, "hidden": 12, "layers": 2, "dropout": 0.0}))
    ids = np.random.default_rng(0).integers(0, 11, 61)
    whole = evaluate_lm(model, ids, 1, 60, torch.device("cpu"), 0, "valid", "char")
    windows = evaluate_lm(model, ids, 1, 7, torch.device("cpu"), 0, "valid", "char")
    assert whole.tokens == windows.tokens == 60
    assert whole.loss == pytest.approx(windows.loss, rel=1e-6)  # windows of 7 with the state carried = one pass
    logits, _ = model.step(torch.from_numpy(ids[None, :-1]))
    manual = torch.nn.functional.cross_entropy(logits[0], torch.from_numpy(ids[1:])).item()
    assert whole.loss == pytest.approx(manual, rel=1e-6) and whole.perplexity == pytest.approx(math.exp(manual))
    model.train()
    x = torch.from_numpy(ids[None, :6])
    first = model(x)
    second = model(x)  # the same input again: the carried state changes the output
    assert not torch.allclose(first, second)
    model.reset_state()
    assert torch.allclose(model(x), first, atol=1e-6) or model.dropout.p > 0


def test_sampling_is_seeded_and_top_k_one_is_greedy() -> None:
    torch.manual_seed(1)
    vocab = Vocabulary(tuple("abcdefgh\n"), "char")
    model = build_model(ModelSpec("lstm", len(vocab), (0, 0, 0), {"embed": 8, "hidden": 16, "layers": 1, "dropout": 0.0}))
    a = sample(model, vocab, "abc", 40, seed=3)
    assert a == sample(model, vocab, "abc", 40, seed=3) and a.startswith("abc") and len(a) == 43
    assert a != sample(model, vocab, "abc", 40, seed=4)
    greedy, state, ids = [], None, torch.tensor([[0, 1, 2]])
    for _ in range(10):
        logits, state = model.step(ids, state)
        ids = logits[:, -1].argmax(-1, keepdim=True)
        greedy.append(int(ids))
    assert sample(model, vocab, "abc", 10, top_k=1, seed=9) == "abc" + vocab.decode(greedy)
    with pytest.raises(InputError, match="'z' is not in the model's vocabulary"):
        sample(model, vocab, "abz", 5)


RUN = textwrap.dedent("""
    import os, signal, sys
    import visionflow as vf
    from visionflow.lm.training import train_lm

    corpus, model_dir, steps, kill_step = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

    class Kill(vf.Callback):
        def on_step_end(self, step):
            if step == kill_step:
                os.kill(os.getpid(), signal.SIGKILL)

    options = dict(embed=16, hidden=24, layers=2, dropout=0.3, batch_size=4, bptt=6, log_every=5, checkpoint_every=5,
                   eval_streams=2, device="cpu", deterministic=True, steps=steps, optimizer="sgd", lr=5.0,
                   schedule="plateau", clip_norm=0.5)
    train_lm(corpus, model_dir, "word", options, callbacks=[Kill()] if kill_step else [])
""")


def test_a_sigkilled_run_resumes_to_the_uninterrupted_weights(tmp_path) -> None:
    """Killed at steps 8 and 23 (checkpoints every 5, epochs of 12 steps, the plateau deciding at
    epoch ends, dropout on), restarted each time: bit-identical to an uninterrupted run."""
    folder = ptb_folder(tmp_path, lines=60)
    script = tmp_path / "run.py"
    script.write_text(RUN)

    def run(model_dir: Path, kill: int) -> int:
        return subprocess.run([sys.executable, str(script), str(folder), str(model_dir), "36", str(kill)],
                              env=child_env(), capture_output=True, text=True, timeout=300).returncode

    assert run(tmp_path / "straight", 0) == 0
    assert run(tmp_path / "killed", 8) == -signal.SIGKILL
    assert run(tmp_path / "killed", 23) == -signal.SIGKILL
    assert run(tmp_path / "killed", 0) == 0
    a = load_file(tmp_path / "straight" / "checkpoints" / "ckpt-00000036.safetensors")
    b = load_file(tmp_path / "killed" / "checkpoints" / "ckpt-00000036.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "straight" / "config.json").read_text())["kind"] == "lm"
    assert (tmp_path / "straight" / "vocab.json").exists()


def test_the_plateau_divides_the_rate_and_the_cli_reports_json(tmp_path) -> None:
    folder = ptb_folder(tmp_path, lines=60)
    outcome = train_lm(str(folder), tmp_path / "m", "word", small(optimizer="sgd", lr=200.0, schedule="plateau",
                                                                   clip_norm=5.0, epochs=4.0))
    from visionflow.engine.checkpoint import load_checkpoint

    ckpt = load_checkpoint(tmp_path / "m" / "checkpoints")
    decays = ckpt.state_meta["lr_scheduler"]["decays"]
    assert decays >= 1, "an lr of 200 should stop improving the validation loss"
    assert ckpt.state_meta["param_groups"][0]["lr"] == pytest.approx(200.0 * 0.25 ** decays)
    assert outcome.valid is not None and outcome.test is not None
    proc = run_cli("lm", "evaluate", "--model-dir", str(tmp_path / "m"), "--split", "test", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert {"loss", "perplexity", "bits_per_word", "global_step"} <= set(result)
    assert result["perplexity"] == pytest.approx(math.exp(result["loss"]))
    assert result["loss"] == pytest.approx(outcome.test.loss, rel=1e-6)


def test_continuing_checks_the_model_dir_and_the_vocabulary(tmp_path) -> None:
    folder = ptb_folder(tmp_path, lines=60)
    train_lm(str(folder), tmp_path / "m", "word", small(steps=5))
    with pytest.raises(InputError, match="--hidden 24"):
        train_lm(None, tmp_path / "m", None, {"hidden": 32, "steps": 10})
    chars = tmp_path / "chars.txt"
    chars.write_text("abc " * 200)
    with pytest.raises(InputError, match="word-level model"):
        train_lm(str(chars), tmp_path / "m", "char", {"steps": 10})
    proc = run_cli("lm", "sample", "--model-dir", str(tmp_path / "m"), "--prompt", "the zebra", "--length", "5")
    assert proc.returncode == 2 and "'zebra' is not in the model's vocabulary" in proc.stderr
    proc = run_cli("lm", "sample", "--model-dir", str(tmp_path / "m"), "--prompt", "the cat", "--length", "7", "--seed", "2")
    assert proc.returncode == 0 and proc.stdout.startswith("the cat ") and len(proc.stdout.split()) >= 2
    proc = run_cli("evaluate", "--model-dir", str(tmp_path / "m"))
    assert proc.returncode == 2 and "language model" in proc.stderr


@needs_shakespeare
def test_named_corpora_download_from_a_mirror_with_their_checksum(tmp_path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "input.txt").write_bytes(SHAKESPEARE.read_bytes())
    server = _Server(site)
    try:
        path = fetch_corpus("tinyshakespeare", tmp_path / "cache", [server.url + "/"])
        assert path.read_bytes() == SHAKESPEARE.read_bytes()
        (site / "input.txt").write_bytes(SHAKESPEARE.read_bytes()[:-1] + b"!")  # a damaged mirror
        with pytest.raises(InputError, match="checksum mismatch"):
            fetch_corpus("tinyshakespeare", tmp_path / "other", [server.url + "/"])
        assert not (tmp_path / "other" / "input.txt").exists()
    finally:
        server.close()
    corpus = read_corpus(path, "char", (0.1, 0.0))
    assert len(corpus.vocab) == 65 and len(corpus.train) == 1_003_854


def test_rnn_reads_images_row_by_row_and_exports(tmp_path) -> None:
    proc = run_cli("train", "--model", "rnn", "--model-dir", str(tmp_path / "rnn"), "--steps", "120", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["accuracy"] > 0.6
    proc = run_cli("export", "--model-dir", str(tmp_path / "rnn"), "--export-base", str(tmp_path / "exp"))
    assert proc.returncode == 0 and "onnxruntime matches PyTorch" in proc.stdout, proc.stderr
    proc = run_cli("train", "--model", "lstm", "--model-dir", str(tmp_path / "nope"))
    assert proc.returncode == 2 and "visionflow lm train" in proc.stderr


def test_lm_cli_trains_a_char_model_end_to_end(tmp_path) -> None:
    text = tmp_path / "poem.txt"
    text.write_text("roses are red\nviolets are blue\n" * 150)
    proc = run_cli("lm", "train", "--corpus", str(text), "--model-dir", str(tmp_path / "c"), "--level", "char",
                   "--steps", "40", "--hidden", "32", "--embed", "16", "--batch-size", "8", "--bptt", "20", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["global_step"] == 40 and out["valid"]["bits_per_char"] < math.log2(len(set(text.read_text())))
    assert "perplexity" in proc.stderr and "tokens/s" in proc.stderr


def test_a_corpus_outside_the_models_vocabulary_is_one_line(tmp_path) -> None:
    text = tmp_path / "abc.txt"
    text.write_text("abc cab bac\n" * 120)
    train_lm(str(text), tmp_path / "m", "char", small(steps=3))
    other = tmp_path / "xyz.txt"
    other.write_text("abc xyz\n" * 120)
    proc = run_cli("lm", "evaluate", "--model-dir", str(tmp_path / "m"), "--corpus", str(other))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "'x' is not in the model's vocabulary" in proc.stderr and str(other) in proc.stderr
