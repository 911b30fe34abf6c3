"""Data page widgets: pickers for a built-in dataset, a synthetic task or an uploaded CSV/TSV,
and the overview of the chosen dataset."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from rnn_demo import sessions
from rnn_demo.data import DATASETS, DatasetError, DatasetSpec, download_ag_news, is_ag_news_cached
from rnn_demo.dataset_stats import DatasetStats
from rnn_demo.plots.data import class_balance_figure, length_histogram_figure
from rnn_demo.ui import state
from rnn_demo.ui.widgets import md

MAX_UPLOAD_MB = 200  # keep equal to server.maxUploadSize in .streamlit/config.toml and data.load_csv's max_bytes
DELIMITERS = {"auto": None, "comma": ",", "tab": "\t", "semicolon": ";", "pipe": "|"}
SOURCES = ("Built-in dataset", "Synthetic task", "Your CSV/TSV file")


def _describe(name: str) -> None:
    info = DATASETS[name]
    st.write(info.description)
    st.caption(f"{info.size:,} examples · {len(info.label_names)} classes: {', '.join(info.label_names)}")
    with st.expander("Source and citation"):
        st.write(info.source)
        st.write(info.citation)


def builtin_picker(initial: DatasetSpec) -> DatasetSpec | None:
    names = [d.name for d in DATASETS.values() if d.kind in ("builtin", "remote")]
    key = state.persist("data.builtin", initial.name if initial.name in names else names[0])
    name = st.selectbox("Dataset", names, key=key, format_func=lambda n: DATASETS[n].title)
    _describe(name)
    if DATASETS[name].kind == "remote" and not is_ag_news_cached():
        st.warning("AG News is not on this machine yet. It is downloaded only when you ask (about 30 MB).")
        if st.button("Download AG News", key="data.download"):
            bar = st.progress(0.0, text="Downloading AG News …")

            def progress(done: int, total: int) -> None:
                bar.progress(min(1.0, done / total) if total else 0.0, text=f"Downloading AG News … {done / 1e6:.1f} MB")

            try:
                download_ag_news(progress=progress)
            except DatasetError as exc:
                st.error(md(exc))
                return None
            st.rerun()
        return None
    return DatasetSpec(name=name)


def synthetic_picker(initial: DatasetSpec) -> DatasetSpec:
    names = [d.name for d in DATASETS.values() if d.kind == "synthetic"]
    key = state.persist("data.synthetic", initial.name if initial.name in names else names[0])
    name = st.selectbox("Task", names, key=key, format_func=lambda n: DATASETS[n].title)
    _describe(name)
    params = {}
    columns = st.columns(max(1, len(DATASETS[name].params)))
    for column, (param, default) in zip(columns, DATASETS[name].params.items()):
        start = initial.params.get(param, default) if initial.name == name else default
        pkey = state.persist(f"data.param.{name}.{param}", int(start))
        params[param] = int(column.number_input(param, min_value=0, step=1, key=pkey))
    return DatasetSpec(name=name, params={k: v for k, v in params.items() if v != DATASETS[name].params[k]})


def csv_picker() -> DatasetSpec | None:
    uploaded = st.file_uploader(
        "CSV or TSV file", type=["csv", "tsv", "txt"], key="data.upload",
        help=f"Up to {MAX_UPLOAD_MB} MB. One row per example: one or more text columns and a label column.",
    )
    st.caption(f"Files up to {MAX_UPLOAD_MB} MB (the server's upload limit). Only you see the file; the server "
               f"deletes it {sessions.ttl_seconds() / 3600:g} hours after your last visit.")
    if uploaded is not None:
        try:
            st.session_state["data.upload_path"] = str(state.save_upload(uploaded.name, uploaded.getvalue()))
        except sessions.QuotaError as exc:
            st.error(md(exc))
            return None
    path = st.session_state.get("data.upload_path")
    if not path or not Path(path).is_file():
        st.info("Upload a file to preview it and choose its columns.")
        return None
    header_key = state.persist("data.csv_header", True)
    delim_key = state.persist("data.csv_delimiter", "auto")
    left, right = st.columns(2)
    header = left.checkbox("First row is a header", key=header_key)
    delimiter = DELIMITERS[right.selectbox("Delimiter", list(DELIMITERS), key=delim_key)]
    try:
        preview = state.table_preview(path, Path(path).stat().st_mtime, header, delimiter)
    except DatasetError as exc:
        st.error(md(exc))
        return None
    st.caption(f"Preview of {md(Path(path).name)} (first {len(preview)} rows)")
    st.dataframe(preview, hide_index=True, height=210)
    columns = list(preview.columns)
    text_key = state.persist("data.csv_text_cols", [])
    label_key = state.persist("data.csv_label_col", None)
    st.session_state[text_key] = [c for c in st.session_state[text_key] if c in columns]
    state.keep_choice_valid(label_key, [None, *columns], None)
    left, right = st.columns(2)
    text_cols = left.multiselect("Text column(s)", columns, key=text_key, help="several are joined with a space")
    label_col = right.selectbox("Label column", [None, *columns], key=label_key,
                                format_func=lambda c: "choose …" if c is None else c)
    if not text_cols or label_col is None:
        st.info("Choose the text column(s) and the label column.")
        return None
    return DatasetSpec(csv=path, text_cols=list(text_cols), label_col=label_col, header=header, delimiter=delimiter)


def overview(stats: DatasetStats, max_tokens: int | None) -> None:
    """Sizes, vocabulary, OOV rate, class balance, length histogram and sample rows."""
    a, b, c, d = st.columns(4)
    sizes = stats.split_sizes
    a.metric("Examples", f"{sum(sizes.values()):,}", help=f"train {sizes['train']:,} · validation "
             f"{sizes['validation']:,} · test {sizes['test']:,}")
    b.metric("Classes", len(stats.label_names))
    c.metric("Vocabulary", f"{stats.vocab_size:,}", help="tokens with their own id (incl. <pad> and <unk>), "
             "fitted on the training split with these settings")
    d.metric("OOV rate", f"{stats.oov_rate:.1%}", help="share of validation tokens that become <unk>")
    for report in stats.load_reports:  # what was read from each file: nothing is dropped silently
        line = report.summary()
        show = st.warning if report.needs_attention else st.caption
        show(md(line[:1].upper() + line[1:]) + ".")
    if max_tokens and stats.truncated_fraction:
        st.caption(f"{stats.truncated_fraction:.1%} of training texts are longer than the {max_tokens}-token cap.")
    left, right = st.columns(2)
    left.plotly_chart(class_balance_figure(stats.class_counts), key="data.balance")
    right.plotly_chart(length_histogram_figure(stats.train_lengths, max_tokens), key="data.lengths")
    st.markdown("**Sample rows** (training split)")
    st.dataframe(pd.DataFrame(stats.samples, columns=["text", "label"]), hide_index=True)
