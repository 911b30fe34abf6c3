import pytest

from rnn_demo.text import PAD_ID, UNK_ID, TextConfig, Tokenizer, Vocab


def test_word_tokenizer_lowercases_splits_punctuation_keeps_apostrophes_and_drops_html_breaks():
    tok = Tokenizer("word")
    assert tok("Don't PANIC, it's fine!<br /><br />Really.") == [
        "don't", "panic", ",", "it's", "fine", "!", "really", ".",
    ]  # fmt: skip


def test_word_tokenizer_keeps_case_when_asked_and_handles_unicode_letters():
    assert Tokenizer("word", lowercase=False)("Café Ünïcode") == ["Café", "Ünïcode"]


def test_char_tokenizer_gives_characters_including_spaces():
    assert Tokenizer("char")("Ab c") == ["a", "b", " ", "c"]


def test_unknown_tokenizer_kind_is_refused_with_the_valid_names():
    with pytest.raises(ValueError, match="word, char"):
        Tokenizer("bpe")


def test_vocab_puts_pad_and_unk_first_then_most_frequent_and_honours_min_freq_and_max_size():
    lists = [["b", "a", "a"], ["c", "a", "b"], ["d"]]
    vocab = Vocab.build(lists, min_freq=2)
    assert vocab.itos == ["<pad>", "<unk>", "a", "b"]
    assert vocab.stoi["<pad>"] == PAD_ID and vocab.stoi["<unk>"] == UNK_ID
    assert Vocab.build(lists, max_size=3).itos == ["<pad>", "<unk>", "a"]
    assert vocab.encode(["a", "zzz", "b"]) == [2, UNK_ID, 3]
    assert vocab.decode([3, 2]) == ["b", "a"]


def test_vocab_json_round_trip_and_oov_rate(tmp_path):
    vocab = Vocab.build([["x", "y", "x"]])
    path = tmp_path / "vocab.json"
    vocab.save(path)
    again = Vocab.load(path)
    assert again.itos == vocab.itos
    assert again.oov_rate([["x", "q"], ["y", "r", "s", "x"]]) == pytest.approx(3 / 6)


def test_vocab_refuses_json_without_special_tokens():
    with pytest.raises(ValueError):
        Vocab.from_json('{"itos": ["a", "b"]}')


def test_text_config_validates_and_round_trips():
    cfg = TextConfig(tokenizer="char", min_freq=2, max_vocab=None, max_tokens=50)
    assert TextConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="min_freq"):
        TextConfig(min_freq=0)
