"""Image reading, domain loading (skip and count bad files), epoch plans and the image pool."""

import dataclasses
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfstyle.core.data import DataError
from tfstyle.core.images import ImageError, read_image
from tfstyle.cyclegan.data import UnalignedData, load_domain
from tfstyle.cyclegan.pool import ImagePool

RGB = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
_y, _x = np.mgrid[0:12, 0:16]
SMOOTH = np.stack([_x * 15, _y * 20, 255 - _x * 8], -1).astype(np.uint8)  # JPEG-friendly


def save(path, image, **kwargs):
    image.save(path, **kwargs)
    return path


def test_read_image_formats(tmp_path):
    base = Image.fromarray(RGB)
    np.testing.assert_array_equal(read_image(save(tmp_path / "a.png", base)), RGB)
    np.testing.assert_array_equal(read_image(save(tmp_path / "a.bmp", base)), RGB)
    smooth = read_image(save(tmp_path / "a.jpg", Image.fromarray(SMOOTH), quality=95))
    assert np.abs(smooth.astype(int) - SMOOTH).mean() < 6
    gray = read_image(save(tmp_path / "g.png", base.convert("L")))
    assert gray.shape == (12, 16, 3) and (gray[..., 0] == gray[..., 2]).all()
    rgba = base.convert("RGBA")
    rgba.putalpha(0)  # fully transparent composites onto white
    assert (read_image(save(tmp_path / "t.png", rgba)) == 255).all()
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    first = read_image(gif)
    assert first.shape == (8, 8, 3) and first[..., 0].mean() > 200 and first[..., 2].mean() < 50


def test_read_image_16_bit_and_exif_rotation(tmp_path):
    deep = (np.arange(16 * 12, dtype=np.uint16).reshape(12, 16) * 300)
    image16 = Image.fromarray(deep.astype(np.uint16))
    got = read_image(save(tmp_path / "d.png", image16))
    np.testing.assert_allclose(got[..., 0], deep / 65535 * 255, atol=1)

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    wide = Image.fromarray(SMOOTH)
    rotated = read_image(save(tmp_path / "r.jpg", wide, exif=exif, quality=100))
    assert rotated.shape == (16, 12, 3)
    assert np.abs(rotated.astype(int) - np.rot90(SMOOTH, -1)).mean() < 6


