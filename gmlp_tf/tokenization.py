"""SentencePiece vocabularies with fixed special ids, and the in-graph tokenizer built from them.

The paper pretrains on C4 with a 32K cased SentencePiece vocabulary. Every vocabulary this module
trains puts the special pieces at fixed ids, so that the data pipeline, the masking and the model
can rely on them without reading the vocabulary:

  id  piece    role
  0   [PAD]    padding after [SEP]; input_mask is 0 there
  1   [UNK]    characters the vocabulary does not cover
  2   [CLS]    first token of every sequence
  3   [SEP]    last token of every sequence, and the boundary between packed documents
  4   [MASK]   the masked-LM replacement token

[CLS], [SEP] and [MASK] are SentencePiece *control* symbols (as in ALBERT's vocabulary), not
user-defined ones: the tokenizer never produces them from raw text, so a literal "[MASK]" in a web
page stays ordinary text instead of becoming a real mask token the model is told not to predict.

Only the `sentencepiece` package is needed to train and check a vocabulary; tensorflow_text is
imported by `make_tokenizer` alone.
"""

import os
import re
import shutil
import tempfile
from typing import TYPE_CHECKING, Dict, Iterable, Iterator, Optional, Sequence, Tuple, Union

from gmlp_tf.utils import progress

if TYPE_CHECKING:  # Annotations only: tensorflow and tensorflow_text are imported where they are used.
    import tensorflow as tf
    import tensorflow_text as tf_text

PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = 0, 1, 2, 3, 4
PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
# The special pieces in id order: SPECIAL_TOKENS[i] has id i.
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
NUM_SPECIAL_TOKENS = len(SPECIAL_TOKENS)

MODEL_TYPES = ("unigram", "bpe", "char", "word")

# Cased, as in the paper. "nmt_nfkc" (SentencePiece's default) rather than "identity": it folds
# Unicode compatibility variants (full-width letters, ligatures, non-breaking spaces) into their
# plain forms and turns tabs and newlines into spaces, so web text does not spend vocabulary
# slots on look-alike characters. It does not lowercase.
NORMALIZATION_RULE = "nmt_nfkc"


def train_sentencepiece(
    input_files: Optional[Sequence[str]],
    model_prefix: str,
    vocab_size: int = 32000,
    model_type: str = "unigram",
    character_coverage: float = 0.9995,
    input_sentence_size: int = 1_000_000,
    sentence_iterator: Optional[Iterable[str]] = None,
    max_sentence_length: int = 8192,
    num_threads: Optional[int] = None,
    seed_sentencepiece_size: int = 1_000_000,
) -> str:
    """Trains a cased SentencePiece vocabulary with the fixed special ids; returns the .model path.

    Writes `model_prefix + ".model"` (the serialized model proto, the `--vocab_file` of the
    scripts) and `model_prefix + ".vocab"` (pieces and scores, for reading). Both are trained in a
    temporary folder beside them and moved into place only when training succeeded, so a failure
    never leaves a half-written vocabulary.

    Args:
      input_files: text files, one sentence (or paragraph) per line; None when giving
        `sentence_iterator` instead.
      model_prefix: output path without the extension; missing parent folders are created.
      vocab_size: number of pieces, the five special pieces included (the paper: 32000).
      model_type: "unigram" (default, as T5's and ALBERT's vocabularies), "bpe", "char" or "word".
      character_coverage: fraction of the corpus' characters the vocabulary must cover; the rest
        map to [UNK]. 0.9995 covers English fully while keeping stray CJK or emoji characters of
        web text from taking up single-character pieces (use 1.0 for a small clean corpus).
      input_sentence_size: at most this many sentences, sampled at random, are used for training
        (bounds the trainer's memory on a large corpus).
      sentence_iterator: an iterator of sentences (str), e.g. texts from a TFDS dataset.
      max_sentence_length: longer sentences (in bytes) are skipped by the trainer.
      num_threads: trainer threads; all CPU cores by default.
      seed_sentencepiece_size: initial pieces of the unigram trainer.

    Raises:
      ValueError: bad arguments, or the corpus cannot give `vocab_size` pieces (the message
        gives the largest size it can).
      OSError: the output folder cannot be created or written.
    """
    input_files = _check_training_args(input_files, sentence_iterator, vocab_size, model_type, character_coverage)
    import sentencepiece as spm

    out_dir = os.path.dirname(os.path.abspath(model_prefix))
    os.makedirs(out_dir, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=".spm-tmp-", dir=out_dir)
    try:
        tmp_prefix = os.path.join(tmp_dir, "spm")
        options = _trainer_options(tmp_prefix, vocab_size, model_type, character_coverage, input_sentence_size,
                                   max_sentence_length, num_threads, seed_sentencepiece_size)
        counter = _SentenceCounter(sentence_iterator)
        if input_files is not None:
            options["input"] = ",".join(input_files)
            source, size = _describe_files(input_files)
        else:
            options["sentence_iterator"] = progress.log_every(counter, "Reading vocabulary sentences")
            source, size = "the given sentences", None
        description = (f"Training a {vocab_size}-piece {model_type} SentencePiece vocabulary on {source} "
                       f"({size + '; ' if size else ''}at most {input_sentence_size:,} sentences sampled)")
        with progress.stage(description) as step:
            try:
                spm.SentencePieceTrainer.train(**options)
            except RuntimeError as err:
                raise ValueError(f"SentencePiece training failed: {_sp_message(err)}") from None
            if input_files is None:
                step.result = f"read {counter.sentences:,} sentences, {progress.format_bytes(counter.bytes)}"
        check_special_ids(load_sp_model(tmp_prefix + ".model"))
        # .vocab first: once the .model is in place the vocabulary is complete.
        os.replace(tmp_prefix + ".vocab", model_prefix + ".vocab")
        os.replace(tmp_prefix + ".model", model_prefix + ".model")
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return model_prefix + ".model"


