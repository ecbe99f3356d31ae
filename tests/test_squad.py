"""gmlp_tf.tasks.squad: reading SQuAD and windowing with character offsets (data), span decoding and
prediction files (answers)."""

import json
import os

import numpy as np
import pytest
import sentencepiece as spm
import tensorflow as tf
import tensorflow_datasets as tfds

from gmlp_tf import tokenization
from gmlp_tf.tasks.squad import answers
from gmlp_tf.tasks.squad import data as squad
from gmlp_tf.tokenization import CLS_ID, PAD_ID, SEP_ID

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "squad")
V1 = os.path.join(FIXTURES, "sample-v1.1.json")
V2 = os.path.join(FIXTURES, "sample-v2.0.json")
# Small windows, so that every fixture context needs several of them.
MAX_SEQ_LENGTH, DOC_STRIDE, MAX_QUERY_LENGTH = 64, 16, 16


def _fixture_texts():
    texts = []
    for path in (V1, V2):
        with open(path, encoding="utf-8") as f:
            for article in json.load(f)["data"]:
                for paragraph in article["paragraphs"]:
                    texts.append(paragraph["context"])
                    texts += [qa["question"] for qa in paragraph["qas"]]
    return texts


@pytest.fixture(scope="session")
def sp_model(tmp_path_factory):
    """A 300-piece vocabulary trained on the fixture texts (serialized model bytes)."""
    folder = tmp_path_factory.mktemp("squad_vocab")
    path = tokenization.train_sentencepiece(
        None, str(folder / "spm"), vocab_size=300, sentence_iterator=iter(_fixture_texts()),
        character_coverage=1.0)
    return tokenization.load_sp_model(path)


def _convert(examples, sp_model, is_training, **kwargs):
    args = dict(max_seq_length=MAX_SEQ_LENGTH, doc_stride=DOC_STRIDE,
                max_query_length=MAX_QUERY_LENGTH, is_training=is_training)
    args.update(kwargs)
    return squad.convert_examples_to_features(examples, sp_model, **args)


def _span_text(example, feature, start, end):
    return example.context_text[feature.token_spans[start][0]:feature.token_spans[end][1]]


# ---------------------------------------------------------------------------------------- reading
def test_read_v1_training_skips_the_misaligned_answer():
    examples, skipped = squad.read_squad_json(V1, is_training=True)
    assert skipped == 1
    assert len(examples) == 11
    assert "curie-misaligned" not in {e.qas_id for e in examples}
    for example in examples:
        start = example.answer_start
        assert example.context_text[start:start + len(example.answer_text)] == example.answer_text
        assert example.answer_text == example.answers[0] and not example.is_impossible
    curie_2 = next(e for e in examples if e.qas_id == "curie-2")
    assert curie_2.answers == ["her husband Pierre Curie and the physicist Henri Becquerel",
                               "Pierre Curie and the physicist Henri Becquerel", "Pierre Curie"]
    assert curie_2.title == "Marie_Curie" and curie_2.question_text.startswith("Who shared")


def test_read_v1_evaluation_keeps_every_question():
    examples, skipped = squad.read_squad_json(V1, is_training=False)
    assert (len(examples), skipped) == (12, 0)
    misaligned = next(e for e in examples if e.qas_id == "curie-misaligned")
    assert misaligned.answers == ["radioactivity"]


def test_read_v2_keeps_impossible_questions_without_a_span():
    examples, skipped = squad.read_squad_json(V2, is_training=True, version_2_with_negative=True)
    assert skipped == 1  # photo-misaligned
    assert len(examples) == 7
    impossible = [e for e in examples if e.is_impossible]
    assert {e.qas_id for e in impossible} == {"photo-impossible-1", "photo-impossible-2",
                                             "wall-impossible"}
    for example in impossible:
        assert (example.answers, example.answer_text, example.answer_start) == ([], "", -1)
    evaluation, skipped = squad.read_squad_json(V2, is_training=False,
                                                version_2_with_negative=True)
    assert (len(evaluation), skipped) == (8, 0)
    # Read as v1.1, is_impossible is ignored: the unanswerable questions have no answer to train.
    examples, skipped = squad.read_squad_json(V2, is_training=True)
    assert (len(examples), skipped) == (4, 4)


