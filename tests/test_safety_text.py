"""Issue #17, bounded memory and time for any text: every path that runs a model on user text
caps the tokens (and characters) it reads and says when it did; model sizes have upper bounds.

The worst inputs here (100k- and 1M-character texts) blew up before the caps: an occlusion
explanation of 100k characters tried to allocate 197 GB.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rnn_demo import explain
from rnn_demo.cli import main
from rnn_demo.model import MODEL_LIMITS, ModelConfig
from rnn_demo.predict import PREDICT_BATCH_VALUES, PREDICT_MAX_TOKENS, Predictor
from rnn_demo.text import TEXT_LIMITS, TextConfig
from rnn_demo.train import TRAIN_LIMITS, TrainConfig

ROOT = Path(__file__).resolve().parent.parent
SENTENCE = "the movie was not good , but the story was never boring and the cast was great . "


def _text(chars: int) -> str:
    """A text of exactly ``chars`` characters made of ordinary words."""
    return (SENTENCE * (chars // len(SENTENCE) + 1))[:chars]


LONG = _text(100_000)  # about 20,000 tokens


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine run fastest on one thread."""
    with explain.torch_threads(1):
        yield


@pytest.fixture(scope="module")
def uncapped(tiny_runs_dir: Path) -> Predictor:
    """A model without a length cap of its own (the worst case)."""
    predictor = Predictor.load(tiny_runs_dir / "tiny-rnn")
    assert predictor.max_tokens is None
    return predictor


@pytest.fixture(scope="module")
def capped(tiny_runs_dir: Path) -> Predictor:
    """A model trained with max_tokens=12."""
    predictor = Predictor.load(tiny_runs_dir / "tiny-gru")
    assert predictor.max_tokens == 12
    return predictor


# ---- explanations ----------------------------------------------------------------------

EXPLAINERS = {
    "lime": lambda p, t: explain.explain_lime(p, t, num_samples=200),
    "occlusion": explain.explain_occlusion,
    "grad": explain.explain_gradient,
    "compare": lambda p, t: explain.compare_methods(p, t, num_samples=200),
    "trace": explain.prediction_trace,
    "states": explain.internal_states,
    "bptt": explain.gradient_through_time,
    "trajectory": explain.hidden_trajectory,
}


@pytest.mark.parametrize("name", EXPLAINERS)
def test_every_explanation_of_a_100k_character_text_reads_at_most_512_tokens(uncapped, name):
    start = time.perf_counter()
    result = EXPLAINERS[name](uncapped, LONG)
    seconds = time.perf_counter() - start
    assert explain.EXPLAIN_MAX_TOKENS == 512
    assert result.truncated is True and result.num_tokens == 512
    assert result.tokens == uncapped.tokenizer(LONG[:10_000])[:512]  # the text's first 512 tokens
    assert seconds < 30, f"{name} took {seconds:.1f} s"


def test_explanations_read_the_models_own_cap_when_it_is_smaller(capped):
    result = explain.explain_occlusion(capped, LONG)
    assert result.truncated and result.num_tokens == 12 and len(result.weights) == 12


def test_a_short_text_is_explained_whole_and_not_marked_truncated(uncapped):
    for name in ("occlusion", "grad", "trace"):
        result = EXPLAINERS[name](uncapped, "the movie was not good")
        assert result.truncated is False and result.num_tokens == 5 and len(result.tokens) == 5, name


def test_a_text_without_spaces_is_cut_by_characters_before_tokenizing(uncapped):
    result = explain.explain_occlusion(uncapped, "x" * 1_000_000)
    assert result.truncated and result.num_tokens == 1
    assert len(result.tokens[0]) <= 512 * 64  # the tokenizer never saw the whole string


# ---- predictions -----------------------------------------------------------------------


def test_predict_on_a_million_characters_reads_the_documented_cap(uncapped, capped):
    text = _text(1_000_000)
    start = time.perf_counter()
    prediction = uncapped.predict(text)
    assert time.perf_counter() - start < 30
    assert PREDICT_MAX_TOKENS == 10_000
    assert prediction.truncated and prediction.num_tokens == PREDICT_MAX_TOKENS
    first = " ".join(uncapped.tokenizer(text[:200_000])[:PREDICT_MAX_TOKENS])
    assert not uncapped.predict(first).truncated  # exactly the cap: read whole
    np.testing.assert_allclose(uncapped.predict_proba([text]), uncapped.predict_proba([first]), atol=1e-6)
    small = capped.predict(text)  # the model's own cap wins when smaller
    assert small.truncated and small.num_tokens == 12
    assert uncapped.predict("y" * 1_000_000).truncated  # one huge word: cut by characters


