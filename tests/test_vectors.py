import numpy as np
import pytest
import torch

from rnn_demo.cachefiles import pack_strings
from rnn_demo.text import Vocab
from rnn_demo.vectors import VectorsError, cooccurrence_vectors, load_vectors_into, read_word_vectors, save_word_vectors


def test_glove_and_word2vec_text_files_are_read_for_vocabulary_words(tmp_path):
    vocab = Vocab.build([["good", "bad", "rare"]])
    glove = tmp_path / "g.txt"
    glove.write_text("good 1 2 3\nbad -1 -2 -3\nother 9 9 9\n")
    vectors, found = read_word_vectors(glove, vocab)
    assert vectors.shape == (5, 3)
    assert found.tolist() == [False, False, True, True, False]  # <pad>, <unk>, bad, good, rare (alphabetical ties)
    assert vectors[vocab.stoi["good"]].tolist() == [1, 2, 3]
    w2v = tmp_path / "w.txt.gz"
    save_word_vectors(w2v, ["good", "rare"], np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32))
    vectors, found = read_word_vectors(w2v, vocab)
    assert found[vocab.stoi["rare"]] and vectors[vocab.stoi["rare"]].tolist() == [0, 1, 0]


def test_loading_into_an_embedding_checks_the_dimension_and_reports_coverage(tmp_path):
    vocab = Vocab.build([["good", "bad"]])
    path = tmp_path / "g.txt"
    path.write_text("good 1 2\n")
    emb = torch.nn.Embedding(len(vocab), 2)
    assert load_vectors_into(emb, vocab, path) == pytest.approx(0.5)
    assert emb.weight[vocab.stoi["good"]].tolist() == [1, 2]
    with pytest.raises(VectorsError, match="--embedding-dim 2"):
        load_vectors_into(torch.nn.Embedding(len(vocab), 5), vocab, path)
    bad = tmp_path / "bad.txt"
    bad.write_text("good 1 2\nbad 1 2 3\n")
    with pytest.raises(VectorsError, match="earlier lines have 2"):
        read_word_vectors(bad, vocab)


def test_cooccurrence_vectors_put_words_used_alike_close_together():
    rng = np.random.default_rng(0)
    texts = []
    for _ in range(3000):
        animal, food = rng.choice(["cat", "dog", "cow"]), rng.choice(["bread", "rice", "soup"])
        texts.append(["the", animal, "runs", "and", "sleeps", "while", "we", "cook", food, "with", "salt"])
    words, vectors = cooccurrence_vectors(texts, dim=4, window=2, min_count=1)
    v = {w: vectors[i] / np.linalg.norm(vectors[i]) for i, w in enumerate(words)}
    assert v["cat"] @ v["dog"] > v["cat"] @ v["rice"]
    assert v["bread"] @ v["soup"] > v["bread"] @ v["cow"]


def test_a_binary_copy_makes_later_reads_fast_and_follows_changes_to_the_file(tmp_path):
    vocab = Vocab.build([["good", "bad", "rare"]])
    source = tmp_path / "g.txt"
    source.write_text("3 2\ngood 1 2\nbad -1 -2\ngood 7 7\nother 9 9\n")  # word2vec header; first "good" wins
    cache = tmp_path / "cache"
    first = read_word_vectors(source, vocab, binary_cache=cache)
    copies = list(cache.glob("*.npz"))
    assert len(copies) == 1
    again = read_word_vectors(source, vocab, binary_cache=cache)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert first[0][vocab.stoi["good"]].tolist() == [1, 2] and first[1].tolist() == [False, False, True, True, False]
    # The copy is read, not the text: a stale copy with other numbers would show up here.
    np.savez(copies[0], **pack_strings(["good"]), vectors=np.array([[5, 5]], dtype=np.float32))
    assert read_word_vectors(source, vocab, binary_cache=cache)[0][vocab.stoi["good"]].tolist() == [5, 5]
    # Editing the file makes a new copy.
    source.write_text("good 3 4 5\n")
    vectors, found = read_word_vectors(source, vocab, binary_cache=cache)
    assert vectors.shape == (5, 3) and vectors[vocab.stoi["good"]].tolist() == [3, 4, 5] and found.sum() == 1
    # A file with an error is reported and leaves no copy behind.
    bad = tmp_path / "bad.txt"
    bad.write_text("good 1 2\nbad 1 2 3\n")
    with pytest.raises(VectorsError, match="earlier lines have 2"):
        read_word_vectors(bad, vocab, binary_cache=cache)
    assert len(list(cache.glob("bad-*.npz"))) == 0


def test_binary_copies_use_their_own_temporary_file(tmp_path):
    from rnn_demo.vectors import _binary_copy_path

    vocab = Vocab.build([["good"]])
    source = tmp_path / "g.txt"
    source.write_text("good 1 2\n")
    cache = tmp_path / "cache"
    copy = _binary_copy_path(source, cache)
    cache.mkdir()
    copy.with_name(copy.name + ".tmp.npz").mkdir()  # another process's fixed-name temporary file
    read_word_vectors(source, vocab, binary_cache=cache)
    assert copy.is_file() and [p.name for p in cache.iterdir() if p.is_file()] == [copy.name]