def test_read_errors_name_the_file_and_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        squad.read_squad_json(str(tmp_path / "nowhere.json"), is_training=True)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not JSON"):
        squad.read_squad_json(str(bad), is_training=False)
    cases = [({"version": "1.1"}, "no 'data' list"),
             ({"data": [{"title": "t"}]}, r"data\[0\] has no 'paragraphs'"),
             ({"data": [{"paragraphs": [{"qas": []}]}]}, "has no 'context'"),
             ({"data": [{"paragraphs": [{"context": "c", "qas": [{"question": "q"}]}]}]},
              r"qas\[0\] has no 'id'"),
             ({"data": [{"paragraphs": [{"context": "c", "qas": [
                 {"id": "x", "question": "q", "answers": [{"text": "c"}]}]}]}]}, "answer_start")]
    for data, message in cases:
        bad.write_text(json.dumps(data))
        with pytest.raises(ValueError, match=message):
            squad.read_squad_json(str(bad), is_training=True)


# -------------------------------------------------------------------------------------- windowing
def test_token_spans_are_whitespace_trimmed_substrings_of_the_original_text(sp_model):
    """nmt_nfkc rewrites ligatures, full-width letters, NBSP, tabs; spans still index the original."""
    text = ("  The \ufb01nal  Danube\u00a0river\tflows   through \uff34\uff4f\uff4b\uff59\uff4f"
            " \u2460 and\n\nK\u00f6ln, 2,850\u3000km.  ")
    processor = spm.SentencePieceProcessor(model_proto=sp_model)
    ids, spans = squad._encode_with_spans(processor, text)
    assert ids == processor.encode(text)
    covered = set()
    previous_end = 0
    for start, end in spans:
        assert 0 <= start <= end <= len(text)
        piece = text[start:end]
        assert piece == piece.strip()
        assert start >= previous_end  # in order, never overlapping
        previous_end = end
        covered.update(range(start, end))
    # Every non-space character of the original belongs to exactly one token.
    assert covered == {i for i, ch in enumerate(text) if not ch.isspace()}


def test_window_layout(sp_model):
    examples, _ = squad.read_squad_json(V1, is_training=False)
    features = _convert(examples, sp_model, is_training=False)
    processor = spm.SentencePieceProcessor(model_proto=sp_model)
    assert [f.unique_id for f in features] == list(
        range(squad.FIRST_UNIQUE_ID, squad.FIRST_UNIQUE_ID + len(features)))
    for feature in features:
        example = examples[feature.example_index]
        query = processor.encode(example.question_text)[:MAX_QUERY_LENGTH]
        ids, mask, segments = feature.input_ids, feature.input_mask, feature.segment_ids
        assert len(ids) == len(mask) == len(segments) == MAX_SEQ_LENGTH
        context_start = len(query) + 2
        assert ids[:context_start] == [CLS_ID] + query + [SEP_ID]
        positions = sorted(feature.token_spans)
        assert positions == list(range(context_start, context_start + len(positions)))
        last = positions[-1] + 1  # the final [SEP]
        assert ids[last] == SEP_ID and SEP_ID not in ids[context_start:last]
        assert segments == [0] * context_start + [1] * (last + 1 - context_start) + [0] * (
            MAX_SEQ_LENGTH - last - 1)
        assert mask == [1] * (last + 1) + [0] * (MAX_SEQ_LENGTH - last - 1)
        assert ids[last + 1:] == [PAD_ID] * (MAX_SEQ_LENGTH - last - 1)
        assert feature.window_start == feature.window_index * DOC_STRIDE
        assert (feature.start_position, feature.end_position) == (0, 0)  # prediction features
    # Every fixture context needs several windows at this length; together they cover it all.
    assert all(max(f.window_index for f in features if f.example_index == i) >= 2
               for i in range(len(examples)))
    for i, example in enumerate(examples):
        ids = processor.encode(example.context_text)
        windows = [f for f in features if f.example_index == i]
        covered = {f.window_start + p - min(f.token_spans) for f in windows for p in f.token_spans}
        assert covered == set(range(len(ids)))


