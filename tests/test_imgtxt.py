"""The image/text experiment: renderer, captions, vocabulary, dataset layout, loader, a tiny
training run end to end, and the CLI's handling of bad input."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxmmcl.cli import main
from jaxmmcl.config import ConfigError
from jaxmmcl.distributed import runs_mesh
from jaxmmcl.imgtxt import dataset, factors, render, text, train
from jaxmmcl.imgtxt.evaluate import IMAGE_FACTORS, TEXT_FACTORS
from jaxmmcl.imgtxt.sweep import DataConfig, load_data
from jaxmmcl.losses import nt_xent
from jaxmmcl.results import read_results
from jaxmmcl.runner import run_sweep
from jaxmmcl.sweeps import load_sweep, parse_overrides

SIZE = 24


def _one(**changes) -> factors.Factors:
    base = factors.Factors(
        shape=np.int32(4),
        xpos=np.int32(1),
        ypos=np.int32(1),
        alpharot=np.float32(0.1),
        betarot=np.float32(0.2),
        gammarot=np.float32(0.3),
        hue=np.float32(0.4),
        spot_pos=np.float32(0.5),
        spot_color=np.float32(0.6),
        background=np.float32(0.7),
        palette=np.int32(0),
        phrasing=np.int32(0),
    )
    return base._replace(**changes)


def _image(f: factors.Factors, size: int = SIZE) -> np.ndarray:
    return np.asarray(render.render_batch(factors.take(f, None), size)[0])


def test_sampling_and_rendering_are_deterministic_for_a_key():
    f1 = factors.sample_factors(jax.random.key(3), 4)
    f2 = factors.sample_factors(jax.random.key(3), 4)
    for a, b in zip(f1, f2, strict=True):
        np.testing.assert_array_equal(a, b)
    img1, img2 = render.render_batch(f1, SIZE), render.render_batch(f2, SIZE)
    assert img1.shape == (4, SIZE, SIZE, 3)
    np.testing.assert_array_equal(img1, img2)
    assert float(img1.min()) >= 0.0 and float(img1.max()) <= 1.0
    # The causal hue lies in the third of [0, 1] of the x-position.
    np.testing.assert_array_equal(np.floor(np.asarray(f1.hue) * 3), np.asarray(f1.xpos))


@pytest.mark.parametrize(
    "field, value",
    [
        ("shape", 1),
        ("xpos", 0),
        ("ypos", 2),
        ("alpharot", 0.35),
        ("betarot", 0.4),
        ("gammarot", 0.6),
        ("hue", 0.8),
        ("spot_pos", 0.8),
        ("spot_color", 0.1),
        ("background", 0.2),
    ],
)
def test_every_image_factor_changes_the_pixels(field, value):
    base = _image(_one())
    changed = _image(_one(**{field: np.asarray(value, getattr(_one(), field).dtype)}))
    assert np.abs(changed - base).max() > 0.02


def test_every_shape_differs_from_every_other():
    images = [_image(_one(shape=np.int32(s)), 64) for s in range(7)]
    for i in range(7):
        for j in range(i):
            assert np.abs(images[i] - images[j]).max() > 0.1, (i, j)


@pytest.mark.parametrize("fields", [(f,) for f in factors.IMAGE_FIELDS] + [factors.CHANGED])
def test_a_second_view_differs_from_the_first_exactly_in_the_changed_factors(fields):
    """Every field asked for is redrawn and every other kept, and the second image is the
    first's scene with those fields set: the pixels differ exactly where they changed."""
    n = 48
    first = factors.sample_factors(jax.random.key(3), n)
    second = factors.change_factors(jax.random.key(4), first, fields)
    moved = set(fields) | ({"hue"} if "xpos" in fields else set())
    for name in factors.Factors._fields:
        a, b = np.asarray(getattr(first, name)), np.asarray(getattr(second, name))
        if name in moved:
            # Discrete fields keep their class with probability 1 / 3 or 1 / 7.
            assert np.mean(a != b) > 0.5, name
        else:
            np.testing.assert_array_equal(a, b, err_msg=name)
    # The hue stays in the third of its x-position (the causal hue of the paper's data).
    np.testing.assert_array_equal(np.floor(np.asarray(second.hue) * 3), np.asarray(second.xpos))
    pixels = np.abs(render.render_batch(first, 16) - render.render_batch(second, 16)).max((1, 2, 3))
    changed = np.any([np.asarray(getattr(first, m) != getattr(second, m)) for m in moved], axis=0)
    assert np.all(pixels[~changed] == 0) and np.all(pixels[changed] > 0)