def _check_training_args(input_files, sentence_iterator, vocab_size, model_type, character_coverage):
    """Raises ValueError for bad arguments of train_sentencepiece; returns input_files as a list (or None)."""
    if (input_files is None) == (sentence_iterator is None):
        raise ValueError("give exactly one of input_files and sentence_iterator")
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type must be one of {', '.join(MODEL_TYPES)}; got {model_type!r}")
    if not isinstance(vocab_size, int) or vocab_size <= NUM_SPECIAL_TOKENS:
        raise ValueError(f"vocab_size must be an integer > {NUM_SPECIAL_TOKENS} (the special "
                         f"pieces), got {vocab_size!r}")
    if not 0.0 < character_coverage <= 1.0:
        raise ValueError(f"character_coverage must be in (0, 1], got {character_coverage}")
    if input_files is None:
        return None
    input_files = list(input_files)
    if not input_files:
        raise ValueError("input_files is empty")
    for path in input_files:
        _check_nonempty_file(path)
    return input_files


def _trainer_options(model_prefix, vocab_size, model_type, character_coverage, input_sentence_size,
                     max_sentence_length, num_threads, seed_sentencepiece_size):
    """SentencePieceTrainer options that give the fixed special ids and the project's normalization."""
    options = dict(
        model_prefix=model_prefix,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        input_sentence_size=input_sentence_size,
        shuffle_input_sentence=True,
        max_sentence_length=max_sentence_length,
        num_threads=num_threads or os.cpu_count() or 1,
        normalization_rule_name=NORMALIZATION_RULE,
        pad_id=PAD_ID, pad_piece=PAD,
        unk_id=UNK_ID, unk_piece=UNK,
        # No BOS / EOS: sequences are framed by [CLS] ... [SEP] like BERT's.
        bos_id=-1, eos_id=-1,
        # Control symbols take the next free ids in order: [CLS]=2, [SEP]=3, [MASK]=4.
        control_symbols=[CLS, SEP, MASK],
        minloglevel=2,
    )
    if model_type == "unigram":
        options["seed_sentencepiece_size"] = seed_sentencepiece_size
    return options


def load_sp_model(path: str) -> bytes:
    """Reads a SentencePiece .model file and returns its serialized proto (what the tokenizer takes).

    Raises:
      FileNotFoundError: no such file.
      ValueError: the file is empty or is not a SentencePiece model.
    """
    import tensorflow as tf  # gfile: local paths and gs:// alike.

    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"SentencePiece model not found: {path}")
    if tf.io.gfile.isdir(path):
        raise ValueError(f"SentencePiece model path is a folder, not a .model file: {path}")
    with tf.io.gfile.GFile(path, "rb") as reader:
        model = reader.read()
    if not model:
        raise ValueError(f"SentencePiece model file is empty: {path}")
    _processor(model, source=path)
    return model


def check_special_ids(sp_model: bytes) -> None:
    """Raises ValueError unless [PAD], [UNK], [CLS], [SEP], [MASK] have the ids 0 to 4.

    A vocabulary trained elsewhere (e.g. with SentencePiece's defaults <unk>=0, <s>=1, </s>=2)
    would make the pipeline pad with a real token and mask the wrong ids, silently.
    """
    processor = _processor(sp_model)
    size = processor.get_piece_size()
    if size <= NUM_SPECIAL_TOKENS:
        raise ValueError(f"SentencePiece model has only {size} pieces; it needs the "
                         f"{NUM_SPECIAL_TOKENS} special pieces and more")
    found = [processor.id_to_piece(i) for i in range(NUM_SPECIAL_TOKENS)]
    if tuple(found) != SPECIAL_TOKENS:
        raise ValueError(
            "SentencePiece model does not have the fixed special ids: expected "
            f"{_id_list(SPECIAL_TOKENS)}, found {_id_list(found)} (train it with "
            "gmlp_tf.tokenization.train_sentencepiece or scripts/create_vocab.py)"
        )


def vocab_size(path_or_bytes: Union[str, bytes]) -> int:
    """Number of pieces of a SentencePiece model given as a .model path or serialized bytes."""
    model = path_or_bytes if isinstance(path_or_bytes, bytes) else load_sp_model(path_or_bytes)
    return _processor(model).get_piece_size()


