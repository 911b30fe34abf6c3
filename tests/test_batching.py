import numpy as np
import torch

from rnn_demo.batching import BatchLoader, bucketed_batches, collate, encode_texts
from rnn_demo.text import PAD_ID, UNK_ID, Tokenizer, Vocab


def _encoded(texts, labels=None, max_tokens=None):
    tok = Tokenizer()
    vocab = Vocab.build(tok(t) for t in texts)
    return encode_texts(texts, tok, vocab, labels, max_tokens=max_tokens), vocab


def test_encode_once_with_length_cap_and_empty_text_as_single_unk():
    enc, vocab = _encoded(["a b c d", "", "b"], [0, 1, 0], max_tokens=3)
    assert enc.lengths.tolist() == [3, 1, 1]
    assert enc.truncated.tolist() == [True, False, False]
    assert enc.sequences[1].tolist() == [UNK_ID]
    assert enc.labels.tolist() == [0, 1, 0]
    assert enc.num_tokens == 5


def test_collate_pads_to_longest_in_batch_sorted_by_length_and_keeps_positions():
    enc, _ = _encoded(["a", "a b c", "a b"], [0, 1, 0])
    batch = collate(enc, [0, 1, 2])
    assert batch.ids.shape == (3, 3)
    assert batch.lengths.tolist() == [3, 2, 1]
    assert batch.index.tolist() == [1, 2, 0]
    assert batch.ids[2, 1:].tolist() == [PAD_ID, PAD_ID]
    assert batch.labels.tolist() == [1, 0, 0]


def test_collate_gathers_the_same_padded_ids_as_padding_each_text():
    rng = np.random.default_rng(0)
    texts = [" ".join(f"w{rng.integers(0, 40)}" for _ in range(rng.integers(0, 30))) for _ in range(200)]
    enc, _ = _encoded(texts, [i % 2 for i in range(200)])
    originals = [s.clone() for s in enc.sequences]
    for index in (rng.permutation(200)[:64], [5], [3, 3, 7], list(range(200))):
        batch = collate(enc, index)
        expected = torch.nn.utils.rnn.pad_sequence([originals[i] for i in batch.index.tolist()], batch_first=True,
                                                   padding_value=PAD_ID)
        assert torch.equal(batch.ids, expected)
        assert batch.lengths.tolist() == [len(originals[i]) for i in batch.index.tolist()]
    assert all(torch.equal(a, b) for a, b in zip(enc.sequences, originals))  # now views of one store


def test_bucketed_batches_cover_every_example_once_and_keep_similar_lengths_together():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, size=1000)
    batches = bucketed_batches(lengths, 32, shuffle=True, seed=1)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    padded = sum(len(b) * lengths[b].max() for b in batches)
    assert padded / lengths.sum() < 1.15  # random batches would waste about 2x
    assert [b.tolist() for b in bucketed_batches(lengths, 32, shuffle=True, seed=1)] == [b.tolist() for b in batches]
    assert [b.tolist() for b in bucketed_batches(lengths, 32, shuffle=True, seed=2)] != [b.tolist() for b in batches]


def test_loader_reshuffles_every_epoch_and_len_matches():
    enc, _ = _encoded([" ".join("w" * (i % 7 + 1)) for i in range(100)], [i % 2 for i in range(100)])
    loader = BatchLoader(enc, 16, shuffle=True)
    first = [b.index.tolist() for b in loader]
    second = [b.index.tolist() for b in loader]
    assert len(first) == len(loader) == 7
    assert first != second
    assert torch.cat([torch.tensor(i) for i in first]).sort().values.tolist() == list(range(100))