def test_predict_proba_never_runs_more_than_the_token_budget_at_once(uncapped, monkeypatch):
    texts = [_text(60_000)] * 40 + ["the movie was good"] * 300  # 40 texts of 10,000 tokens
    whole = uncapped.predict_proba(texts)
    monkeypatch.setattr("rnn_demo.predict.PREDICT_BATCH_VALUES", 16 * 25_000)  # 16 values per token: 25,000 tokens
    assert uncapped.tokens_per_pass == 25_000
    shapes: list[tuple[int, int]] = []
    forward = uncapped.model.forward

    def spy(ids, lengths):
        shapes.append(tuple(ids.shape))
        return forward(ids, lengths)

    monkeypatch.setattr(uncapped.model, "forward", spy)
    probs = uncapped.predict_proba(texts)
    np.testing.assert_allclose(probs, whole, atol=1e-6)  # the same numbers, in more passes
    assert max(b * t for b, t in shapes) <= 25_000 and sum(b for b, _ in shapes) == 340


def test_the_token_budget_of_a_pass_shrinks_as_the_model_widens():
    shipped = Predictor.load(ROOT / "checkpoints" / "rotten_tomatoes-gru")  # GRU, 128 units: 4 x 128 values a token
    assert shipped.tokens_per_pass == PREDICT_BATCH_VALUES // 512
    shipped.model.config.hidden_size = 2048
    assert shipped.tokens_per_pass == PREDICT_BATCH_VALUES // (4 * 2048)


@pytest.mark.parametrize("run", ["shipped", "tiny-gru", "tiny-rnn"])
def test_probabilities_of_normal_texts_are_unchanged_by_the_caps(tiny_runs_dir, run):
    path = ROOT / "checkpoints" / "rotten_tomatoes-gru" if run == "shipped" else tiny_runs_dir / run
    predictor = Predictor.load(path)
    texts = ["a gripping, funny and beautifully acted film", "the plot is dull and the jokes never land",
             "the movie was not good", "it's not bad at all <br /> really"]
    expected = []
    with torch.no_grad():  # the model on the whole text, one text at a time, no cap
        for text in texts:
            ids = predictor.vocab.encode(predictor.tokenizer(text))
            logits = predictor.model(torch.tensor([ids]), torch.tensor([len(ids)]))
            expected.append(torch.softmax(logits[0], -1).numpy())
    np.testing.assert_allclose(predictor.predict_proba(texts), np.array(expected), atol=1e-6)


# ---- the CLI says when it truncated ----------------------------------------------------


def _last_json(capsys) -> tuple[dict, str]:
    captured = capsys.readouterr()
    return json.loads(captured.out.strip().splitlines()[-1]), captured.err


def test_cli_predict_reports_truncation_in_json_and_on_stderr(tiny_runs_dir, capsys):
    run = str(tiny_runs_dir / "tiny-gru")
    assert main(["predict", run, *("the movie was good " * 5).split(), "--json"]) == 0
    data, err = _last_json(capsys)
    assert data["truncated"] is True and data["num_tokens"] == 12
    assert "(read the first 12 tokens of 20; explanations read at most 12)" in err
    assert main(["predict", run, "the", "movie", "was", "good", "--json"]) == 0
    data, err = _last_json(capsys)
    assert data["truncated"] is False and data["num_tokens"] == 4 and "read the first" not in err


def test_cli_explain_reports_truncation_in_json_and_on_stderr(tiny_runs_dir, capsys):
    run = str(tiny_runs_dir / "tiny-rnn")
    words = ("the movie was good " * 150).split()  # 600 tokens: predictions read them all, explanations 512
    assert main(["explain", run, *words, "--method", "occlusion", "--json"]) == 0
    data, err = _last_json(capsys)
    assert data["truncated"] is True and data["num_tokens"] == 512 and len(data["tokens"]) == 512
    assert "(read the first 512 tokens of 600; explanations read at most 512)" in err
    assert main(["explain", run, "the", "movie", "was", "good", "--method", "grad", "--json"]) == 0
    data, err = _last_json(capsys)
    assert data["truncated"] is False and data["num_tokens"] == 4 and "read the first" not in err