def test_a_second_view_refuses_a_field_images_do_not_show():
    with pytest.raises(ValueError, match="'palette' is not one of shape"):
        factors.change_factors(
            jax.random.key(0), factors.sample_factors(jax.random.key(1), 2), ("palette",)
        )


def official_color_name(hue: float, palette: dict) -> str:
    """generate_latents.py's ColorPalette.nearest_neighbor(hue_to_rgb(hue)), as it is written."""
    import colorsys

    import matplotlib.colors

    rgb_to_name = {matplotlib.colors.to_rgb(v): k for k, v in palette.items()}
    target = np.array(colorsys.hsv_to_rgb(hue, 1.0, 1.0))
    min_dist, nearest = np.inf, None
    for rgb in rgb_to_name:
        dist = np.linalg.norm(np.array(rgb) - target)
        if dist < min_dist:
            min_dist, nearest = dist, rgb
    return rgb_to_name[nearest]


def test_colour_names_and_indices_are_the_generators():
    """Names with their palette prefixes, index = position among the sorted keys of the three
    palettes, and the name of a hue the generator's nearest neighbour: at random hues, at
    0, 0.5 and 1, and at the float32 hues on both sides of every interval bound."""
    import matplotlib.colors as mcolors

    tables = (mcolors.TABLEAU_COLORS, mcolors.CSS4_COLORS, mcolors.XKCD_COLORS)
    names = factors.color_names()
    assert names == tuple(sorted([*tables[0], *tables[1], *tables[2]]))
    assert {"tab:blue", "blue", "xkcd:bright aqua"} <= set(names)
    bounds = factors.palettes().bounds
    rng = np.random.default_rng(0)
    for p, table in enumerate(tables):
        edges = bounds[p][np.isfinite(bounds[p])]
        hues = [*rng.random(40).astype(np.float32), 0.0, 0.5, 1.0]
        hues += [*edges, *np.nextafter(edges, np.float32(0))]
        hues = np.asarray(hues, np.float32)
        got = np.asarray(factors.color_index(hues, np.full(hues.shape, p, np.int32)))
        expected = [names.index(official_color_name(float(h), table)) for h in hues]
        np.testing.assert_array_equal(got, expected)
    # CSS4's aqua and cyan share #00FFFF: the generator's {rgb: name} keeps the later name.
    assert names[int(factors.color_index(np.float32(0.5), np.int32(1)))] == "cyan"


def test_captions_are_the_datasets_sentences_character_for_character():
    expected = [
        'A teapot of "tab:blue" color is visible, positioned at the top-left of the image.',
        'A "xkcd:bright aqua" hare is at the mid-center of the image.',
        'The bottom-right of the image shows a "blue" colored dragon.',
        'At the top-center of the picture is a cow in "xkcd:robin\'s egg" color.',
        'At the mid-left of the image, there is a "aqua" object in the form of a head.',
    ]
    given = [
        (0, 0, 0, "tab:blue"),
        (1, 1, 1, "xkcd:bright aqua"),
        (2, 2, 2, "blue"),
        (3, 1, 0, "xkcd:robin's egg"),
        (6, 0, 1, "aqua"),
    ]
    for phrasing, ((shape, x, y, color), sentence) in enumerate(zip(given, expected, strict=True)):
        assert text.caption(shape, x, y, color, phrasing) == sentence
    # A batch's captions: its factors' words in its phrasings.
    f = factors.sample_factors(jax.random.key(0), 64)
    index = np.asarray(factors.color_index(f.hue, f.palette))
    for i, caption in enumerate(text.captions(f)):
        assert caption == text.PHRASES[int(f.phrasing[i])].format(
            SHAPE=text.SHAPE_NAMES[int(f.shape[i])],
            XPOS=text.XPOS_NAMES[int(f.xpos[i])],
            YPOS=text.YPOS_NAMES[int(f.ypos[i])],
            COLOR=factors.color_names()[index[i]],
        )
    assert set(np.asarray(f.phrasing).tolist()) == set(range(5))


