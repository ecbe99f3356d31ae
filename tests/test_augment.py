"""AutoAugment's operations and ImageNet policy, and DeiT's per-batch Mixup / CutMix (tasks/imagenet)."""

import numpy as np
import pytest
import tensorflow as tf

from gmlp_tf.tasks.imagenet import augment
from gmlp_tf.tasks.imagenet import autoaugment as aa


def _image(seed=0, size=(20, 20)):
    return tf.constant(np.random.default_rng(seed).integers(0, 256, size + (3,)).astype("float32"))


def _marker(size, y, x):
    image = np.zeros(size + (3,), "float32")
    image[y, x] = 255.0
    return tf.constant(image)


def test_policy_table_is_the_imagenet_policy():
    assert len(aa.IMAGENET_POLICY) == 25
    for sub in aa.IMAGENET_POLICY:
        assert len(sub) == 2
        for name, prob, level in sub:
            assert name in aa.OP_NAMES and 0 <= prob <= 1 and 0 <= level <= 10 and isinstance(level, int)
    assert aa.IMAGENET_POLICY[0] == (("Posterize", 0.4, 8), ("Rotate", 0.6, 9))
    aa.check_policy(aa.IMAGENET_POLICY)
    with pytest.raises(ValueError, match="bad operation"):
        aa.check_policy([(("Blur", 0.5, 3), ("Invert", 0.5, 3))])
    with pytest.raises(ValueError, match="unknown AutoAugment operation 'Blur'"):
        aa.apply_op(_image(), "Blur", 3)


def test_rotate_matches_tf_rotation_and_the_levels_angle():
    image = _image(1, (9, 9))
    np.testing.assert_allclose(aa.rotate(image, 90.0), tf.image.rot90(image), atol=1e-3)  # Counter-clockwise.
    # Level 10 is 30 degrees either way: a marker 8 px right of the centre moves to 8 (cos, -+sin) 30.
    size, centre = (33, 33), 16
    out = aa.apply_op(_marker(size, centre, centre + 8), "Rotate", 10, seed=(3, 4)).numpy()[..., 0]
    ys, xs = np.mgrid[0:33, 0:33]
    near = (np.abs(ys - centre) <= 8) & (np.abs(xs - centre) <= 12)  # Inside the image: background 0.
    weights = out * near
    cy, cx = (weights * ys).sum() / weights.sum(), (weights * xs).sum() / weights.sum()
    assert cx == pytest.approx(centre + 8 * np.cos(np.pi / 6), abs=0.3)
    assert abs(cy - centre) == pytest.approx(8 * np.sin(np.pi / 6), abs=0.3)


def test_shear_and_translate_move_a_known_pixel_and_fill_with_the_mean():
    moved = aa.shear_x(_marker((12, 12), 4, 6), 0.5).numpy()  # Output (x, y) <- input (x + 0.5 y, y).
    assert moved[4, 4, 0] == pytest.approx(255.0) and moved[4, 6, 0] == pytest.approx(0.0)
    moved = aa.shear_y(_marker((12, 12), 6, 4), 0.5).numpy()
    assert moved[4, 4, 0] == pytest.approx(255.0)
    image = _image(2)
    shifted = aa.translate_x(image, 3.0).numpy()
    np.testing.assert_allclose(shifted[:, :17], image.numpy()[:, 3:], atol=1e-3)
    np.testing.assert_allclose(shifted[:, 17:], np.broadcast_to(aa.FILL, (20, 3, 3)), atol=1e-3)
    np.testing.assert_allclose(aa.translate_y(image, -2.0).numpy()[2:], image.numpy()[:-2], atol=1e-3)
    # TranslateX at level 10 is 0.45 of the side (9 px of 20), either way.
    out = aa.apply_op(image, "TranslateX", 10, seed=(1, 1)).numpy()
    assert any(np.allclose(out, aa.translate_x(image, s).numpy(), atol=1e-3) for s in (9.0, -9.0))


def test_solarize_posterize_invert():
    image = tf.constant(np.array([0, 3, 17, 127, 128, 200, 255], "float32")[:, None, None] * np.ones((1, 1, 3)),
                        tf.float32)
    solarized = aa.apply_op(image, "Solarize", 5).numpy()[:, 0, 0]  # Threshold 128.
    assert solarized.tolist() == [0, 3, 17, 127, 127, 55, 0]
    assert aa.apply_op(image, "Posterize", 8).numpy()[:, 0, 0].tolist() == [0, 2, 16, 126, 128, 200, 254]  # 7 bits.
    assert aa.apply_op(image, "Posterize", 0).numpy()[:, 0, 0].tolist() == [0, 0, 16, 112, 128, 192, 240]  # 4 bits.
    np.testing.assert_array_equal(aa.apply_op(image, "Invert", 3), 255.0 - image.numpy())


def test_equalize_and_autocontrast_on_known_inputs():
    channel = np.zeros((32, 32), "float32")
    channel[16:24] = 50.0  # 512 pixels at 0, 256 at 50, 256 at 100: step (1024 - 256) // 255 = 3.
    channel[24:] = 100.0
    image = tf.constant(np.stack([channel, channel, np.full_like(channel, 9.0)], axis=-1))
    out = aa.apply_op(image, "Equalize", 5).numpy()
    assert sorted(set(out[..., 0].ravel().tolist())) == [0.0, 171.0, 255.0]  # (below + 1) // 3, clipped.
    np.testing.assert_array_equal(out[..., 2], 9.0)  # One value: left as it is.
    ramp = np.linspace(50, 150, 5, dtype="float32")[:, None, None] * np.ones((1, 2, 3), "float32")
    ramp[..., 2] = 7.0
    stretched = aa.apply_op(tf.constant(ramp), "AutoContrast", 5).numpy()
    np.testing.assert_allclose(stretched[:, 0, 0], [0, 63.75, 127.5, 191.25, 255], atol=1e-3)
    np.testing.assert_array_equal(stretched[..., 2], 7.0)