def load_model_vocab(path: str, model_vocab_size: int) -> bytes:
    """Loads a vocabulary for a model: the fixed special ids and the model's vocab_size must hold.

    Raises:
      FileNotFoundError, ValueError: a missing or bad file, or one that contradicts the model
        config (the message names both sizes).
    """
    sp_model = load_sp_model(path)
    check_special_ids(sp_model)
    size = vocab_size(sp_model)
    if size != model_vocab_size:
        raise ValueError(
            f"vocabulary size mismatch: {path} has {size} pieces but the model config has vocab_size "
            f"{model_vocab_size}"
        )
    return sp_model


def make_tokenizer(sp_model: bytes) -> "tf_text.SentencepieceTokenizer":
    """The in-graph tokenizer: tensorflow_text.SentencepieceTokenizer giving int32 ids.

    tokenize(strings [batch]) -> RaggedTensor [batch, (tokens)] int32, without [CLS] / [SEP]
    (the pipeline adds them). The special ids are checked first.
    """
    import tensorflow as tf
    import tensorflow_text as tf_text

    check_special_ids(sp_model)
    return tf_text.SentencepieceTokenizer(model=sp_model, out_type=tf.int32)


# ---------------------------------------------------------------------------------------- helpers
def encode_texts(
    tokenizer: "tf_text.SentencepieceTokenizer",
    max_seq_length: int,
    text_a: "tf.Tensor",
    text_b: "Optional[tf.Tensor]" = None,
) -> "Dict[str, tf.Tensor]":
    """Tokenizes, trims, frames and pads a batch of sentences (or pairs).

    Args:
      tokenizer: a tensorflow_text.SentencepieceTokenizer (tokenization.make_tokenizer).
      max_seq_length: output length, special tokens included.
      text_a: string [batch].
      text_b: optional string [batch], the second sentence of each pair.

    Returns:
      dict of int32 [batch, max_seq_length]: "input_ids", "input_mask", "segment_ids".
    """
    import tensorflow as tf
    import tensorflow_text as tf_text

    segments = [tokenizer.tokenize(text_a)]
    if text_b is not None:
        segments.append(tokenizer.tokenize(text_b))
    budget = max_seq_length - len(segments) - 1  # [CLS] and one [SEP] per segment.
    if budget < len(segments):
        raise ValueError(f"max_seq_length {max_seq_length} leaves no room for the text")
    trimmed = tf_text.RoundRobinTrimmer(max_seq_length=budget).trim(segments)
    ids, segment_ids = tf_text.combine_segments(trimmed, start_of_sequence_id=CLS_ID, end_of_segment_id=SEP_ID)
    input_ids, input_mask = tf_text.pad_model_inputs(ids, max_seq_length, pad_value=PAD_ID)
    segment_ids, _ = tf_text.pad_model_inputs(segment_ids, max_seq_length, pad_value=0)
    return {
        "input_ids": tf.cast(input_ids, tf.int32),
        "input_mask": tf.cast(input_mask, tf.int32),
        "segment_ids": tf.cast(segment_ids, tf.int32),
    }


def _processor(sp_model: bytes, source: Optional[str] = None):
    import sentencepiece as spm

    if not isinstance(sp_model, bytes):
        raise TypeError(f"expected the serialized SentencePiece model as bytes, got "
                        f"{type(sp_model).__name__}")
    processor = spm.SentencePieceProcessor()
    try:
        processor.LoadFromSerializedProto(sp_model)
    except (RuntimeError, OSError):
        what = f"file {source}" if source else "bytes"
        raise ValueError(f"SentencePiece model {what} is not a valid SentencePiece model") from None
    return processor


class _SentenceCounter:
    """Iterates over sentences (None: none), counting them and their UTF-8 bytes."""

    def __init__(self, sentences: Optional[Iterable[str]]) -> None:
        self.source = sentences
        self.sentences = self.bytes = 0

    def __iter__(self) -> Iterator[str]:
        for sentence in self.source if self.source is not None else ():
            self.sentences += 1
            self.bytes += len(sentence.encode("utf-8")) if isinstance(sentence, str) else len(sentence)
            yield sentence


def _describe_files(paths: Sequence[str]) -> Tuple[str, str]:
    """("corpus.txt", "5.2 MB") or ("3 files", "5.2 MB"): what the training line names."""
    size = progress.format_bytes(sum(os.path.getsize(p) for p in paths))
    return (os.path.basename(paths[0]) if len(paths) == 1 else f"{len(paths)} files"), size


def _check_nonempty_file(path: str):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"input file not found: {path}")
    if os.path.getsize(path) == 0:
        raise ValueError(f"input file is empty: {path}")


def _sp_message(err: Exception) -> str:
    """SentencePiece's 'INTERNAL: src/x.cc(744) [check] message' -> 'message'."""
    text = str(err).strip()
    match = re.match(r"^[A-Z_]+: \S+\(\d+\) \[.*?\] (.*)$", text, flags=re.S)
    return match.group(1).strip() if match else text


def _id_list(pieces) -> str:
    return ", ".join(f"{i}={p}" for i, p in enumerate(pieces))