# Runs the CLI and, as it exits, writes its own peak RSS (VmHWM of the process's own memory, which
# exec starts afresh) to the file named first. ``ru_maxrss`` from wait4 would not do: the kernel
# carries the parent's high-water mark over fork + exec, so a child of a 1 GB test process "peaked" at 1 GB.
_MEASURED_CLI = """
import atexit, runpy, sys
def _report(path=sys.argv[1]):
    with open("/proc/self/status") as status:
        peak_kb = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(path, "w") as out:
        out.write(peak_kb)
atexit.register(_report)
sys.argv = ["rnn_demo", *sys.argv[2:]]
runpy.run_module("rnn_demo", run_name="__main__", alter_sys=True)
"""


def _run_measured(args: list[str], timeout: float = 120) -> tuple[int, int, str, str, float]:
    """Runs ``python -m rnn_demo ARGS``; returns (exit code, its own peak RSS in bytes, stdout, stderr, seconds)."""
    with tempfile.TemporaryDirectory() as folder:
        peak_file = Path(folder) / "peak_kb"
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _MEASURED_CLI, str(peak_file), *args], cwd=ROOT,
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)  # fmt: skip
        seconds = time.perf_counter() - start
        peak = int(peak_file.read_text()) * 1024
    return proc.returncode, peak, proc.stdout.decode(), proc.stderr.decode(), seconds


def _own_peak_rss() -> int:
    with open("/proc/self/status") as status:
        return int(next(line.split()[1] for line in status if line.startswith("VmHWM:"))) * 1024


def test_measured_peak_is_the_childs_own_not_the_parents():
    """The kernel carries a parent's high-water mark over fork + exec into the child's ``ru_maxrss``:
    late in a full run the test process itself is near 1 GB, and a small child was reported at 1,032 MB."""
    ballast = bytearray(800 * 1024**2)  # this process's peak: at least 800 MB (more late in a full run)
    ballast[:: 4096] = b"x" * len(ballast[:: 4096])
    del ballast
    assert _own_peak_rss() > 800 * 1024**2
    code, rss, out, err, _ = _run_measured(["datasets", "--json"])
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])
    assert 20 * 1024**2 < rss < _own_peak_rss() - 300 * 1024**2, f"child peak {rss / 1024**2:.0f} MB"


def test_cli_explain_of_100k_characters_stays_under_1_gb(tmp_path):
    """The shipped Rotten Tomatoes GRU has no length cap: before, this tried to allocate 197 GB."""
    run = ROOT / "checkpoints" / "rotten_tomatoes-gru"
    code, rss, out, err, seconds = _run_measured(
        ["explain", str(run), *LONG.split(), "--method", "occlusion", "--json", "--threads", "1"]
    )
    assert code == 0, err
    assert rss < 1024**3, f"peak RSS {rss / 1024**2:.0f} MB"
    data = json.loads(out.strip().splitlines()[-1])
    assert data["truncated"] is True and data["num_tokens"] == 512
    assert "explanations read at most 512" in err and "Traceback" not in err
    assert seconds < 60


# ---- upper bounds and types of the settings ---------------------------------------------


@pytest.mark.parametrize(
    "cls,field,value,limit",
    [
        (ModelConfig, "hidden_size", 10**9, 2048),
        (ModelConfig, "embedding_dim", 1025, 1024),
        (ModelConfig, "num_layers", 7, 6),
        (ModelConfig, "head_hidden", 2049, 2048),
        (ModelConfig, "num_classes", 101, 100),
        (ModelConfig, "vocab_size", 10**9, 1_000_000),
        (TextConfig, "max_vocab", 10**9, 1_000_000),
        (TextConfig, "max_tokens", 10**9, 100_000),
        (TrainConfig, "batch_size", 10**6, 4096),
        (TrainConfig, "epochs", 10**6, 200),
    ],
)
def test_sizes_have_upper_bounds(cls, field, value, limit):
    with pytest.raises(ValueError, match=f"^{field} must be at most {limit:,}"):
        cls.from_dict({**cls().to_dict(), field: value})
    assert getattr(cls.from_dict({field: limit}), field) == limit  # the limit itself is allowed


