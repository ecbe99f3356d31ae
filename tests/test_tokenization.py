"""gmlp_tf.tokenization: SentencePiece vocabularies with the fixed special ids, and the tokenizer."""

import os

import pytest
import sentencepiece as spm
import tensorflow as tf
from text_fixtures import fake_sentences

from gmlp_tf import tokenization
from gmlp_tf.tokenization import CLS_ID, MASK_ID, PAD_ID, SEP_ID, UNK_ID


@pytest.fixture(scope="session")
def sp_model_path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok_vocab")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(fake_sentences(800)) + "\n")
    return tokenization.train_sentencepiece([str(corpus)], str(folder / "spm"), vocab_size=120,
                                            character_coverage=1.0)


def test_special_pieces_have_the_fixed_ids(sp_model_path):
    assert tokenization.SPECIAL_TOKENS == ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
    assert (PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID) == (0, 1, 2, 3, 4)
    model = tokenization.load_sp_model(sp_model_path)
    tokenization.check_special_ids(model)
    processor = spm.SentencePieceProcessor(model_file=sp_model_path)
    assert [processor.id_to_piece(i) for i in range(5)] == list(tokenization.SPECIAL_TOKENS)
    assert tokenization.vocab_size(sp_model_path) == tokenization.vocab_size(model) == 120
    assert os.path.isfile(sp_model_path[: -len(".model")] + ".vocab")


def test_tokenizer_is_int32_cased_and_never_emits_special_ids(sp_model_path):
    tokenizer = tokenization.make_tokenizer(tokenization.load_sp_model(sp_model_path))
    ids = tokenizer.tokenize(tf.constant(["The king speaks [MASK] [SEP] here.", "the king"]))
    assert isinstance(ids, tf.RaggedTensor) and ids.dtype == tf.int32
    values = ids.flat_values.numpy()
    # Control symbols: literal "[MASK]" in text is ordinary text, not the mask id.
    assert not set(values) & {PAD_ID, CLS_ID, SEP_ID, MASK_ID}
    cased = tokenizer.tokenize(tf.constant(["King", "king"])).to_list()
    assert cased[0] != cased[1]


def test_sentence_iterator_and_argument_checks(tmp_path):
    path = tokenization.train_sentencepiece(
        None, str(tmp_path / "it"), vocab_size=100, sentence_iterator=iter(fake_sentences(500)),
        character_coverage=1.0)
    assert tokenization.vocab_size(path) == 100
    with pytest.raises(ValueError, match="exactly one of"):
        tokenization.train_sentencepiece(None, str(tmp_path / "x"), vocab_size=100)
    with pytest.raises(ValueError, match="vocab_size must be"):
        tokenization.train_sentencepiece(None, str(tmp_path / "x"), vocab_size=5,
                                         sentence_iterator=iter(["a b"]))
    with pytest.raises(ValueError, match="model_type"):
        tokenization.train_sentencepiece(None, str(tmp_path / "x"), model_type="wordpiece",
                                         sentence_iterator=iter(["a b"]))


def test_too_large_vocabulary_is_a_clear_error_and_writes_nothing(tmp_path):
    corpus = tmp_path / "small.txt"
    corpus.write_text("\n".join(fake_sentences(50)) + "\n")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"SentencePiece training failed: Vocabulary size too high "
                                         r"\(5000\)\. Please set it to a value <= \d+"):
        tokenization.train_sentencepiece([str(corpus)], str(out / "v"), vocab_size=5000)
    assert os.listdir(out) == []  # no half vocabulary, no temporary folder


def test_missing_or_empty_input_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="input file not found"):
        tokenization.train_sentencepiece([str(tmp_path / "none.txt")], str(tmp_path / "v"), 100)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="input file is empty: .*empty.txt"):
        tokenization.train_sentencepiece([str(tmp_path / "empty.txt")], str(tmp_path / "v"), 100)


def test_unwritable_output_folder_is_an_os_error(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(OSError):
        tokenization.train_sentencepiece(None, str(tmp_path / "a_file" / "v"), vocab_size=100,
                                         sentence_iterator=iter(fake_sentences(100)))


def test_load_sp_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="SentencePiece model not found"):
        tokenization.load_sp_model(str(tmp_path / "missing.model"))
    (tmp_path / "empty.model").write_bytes(b"")
    with pytest.raises(ValueError, match="SentencePiece model file is empty"):
        tokenization.load_sp_model(str(tmp_path / "empty.model"))
    (tmp_path / "text.model").write_text("this is not a model\n")
    with pytest.raises(ValueError, match="not a valid SentencePiece model"):
        tokenization.load_sp_model(str(tmp_path / "text.model"))


def test_vocabulary_with_other_special_ids_is_rejected(tmp_path):
    # SentencePiece's defaults: <unk>=0, <s>=1, </s>=2.
    spm.SentencePieceTrainer.train(sentence_iterator=iter(fake_sentences(300)),
                                   model_prefix=str(tmp_path / "default"), vocab_size=80,
                                   minloglevel=2)
    model = tokenization.load_sp_model(str(tmp_path / "default.model"))
    with pytest.raises(ValueError, match=r"does not have the fixed special ids: expected 0=\[PAD\]"):
        tokenization.check_special_ids(model)
    with pytest.raises(ValueError, match="fixed special ids"):
        tokenization.make_tokenizer(model)
