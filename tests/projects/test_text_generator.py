"""projects.text_generator: the GPT, its texts, training on dlkit's loop (budget, resume, keep-best),
evaluate, export, predict (and its alias sample), and the one-line errors of the commands.

The tests train tiny models (2 layers x 32 wide, --quick) for a few dozen steps on the first 20,000
characters of tiny shakespeare when it is on the machine, else of Python's help topics (the offline
text of --quick); seconds each.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, require_dataset

import dlkit.data
from dlkit.checkpoint import load_checkpoint
from dlkit.device import resolve_amp_dtype
from dlkit.errors import UserError
from dlkit.export import load_release, onnx_session
from dlkit.runs import RunFolder
from dlkit.train import Callback
from projects.text_generator import evaluate, export, predict, train
from projects.text_generator.__main__ import main as cli_main
from projects.text_generator.data import (
    Windows,
    choose_text,
    estimate_loss,
    get_batch,
    load_char_data,
    split_loss,
    split_text,
)
from projects.text_generator.model import GPT, GPTConfig

RUN_FILES = {"config.json", "metrics.csv", "loss.png", "checkpoint.pt", "model_info.json"}
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_thread():
    """Two threads on two shared cores spend their time waiting for each other on these tiny models."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train(runs: Path, *extra: str, callbacks=()) -> dict:
    return train.main(["--quick", "--device", "cpu", "--runs-dir", str(runs), *extra], callbacks=callbacks)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    _train(runs, "--run-name", "tiny")
    return runs / "tiny"


def _rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def _no_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """As on a user's machine without any dataset, offline."""
    monkeypatch.setenv("DLKIT_DATA", str(tmp_path / "no_data"))
    monkeypatch.setenv("DLKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DLKIT_SYSTEM_DATA", "0")

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("no network in this test")

    monkeypatch.setattr(dlkit.data.urllib.request, "urlopen", offline)


# --- the model ----------------------------------------------------------------------------------------


def test_gpt_is_causal_and_shapes() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=16)).eval()
    idx = torch.randint(11, (3, 16))
    logits = model(idx)
    assert logits.shape == (3, 16, 11)
    changed = idx.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 11  # a different future must not change the past
    assert torch.allclose(model(changed)[:, :10], logits[:, :10], atol=1e-6)
    assert not torch.allclose(model(changed)[:, 10:], logits[:, 10:])
    assert model.lm_head.weight is model.wte.weight  # tied