def test_each_context_token_has_exactly_one_max_context_window(sp_model):
    examples, _ = squad.read_squad_json(V1, is_training=False)
    features = _convert(examples, sp_model, is_training=False)
    for i in range(len(examples)):
        counts = {}
        for feature in (f for f in features if f.example_index == i):
            offset = feature.window_start - min(feature.token_spans)
            for position, is_max in feature.token_is_max_context.items():
                counts[position + offset] = counts.get(position + offset, 0) + int(is_max)
        assert set(counts.values()) == {1}
    # BERT's score min(left, right) + 0.01 * length: a middle token of an inner window wins.
    first_windows = [f for f in features if f.example_index == 0][:2]
    positions = sorted(first_windows[1].token_spans)
    middle = positions[len(positions) // 2]
    assert first_windows[1].token_is_max_context[middle]


def test_training_positions_round_trip_to_the_answer_text(sp_model):
    examples, _ = squad.read_squad_json(V1, is_training=True)
    features = _convert(examples, sp_model, is_training=True)
    inside = outside = 0
    for feature in features:
        example = examples[feature.example_index]
        start, end = feature.start_position, feature.end_position
        answer_start = example.answer_start
        answer_end = answer_start + len(example.answer_text)
        spans = [feature.token_spans[p] for p in sorted(feature.token_spans)]
        window_holds_answer = spans[0][0] <= answer_start and answer_end <= spans[-1][1]
        if start:
            inside += 1
            assert window_holds_answer and start <= end
            assert _span_text(example, feature, start, end) == example.answer_text.strip()
        else:
            outside += 1
            assert end == 0 and not window_holds_answer
    assert inside >= len(examples) and outside > inside
    # Each training example's answer lies whole inside at least one of its windows.
    assert {f.example_index for f in features if f.start_position} == set(range(len(examples)))


def test_v2_unanswerable_features_point_at_cls(sp_model):
    examples, _ = squad.read_squad_json(V2, is_training=True, version_2_with_negative=True)
    features = _convert(examples, sp_model, is_training=True)
    for feature in features:
        example = examples[feature.example_index]
        if example.is_impossible:
            assert (feature.start_position, feature.end_position) == (0, 0)
        elif feature.start_position:
            assert _span_text(example, feature, feature.start_position,
                              feature.end_position) == example.answer_text


def test_long_questions_are_truncated_and_bad_arguments_refused(sp_model):
    example = squad.SquadExample("q", "Who " * 100 + "?", "The Danube flows into the Black Sea.",
                                 ["the Black Sea"], "the Black Sea", 22)
    features = squad.convert_examples_to_features([example], sp_model, 32, 8, 10, True)
    assert features[0].input_ids[11] == SEP_ID and min(features[0].token_spans) == 12
    assert _span_text(example, features[-1], features[-1].start_position,
                      features[-1].end_position) == "the Black Sea"
    empty = squad.SquadExample("e", "Anything?", "")
    (feature,) = squad.convert_examples_to_features([empty], sp_model, 32, 8, 10, False)
    assert feature.token_spans == {}
    for kwargs, message in [(dict(max_seq_length=13), "leaves no room"),
                            (dict(doc_stride=0), "doc_stride must be a positive"),
                            (dict(max_query_length=-1), "max_query_length must be a positive")]:
        with pytest.raises(ValueError, match=message):
            _convert([example], sp_model, True, **kwargs)
    with pytest.raises(ValueError, match="special ids"):
        _convert([example], _default_ids_model(), True)


def _default_ids_model():
    """A SentencePiece model with SentencePiece's own special ids (<unk>=0, <s>=1, </s>=2)."""
    import io

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(_fixture_texts()), model_writer=model,
                                   vocab_size=100, minloglevel=2)
    return model.getvalue()