@pytest.mark.parametrize("name", ["Color", "Contrast", "Brightness", "Sharpness"])
def test_enhance_factor_one_is_identity(name):
    image = _image(3)
    np.testing.assert_allclose(aa.apply_op(image, name, 5), image, atol=1e-3)  # Level 5: factor 1.0.
    weak = aa.apply_op(image, name, 0).numpy()  # Factor 0.1: mostly the degenerate image.
    assert not np.allclose(weak, image.numpy(), atol=1.0)
    assert weak.min() >= 0 and weak.max() <= 255


def test_enhance_degenerate_images():
    image = _image(4)
    gray = aa.color(image, 0.0).numpy()
    np.testing.assert_allclose(gray[..., 0], gray[..., 2], atol=1e-3)
    assert np.ptp(aa.contrast(image, 0.0).numpy()) == pytest.approx(0.0, abs=1e-3)
    np.testing.assert_array_equal(aa.brightness(image, 0.0), 0.0)
    smooth = aa.sharpness(image, 0.0).numpy()
    np.testing.assert_array_equal(smooth[0], image.numpy()[0])  # Borders are not filtered.
    window = image.numpy()[4:7, 4:7, 1]
    assert smooth[5, 5, 1] == pytest.approx((window.sum() + 4 * window[1, 1]) / 13, abs=1e-3)


def test_policy_keeps_shape_dtype_and_range_and_repeats_with_its_seed():
    images = tf.random.uniform([6, 16, 16, 3], 0, 255, seed=1)
    out = aa.apply_policy(images, tf.constant([1, 2]))
    assert out.shape == images.shape and out.dtype == tf.float32
    assert float(tf.reduce_min(out)) >= 0 and float(tf.reduce_max(out)) <= 255
    np.testing.assert_array_equal(out, aa.apply_policy(images, tf.constant([1, 2])))
    assert not np.allclose(out, aa.apply_policy(images, tf.constant([5, 6])))
    assert not np.allclose(out, images)


def _one_hot_batch(batch=6, size=8, classes=6):
    images = tf.random.uniform([batch, size, size, 1], 0, 255, seed=7)
    return images, tf.one_hot(tf.range(batch), classes)


def test_mixup_uses_one_lam_for_the_flipped_batch():
    images, labels = _one_hot_batch()
    x, y = augment.mix_batch(images, labels, 0.8, 0.0, 0.5, tf.constant([3, 9]))
    lam = float(y[0, 0])
    assert 0 < lam < 1
    np.testing.assert_allclose(np.diag(y.numpy()), lam, atol=1e-6)  # Every row's own label: the same lam.
    np.testing.assert_allclose(np.diag(y.numpy()[:, ::-1]), 1 - lam, atol=1e-6)  # Row i with row B-1-i.
    np.testing.assert_allclose(x, lam * images + (1 - lam) * images[::-1], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(y.numpy().sum(axis=1), 1.0, atol=1e-6)


def test_cutmix_pastes_one_box_and_weights_labels_by_its_area():
    images, labels = _one_hot_batch(size=16)
    for seed in range(5):
        x, y = augment.mix_batch(images, labels, 0.0, 1.0, 0.5, tf.constant([seed, 1]))
        pasted = np.all(x.numpy() == images.numpy()[::-1], axis=-1)  # [B, H, W]
        kept = np.all(x.numpy() == images.numpy(), axis=-1)
        assert np.all(pasted | kept)
        box = pasted[0]
        np.testing.assert_array_equal(pasted, np.broadcast_to(box, pasted.shape))  # One box for all rows.
        rows, cols = np.where(box)
        if rows.size:  # A rectangle: its bounding box is full.
            assert box[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
        area = box.mean()
        np.testing.assert_allclose(np.diag(y.numpy()[:, ::-1]), area, atol=1e-6)
        np.testing.assert_allclose(y.numpy().sum(axis=1), 1.0, atol=1e-6)


def test_mixing_statistics_over_many_batches():
    images, labels = _one_hot_batch(batch=4, size=8, classes=4)

    def mix(i):
        return augment.mix_batch(images, labels, 0.8, 1.0, 0.5, tf.stack([tf.constant(11, tf.int64), i]))

    cutmix, mixup_lams = 0, []
    for x, y in tf.data.Dataset.range(400).map(mix).as_numpy_iterator():
        if np.all((x == images.numpy()) | (x == images.numpy()[::-1])):
            cutmix += 1
        else:
            mixup_lams.append(y[0, 0])
    assert cutmix / 400 == pytest.approx(0.5, abs=0.08)
    assert np.mean(mixup_lams) == pytest.approx(0.5, abs=0.06)  # Beta(0.8, 0.8): mean 0.5, var 1 / 10.4.
    assert np.var(mixup_lams) == pytest.approx(1 / 10.4, abs=0.025)


def test_beta_draws_match_their_mean_and_variance():
    draws = tf.data.Dataset.range(1500).map(
        lambda i: augment.sample_beta(0.3, tf.stack([tf.constant(5, tf.int64), i])))
    lams = np.array(list(draws.as_numpy_iterator()))
    assert lams.min() >= 0 and lams.max() <= 1
    assert lams.mean() == pytest.approx(0.5, abs=0.04)
    assert lams.var() == pytest.approx(1 / (4 * 1.6), abs=0.02)  # 1 / (4 (2 alpha + 1)).


def test_no_mixing_with_both_alphas_zero():
    images, labels = _one_hot_batch()
    x, y = augment.mix_batch(images, labels, 0.0, 0.0, 0.5, tf.constant([1, 2]))
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