def test_attention_equals_masked_softmax_in_float64() -> None:
    """F.scaled_dot_product_attention(is_causal=True) == softmax(QK^T / sqrt(d) + causal mask) V."""
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=5, block_size=8, n_layer=1, n_head=2, n_embd=8)
    attn = GPT(cfg).blocks[0].attn.double().eval()
    x = torch.randn(2, 6, 8, dtype=torch.float64)
    q, k, v = attn.qkv(x).split(8, dim=2)
    q, k, v = (t.view(2, 6, 2, 4).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
    scores = q @ k.transpose(-2, -1) / math.sqrt(4)  # (B, nh, T, T)
    scores = scores.masked_fill(torch.ones(6, 6, dtype=torch.bool).triu(1), float("-inf"))
    y = (F.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(2, 6, 8)
    torch.testing.assert_close(attn(x), attn.proj(y), atol=1e-6, rtol=1e-6)


def test_cpu_attention_runs_in_float32_under_bf16_autocast(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU flash kernel's bf16 backward is 3-4x slower than float32's: under CPU autocast the model
    hands F.scaled_dot_product_attention float32 (the matmuls around it stay bf16)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=7, block_size=8, n_layer=2, n_head=2, n_embd=16))
    idx = torch.randint(7, (3, 8))
    dtypes, sdpa = [], F.scaled_dot_product_attention

    def spy(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs: object) -> torch.Tensor:
        dtypes.append(q.dtype)
        return sdpa(q, k, v, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    reference = model(idx)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(idx)
        logits.float().sum().backward()
    assert dtypes == [torch.float32] * 4
    assert logits.dtype == torch.bfloat16  # the head's matmul ran in bf16
    torch.testing.assert_close(logits.float(), reference, atol=0.05, rtol=0.05)


def test_optimizers_muon_and_adamw() -> None:
    model = GPT(GPTConfig(vocab_size=7, block_size=8, n_layer=2, n_head=2, n_embd=16))
    cpu = train.parse(["--preset", "cpu"])
    muon = train.make_optimizer(cpu, model, CPU)
    assert (
        cpu.optimizer == "muon" and train.parse(["--preset", "gpu", "--device", "cpu"]).optimizer == "adamw"
    )
    hidden = {id(p) for name, p in model.named_parameters() if name.startswith("blocks.") and p.ndim == 2}
    assert [g["use_muon"] for g in muon.param_groups] == [False, False, True]  # metrics.csv's lr is --lr's
    assert {id(p) for p in muon.param_groups[2]["params"]} == hidden  # not the embedding (= the output layer)
    assert muon.param_groups[2]["lr"] == cpu.muon_lr and muon.param_groups[0]["lr"] == cpu.lr
    adamw = train.make_optimizer(train.parse(["--optimizer", "adamw"]), model, CPU)
    assert isinstance(adamw, torch.optim.AdamW)


def test_lr_schedule_warms_up_then_decays_to_a_tenth() -> None:
    cfg = train.TrainConfig(lr=1e-3, warmup_iters=10, min_lr_ratio=0.1)
    assert train.lr_factor(cfg, 0, 0.0) == pytest.approx(0.1)
    assert train.lr_factor(cfg, 9, 0.0) == pytest.approx(1.0)
    assert train.lr_factor(cfg, 100, 0.5) == pytest.approx(0.1 + 0.9 * 0.5)
    assert train.lr_factor(cfg, 100, 1.0) == pytest.approx(0.1)
    assert train.lr_factor(cfg, 100, 2.0) == pytest.approx(0.1)  # past the budget: stays at the floor


# --- the texts and the windows --------------------------------------------------------------------------


def test_split_and_batches() -> None:
    data = split_text("abcdefghij" * 10)
    assert len(data.train) == 90 and len(data.val) == 10 and len(data.vocab) == 10
    x, y = get_batch(data.train, 8, 4, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 8)
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is x one character later
    with pytest.raises(UserError, match="too short"):
        get_batch(data.val, 10, 2)


def test_windows_come_from_the_global_rng_which_checkpoints_save() -> None:
    ids = torch.arange(1000) % 37
    torch.manual_seed(5)
    first = [next(iter(Windows(ids, 16, 4)))[0] for _ in range(3)]
    torch.manual_seed(5)
    again = [next(iter(Windows(ids, 16, 4)))[0] for _ in range(3)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], first[1])


def test_losses_of_a_uniform_model_are_log_vocab() -> None:
    data = split_text("".join(chr(97 + i % 7) for i in range(2000)))

    class Uniform(torch.nn.Module):
        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            return torch.zeros(*idx.shape, 7)

    assert estimate_loss(Uniform(), data.val, 16, 4, 3) == pytest.approx(math.log(7))
    assert split_loss(Uniform(), data.val, 16, 4) == pytest.approx(math.log(7))


def test_quick_mode_without_data_uses_pythons_help_topics(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _no_data(monkeypatch, tmp_path)
    assert choose_text(quick=True) == "python_help"
    assert "uses python_help instead" in capsys.readouterr().out  # the run says which data it used
    data = load_char_data("python_help", max_chars=20_000)
    assert "Python's help topics" in data.name and "/" not in data.name
    assert len(data.train) == 18_000 and "T" in data.vocab.chars
    assert choose_text(quick=False) == "tiny_shakespeare"  # full mode: the real text (downloaded)
    assert choose_text(quick=True, text_file="mine.txt") == "file"


def test_presets_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = train.parse(["--preset", "gpu", "--lr", "2e-3"])
    assert (gpu.n_layer, gpu.n_embd, gpu.block_size, gpu.dropout, gpu.lr) == (6, 384, 256, 0.2, 2e-3)
    assert train.parse(["--device", "cpu"]).preset == "cpu"  # auto: the cpu preset without a GPU
    quick = train.parse(["--quick", "--n-layer", "3"])
    assert quick.n_layer == 3 and quick.max_iters == 30 and quick.max_chars == 20_000
    assert train.run_of(quick).path.name == "cpu-quick"
    for argv in (["--preset", "tpu"], ["--batch-size", "0"], ["--n-layer", "-1"]):
        with pytest.raises(SystemExit):
            train.parse(argv)
    with pytest.raises(UserError, match="no budget"):
        train.parse(["--time-budget", "0"])
    with pytest.raises(UserError, match="multiple"):
        train.parse(["--n-embd", "30", "--n-head", "4"])


def test_the_cpu_recipe_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU without native bf16 runs the float32 recipe, and nothing in it autocasts to bf16."""
    monkeypatch.setenv("DLKIT_CPU_BF16", "0")
    assert train.cpu_recipe() == "float32"
    cfg = train.parse(["--preset", "cpu"])
    assert {k: getattr(cfg, k) for k in train.CPU_RECIPES["float32"]} == train.CPU_RECIPES["float32"]
    assert resolve_amp_dtype(cfg.amp, CPU) is None
    monkeypatch.setenv("DLKIT_CPU_BF16", "1")
    assert train.cpu_recipe() == "bf16" and resolve_amp_dtype(None, CPU) == torch.bfloat16


# --- training, resume, keep-best ---------------------------------------------------------------------------


def test_train_writes_a_run_folder_with_one_metric_per_column(trained_run: Path) -> None:
    assert {p.name for p in trained_run.iterdir()} >= RUN_FILES
    rows = _rows(trained_run)
    assert [int(r["step"]) for r in rows] == [10, 20, 30]
    info = json.loads((trained_run / "model_info.json").read_text())
    metrics = info["metrics"]
    assert metrics["val_loss_whole_split"] < math.log(info["model_config"]["vocab_size"]) - 0.3  # it learned
    # Every row's val_loss is the same estimate (fixed windows); the whole split is a metric of its own.
    model, _ = train.load_gpt(str(trained_run))
    data = load_char_data(info["data"]["text"], max_chars=info["data"]["max_chars"])
    kept = next(r for r in rows if int(r["step"]) == metrics["kept_step"])
    cfg = json.loads((trained_run / "config.json").read_text())
    amp_dtype = resolve_amp_dtype(cfg["amp"], CPU)
    estimate = estimate_loss(
        model, data.val, cfg["block_size"], cfg["batch_size"], cfg["eval_batches"], amp_dtype
    )
    assert float(kept["val_loss"]) == pytest.approx(estimate, abs=1e-5) == metrics["val_loss"]
    whole = split_loss(model, data.val, cfg["block_size"], cfg["batch_size"])
    assert metrics["val_loss_whole_split"] == pytest.approx(whole, abs=1e-6)
    assert metrics["val_perplexity_whole_split"] == pytest.approx(math.exp(whole), rel=1e-6)
    assert "/" not in info["dataset"]  # named without a path (it goes into releases and /health)


def test_train_on_a_text_file_of_your_own(tmp_path: Path) -> None:
    text = tmp_path / "mine.txt"
    line = "to be or not to be that is the question\n"
    text.write_text(line * 40, encoding="utf-8")
    info = _train(tmp_path, "--text-file", str(text), "--max-iters", "10", "--eval-interval", "5")
    assert info["dataset"] == "the text file mine.txt" and len(info["vocab"]["chars"]) == len(set(line))


class _StopAt(Callback):
    """Stops the run (as a kill would) right after the checkpoint of ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_eval(self, state, row):  # noqa: ANN001, ANN201
        if state.step == self.step:
            raise KeyboardInterrupt


def test_resume_after_a_kill_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    flags = ["--max-iters", "20", "--eval-interval", "5", "--no-keep-best", "--no-amp", "--dropout", "0.1"]
    _train(tmp_path, *flags, "--run-name", "whole")
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, *flags, "--run-name", "killed", callbacks=[_StopAt(10)])
    assert [int(r["step"]) for r in _rows(tmp_path / "killed")] == [5, 10]
    _train(tmp_path, "--run-name", "killed", "--resume")  # the other flags come from config.json

    whole, resumed = (
        torch.load(tmp_path / n / "checkpoint.pt", weights_only=True) for n in ("whole", "killed")
    )
    assert resumed["loop"]["step"] == whole["loop"]["step"] == 20
    for key, value in whole["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert [r["val_loss"] for r in _rows(tmp_path / "whole")] == [
        r["val_loss"] for r in _rows(tmp_path / "killed")
    ]


class _Sabotage(Callback):
    """After the second evaluation, scale every weight by a large random factor: later ones are worse."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def on_eval(self, state, row):  # noqa: ANN001, ANN201
        if len(state.rows) == 2:
            with torch.no_grad():
                for p in self.model.parameters():
                    p.mul_(torch.randn_like(p) * 30)


def test_keep_best_ends_on_the_best_evaluated_weights(tmp_path: Path) -> None:
    """By construction the second of four evaluations is the best: the run ends on its weights, the
    checkpoint holds them, and the final metrics are theirs."""
    cfg = train.parse(["--quick", "--device", "cpu", "--max-iters", "40"])
    data = load_char_data(choose_text(quick=True), max_chars=cfg.max_chars)
    model = GPT(train.model_config(cfg, len(data.vocab)))
    run = RunFolder(tmp_path).create()
    model, state, metrics = train.fit_gpt(cfg, data, CPU, run=run, model=model, callbacks=[_Sabotage(model)])
    losses = [r["val_loss"] for r in state.rows]
    assert len(losses) == 4 and min(losses[2:]) > losses[1]
    assert state.best_step == metrics["kept_step"] == state.rows[1]["step"] == 20
    amp_dtype = resolve_amp_dtype(cfg.amp, CPU)
    estimate = estimate_loss(model, data.val, cfg.block_size, cfg.batch_size, cfg.eval_batches, amp_dtype)
    assert estimate == pytest.approx(losses[1], abs=1e-5) and metrics["val_loss"] == losses[1]
    assert metrics["val_loss_whole_split"] == pytest.approx(split_loss(model, data.val, cfg.block_size, 16))
    saved = GPT(train.model_config(cfg, len(data.vocab)))
    load_checkpoint(run.checkpoint, model=saved, restore_rng=False)
    for a, b in zip(saved.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


# --- predict (and sample) -------------------------------------------------------------------------------


def test_predict_is_deterministic_with_a_seed_and_streams_the_same_text(trained_run: Path) -> None:
    gen = predict.TextGenerator.load(run_dir=str(trained_run), device="cpu")
    first = gen.sample("The ", num_chars=40, seed=3)
    assert first == gen.sample("The ", num_chars=40, seed=3)
    assert first != gen.sample("The ", num_chars=40, seed=4)
    assert first[0].startswith("The ") and len(first[0]) == 44
    assert "The " + "".join(gen.stream("The ", num_chars=40, seed=3)) == first[0]
    (greedy,) = gen.sample("", num_chars=30, top_k=1, seed=0)
    assert greedy == gen.sample("", num_chars=30, top_k=1, seed=99)[0]  # top-1: the argmax, whatever the seed
    assert len(greedy) == 30  # an empty prompt starts from a newline, which is not returned
    (long,) = gen.sample("a" * 50, num_chars=gen.block_size + 5)
    assert len(long) == 50 + gen.block_size + 5  # reads past the context length


def test_predict_bad_input_gives_one_line_errors(trained_run: Path, capsys: pytest.CaptureFixture) -> None:
    gen = predict.TextGenerator.load(run_dir=str(trained_run), device="cpu")
    with pytest.raises(predict.SampleError, match=r"never saw.*'€'"):
        gen.sample("Hello €uro", num_chars=5)
    for kwargs, message in (
        ({"temperature": 0.0}, "temperature must be a number > 0"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_k": 0}, "top-k must be"),
        ({"num_chars": -1}, "number of characters"),
    ):
        with pytest.raises(predict.SampleError, match=message):
            gen.sample("", **{"num_chars": 5, **kwargs})
    base = ["predict", "--run-dir", str(trained_run), "--num-chars", "5"]
    assert cli_main([*base, "--prompt", "ROMEO€"]) == 1
    err = capsys.readouterr().err
    assert "never saw" in err and err.count("\n") == 1 and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_info:
        cli_main([*base, "--temperature", "0"])
    assert exit_info.value.code == 2 and "--temperature must be > 0" in capsys.readouterr().err
    assert cli_main(["predict", "--run-dir", str(trained_run.parent / "nope")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert cli_main(["predict", "--num-chars", "5"]) == 1  # neither --release nor --run-dir
    assert "--release" in capsys.readouterr().err
    assert cli_main(["sample", *base[1:], "--prompt", ""]) == 0  # `sample` is predict; empty prompt allowed
    assert cli_main([*base, "--top-k", "none", "--json", "--num-samples", "3", "--batch-size", "2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()[-3:]]
    assert [d["sample"] for d in lines] == [1, 2, 3] and all(len(d["text"]) == 5 for d in lines)


# --- evaluate, export -----------------------------------------------------------------------------------


def test_evaluate_the_validation_split_and_a_text_file(trained_run: Path, tmp_path: Path) -> None:
    info = json.loads((trained_run / "model_info.json").read_text())
    result = evaluate.evaluate_run(evaluate.EvalConfig(run_dir=str(trained_run), device="cpu"))
    assert result["loss"] == pytest.approx(info["metrics"]["val_loss_whole_split"], abs=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(result["loss"]))
    assert cli_main(["evaluate", "--run-dir", str(trained_run), "--device", "cpu"]) == 0
    assert json.loads((trained_run / "evaluation.json").read_text())["loss"] == pytest.approx(result["loss"])
    chars = info["vocab"]["chars"]
    text = tmp_path / "known.txt"
    text.write_text((chars * 20)[:1000], encoding="utf-8")
    scored = evaluate.evaluate_run(evaluate.EvalConfig(run_dir=str(trained_run), text_file=str(text)))
    assert scored["characters"] == (999 // 32) * 32 and scored["loss"] > 0
    text.write_text("ünknown € characters" * 20, encoding="utf-8")
    with pytest.raises(UserError, match="never saw"):
        evaluate.evaluate_run(evaluate.EvalConfig(run_dir=str(trained_run), text_file=str(text)))


@pytest.mark.slow  # the ONNX export (torch.export + the dynamo exporter) takes 8-20 s
def test_export_release_and_onnx_parity(trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "release"
    assert (
        cli_main(["export", "--run-dir", str(trained_run), "--out", str(out), "--parity-examples", "16"]) == 0
    )
    assert {"model.safetensors", "model.json", "model.onnx"} <= {p.name for p in out.iterdir()}
    meta = json.loads((out / "model.json").read_text())
    assert meta["parity"]["onnx_max_abs_diff"] < 1e-4 and meta["vocab"]["kind"] == "char"
    assert "trained_from" not in meta and str(trained_run) not in json.dumps(meta)  # no server paths
    model, _ = load_release(out, predict.TextGenerator.build_model)
    original, info = train.load_gpt(str(trained_run))
    x = export.parity_windows(info, 4)  # (4, T)
    torch.testing.assert_close(model(x), original(x))
    onnx_logits = onnx_session(out / "model.onnx").run(None, {"idx": x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(onnx_logits), original(x), atol=1e-4, rtol=1e-4)
    from_release = predict.TextGenerator.load(release=str(out), device="cpu").sample("The", 20, seed=1)
    from_run = predict.TextGenerator.load(run_dir=str(trained_run), device="cpu").sample("The", 20, seed=1)
    assert from_release == from_run


# --- the commands' errors: one line, no traceback ---------------------------------------------------------


def test_cli_lists_the_commands(capsys: pytest.CaptureFixture) -> None:
    assert cli_main([]) == 0
    out = capsys.readouterr().out
    assert all(c in out for c in ("train", "evaluate", "export", "predict", "serve"))
    assert cli_main(["fly"]) == 2


def test_expected_failures_are_one_line(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("model_info.json", "config.json"):
        (broken / name).write_bytes((trained_run / name).read_bytes())
    (broken / "checkpoint.pt").write_bytes((trained_run / "checkpoint.pt").read_bytes()[:1000])  # cut off
    for argv in (["evaluate", "--run-dir", str(broken)], ["export", "--run-dir", str(broken)]):
        assert cli_main(argv) == 1
        err = capsys.readouterr().err
        assert str(broken / "checkpoint.pt") in err and err.count("\n") == 1 and "Traceback" not in err
    runs = ["--runs-dir", str(tmp_path / "runs")]
    assert cli_main(["train", "--quick", *runs, "--text-file", str(tmp_path / "missing.txt")]) == 1
    assert "no such file" in capsys.readouterr().err
    assert cli_main(["serve", "--release", str(tmp_path)]) == 1
    assert "not a release folder" in capsys.readouterr().err
    _no_data(monkeypatch, tmp_path)  # full mode, no tiny shakespeare anywhere, no network
    assert cli_main(["train", "--device", "cpu", *runs]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: dataset 'tiny_shakespeare'") and "--quick" in err and "Traceback" not in err


# --- the real text, the benchmark -------------------------------------------------------------------------


def test_tiny_shakespeare_split() -> None:
    require_dataset("tiny_shakespeare")
    data = load_char_data("tiny_shakespeare")
    assert len(data.vocab) == 65
    assert (len(data.train), len(data.val)) == (1_003_854, 111_540)  # nanoGPT's prepare.py numbers
    assert data.vocab.decode(data.train[:14].tolist()) == "First Citizen:"


@pytest.mark.slow
def test_benchmark_smoke() -> None:
    """The speed benchmark runs two configs on the CPU (one of them broken) and prints its table."""
    require_dataset("tiny_shakespeare")
    tiny = "n_layer=1,n_embd=32,n_head=2,block_size=32,eval_seconds=1"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "text_generator_speed.py"), "--device", "cpu",
           "--time-budget", "2", "--max-chars", "20000", "--final-eval-batches", "4",
           "--sweep", tiny, "n_layers=2"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "summary on cpu" in out.stdout and "cores" in out.stdout
    assert "failed: ValueError" in out.stdout  # the typo is reported, not fatal
    assert "goal (<= 1.55 in 300 s)" in out.stdout
