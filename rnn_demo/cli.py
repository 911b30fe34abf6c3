"""Command line: ``python -m rnn_demo {datasets,train,evaluate,predict,explain,runs,download}``.

Every command calls the same functions the app uses. With ``--json`` the last
line on stdout is one JSON object; errors are one line on stderr and a non-zero
exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rnn_demo.checkpoints import (
    CheckpointError,
    check_out_dir,
    clean_stale_temp_dirs,
    list_damaged_runs,
    list_runs,
    user_runs_dir,
)
from rnn_demo.data import DATASETS, DatasetError, DatasetSpec, download_ag_news, list_datasets, load_splits
from rnn_demo.model import ModelConfig
from rnn_demo.text import TextConfig
from rnn_demo.train import DEVICES, TrainConfig, TrainingError
from rnn_demo.vectors import VectorsError

# Errors that are the user's to fix: reported as one line, exit status 2.
USER_ERRORS = (DatasetError, CheckpointError, TrainingError, VectorsError, ValueError, FileNotFoundError, OSError)


class _Aborted(KeyboardInterrupt):
    """A second stop signal: abort at once, exiting with the signal's status."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.exit_status = 128 + signum


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _optional_int(text: str) -> int | None:
    return None if text.lower() in ("none", "0") else _positive_int(text)


def _add_dataset_flags(parser: argparse.ArgumentParser, required: bool) -> None:
    group = parser.add_argument_group("dataset")
    source = group.add_mutually_exclusive_group(required=required)
    source.add_argument("--dataset", choices=list(DATASETS), help="a built-in or synthetic dataset (see `datasets`)")
    source.add_argument("--csv", metavar="PATH", help="your own CSV/TSV file")
    group.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                       help="a synthetic-task parameter, e.g. --param distractors=50 (repeatable)")
    group.add_argument("--test-csv", metavar="PATH", help="a separate test file with the same columns as --csv")
    group.add_argument("--text-col", action="append", default=[], metavar="C",
                       help="text column by header name or 0-based position; repeat to join several (e.g. title and body)")
    group.add_argument("--label-col", metavar="C", help="label column by header name or 0-based position")
    group.add_argument("--no-header", action="store_true", help="the file has no header row")
    group.add_argument("--class-names", metavar="VALUE=NAME,...",
                       help="names for the label values of --csv, e.g. 0=negative,1=positive (saved with the run)")
    group.add_argument("--delimiter", metavar="D", help="field separator (default: detected); 'tab' or '\\t' for TSV")
    group.add_argument("--split-seed", type=int, default=0, help="seed of the train/validation/test split (default 0)")


def _dataset_spec(args: argparse.Namespace) -> DatasetSpec:
    if args.csv:
        if not args.text_col or args.label_col is None:
            raise DatasetError("--csv needs --text-col (one or more) and --label-col")
        return DatasetSpec(csv=args.csv, test_csv=args.test_csv, text_cols=args.text_col, label_col=args.label_col,
                           header=not args.no_header, delimiter=args.delimiter, seed=args.split_seed,
                           class_names=_class_names(args.class_names))
    params: dict[str, Any] = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            raise DatasetError(f"--param {item!r} must look like KEY=VALUE, e.g. distractors=50")
        params[key.strip()] = int(value) if value.strip().lstrip("-").isdigit() else value.strip()
    return DatasetSpec(name=args.dataset, params=params, seed=args.split_seed)


def _class_names(text: str | None) -> dict[str, str]:
    """``"0=negative,1=positive"`` -> ``{"0": "negative", "1": "positive"}`` (names are checked on loading)."""
    names: dict[str, str] = {}
    for item in text.split(",") if text else []:
        value, sep, name = item.partition("=")
        if not sep or not value.strip():
            raise DatasetError(f"--class-names item {item.strip()!r} must look like VALUE=NAME, e.g. 0=negative")
        names[value.strip()] = name.strip()
    return names


_CONFIGS: dict[str, tuple[str, type]] = {  # config group -> (--help section, config class)
    "text": ("text", TextConfig), "model": ("model", ModelConfig), "train": ("training", TrainConfig),
}