@pytest.mark.parametrize(
    "cls,field,value",
    [
        (ModelConfig, "hidden_size", "128"),
        (ModelConfig, "hidden_size", 128.0),
        (ModelConfig, "num_layers", True),
        (ModelConfig, "cell", 3),
        (ModelConfig, "bidirectional", "yes"),
        (ModelConfig, "dropout", "0.3"),
        (ModelConfig, "pretrained_vectors", 5),
        (TextConfig, "max_vocab", "30000"),
        (TextConfig, "lowercase", 1),
        (TextConfig, "tokenizer", None),
        (TrainConfig, "epochs", 8.5),
        (TrainConfig, "lr", "0.01"),
        (TrainConfig, "device", 0),
    ],
)
def test_config_values_of_the_wrong_type_are_refused_naming_the_field(cls, field, value):
    with pytest.raises(ValueError, match=f"^{field} must be "):
        cls.from_dict({field: value})


def test_config_values_of_compatible_types_are_accepted_as_plain_python():
    config = ModelConfig(hidden_size=np.int64(64), dropout=0, gate_bias=np.float32(2.0))
    assert type(config.hidden_size) is int and config.hidden_size == 64
    assert type(config.dropout) is float and type(config.gate_bias) is float
    assert TrainConfig(lr=1).lr == 1.0 and TextConfig(max_vocab=None).max_vocab is None
    json.dumps(config.to_dict())  # still JSON-able


@pytest.mark.parametrize(
    "flag,value,field",
    [("--hidden-size", "1000000000", "hidden_size"), ("--embedding-dim", "5000", "embedding_dim"),
     ("--batch-size", "100000", "batch_size"), ("--max-vocab", "10000000000", "max_vocab")],
)
def test_a_huge_size_flag_is_a_one_line_error_before_anything_is_written(tmp_path, capsys, flag, value, field):
    out = tmp_path / "run"
    code = main(["train", "--dataset", "negation", "--param", "n=200", "--epochs", "1", flag, value,
                 "--out", str(out), "--json", "--quiet"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"error: {field} must be at most "), err
    assert not out.exists()


def test_the_train_form_reads_the_config_limits():
    from rnn_demo.ui.train_form import FIELDS

    limits = {"text": TEXT_LIMITS, "model": MODEL_LIMITS, "train": TRAIN_LIMITS}
    checked = set()
    for field in FIELDS:
        if field.name in limits[field.group]:
            assert (field.min_value, field.max_value) == limits[field.group][field.name], field.name
            checked.add(field.name)
    assert checked >= {"embedding_dim", "hidden_size", "num_layers", "head_hidden", "max_vocab", "max_tokens",
                       "batch_size", "epochs"}


# ---- the app ---------------------------------------------------------------------------


@pytest.fixture
def app_runs(tiny_runs_dir, monkeypatch, tmp_path):
    """The app over the tiny runs, in ``st.navigation`` mode (as in tests/test_app.py)."""
    from streamlit.runtime.pages_manager import PagesManager

    original = PagesManager.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)
    monkeypatch.setenv("RNN_DEMO_RUNS", str(tiny_runs_dir))
    monkeypatch.setattr("rnn_demo.ui.state.upload_dir", lambda owner: tmp_path / "uploads" / owner)
    threads = torch.get_num_threads()
    yield tiny_runs_dir
    torch.set_num_threads(threads)  # the app sets 1 thread for its server process


def test_predict_page_bounds_the_text_box_and_says_when_explanations_cut_the_text(app_runs):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("pages/predict.py").run()
    at.selectbox(key="app.run").set_value(str(app_runs / "tiny-rnn")).run()
    assert not at.exception
    assert at.text_area(key="predict.text").max_chars == 20_000
    at.text_area(key="predict.text").input("the movie was good").run()
    assert not at.exception and not any("first 512" in i.value for i in at.info)
    at.text_area(key="predict.text").input("the movie was good " * 150).run()  # 600 tokens
    assert not at.exception and not at.error
    assert not at.warning  # the prediction read all 600 tokens
    assert any("first 512 tokens" in i.value for i in at.info)
