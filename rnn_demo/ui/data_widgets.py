"""Data page widgets: pickers for a built-in dataset, a synthetic task or an uploaded CSV/TSV,
names for numeric classes, and the overview of the chosen dataset."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import streamlit as st

from rnn_demo import sessions
from rnn_demo.data import (
    DATASETS, MAX_CLASS_NAME_CHARS, DatasetError, DatasetSpec, download_ag_news, is_ag_news_cached, name_classes,
)
from rnn_demo.data.csv_reader import read_preview_rows
from rnn_demo.data.table_guesses import first_row_is_data, generated_names, guess_columns
from rnn_demo.dataset_stats import DatasetStats
from rnn_demo.plots.data import class_balance_figure, length_histogram_figure
from rnn_demo.ui import presenter, state
from rnn_demo.ui.widgets import md

MAX_UPLOAD_MB = 200  # keep equal to server.maxUploadSize in .streamlit/config.toml and data.load_csv's max_bytes
DELIMITERS = {"auto": None, "comma": ",", "tab": "\t", "semicolon": ";", "pipe": "|"}
SOURCES = ("Built-in dataset", "Synthetic task", "Your CSV/TSV file")
NO_HEADER = "The first row is data (no header)"
GUESS_ROWS = 200  # rows read to guess the columns and check the header


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


def csv_picker(current: DatasetSpec) -> DatasetSpec | None:
    """Upload, preview and column choices of a user file; returns its spec (or None until it is complete).

    The text and label columns are guessed for each new file (the user can change them); a
    first row that looks like data gets a warning and the "no header" checkbox reads it as data.
    """
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
    st.session_state.setdefault("data.upload_path", current.csv)  # after a reload: the file in use
    path = st.session_state.get("data.upload_path")
    if not path or not Path(path).is_file():
        st.info("Upload a file to preview it and choose its columns.")
        return None
    same_file = current.csv == path
    no_header_key = state.persist("data.csv_no_header", same_file and not current.header)
    delim_key = state.persist("data.csv_delimiter", "auto")
    notice = st.empty()
    left, right = st.columns(2)
    delimiter = DELIMITERS[right.selectbox("Delimiter", list(DELIMITERS), key=delim_key)]
    mtime = Path(path).stat().st_mtime
    try:
        head = _head_rows(path, mtime, delimiter)
        suspicion = None if st.session_state[no_header_key] else first_row_is_data(head)
        header = not left.checkbox(NO_HEADER, key=no_header_key, help="Tick when the file has no row of column "
                                   "names: the columns are then called column 1, column 2, …")
        preview = state.table_preview(path, mtime, header, delimiter)
    except DatasetError as exc:
        st.error(md(exc))
        return None
    if suspicion:
        notice.warning(f"{md(suspicion)} If so, tick **{NO_HEADER}**.")
    if not header:
        preview = preview.set_axis(generated_names(preview.shape[1]), axis=1)
    st.caption(f"Preview of {md(Path(path).name)} (first {len(preview)} rows)")
    st.dataframe(preview, hide_index=True, height=210)
    columns = list(preview.columns)
    text_key = state.persist("data.csv_text_cols", list(current.text_cols) if same_file else [])
    label_key = state.persist("data.csv_label_col", current.label_col if same_file else None)
    _guess_once(columns, head[1:] if header else head, (path, mtime, header, delimiter), text_key, label_key)
    st.session_state[text_key] = [c for c in st.session_state[text_key] if c in columns]
    state.keep_choice_valid(label_key, [None, *columns], None)
    left, right = st.columns(2)
    text_cols = left.multiselect("Text column(s)", columns, key=text_key, help="several are joined with a space")
    label_col = right.selectbox("Label column", [None, *columns], key=label_key,
                                format_func=lambda c: "choose …" if c is None else c)
    if not text_cols or label_col is None:
        st.info("Choose the text column(s) and the label column.")
        return None
    # Class names stay while they name the same labels: same file, label column, header and delimiter.
    same_labels = (same_file and current.label_col == label_col and current.header == header
                   and current.delimiter == delimiter)
    return DatasetSpec(csv=path, text_cols=list(text_cols), label_col=label_col, header=header, delimiter=delimiter,
                       class_names=dict(current.class_names) if same_labels else {})


@st.cache_data(max_entries=8, show_spinner=False)
def _head_rows(path: str, mtime: float, delimiter: str | None) -> list[list[str]]:
    """The first rows of a file read without a header (cached per file version), for the guesses."""
    return read_preview_rows(path, header=False, delimiter=delimiter, n_rows=GUESS_ROWS,
                             max_bytes=MAX_UPLOAD_MB * 1024 * 1024)[1]


def _guess_once(columns: list[str], rows: list[list[str]], marker: tuple, text_key: str, label_key: str) -> None:
    """Preselects the guessed text and label columns once per file version and header setting,
    where no valid choice is made yet."""
    if st.session_state.get("data.csv_guessed_for") == marker:
        return
    st.session_state["data.csv_guessed_for"] = marker
    text, label = guess_columns(columns, rows)
    if text is not None and not any(c in columns for c in st.session_state[text_key]):
        st.session_state[text_key] = [text]
    if label is not None and st.session_state[label_key] not in columns and label not in st.session_state[text_key]:
        st.session_state[label_key] = label


def checked(spec: DatasetSpec) -> DatasetSpec:
    """Loads a spec once (cached) to validate it; class names that no longer fit the file's labels
    (e.g. a file uploaded again with other labels) are dropped with a warning.

    Raises:
        DatasetError: The dataset cannot be loaded even without class names.
    """
    try:
        state.check_dataset(spec)
        return spec
    except DatasetError as exc:
        if not spec.class_names:
            raise
        reason = exc
    plain = replace(spec, class_names={})
    state.check_dataset(plain)
    # Shown by class_names_editor: the page reruns once the spec changes.
    st.session_state["data.class_names_note"] = f"The class names were dropped: {md(reason)}"
    return plain


def class_names_editor(spec: DatasetSpec, label_names: list[str]) -> DatasetSpec | None:
    """Text inputs that name integer label values (0 -> negative) of a user file.

    Returns:
        The spec with the new names when they changed and are valid, else None (a bad name
        gets an error and the spec keeps its names).
    """
    named = {name: value for value, name in spec.class_names.items()}
    values = [named.get(name, name) for name in label_names]
    if not spec.csv or not all(value.lstrip("-").isdigit() for value in values):
        return None
    marker = (spec.csv, spec.label_col, spec.header, spec.delimiter, tuple(values))
    keys = {value: f"data.class_name.{value}" for value in values}
    if note := st.session_state.pop("data.class_names_note", None):
        st.warning(note)
    if st.session_state.get("data.class_names_for") != marker:  # another file or column: its own names
        st.session_state["data.class_names_for"] = marker
        for value, key in keys.items():
            st.session_state[key] = spec.class_names.get(value, "")
    with st.expander("Class names", expanded=len(values) <= 10):
        st.caption("The labels are numbers: name them (e.g. 0 → negative) and training, Predict, Mistakes and "
                   "Compare show the names. Leave a field empty to keep the number.")
        columns = st.columns(min(len(values), 5))
        for index, (value, key) in enumerate(keys.items()):
            columns[index % len(columns)].text_input(f"Label {value}", key=state.persist(key, ""),
                                                     max_chars=MAX_CLASS_NAME_CHARS, placeholder=value)
    mapping = {value: st.session_state[key].strip() for value, key in keys.items() if st.session_state[key].strip()}
    if mapping == spec.class_names:
        return None
    try:
        name_classes(values, mapping)
    except DatasetError as exc:
        st.error(md(exc))
        return None
    return replace(spec, class_names=mapping)


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
    presenter.chart(class_balance_figure(stats.class_counts), key="data.balance", container=left)
    presenter.chart(length_histogram_figure(stats.train_lengths, max_tokens), key="data.lengths", container=right)
    st.markdown("**Sample rows** (training split)")
    st.dataframe(pd.DataFrame(stats.samples, columns=["text", "label"]), hide_index=True)