def _flag_kwargs(meta: Mapping[str, Any]) -> dict[str, Any]:
    """argparse options of a setting's flag, from its metadata (``rnn_demo.settings``)."""
    kwargs: dict[str, Any] = {"help": meta["help"]}
    if meta["metavar"]:
        kwargs["metavar"] = meta["metavar"]
    widget = meta["widget"]
    if widget == "select" and not meta["metavar"]:
        kwargs["choices"] = list(meta["options"])
    elif widget == "check":
        kwargs.update(action=argparse.BooleanOptionalAction, default=None)
    elif widget == "int":
        low = (meta["limits"] or meta["widget_range"] or (None, None))[0]
        kwargs["type"] = _positive_int if low is not None and low >= 1 else int
    elif widget == "optint":  # the form's "empty" is 0 or "none" on the command line
        kwargs.update(type=_optional_int, help=f"{meta['help']} (here: 0 or none)")
    elif widget == "float":
        kwargs["type"] = float
    return kwargs


def _setting_flags() -> dict[str, tuple[str, str, dataclasses.Field[Any]]]:
    """argparse dest -> (config group, field, field) of every setting with a flag, in config order."""
    flags = {}
    for group, (_, config_class) in _CONFIGS.items():
        for f in dataclasses.fields(config_class):
            if f.metadata.get("flag"):
                flags[f.metadata["flag"].removeprefix("--").replace("-", "_")] = (group, f.name, f)
    return flags


def _add_train_flags(parser: argparse.ArgumentParser) -> None:
    """The settings' flags, generated from the configs' field metadata, then ``--no-vectors`` and ``--out``."""
    sections = {group: parser.add_argument_group(title) for group, (title, _) in _CONFIGS.items()}
    for group, _, f in _setting_flags().values():
        sections[group].add_argument(f.metadata["flag"], **_flag_kwargs(f.metadata))
    sections["model"].add_argument("--no-vectors", action="store_true", help="start from random word vectors")
    parser.add_argument("--out", metavar="RUN_DIR", help="where to save the run (default: a new folder in the user runs directory)")


# CLI flag (argparse dest) -> (config, field). Generated, so flags and dataclasses stay 1:1.
_FLAG_FIELDS: dict[str, tuple[str, str]] = {
    dest: (group, name) for dest, (group, name, _) in _setting_flags().items()
}


def configs_from_args(args: argparse.Namespace, dataset_name: str | None) -> tuple[TextConfig, ModelConfig, TrainConfig]:
    """Per-dataset defaults, overridden by every flag the user gave."""
    from rnn_demo.experiment import default_configs

    text, model, train = (c.to_dict() for c in default_configs(dataset_name))
    target = {"text": text, "model": model, "train": train}
    for dest, (config, name) in _FLAG_FIELDS.items():
        value = getattr(args, dest, None)
        if value is not None:
            target[config][name] = value
    if getattr(args, "no_vectors", False):
        model["pretrained_vectors"] = None
    return TextConfig.from_dict(text), ModelConfig.from_dict(model), TrainConfig.from_dict(train)