def test_tokens_are_nltks_word_tokenize_on_every_phrasing_and_colour_name():
    from nltk.tokenize import word_tokenize

    tokens = text.tokenize('At the top-left of the image, there is a "xkcd:bright aqua" object.')
    assert tokens[2] == "top-left" and tokens[10:15] == ["``", "xkcd", ":", "bright", "aqua"]
    assert tokens[15] == "''"
    names = factors.color_names()
    full = text.full_vocabulary()
    n = len(names)
    rows = np.arange(5 * n)
    shape, xpos, ypos = rows % 7, (rows // 7) % 3, (rows // 21) % 3
    color, phrasing = np.tile(np.arange(n), 5), np.repeat(np.arange(5), n)
    sentences = [
        text.caption(int(s), int(x), int(y), names[c], int(p))
        for s, x, y, c, p in zip(shape, xpos, ypos, color, phrasing, strict=True)
    ]
    oracle = [word_tokenize(s, preserve_line=True) for s in sentences]
    # Every caption is one sentence: the official word_tokenize (Punkt, then this) agrees.
    assert all(text.tokenize(s) == o for s, o in zip(sentences[::97], oracle[::97], strict=True))
    # Captions built inside a traced program equal the tokenised caption strings.
    args = (shape, xpos, ypos, color, phrasing)
    on_device = jax.jit(text.tokens_of_factors, static_argnums=5)(*args, full)
    np.testing.assert_array_equal(np.asarray(on_device), full.encode(oracle))
    assert full.max_length == max(len(o) for o in oracle) + 1
    assert not set(full.tokens[3:]) - {t for o in oracle for t in o}


def test_vocabulary_is_the_official_one(tmp_path):
    f = factors.sample_factors(jax.random.key(1), 32)
    tokenized = [text.tokenize(c) for c in text.captions(f)]
    vocab = text.Vocabulary.build(tokenized)
    first_seen = list(dict.fromkeys(t for tokens in tokenized for t in tokens))
    assert vocab.tokens == ("{pad}", "{eos}", "{unk}", *first_seen)
    assert vocab.max_length == max(len(t) for t in tokenized) + 1
    ids = vocab.encode(tokenized)
    assert ids.shape == (32, vocab.max_length)
    assert vocab.decode(ids) == tokenized
    vocab.save(tmp_path / "vocab.json")
    saved = json.loads((tmp_path / "vocab.json").read_text())
    assert saved["w2i"] == {t: i for i, t in enumerate(vocab.tokens)}
    assert saved["i2w"] == {str(i): t for i, t in enumerate(vocab.tokens)}
    assert vocab.decode(vocab.encode([["zebra", "quagga"]])) == [["{unk}", "{unk}"]]


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("m3di")
    counts = {"train": 40, "val": 24, "test": 24}
    dataset.generate(root, counts, image_size=16, seed=5, chunk=16, show_progress=False)
    return root, counts


def test_generated_layout_is_multimodal3dident(tiny_dataset):
    root, counts = tiny_dataset
    assert sorted(p.name for p in root.iterdir()) == ["test", "train", "val", "vocab.json"]
    for split, n in counts.items():
        folder = root / split
        names = sorted(p.name for p in (folder / "images").iterdir())
        assert names == [f"{i:02d}.png" for i in range(n)]
        lines = (folder / "text" / "text_raw.txt").read_text().splitlines()
        assert len(lines) == n
        with (folder / "latents_image.csv").open() as fh:
            assert tuple(next(csv.reader(fh))) == factors.IMAGE_COLUMNS
        with (folder / "latents_text.csv").open() as fh:
            reader = csv.reader(fh)
            assert tuple(next(reader)) == factors.TEXT_COLUMNS
            rows = list(reader)
        for line, row in zip(lines, rows, strict=True):
            assert f'"{row[4]}"' in line
            assert text.SHAPE_NAMES[int(row[0])] in line


def test_loader_reads_the_generated_layout(tiny_dataset):
    root, counts = tiny_dataset
    vocab = dataset.load_vocabulary(root)
    split = dataset.load_split(root, "val", vocab)
    assert split.images.shape == (counts["val"], 16, 16, 3) and split.images.dtype == np.uint8
    assert split.tokens.shape == (counts["val"], vocab.max_length)
    lat = split.image_latents
    assert lat["object_shape"].dtype.kind == "i" and lat["object_color"].dtype.kind == "f"
    assert np.all(lat["object_zpos"] == 0)
    # The images are the renderer's output for the stored factors.
    f = factors.Factors(
        shape=lat["object_shape"].astype(np.int32),
        xpos=lat["object_xpos"].astype(np.int32),
        ypos=lat["object_ypos"].astype(np.int32),
        alpharot=lat["object_alpharot"],
        betarot=lat["object_betarot"],
        gammarot=lat["object_gammarot"],
        hue=lat["object_color"],
        spot_pos=lat["spotlight_pos"],
        spot_color=lat["spotlight_color"],
        background=lat["background_color"],
        palette=np.zeros(counts["val"], np.int32),
        phrasing=split.text_latents["text_phrasing"].astype(np.int32),
    )
    expected = np.asarray(render.to_uint8(render.render_batch(f, 16)))
    assert np.abs(expected.astype(int) - split.images.astype(int)).max() <= 1
    resized = dataset.load_split(root, "test", vocab, image_size=20)
    assert resized.images.shape == (counts["test"], 20, 20, 3)


def test_generate_refuses_existing_splits_and_leaves_no_partial_split(tiny_dataset, tmp_path):
    root, counts = tiny_dataset
    with pytest.raises(dataset.ConfigError, match="already exists"):
        dataset.generate(root, counts, show_progress=False)

    def fail(*_):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dataset._write_split(tmp_path / "train", factors.sample_factors(jax.random.key(0), 4), 4,
                             16, 2, fail)  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_fresh_batches_render_images_and_matching_tokens():
    vocab = text.full_vocabulary()
    source = train.rendered_source(16, vocab, [0.5] * 3, [0.25] * 3)
    images, tokens = source.draw(source.arrays, jax.random.key(0), 3, 6)
    f = factors.sample_factors(jax.random.fold_in(jax.random.key(0), 3), 6)
    expected = vocab.encode(text.tokenize(c) for c in text.captions(f))
    np.testing.assert_array_equal(np.asarray(tokens), expected)
    np.testing.assert_allclose(np.asarray(images[0]), np.asarray(render.render_batch(f, 16)))


def test_fresh_batches_of_three_views_render_the_second_image_with_its_changes():
    vocab = text.full_vocabulary()
    source = train.rendered_source(16, vocab, [0.5] * 3, [0.25] * 3, changed=factors.CHANGED)
    images, tokens = source.draw(source.arrays, jax.random.key(0), 3, 6)
    key = jax.random.fold_in(jax.random.key(0), 3)
    f = factors.sample_factors(key, 6)
    second = factors.change_factors(jax.random.fold_in(key, 1), f, factors.CHANGED)
    assert images.shape == (2, 6, 16, 16, 3) and source.n_images == 2
    np.testing.assert_allclose(np.asarray(images[1]), np.asarray(render.render_batch(second, 16)))
    expected = vocab.encode(text.tokenize(c) for c in text.captions(f))
    np.testing.assert_array_equal(np.asarray(tokens), expected)


def test_tiny_three_view_sweep_end_to_end(tmp_path):
    """``reproduce imgtxt3`` through the shared runner: every factor from every subset's chunk,
    the theory's content (role c) where it belongs, the subsets report."""
    out = tmp_path / "out"
    sets = [*TINY_IMGTXT[:-2], "--set", "model.max_encoding_size=8"]
    sets += ["--set", "model.encoding_size=8", "--set", "train.steps=3"]
    sets += ["--set", "data.n_train=32", "--set", "data.n_val=24", "--set", "data.n_test=24"]
    assert main(["reproduce", "imgtxt3", "--out", str(out), "--quiet", *sets]) == 0
    rows = read_results(out)
    # 4 subsets x (10 image factors + 5 text factors).
    assert len(rows) == 4 * 15 and {r["status"] for r in rows} <= {"ok", "failed"}
    subsets = ["image1+image2", "image1+text", "image2+text", "image1+image2+text"]
    assert list(dict.fromkeys(r["subset"] for r in rows)) == subsets
    content: dict[tuple[str, str], list[bool]] = {}
    for r in rows:
        content.setdefault((r["encoder"], r["factor"]), []).append(r["role"] == "c")
    # The spotlight's position is shared by the two images only; shape and position by all;
    # the text encoder's chunk of image1+image2 is not trained.
    assert content["image", "spotlight_pos"] == [True, False, False, False]
    assert content["image", "object_shape"] == [True] * 4
    assert content["text", "object_shape"] == [False, True, True, True]
    assert content["image", "object_color"] == [False, True, False, False]
    assert not any(content["image", "object_alpharot"])
    report = (out / "imgtxt3.md").read_text()
    assert "| factor | image1+image2 | image1+text | image2+text | image1+image2+text |" in report
    assert (out / "vocab.json").is_file()


def test_a_fixed_split_is_drawn_in_shuffled_epochs_of_full_batches():
    """As DataLoader(shuffle=True, drop_last=True): each epoch visits 3 batches of 4 distinct
    pairs of the 14 (2 dropped), in a new order every epoch."""
    n, batch = 14, 4
    images = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    tokens = np.arange(n, dtype=np.int32)[:, None]
    source = train.array_source(images, tokens, [0.0] * 3, [1.0] * 3)
    draw = jax.jit(lambda step: source.draw(source.arrays, jax.random.key(0), step, batch))
    epochs = []
    for e in range(2):
        ids = [np.asarray(draw(e * 3 + b)[1])[:, 0] for b in range(3)]
        for b, i in enumerate(ids):
            np.testing.assert_allclose(
                np.asarray(draw(e * 3 + b)[0])[0, :, 0, 0, 0] * 255, i, atol=1e-4
            )
        seen = np.concatenate(ids)
        assert len(set(seen.tolist())) == 12
        epochs.append(seen)
    assert not np.array_equal(epochs[0], epochs[1])


def test_the_training_split_does_not_depend_on_the_evaluation_splits_sizes():
    """The CPU scale's evaluation size can change without changing what the encoders train on:
    the training split, its vocabulary and channel statistics are the same."""
    small, large = (
        load_data(DataConfig(image_size=16, n_train=12, n_val=n, n_test=n)) for n in (4, 8)
    )
    for name in ("images", "tokens"):
        np.testing.assert_array_equal(small.source.arrays[name], large.source.arrays[name])
    np.testing.assert_array_equal(small.source.mean, large.source.mean)
    np.testing.assert_array_equal(small.source.std, large.source.std)
    assert small.vocab == large.vocab
    assert len(small.val.tokens) == 4 and len(large.test.tokens) == 8


def test_nt_xent_is_symmetric_and_uses_both_modalities_as_negatives():
    h1 = jax.random.normal(jax.random.key(0), (5, 3))
    h2 = jax.random.normal(jax.random.key(1), (5, 3))
    loss = float(nt_xent(h1, h2, 1.0))
    assert loss == pytest.approx(float(nt_xent(h2, h1, 1.0)), rel=1e-6)
    z = np.concatenate([h1, h2])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    sim = z @ z.T
    expected = []
    for i in range(10):
        others = np.delete(sim[i], i)
        expected.append(np.log(np.exp(others).sum()) - sim[i, (i + 5) % 10])
    assert loss == pytest.approx(np.mean(expected), rel=1e-5)


TINY_IMGTXT = [
    "--set", "data.image_size=16", "--set", "model.stage_sizes=[1]", "--set", "model.widths=[4]",
    "--set", "model.embedding_size=8", "--set", "model.text_channels=[4, 4, 4]",
    "--set", "train.batch_size=8", "--set", "train.warmup_steps=0", "--set", "train.log_every=2",
    "--set", "eval.mlp_epochs=5", "--set", "seed=[0]", "--set", "model.encoding_size=[1, 3]",
]  # fmt: skip


def test_tiny_image_text_sweep_on_a_dataset_folder(tiny_dataset, tmp_path, capsys):
    """``reproduce imgtxt --data`` runs through the shared runner: results.csv's schema (every
    factor of both modalities, the score columns of its kind), the report and vocab.json."""
    root, _ = tiny_dataset
    out = tmp_path / "out"
    args = ["reproduce", "imgtxt", "--data", str(root), "--out", str(out), "--quiet"]
    assert main([*args, *TINY_IMGTXT, "--set", "train.steps=3"]) == 0
    rows = read_results(out)
    factors_of = {"image": IMAGE_FACTORS, "text": TEXT_FACTORS}
    assert len(rows) == 2 * sum(map(len, factors_of.values()))
    for row in rows:
        kind = dict(factors_of[row["encoder"]])[row["factor"]]
        scores = ("acc_linear", "acc_nonlinear") if kind == "discrete" else ("r2_linear",)
        assert row["role"] == "" and all(np.isfinite(row[c]) for c in scores), row
    assert {r["model.encoding_size"] for r in rows} == {1, 3}
    report = (out / "imgtxt.md").read_text()
    assert "| model.encoding_size | image: object_shape |" in report
    assert (out / "vocab.json").read_text() == dataset.load_vocabulary(root).to_json()
    assert sorted(p.name for p in out.glob("imgtxt-lines-*.png")) == [
        "imgtxt-lines-continuous.png", "imgtxt-lines-discrete.png",
        "imgtxt-lines-encoding_size-val_loss.png",
    ]  # fmt: skip


def test_image_text_sweep_resumed_after_sigkill_equals_the_uninterrupted_one(tmp_path):
    """Killed with SIGKILL once its first program has checkpointed, the sweep resumes from the
    checkpoint (on as many devices: one) and writes results and losses equal to an
    uninterrupted sweep's; resuming on another device count is refused."""
    sets = [*TINY_IMGTXT, "--set", "train.steps=8", "--set", "data.n_train=32"]
    sets += ["--set", "data.n_val=16", "--set", "data.n_test=16"]
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    command = [sys.executable, "-m", "jaxmmcl.cli", "reproduce", "imgtxt", "--out", str(killed)]
    process = subprocess.Popen(
        [*command, "--quiet", "--checkpoint-every", "0", *sets],
        env=os.environ | {"JAX_NUM_CPU_DEVICES": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoints = killed / "state" / "checkpoints" / "group000-part000"
    deadline = time.monotonic() + 300
    while not list(checkpoints.glob("[0-9]*")):
        assert process.poll() is None, "the sweep ended before its first checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.kill()
    process.wait()
    assert not (killed / "results.csv").exists()
    sweep = load_sweep("imgtxt", overrides=parse_overrides(sets[1::2]))
    two = runs_mesh(jax.devices()[:1] * 2)
    with pytest.raises(ConfigError, match="was planned as 2 program"):
        run_sweep(sweep, killed, show_progress=False, resume=True, mesh=two)
    one = runs_mesh(jax.devices()[:1])
    run_sweep(sweep, killed, show_progress=False, resume=True, mesh=one)
    run_sweep(sweep, whole, show_progress=False, mesh=one)
    for name in ("results.csv", "losses.csv"):
        assert (killed / name).read_text() == (whole / name).read_text(), name


# Trains groups (seed 0, size 2) and (seeds 1 and 2, sizes 3 and 1) at once on two devices, then
# each group alone on the default device, and prints the largest difference of the results.
_TWO_DEVICES = """
import jax, numpy as np
from jaxmmcl.imgtxt import text, train
vocab = text.full_vocabulary()
source = train.rendered_source(16, vocab, [0.5] * 3, [0.25] * 3)
model = train.ModelConfig(3, vocab.size, (1,), (4,), 8, (4, 4, 4), True)
cfg = train.TrainConfig(batch_size=8, steps=3, learning_rate=1e-3, log_every=2)
groups = [(np.array([0]), np.array([2])), (np.array([1, 2]), np.array([3, 1]))]
states, history = train.train_groups(groups, model, cfg, source)
devices = [{d.id for d in s.size.devices()} for s in states]
together = zip(states, np.split(history, [1]))
alone = [train.train_runs(*g, model, cfg, source) for g in groups]
diff = max(
    float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
    for x, y in zip(together, alone)
    for a, b in zip(jax.tree.leaves((x[0].params, x[0].batch_stats, x[1])),
                    jax.tree.leaves((y[0].params, y[0].batch_stats, y[1])))
)
print(len(jax.devices()), devices, diff)
"""


def _tiny_training() -> tuple[train.BatchSource, train.ModelConfig, train.TrainConfig]:
    """Rendered 16 x 16 batches, a one-stage ResNet and a one-step run of encoding size <= 3."""
    vocab = text.full_vocabulary()
    source = train.rendered_source(16, vocab, [0.5] * 3, [0.25] * 3)
    model = train.ModelConfig(3, vocab.size, (1,), (4,), 8, (4, 4, 4), True)
    return source, model, train.TrainConfig(batch_size=8, steps=1, learning_rate=1e-3, log_every=1)


def test_groups_trained_at_once_on_two_devices_equal_each_group_alone():
    env = os.environ | {"JAX_NUM_CPU_DEVICES": "2"}
    out = subprocess.run(
        [sys.executable, "-c", _TWO_DEVICES], env=env, capture_output=True, text=True, check=True
    )
    placement, diff = out.stdout.strip().rsplit(maxsplit=1)
    assert placement == "2 [{0}, {1}]"
    assert float(diff) == 0.0


def test_train_groups_needs_a_device_per_group():
    source, model, cfg = _tiny_training()
    group = (np.array([0]), np.array([1]))
    with pytest.raises(ConfigError, match="3 groups for 1 devices"):
        train.train_groups([group] * 3, model, cfg, source, devices=jax.devices()[:1])


@pytest.mark.parametrize("n_runs", [1, 2])
def test_over_runs_maps_over_the_leading_axis(n_runs):
    fn = train.over_runs(lambda x, y: {"sum": x + y, "x": x}, (0, None), n_runs)
    x = np.arange(n_runs * 3, dtype=np.float32).reshape(n_runs, 3)
    out = fn(x, np.float32(10.0))
    np.testing.assert_array_equal(out["sum"], x + 10.0)
    np.testing.assert_array_equal(out["x"], x)


@pytest.mark.parametrize(
    "bad, message",
    [
        (["--n-train", "0"], "--n-train"),
        (["--n-val", "many"], "--n-val"),
        (["--size", "8"], "--size"),
        (["--seed", "-1"], "--seed"),
    ],
)
def test_data_generate_bad_input_exits_2(bad, message, tmp_path, capsys):
    args = ["data", "generate", str(tmp_path / "d"), "--n-train", "2", "--n-val", "2"]
    args += ["--n-test", "2", "--quiet", *bad]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_data_generate_cli_writes_a_dataset(tmp_path):
    args = ["data", "generate", str(tmp_path / "d"), "--n-train", "3", "--n-val", "2"]
    assert main([*args, "--n-test", "2", "--size", "16", "--quiet"]) == 0
    assert (tmp_path / "d" / "train" / "images" / "0.png").is_file()


def test_a_constant_encoder_scores_the_failure_threshold():
    """The loss that marks a run failed, log(2n - 1), is NT-Xent's value for a constant
    encoder."""
    h = np.ones((8, 3), np.float32)
    np.testing.assert_allclose(nt_xent(h, h, 0.1), np.log(15), rtol=1e-5)


def test_training_refuses_an_encoding_size_the_model_lacks():
    source, model, cfg = _tiny_training()
    with pytest.raises(ConfigError, match="encoding size 4: expected 1 to 3"):
        train.train_runs(np.array([0, 1]), np.array([2, 4]), model, cfg, source)


def test_encoders_are_initialised_as_the_official_pytorch_models():
    """torchvision's ResNet: Kaiming-normal convolutions (fan-out), unit batch-norm scales; the
    text encoder's embedding (a linear layer of one-hot tokens, with bias), convolutions and
    every linear layer: PyTorch's uniform +-1/sqrt(fan_in)."""
    from jaxmmcl.imgtxt.models import ResNetEncoder, TextEncoder

    image = ResNetEncoder(4, (1,), (64,), small_stem=False)
    variables = image.init(jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32), train=False)
    params = variables["params"]
    stem = np.asarray(params["Conv_0"]["kernel"])  # (7, 7, 3, 64)
    np.testing.assert_allclose(np.var(stem), 2 / (64 * 49), rtol=0.1)
    assert abs(np.mean(stem)) < 0.01 and np.all(params["BatchNorm_0"]["scale"] == 1)
    hidden = np.asarray(params["Dense_0"]["kernel"])  # (64, 100)
    assert np.abs(hidden).max() <= 1 / 8 and np.var(hidden) == pytest.approx(1 / 192, rel=0.1)
    words = TextEncoder(4, vocab_size=400, embedding_size=32, channels=(8, 8, 8))
    params = words.init(jax.random.key(0), np.zeros((1, 28), np.int32), train=False)["params"]
    for values, fan_in in (
        (params["Embed_0"]["embedding"], 400),
        (params["embedding_bias"], 400),
        (params["Conv_0"]["kernel"], 16),
        (params["Conv_0"]["bias"], 16),
        (params["Conv_1"]["kernel"], 8 * 16),
    ):
        values = np.asarray(values).ravel()
        bound = 1 / np.sqrt(fan_in)
        assert np.abs(values).max() <= bound and np.abs(values).max() > 0.7 * bound


def test_warmup_ramps_the_learning_rate_before_the_schedule():
    """Adam's first steps on a constant gradient move each weight by about the learning rate:
    (step + 1) / warmup_steps of it during the warm-up, then the cosine decay."""
    cfg = train.TrainConfig(
        batch_size=2, steps=12, warmup_steps=4, learning_rate=1.0, schedule="cosine"
    )
    opt = train._optimizer(cfg)
    params = np.zeros(1, np.float32)
    state, steps = opt.init(params), []
    for _ in range(cfg.steps):
        update, state = opt.update(np.full(1, 0.1, np.float32), state, params)
        steps.append(-float(update[0]))
    decay = 0.5 * (1 + np.cos(np.pi * np.arange(8) / 8))
    np.testing.assert_allclose(steps, [0.25, 0.5, 0.75, 1.0, *decay], rtol=1e-3)
    with pytest.raises(ConfigError, match=r"train.warmup_steps: .* got 12"):
        train.TrainConfig(batch_size=2, steps=12, warmup_steps=12)