def test_read_image_errors_name_the_file(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    buffer = io.BytesIO()
    Image.fromarray(RGB).save(buffer, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buffer.getvalue()[:200])
    for name in ("notes.png", "cut.jpg"):
        with pytest.raises(ImageError, match=name):
            read_image(tmp_path / name)


def make_folder(folder, count, colour, size=20):
    folder.mkdir(parents=True)
    for i in range(count):
        Image.new("RGB", (size + i, size), colour).save(folder / f"{i:02d}.png")
    return folder


def test_load_domain_skips_counts_and_caches(tmp_path, caplog):
    folder = make_folder(tmp_path / "trainA", 3, (200, 10, 10))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    (folder / "readme.txt").write_text("ignored: not an image extension")
    domain = load_domain(folder, 16, tmp_path / "cache")
    assert len(domain) == 3 and domain.images.shape == (3, 16, 16, 3)
    assert [name for name, _ in domain.skipped] == ["broken.jpg"]
    assert "broken.jpg" in caplog.text
    assert (domain.images[..., 0] > 190).all()
    again = load_domain(folder, 16, tmp_path / "cache")  # from the cache, same content
    np.testing.assert_array_equal(again.images, domain.images)
    assert again.skipped == domain.skipped


def test_missing_or_empty_domain_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_domain(tmp_path / "nothing", 16, tmp_path / "cache")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        load_domain(tmp_path / "empty", 16, tmp_path / "cache")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_text("nope")
    with pytest.raises(DataError, match="none of its 1 image files"):
        load_domain(tmp_path / "bad", 16, tmp_path / "cache")


def two_domains(tmp_path, n_a=5, n_b=3):
    a = load_domain(make_folder(tmp_path / "A", n_a, (255, 0, 0)), 12, tmp_path / "c")
    b = load_domain(make_folder(tmp_path / "B", n_b, (0, 0, 255)), 12, tmp_path / "c")
    return a, b


def test_epoch_plan_is_unaligned_deterministic_and_covers_a(tmp_path):
    a, b = two_domains(tmp_path)
    data = UnalignedData(a, b, crop_size=8, seed=3)
    assert data.epoch_size == 5 and data.steps_per_epoch(2) == 2
    plan = data.plan(0)
    assert sorted(plan.a_index) == [0, 1, 2, 3, 4]
    assert ((0 <= plan.b_index) & (plan.b_index < 3)).all()
    assert (plan.a_offset <= 4).all()
    np.testing.assert_array_equal(data.plan(0).b_index, plan.b_index)
    assert not all(np.array_equal(data.plan(e).a_index, plan.a_index) for e in (1, 2, 3))


def test_replica_slices_add_up_to_the_global_batch(tmp_path):
    a, b = two_domains(tmp_path, n_a=8, n_b=8)
    data = UnalignedData(a, b, crop_size=8, seed=0)
    whole = [x for x, _ in data.dataset(0, 0, global_batch=4)]
    context = lambda i, n: tf.distribute.InputContext(n, i, 2)  # noqa: E731
    one_pipeline = [x for x, _ in data.dataset(0, 0, 4, context(0, 1))]
    assert len(whole) == 2 and whole[0].shape == (4, 8, 8, 3)
    np.testing.assert_array_equal(tf.concat(one_pipeline[:2], 0), whole[0])
    workers = [[x for x, _ in data.dataset(0, 0, 4, context(i, 2))] for i in (0, 1)]
    np.testing.assert_array_equal(tf.concat([workers[0][1], workers[1][1]], 0), whole[1])
    resumed = [x for x, _ in data.dataset(0, 1, global_batch=4)]
    np.testing.assert_array_equal(resumed[0], whole[1])
    assert float(tf.reduce_min(whole[0])) >= -1 and float(tf.reduce_max(whole[0])) <= 1


def test_batches_are_the_planned_crops_and_flips(tmp_path):
    rng = np.random.default_rng(0)
    a, b = two_domains(tmp_path, n_a=6, n_b=4)
    a = dataclasses.replace(a, images=rng.integers(0, 256, a.images.shape, dtype=np.uint8))
    b = dataclasses.replace(b, images=rng.integers(0, 256, b.images.shape, dtype=np.uint8))
    data = UnalignedData(a, b, crop_size=8, seed=5)
    dataset = data.dataset(1, 0, global_batch=3)
    p, seen = data.plan(1), 0
    for batch_a, batch_b in dataset:
        for k in range(3):
            s = seen + k
            for batch, images, index, offset, flip in (
                    (batch_a, a.images, p.a_index, p.a_offset, p.a_flip),
                    (batch_b, b.images, p.b_index, p.b_offset, p.b_flip)):
                top, left = offset[s]
                want = images[index[s], top:top + 8, left:left + 8]
                want = want[:, ::-1] if flip[s] else want
                got = np.round((batch[k].numpy() + 1) * 127.5).astype(np.uint8)
                np.testing.assert_array_equal(got, want)
        seen += 3
    flips = np.concatenate([p.a_flip, p.b_flip])
    assert seen == 6 and flips.any() and not flips.all()


def test_paired_data_shares_crops_and_matches_names(tmp_path):
    a, b = two_domains(tmp_path, n_a=4, n_b=3)
    data = UnalignedData(a, b, crop_size=8, seed=0, paired=True)
    assert data.epoch_size == 3
    plan = data.plan(0)
    np.testing.assert_array_equal(plan.a_index, plan.b_index)
    np.testing.assert_array_equal(plan.a_offset, plan.b_offset)


def test_image_pool_follows_the_official_rule():
    pool = ImagePool(2, (1, 1, 1))
    images = lambda *v: tf.reshape(tf.constant(v, tf.float32), [-1, 1, 1, 1])  # noqa: E731
    out = pool.query(images(1, 2), tf.constant([0, 0]))
    np.testing.assert_array_equal(out.numpy().ravel(), [1, 2])  # filling: returned as is
    assert int(pool.count.numpy()) == 2
    seen = set()
    for step in range(40):
        value = 10.0 + step
        before = set(pool.images.numpy().ravel())
        got = float(pool.query(images(value), tf.constant([0, step])).numpy().ravel()[0])
        after = set(pool.images.numpy().ravel())
        if got == value:
            assert after == before  # kept the pool
        else:
            assert got in before and value in after  # swapped a stored image out
        seen.add(got == value)
    assert seen == {True, False}
    again = ImagePool(2, (1, 1, 1))
    again.query(images(1, 2), tf.constant([0, 0]))
    first = [float(again.query(images(10.0 + s), tf.constant([0, s])).numpy().ravel()[0])
             for s in range(5)]
    pool2 = ImagePool(2, (1, 1, 1))
    pool2.query(images(1, 2), tf.constant([0, 0]))
    second = [float(pool2.query(images(10.0 + s), tf.constant([0, s])).numpy().ravel()[0])
              for s in range(5)]
    assert first == second  # deterministic in (seed, step)