# ---------------------------------------------------------------------------------------- dataset
def test_features_to_dataset(sp_model):
    examples, _ = squad.read_squad_json(V1, is_training=True)
    features = _convert(examples, sp_model, is_training=True)
    train = squad.features_to_dataset(features, is_training=True, batch_size=8,
                                      drop_remainder=True, seed=3)
    inputs, labels = train.element_spec
    assert set(inputs) == {"input_ids", "input_mask", "segment_ids"}
    assert set(labels) == {"start_positions", "end_positions"}
    for spec in inputs.values():
        assert spec.dtype == tf.int32 and spec.shape.as_list() == [8, MAX_SEQ_LENGTH]
    for spec in labels.values():
        assert spec.dtype == tf.int32 and spec.shape.as_list() == [8]
    batches = list(train.as_numpy_iterator())
    assert len(batches) == len(features) // 8
    seen = sorted(int(s) for _, lab in batches for s in lab["start_positions"])
    assert len(seen) == len(features) // 8 * 8

    predict = squad.features_to_dataset(features, is_training=False, batch_size=8)
    assert set(predict.element_spec) == {"input_ids", "input_mask", "segment_ids"}
    ids = np.concatenate([b["input_ids"] for b in predict.as_numpy_iterator()])
    np.testing.assert_array_equal(ids, [f.input_ids for f in features])  # order kept, none lost
    with pytest.raises(ValueError, match="matched to features by order"):
        squad.features_to_dataset(features, is_training=False, batch_size=8, shuffle=True)
    with pytest.raises(ValueError, match="no features"):
        squad.features_to_dataset([], is_training=True, batch_size=8)


# --------------------------------------------------------------------------------------- decoding
def _example_and_features(sp_model, qas_id, path=V1, version_2=False):
    examples, _ = squad.read_squad_json(path, is_training=False, version_2_with_negative=version_2)
    example = next(e for e in examples if e.qas_id == qas_id)
    return example, _convert([example], sp_model, is_training=False)


def _position_at(feature, char_index, side=0):
    """The sequence position of the token whose span starts (side 0) / ends (1) at char_index."""
    return next(p for p, span in feature.token_spans.items() if span[side] == char_index)


def _max_context_window(features, char_start, char_end):
    """A feature holding [char_start, char_end) whose start token has its max context there."""
    for feature in features:
        try:
            start = _position_at(feature, char_start, 0)
            end = _position_at(feature, char_end, 1)
        except StopIteration:
            continue
        if feature.token_is_max_context[start]:
            return feature, start, end
    raise AssertionError("no window holds the span")


def test_decoding_picks_the_span_with_the_largest_score(sp_model):
    example, features = _example_and_features(sp_model, "curie-2")
    text = "Pierre Curie and the physicist Henri Becquerel"
    char_start = example.context_text.index(text)
    start_logits = np.full((len(features), MAX_SEQ_LENGTH), -10.0)
    end_logits = np.full((len(features), MAX_SEQ_LENGTH), -10.0)
    index = features.index(_max_context_window(features, char_start, char_start + 12)[0])
    feature = features[index]
    start = _position_at(feature, char_start)
    end = _position_at(feature, char_start + len("Pierre Curie"), 1)
    start_logits[index, start], end_logits[index, end] = 5.0, 4.0
    predictions, nbest, null_odds = answers.compute_predictions(
        [example], features, start_logits, end_logits, n_best_size=5, max_answer_length=30)
    assert predictions == {"curie-2": "Pierre Curie"} and null_odds == {}
    entries = nbest["curie-2"]
    assert set(entries[0]) == {"text", "probability", "start_logit", "end_logit"}
    assert (entries[0]["text"], entries[0]["start_logit"], entries[0]["end_logit"]) == (
        "Pierre Curie", 5.0, 4.0)
    assert 1 < len(entries) <= 5 and len({e["text"] for e in entries}) == len(entries)
    assert sum(e["probability"] for e in entries) == pytest.approx(1.0)
    assert all(e["text"] and e["text"] in example.context_text for e in entries)
    scores = [e["start_logit"] + e["end_logit"] for e in entries]
    assert scores == sorted(scores, reverse=True)

    # The best end is 1 token too far for max_answer_length: the next best valid span wins.
    length = end - start + 1
    predictions, _, _ = answers.compute_predictions(
        [example], features, start_logits, end_logits, n_best_size=5,
        max_answer_length=length - 1)
    assert predictions["curie-2"] != "Pierre Curie"
    assert predictions["curie-2"] in example.context_text