def _emit(data: dict[str, Any], as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        print(json.dumps(data, ensure_ascii=False))
    else:
        human()


def cmd_datasets(args: argparse.Namespace) -> None:
    rows = [
        {"name": d.name, "title": d.title, "kind": d.kind, "size": d.size, "classes": list(d.label_names),
         "params": d.params, "description": d.description, "citation": d.citation}
        for d in list_datasets()
    ]

    def human() -> None:
        for r in rows:
            params = f"  params: {r['params']}" if r["params"] else ""
            print(f"{r['name']:<16} {r['kind']:<9} {r['size']:>7,} examples  {len(r['classes'])} classes: "
                  f"{', '.join(r['classes'])}{params}")

    _emit({"datasets": rows}, args.json, human)


class _ProgressBar:
    """Draws training events as a tqdm bar on stderr with live loss and accuracy."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None
        self.last_step = 0
        self.postfix: dict[str, str] = {}

    def __call__(self, event: dict[str, Any]) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        kind = event["type"]
        if kind == "start":
            self.last_step = 0  # one bar per run (build-checkpoints trains several)
            self.postfix = {}
            self.bar = tqdm(total=event["total_steps"], unit="step", file=sys.stderr, dynamic_ncols=True,
                            desc=f"training ({event['n_train']:,} examples, {event['device']})")
        elif self.bar is None:
            return
        elif kind == "step":
            self.bar.update(event["step"] - self.last_step)
            self.last_step = event["step"]
            self.postfix.update(epoch=str(event["epoch"]), loss=f"{event['loss']:.3f}",
                                tok_s=f"{event['tokens_per_second']:,.0f}")
            self.bar.set_postfix(self.postfix, refresh=False)
        elif kind == "eval":
            self.postfix.update(val_loss=f"{event['val_loss']:.3f}", val_acc=f"{event['val_accuracy']:.3f}")
            self.bar.set_postfix(self.postfix)
        elif kind == "watch":  # --watch: the watched sentence's most likely class and its probability
            probs, labels = event["probabilities"], event.get("labels") or []
            top = max(range(len(probs)), key=probs.__getitem__)
            self.postfix.update(watch=f"{labels[top] if top < len(labels) else top} {probs[top]:.0%}")
            self.bar.set_postfix(self.postfix)
        elif kind == "done":
            self.bar.close()
            print(f"finished: {event['message']}", file=sys.stderr)


def cmd_train(args: argparse.Namespace) -> int | None:
    from rnn_demo.baseline import saved_run_sentence
    from rnn_demo.experiment import run_experiment

    # Leftovers of interrupted saves go first; then --out is checked before anything slow.
    clean_stale_temp_dirs(user_runs_dir())
    if args.out:
        clean_stale_temp_dirs(Path(args.out).parent)
        check_out_dir(args.out, overwrite=args.overwrite)
    spec = _dataset_spec(args)
    text, model, train = configs_from_args(args, spec.name)
    quiet = args.json and not sys.stderr.isatty() and args.quiet
    progress = _ProgressBar(enabled=not quiet)
    # The first Ctrl-C or SIGTERM stops training cooperatively: the best weights so far are
    # evaluated and saved, then the exit status still says the run was stopped (128 + signal).
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set():  # a second signal aborts at once
            raise _Aborted(signum)
        received.append(signum)
        stop.set()
        print(f"\n{signal.Signals(signum).name}: stopping after this step and saving the best weights; "
              "press Ctrl-C again to abort", file=sys.stderr)

    handled = (signal.SIGINT, signal.SIGTERM) if threading.current_thread() is threading.main_thread() else ()
    previous = {signum: signal.signal(signum, on_signal) for signum in handled}
    try:
        summary = run_experiment(
            spec, text, model, train, out_dir=args.out, overwrite=args.overwrite, callback=progress, stop=stop,
            on_stage=None if quiet else (lambda s: print(f"{s} …", file=sys.stderr)),
        )
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def human() -> None:
        print(f"saved {summary.run_dir}")
        print(f"test accuracy {summary.test['accuracy']:.4f}  macro-F1 {summary.test['macro_f1']:.4f}  "
              f"({summary.epochs_run} epochs, {sum(summary.epoch_seconds):.1f} s training)")
        print(saved_run_sentence(summary.run_dir))  # the run beside its bag-of-words baseline

    data = summary.to_dict()
    keys = ("run_dir", "n_train", "epochs_run", "epoch_seconds", "tokens_per_second", "val", "test", "label_names",
            "stop_reason", "num_parameters")
    _emit({k: data[k] for k in keys}, args.json, human)
    if received:
        print(f"stopped by {signal.Signals(received[0]).name}; saved the best weights to {summary.run_dir}",
              file=sys.stderr)
        return 128 + received[0]
    if summary.stop_reason == "diverged":  # saved with the weights from before the loss exploded
        print(f"training diverged: {summary.message}; saved the best weights before it to {summary.run_dir}",
              file=sys.stderr)
        return 1
    return None


def cmd_evaluate(args: argparse.Namespace) -> None:
    from rnn_demo.baseline import baseline_report
    from rnn_demo.metrics import classification_summary
    from rnn_demo.predict import Predictor

    predictor = Predictor.load(args.run_dir, device=args.device)
    info = predictor.run.info
    own = not (args.dataset or args.csv)
    spec = info.dataset_spec if own else _dataset_spec(args)
    if spec is None:
        raise DatasetError(f"run {info.name} does not record which dataset it was trained on; "
                           "name one with --dataset or --csv")
    splits = load_splits(spec)
    if splits.label_names != predictor.label_names:
        raise DatasetError(f"the dataset's classes {splits.label_names} differ from the model's {predictor.label_names}")
    part = getattr(splits, args.split)
    probs = predictor.predict_proba(part.texts)
    result = classification_summary(part.labels, probs, predictor.label_names)
    # The bag-of-words baseline of the run's own splits: stored, or fitted now for an older run.
    baseline = baseline_report(info, splits if own else None)

    def human() -> None:
        print(f"{args.split}: n={result['n']}  accuracy {result['accuracy']:.4f}  macro-F1 {result['macro_f1']:.4f}  "
              f"weighted F1 {result['weighted_f1']:.4f}")
        for name, row in result["per_class"].items():
            print(f"  {name:<16} precision {row['precision']:.3f}  recall {row['recall']:.3f}  f1 {row['f1']:.3f}  n={row['support']}")
        for row in baseline["rows"]:
            print(f"{row['model']} (TF-IDF + logistic regression; {baseline['source']}): "
                  f"test accuracy {row['test accuracy']:.4f}")
        print(baseline["sentence"])

    keys = ("accuracy", "macro_f1", "weighted_f1", "per_class", "confusion_matrix", "n")
    _emit({**{k: result[k] for k in keys}, "baseline": baseline}, args.json, human)


def _truncation_note(predictor: Any, text: str, num_tokens: int) -> str:
    """Says how much of a cut text was read, e.g. "(read the first 512 tokens of 20,113; …)"."""
    from rnn_demo.explain import EXPLAIN_MAX_TOKENS

    total = len(predictor.tokenizer(text))  # cheap: the command line bounds the text's length
    whole = f"{total:,}" if total > num_tokens else f"a text of {len(text):,} characters"  # else: one huge word
    return (f"(read the first {num_tokens:,} tokens of {whole}; "
            f"explanations read at most {predictor.token_cap(EXPLAIN_MAX_TOKENS):,})")


def cmd_predict(args: argparse.Namespace) -> None:
    from rnn_demo.predict import Predictor

    text = " ".join(args.text)
    if not text.strip():
        raise ValueError("the text is empty; pass a sentence, e.g. predict RUN_DIR \"a gripping, funny film\"")
    predictor = Predictor.load(args.run_dir, device=args.device)
    prediction = predictor.predict(text)
    if prediction.truncated:  # on stderr, with or without --json
        print(_truncation_note(predictor, text, prediction.num_tokens), file=sys.stderr)
    if note := prediction.unknown_note():
        print(f"({note})", file=sys.stderr)

    def human() -> None:
        print(prediction.label)
        for name, p in sorted(prediction.probabilities.items(), key=lambda kv: -kv[1]):
            print(f"  {name:<16} {p:.4f}")

    _emit(prediction.to_dict(), args.json, human)


def cmd_explain(args: argparse.Namespace) -> None:
    from rnn_demo.explain import explain_tokens
    from rnn_demo.predict import Predictor

    text = " ".join(args.text)
    if not text.strip():
        raise ValueError("the text is empty; pass a sentence, e.g. explain RUN_DIR \"a gripping, funny film\"")
    predictor = Predictor.load(args.run_dir, device=args.device)
    class_index = None
    if args.label is not None:
        if args.label not in predictor.label_names:
            names = ", ".join(predictor.label_names)
            raise ValueError(f"unknown label {args.label!r}; this model's labels are {names}")
        class_index = predictor.label_names.index(args.label)
    result = explain_tokens(predictor, text, args.method, class_index=class_index, num_samples=args.samples,
                            seed=args.seed)
    if result.truncated:  # on stderr, with or without --json
        print(_truncation_note(predictor, text, result.num_tokens), file=sys.stderr)

    def human() -> None:
        print(f"{result.label} (p = {result.probabilities[result.class_index]:.3f}), {args.method}, "
              f"{result.seconds:.2f} s")
        for position, token, weight in result.top(args.top):
            print(f"  {weight:+.4f}  {token}  (word {position + 1})")

    _emit({"label": result.label, "tokens": result.pairs(), "seconds": result.seconds, "truncated": result.truncated,
           "num_tokens": result.num_tokens}, args.json, human)


def cmd_runs(args: argparse.Namespace) -> None:
    runs, damaged = list_runs(), list_damaged_runs()
    rows = [{"name": r.name, "path": str(r.path), "shipped": r.shipped, "dataset": r.dataset_name, "cell": r.cell,
             "test_accuracy": r.test_accuracy()} for r in runs]
    bad_rows = [{"name": d.name, "path": str(d.path), "reason": d.reason} for d in damaged]
    lines = [f"{r.title()}\n    {r.path}" for r in runs] + [f"damaged: {d.name} — {d.reason}" for d in damaged]
    _emit({"runs": rows, "damaged": bad_rows}, args.json, lambda: print("\n".join(lines) or "no runs yet"))


def cmd_download(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    bar = tqdm(unit="B", unit_scale=True, file=sys.stderr, desc="AG News")

    def progress(done: int, total: int) -> None:
        bar.total = total or None
        bar.update(done - bar.n)

    path = download_ag_news(progress=progress)
    bar.close()
    _emit({"path": str(path)}, args.json, lambda: print(f"AG News is ready in {path}; train with --dataset ag_news"))


def cmd_build_checkpoints(args: argparse.Namespace) -> None:
    from rnn_demo.checkpoints import shipped_runs_dir
    from rnn_demo.experiment import build_shipped_runs

    out = Path(args.out) if args.out else shipped_runs_dir()
    summaries = build_shipped_runs(out, callback=_ProgressBar(enabled=True), on_stage=lambda s: print(f"{s} …", file=sys.stderr))
    rows = [{"run_dir": str(s.run_dir), "test_accuracy": s.test["accuracy"]} for s in summaries]
    _emit({"runs": rows}, args.json, lambda: print("\n".join(f"{r['run_dir']}: test accuracy {r['test_accuracy']:.4f}" for r in rows)))


def cmd_build_kernels(args: argparse.Namespace) -> None:
    from rnn_demo.accel import kernels

    start = time.perf_counter()
    module = kernels.load()
    seconds = time.perf_counter() - start
    result = {"fused_kernels": module is not None, "seconds": round(seconds, 1), "error": kernels.error()}
    _emit(result, args.json, lambda: print(
        f"fused GRU/LSTM kernels ready ({seconds:.1f} s)" if module is not None
        else f"fused GRU/LSTM kernels not available ({kernels.error()}); training uses torch's layers"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rnn_demo", description="Train, evaluate and query RNN text classifiers.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, func: Callable[[argparse.Namespace], None]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--json", action="store_true", help="print one JSON object as the last stdout line")
        p.add_argument("--threads", type=_positive_int, metavar="N",
                       help="torch CPU threads (default: torch's choice, all cores); 1 can be faster on a busy "
                            "2-core machine, see benchmarks/README.md")
        p.set_defaults(func=func)
        return p

    add("datasets", "list built-in and synthetic datasets with sizes", cmd_datasets)
    p = add("train", "train a model and save its run directory", cmd_train)
    _add_dataset_flags(p, required=True)
    _add_train_flags(p)
    p.add_argument("--quiet", action="store_true", help="with --json: no progress bar")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already saved at --out (a folder that is not a run is never replaced)")
    p = add("evaluate", "evaluate a saved run on a dataset split (default: the run's own dataset)", cmd_evaluate)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (see `runs`)")
    _add_dataset_flags(p, required=False)
    p.add_argument("--split", choices=("test", "validation", "train"), default="test", help="which split (default test)")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="where to run the model")
    p = add("predict", "predict the label of a text", cmd_predict)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (see `runs`)")
    p.add_argument("text", nargs="+", metavar="TEXT", help="the text to classify")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="where to run the model")
    p = add("explain", "show which words made a model predict its label", cmd_explain)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (see `runs`)")
    p.add_argument("text", nargs="+", metavar="TEXT", help="the text to explain")
    p.add_argument("--method", choices=("lime", "occlusion", "grad"), default="lime",
                   help="lime (default), occlusion (leave one word out) or grad (gradient x input)")
    p.add_argument("--samples", type=_positive_int, default=1000, help="LIME: perturbed texts (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="LIME: sampling seed (default 0)")
    p.add_argument("--label", metavar="NAME", help="explain this class instead of the predicted one")
    p.add_argument("--top", type=_positive_int, default=10, help="words listed without --json (default 10)")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="where to run the model")
    add("runs", "list shipped and saved runs", cmd_runs)
    add("download", "download AG News (explicit, one time; needs internet)", cmd_download)
    p = add("build-checkpoints", "retrain the shipped demo runs in checkpoints/ (a few minutes)", cmd_build_checkpoints)
    p.add_argument("--out", metavar="DIR", help="write them here instead of checkpoints/")
    add("build-kernels", "compile the fused GRU/LSTM training kernels now (otherwise done on first use)", cmd_build_kernels)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads is not None:  # else torch's own choice (see rnn_demo.threads)
        from rnn_demo.threads import set_threads

        set_threads(args.threads)
    try:
        status = args.func(args)
    except KeyboardInterrupt as exc:
        print("error: interrupted; nothing was saved", file=sys.stderr)
        return getattr(exc, "exit_status", 130)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return status or 0