def test_decoding_uses_a_start_only_in_its_max_context_window(sp_model):
    example, features = _example_and_features(sp_model, "danube-3")
    char_start = example.context_text.index("2,850")
    char_end = char_start + len("2,850 kilometres")
    windows = [f for f in features
               if any(s == char_start for s, _ in f.token_spans.values())]
    assert len(windows) >= 2  # the answer's first token is in several windows
    start_logits = np.full((len(features), MAX_SEQ_LENGTH), -10.0)
    end_logits = np.full((len(features), MAX_SEQ_LENGTH), -10.0)
    max_window = next(f for f in windows
                      if f.token_is_max_context[_position_at(f, char_start)])
    assert any(span[1] == char_end for span in max_window.token_spans.values())
    for feature in windows:
        index = features.index(feature)
        start = _position_at(feature, char_start)
        is_max = feature.token_is_max_context[start]
        # The window that is not the token's max-context one gets the larger logits.
        start_logits[index, start] = 2.0 if is_max else 9.0
        end_position = [p for p, span in feature.token_spans.items() if span[1] == char_end]
        if end_position:
            end_logits[index, end_position[0]] = 2.0 if is_max else 9.0
    predictions, nbest, _ = answers.compute_predictions([example], features, start_logits,
                                                      end_logits, n_best_size=3)
    best = nbest["danube-3"][0]
    assert best["start_logit"] == 2.0
    assert predictions["danube-3"].startswith("2,850")


def test_random_logits_give_exact_context_substrings(sp_model):
    examples, _ = squad.read_squad_json(V1, is_training=False)
    features = _convert(examples, sp_model, is_training=False)
    rng = np.random.default_rng(0)
    start_logits = rng.normal(size=(len(features), MAX_SEQ_LENGTH))
    end_logits = rng.normal(size=(len(features), MAX_SEQ_LENGTH))
    predictions, nbest, _ = answers.compute_predictions(examples, features, start_logits,
                                                      end_logits, max_answer_length=4)
    assert list(predictions) == [e.qas_id for e in examples]
    for example in examples:
        for entry in nbest[example.qas_id]:
            assert entry["text"] == entry["text"].strip() != ""
            assert entry["text"] in example.context_text
        assert predictions[example.qas_id] == nbest[example.qas_id][0]["text"]
    with pytest.raises(ValueError, match="start_logits must be"):
        answers.compute_predictions(examples, features, start_logits[:-1], end_logits)


def test_label_logits_decode_to_the_gold_answers(sp_model):
    """Logits peaked at the training labels decode to the answers, which then score 100."""
    from gmlp_tf.tasks.squad.official_scorer import evaluate

    examples, _ = squad.read_squad_json(V2, is_training=True, version_2_with_negative=True)
    features = _convert(examples, sp_model, is_training=True)
    start_logits = np.zeros((len(features), MAX_SEQ_LENGTH))
    end_logits = np.zeros((len(features), MAX_SEQ_LENGTH))
    for i, feature in enumerate(features):
        start_logits[i, feature.start_position] += 10.0  # [CLS] where the window has no answer
        end_logits[i, feature.end_position] += 10.0
    predictions, _, null_odds = answers.compute_predictions(
        examples, features, start_logits, end_logits, version_2_with_negative=True)
    assert predictions == {e.qas_id: e.answer_text for e in examples}
    assert all((odds > 0) == e.is_impossible for e, odds in zip(examples, null_odds.values()))
    result = evaluate(examples, predictions, version_2_with_negative=True)
    assert result["exact"] == result["f1"] == 100.0


def test_v2_null_odds_and_threshold(sp_model):
    example, features = _example_and_features(sp_model, "wall-1", V2, version_2=True)
    char_start = example.context_text.index("Qin Shi Huang")
    feature, start, end = _max_context_window(features, char_start,
                                              char_start + len("Qin Shi Huang"))
    index = features.index(feature)
    start_logits = np.full((len(features), MAX_SEQ_LENGTH), -10.0)
    end_logits = np.full((len(features), MAX_SEQ_LENGTH), -10.0)
    start_logits[index, start], end_logits[index, end] = 3.0, 3.0  # span score 6
    start_logits[:, 0], end_logits[:, 0] = 4.0, 4.0  # null score 8 in every window ...
    start_logits[index, 0] = 3.5  # ... but 7.5 in one: the minimum counts
    def decode(threshold):
        return answers.compute_predictions([example], features, start_logits, end_logits,
                                         version_2_with_negative=True,
                                         null_score_diff_threshold=threshold)
    predictions, nbest, null_odds = decode(0.0)
    assert null_odds["wall-1"] == pytest.approx(1.5)
    assert predictions["wall-1"] == ""
    texts = [e["text"] for e in nbest["wall-1"]]
    assert texts[0] == "" and "Qin Shi Huang" in texts and texts.count("") == 1
    predictions, _, _ = decode(2.0)
    assert predictions["wall-1"] == "Qin Shi Huang"
    # A null that ranks below n_best_size spans is still added to the n-best list.
    start_logits[:, 0], end_logits[:, 0] = -50.0, -50.0
    predictions, nbest, null_odds = answers.compute_predictions(
        [example], features, start_logits, end_logits, n_best_size=2,
        version_2_with_negative=True)
    assert predictions["wall-1"] == "Qin Shi Huang" and null_odds["wall-1"] < 0
    assert [e["text"] for e in nbest["wall-1"]][-1] == "" and len(nbest["wall-1"]) == 3


def test_write_predictions(tmp_path):
    predictions = {"a": "Qin Shi Huang", "b": ""}
    nbest = {"a": [{"text": "Qin Shi Huang", "probability": 1.0, "start_logit": 1.0,
                    "end_logit": 2.0}], "b": [{"text": "", "probability": 1.0,
                                               "start_logit": 0.0, "end_logit": 0.0}]}
    out = tmp_path / "out"
    paths = answers.write_predictions(str(out), predictions, nbest, {"a": -1.5, "b": 2.0})
    assert set(paths) == {"predictions", "nbest_predictions", "null_odds"}
    with open(paths["predictions"], encoding="utf-8") as f:
        assert json.load(f) == predictions
    with open(paths["nbest_predictions"], encoding="utf-8") as f:
        assert json.load(f) == nbest
    with open(paths["null_odds"], encoding="utf-8") as f:
        assert json.load(f) == {"a": -1.5, "b": 2.0}
    assert sorted(os.listdir(out)) == ["nbest_predictions.json", "null_odds.json",
                                       "predictions.json"]
    paths = answers.write_predictions(str(out), {"a": "x"}, {"a": []})
    assert "null_odds" not in paths
    with open(paths["predictions"], encoding="utf-8") as f:
        assert json.load(f) == {"a": "x"}


# ------------------------------------------------------------------------------------------- TFDS
@pytest.mark.parametrize("name,version_2", [("squad/v1.1", False), ("squad", False),
                                            ("squad/v2.0", True)])
def test_tfds_reading_through_mock_data(name, version_2):
    with tfds.testing.mock_data(num_examples=6):
        evaluation, skipped = squad.read_squad_tfds(name, "validation", is_training=False)
        training, train_skipped = squad.read_squad_tfds(name, "train", is_training=True)
    assert (len(evaluation), skipped) == (6, 0)
    for example in evaluation:
        assert isinstance(example.context_text, str) and isinstance(example.qas_id, str)
        if example.is_impossible:
            assert version_2 and example.answers == []
    # mock_data's answers are random strings at random offsets: training skips and counts them.
    def usable(e):
        start = e.answer_start
        return e.is_impossible or e.context_text[start:start + len(e.answer_text)] == e.answer_text
    assert len(training) + train_skipped == 6
    assert len(training) == sum(usable(e) for e in evaluation)
    assert train_skipped > 0
    assert all(e.is_impossible for e in training)


def test_tfds_errors(tmp_path):
    with pytest.raises(ValueError, match="not a TFDS SQuAD name"):
        squad.read_squad_tfds("squad_v2", "train")
    with pytest.raises(ValueError, match="does not fit"):
        squad.read_squad_tfds("squad/v2.0", "train", version_2_with_negative=False)
    # Not prepared: fails at once, without trying to download.
    with pytest.raises(FileNotFoundError, match="not prepared"):
        squad.read_squad_tfds("squad/v1.1", "train", data_dir=str(tmp_path))
