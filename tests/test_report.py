"""The evaluation report: CLI, metrics.json, the HTML page in headless Chromium, loss plots."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfstyle.core import synthetic
from tfstyle.core.images import read_image
from tfstyle.cyclegan import generators, translator
from tfstyle.cyclegan.networks import ResnetGenerator
from tfstyle.evaluation import metrics, rating, report, studies, training_logs

REPO = Path(__file__).resolve().parents[1]
BLOCKS = (("caricature", "resnet"), ("caricature_se", "se"), ("caricature_da", "da"))
LOSS_TAGS = ("G_gan", "F_gan", "cycle_A", "cycle_B", "idt_A", "idt_B", "D_A", "D_B")


def make_model(model_dir, block, dataroot, seed, logs=True, directions=generators.DIRECTIONS,
               **info):
    """A model dir with tiny untrained generators for `directions` (CUT runs and distilled
    students write AtoB only); `info` adds to its info.json."""
    keras.utils.set_random_seed(seed)
    nets = {d: ResnetGenerator(ngf=4, n_blocks=1, block=block) for d in directions}
    generators.save_generators(model_dir, nets, {
        "block": block, "ngf": 4, "n_blocks": 1, "load_size": 40, "crop_size": 32,
        "dataroot": str(Path(dataroot).resolve()), "step": 30, "epoch": 3, "config": {},
        **info})
    if logs:
        writer = tf.summary.create_file_writer(str(Path(model_dir) / "logs"))
        with writer.as_default():
            for step in range(0, 30, 3):
                for i, tag in enumerate(LOSS_TAGS):
                    tf.summary.scalar(f"loss/{tag}", (i + 1) / (step + 1), step=step)
                tf.summary.scalar("learning_rate", 2e-4, step=step)
        writer.close()
    return Path(model_dir)


def run_evaluate(dirs, data, out):
    """`python -m tfstyle.evaluate` on tiny settings (random InceptionV3 weights); it must
    succeed."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "tfstyle.evaluate", *[f"--model_dir={d}" for d in dirs],
         f"--dataroot={data}", f"--out={out}", "--inception_weights=random",
         "--inception_size=75", "--num_train=2", "--kid_subsets=10"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def cli_report(tmp_path_factory):
    """The report of three tiny models, built by the CLI with random InceptionV3 weights."""
    tmp = tmp_path_factory.mktemp("report")
    data = synthetic.make_dataset(tmp / "data", train=4, test=3, size=40)
    dirs = [make_model(tmp / "runs" / name, block, data, seed=i, logs=name != "caricature_da")
            for i, (name, block) in enumerate(BLOCKS)]
    out = tmp / "out"
    proc = run_evaluate(dirs, data, out)
    return {"out": out, "data": data, "dirs": dirs, "stdout": proc.stdout}


def test_cli_prints_the_table_and_writes_metrics(cli_report):
    stdout, out = cli_report["stdout"], cli_report["out"]
    names = ["caricature (CycleGAN)", "caricature_se (CycleSE)", "caricature_da (CycleDA)"]
    for name in names:
        assert len([line for line in stdout.splitlines() if line.startswith(name)]) == 2
    assert "FID" in stdout and "KID" in stdout and "unreliable" in stdout and "RANDOM" in stdout
    result = json.loads((out / "metrics.json").read_text())
    assert [m["name"] for m in result["models"]] == names
    assert result["num_test"] == {"A": 3, "B": 3} and result["num_train"] == {"A": 2, "B": 2}
    assert result["paired"]["test_pairs"] == 3  # synthetic files share stems: paired by name
    assert "InceptionV3" in result["feature_extractor"]
    for model in result["models"]:
        for direction in ("AtoB", "BtoA"):
            m = model[direction]
            assert m["n"] == 3 and m["fid"] >= 0 and not m["fid_reliable"]
            assert m["kid_se_method"] == "jackknife" and m["kid_se"] > 0
            assert 0 < m["cycle_psnr"] < 100 and -1 <= m["cycle_ssim"] <= 1
            assert m["paired_n"] == 3 and 0 < m["paired_l1"] < 1
    # The paired L1 is the one of the written outputs against the real targets.
    m1 = result["models"][0]
    outputs = sorted((out / "images").glob("m1_*/test/AtoB/*.png"))
    targets = [out / "images/real/test/B" / p.name for p in outputs]
    assert len(outputs) == 3
    assert m1["AtoB"]["paired_l1"] == pytest.approx(metrics.mean_of(
        metrics.l1, [read_image(p) for p in outputs], [read_image(p) for p in targets]))
    assert result["models"][2]["has_logs"] is False
    assert result["models"][0]["final_scalars"]["loss/G_gan"] == pytest.approx(1 / 28)
    assert result["loss_plot"] == "plots/losses.png"


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        message = ("headless Chromium is needed for the report rendering test: install it "
                   "with `apt-get install -y chromium` (Debian package)")
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(message)  # CI must run it (.ci/run installs Chromium)
        pytest.skip(message)
    return path


CHECK_SCRIPT = """<script>
window.addEventListener('load', function () {
  var broken = [];
  for (var i = 0; i < document.images.length; i++) {
    var im = document.images[i];
    if (!im.complete || im.naturalWidth === 0) broken.push(im.getAttribute('src'));
  }
  var out = document.createElement('pre');
  out.id = 'render-check';
  out.textContent = JSON.stringify({images: document.images.length, broken: broken});
  document.body.appendChild(out);
});
</script>"""


def run_chromium(tmp_path, *args, url):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1200,2000",
             "--virtual-time-budget=10000"]
    return subprocess.run([chromium(), *flags, *args, url], capture_output=True, text=True,
                          timeout=120)


def test_report_page_renders_in_headless_chromium(cli_report, tmp_path):
    out = cli_report["out"]
    page = (out / "index.html").read_text()
    sources = re.findall(r"<img [^>]*src='([^']+)'", page)
    # input + 3 models + paired target, for 3 test and 2 train images in both directions,
    # plus the loss plot.
    assert len(sources) == 5 * (3 + 3 + 2 + 2) + 1
    for src in sources:
        assert (out / src).is_file(), src
    assert "<script" not in page
    assert page.index("Metrics") < page.index("Training losses") < page.index("Test images")
    for header in ("caricature (CycleGAN)", "caricature_se (CycleSE)",
                   "caricature_da (CycleDA)", "paired target"):
        assert f"<th>{header}</th>" in page
    assert "caricature_da (CycleDA): no training logs" in page

    # Let Chromium load the page with a checker script beside it (same folder, same links).
    check = out / "_render_check.html"
    check.write_text(page.replace("</body>", CHECK_SCRIPT + "</body>"))
    try:
        dom = run_chromium(tmp_path, "--dump-dom", url=check.as_uri())
    finally:
        check.unlink()
    found = re.search(r"<pre id=\"render-check\">(.*?)</pre>", dom.stdout)
    assert found, dom.stderr[-2000:]
    result = json.loads(found.group(1).replace("&quot;", '"'))
    assert result == {"images": len(sources), "broken": []}

    shot = tmp_path / "report.png"
    run_chromium(tmp_path, f"--screenshot={shot}", url=(out / "index.html").as_uri())
    image = np.asarray(Image.open(shot).convert("RGB"), np.float64)
    assert image.shape == (2000, 1200, 3)
    assert image.std() > 20  # not blank: text, tables and images
    # The metrics table sits at the top: dark text pixels in the first 400 rows.
    assert (image[:400].mean(axis=2) < 100).mean() > 0.005


def test_rating_app_reads_the_report_manifest(cli_report, tmp_path):
    manifest = studies.load_manifest(cli_report["out"])
    assert len(manifest.models) == 3
    assert len(manifest.items) == 3 * 2 * (3 + 2)  # models x directions x (test + train)
    for item in manifest.items.values():
        assert manifest.path(item.input).is_file() and manifest.path(item.output).is_file()
        assert item.target and manifest.path(item.target).is_file()
    assert {i.split for i in manifest.items.values()} == {"train", "test"}
    photo_to_caricature = studies.load_manifest(cli_report["out"], directions=("AtoB",))
    assert len(photo_to_caricature.items) == len(manifest.items) // 2
    assert {i.direction for i in photo_to_caricature.items.values()} == {"AtoB"}
    # The rating app asks about photo -> caricature only unless told otherwise (the seed).
    server = rating.make_server(cli_report["out"], tmp_path / "ratings.sqlite",
                                rating.RatingSettings(port=0))
    try:
        assert server.app.manifest.items == photo_to_caricature.items
    finally:
        server.server_close()


def test_build_report_native_sizes_unreadable_files_no_pairs(tmp_path):
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for folder, names in (("testA", ["a1", "a2", "a3"]), ("testB", ["b1", "b2", "b3"])):
        (root / folder).mkdir(parents=True)
        for i, name in enumerate(names):
            shape = (40, 40, 3) if i != 1 else (36, 46, 3)  # not a multiple of 4
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(
                root / folder / f"{name}.png")
    (root / "testA" / "broken.png").write_bytes(b"not an image")
    run = make_model(tmp_path / "run", "resnet", root, seed=0, logs=False)

    def features(images):
        return np.stack([np.concatenate([i.reshape(-1, 3).mean(0), i.reshape(-1, 3).std(0)])
                         for i in images])

    out = tmp_path / "out"
    options = report.ReportOptions(image_size=0, num_train=5, paired="no", kid_subsets=4)
    result = report.build_report([run], root, out, options, features=features)
    assert result["num_test"] == {"A": 3, "B": 3} and result["num_train"] == {"A": 0, "B": 0}
    assert any("broken.png" in s for s in result["skipped"])
    m = result["models"][0]["AtoB"]
    assert m["paired_n"] == 0 and "paired_l1" not in m
    # Native sizes are kept, and the metrics are those of the written images.
    fake = read_image(out / "images/m1_run/test/AtoB/a2.png")
    assert fake.shape == (36, 46, 3)
    g = translator.Translator(generators.load_generator(run, "AtoB"))
    f = translator.Translator(generators.load_generator(run, "BtoA"))
    sources = [read_image(root / "testA" / f"{n}.png") for n in ("a1", "a2", "a3")]
    fakes = [g(x) for x in sources]
    np.testing.assert_array_equal(fakes[1], fake)
    assert m["cycle_psnr"] == pytest.approx(
        np.mean([metrics.psnr(f(y), x) for x, y in zip(sources, fakes)]))
    reals = [read_image(root / "testB" / f"{n}.png") for n in ("b1", "b2", "b3")]
    assert m["fid"] == pytest.approx(metrics.fid(features(fakes), features(reals)))
    page = (out / "index.html").read_text()
    assert "paired target" not in page and "no training logs" in page
    assert result["loss_plot"] is None
    with pytest.raises(report.ReportError, match="paired"):
        report.build_report([run], root, out, options.replace(paired="yes"), features=features)


def test_one_direction_models_beside_a_cyclegan(tmp_path):
    """A FastCUT run (AtoB only) and a distilled student (BtoA only) beside a CycleGAN: each
    direction compares the models that have it, the cycle is n/a where no generator leads
    back, and the rating manifest holds the outputs that exist."""
    data = synthetic.make_dataset(tmp_path / "data", train=2, test=3, size=40)
    runs = tmp_path / "runs"
    dirs = [make_model(runs / "cyclegan", "resnet", data, seed=0, logs=False),
            make_model(runs / "fastcut", "resnet", data, seed=1, logs=False,
                       directions=("AtoB",), model="cut", config={"nce_idt": False}),
            make_model(runs / "student", "resnet", data, seed=2, logs=False,
                       directions=("BtoA",), distilled_from={"model_dir": str(runs / "x")})]
    out = tmp_path / "out"
    proc = run_evaluate(dirs, data, out)
    names = ["cyclegan (CycleGAN)", "fastcut (FastCUT)", "student (CycleGAN, distilled)"]
    rows = {n: [line for line in proc.stdout.splitlines() if line.startswith(n)] for n in names}
    assert [len(rows[n]) for n in names] == [2, 1, 1]
    assert " A->B " in rows[names[1]][0] and " B->A " in rows[names[2]][0]
    assert all(line.count(" n/a ") == 2 for n in names[1:] for line in rows[n])
    assert not any("n/a" in line for line in rows[names[0]])
    assert ("cycle PSNR/SSIM n/a: a cycle needs both generators, and fastcut (FastCUT) has "
            "AtoB only (no BtoA.keras in its generators/)") in proc.stdout

    result = json.loads((out / "metrics.json").read_text())
    cyclegan, fastcut, student = result["models"]
    assert [m["name"] for m in result["models"]] == names
    assert [m["directions"] for m in result["models"]] == [["AtoB", "BtoA"], ["AtoB"], ["BtoA"]]
    assert "BtoA" not in fastcut and "AtoB" not in student
    for direction in ("AtoB", "BtoA"):
        assert 0 < cyclegan[direction]["cycle_psnr"] < 100
        assert "cycle_na" not in cyclegan[direction]
    for m, back in ((fastcut["AtoB"], "BtoA"), (student["BtoA"], "AtoB")):
        assert m["cycle_psnr"] is None and m["cycle_ssim"] is None
        assert m["cycle_na"].startswith(f"no {back} generator in ")
        assert m["n"] == 3 and m["fid"] >= 0 and m["kid"] is not None
        assert m["paired_n"] == 3 and 0 < m["paired_l1"] < 1
    # The one-direction model's metrics are those of its written outputs.
    outputs = sorted((out / "images").glob("m2_fastcut/test/AtoB/*.png"))
    assert len(outputs) == 3 and not (out / "images/m2_fastcut/test/BtoA").exists()
    assert fastcut["AtoB"]["paired_l1"] == pytest.approx(metrics.mean_of(
        metrics.l1, [read_image(p) for p in outputs],
        [read_image(out / "images/real/test/B" / p.name) for p in outputs]))

    page = (out / "index.html").read_text()
    sources = re.findall(r"<img [^>]*src='([^']+)'", page)
    # Input + 2 models + paired target per row: 3 test and 2 train images, both directions.
    assert len(sources) == 4 * (3 + 3 + 2 + 2)
    assert all((out / src).is_file() for src in sources)
    grids = page.split("<h2>")[3:]
    assert [g.split("</h2>")[0] for g in grids] == [
        "Test images: A &rarr; B", "Test images: B &rarr; A",
        "Train images: A &rarr; B", "Train images: B &rarr; A"]
    for grid, shown, left_out in ((grids[0], names[:2], names[2]),
                                  (grids[1], names[::2], names[1])):
        assert re.findall(r"<th>([^<]+)</th>", grid) == ["input", *shown, "paired target"]
        assert f"not shown: {left_out}" in grid
    assert page.count("<td class='num'>n/a</td>") == 4

    manifest = studies.load_manifest(out)
    assert manifest.models == names
    assert len(manifest.items) == 2 * 2 * (3 + 2)  # directions x models each x (test + train)
    assert all(manifest.path(i.output).is_file() for i in manifest.items.values())
    assert {(i.model, i.direction) for i in manifest.items.values()} == {
        (names[0], "AtoB"), (names[0], "BtoA"), (names[1], "AtoB"), (names[2], "BtoA")}
    # A study of one direction has the models that have it as its anonymous systems.
    assert studies.load_manifest(out, directions=("AtoB",)).models == names[:2]
    assert studies.load_manifest(out, directions=("BtoA",)).models == names[::2]

    (tmp_path / "none" / "generators").mkdir(parents=True)
    (tmp_path / "none" / "generators" / "info.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="neither AtoB.keras nor BtoA.keras"):
        report.describe_models([dirs[0], tmp_path / "none"])


def test_read_scalars_merges_resumed_runs_and_skips_images(tmp_path):
    logs = tmp_path / "logs"
    for run, values in ((0, {0: 5.0, 10: 4.0, 20: 3.0}), (1, {20: 2.5, 30: 2.0})):
        writer = tf.summary.create_file_writer(str(logs))
        with writer.as_default():
            for step, value in values.items():
                tf.summary.scalar("loss/cycle_A", value, step=step)
            tf.summary.image("grid", tf.zeros((1, 4, 4, 3)), step=0)
        writer.close()
    scalars = training_logs.read_scalars(logs)
    assert list(scalars) == ["loss/cycle_A"]
    steps, values = scalars["loss/cycle_A"]
    assert steps.tolist() == [0, 10, 20, 30] and values.tolist() == [5.0, 4.0, 2.5, 2.0]
    assert training_logs.read_scalars(tmp_path / "nothing") == {}
    plot = training_logs.plot_losses({"run": scalars}, tmp_path / "plot.png")
    assert Image.open(plot).size[0] > 100


def test_cli_flag_errors_name_the_flag(tmp_path):
    data = synthetic.make_dataset(tmp_path / "data", train=1, test=1, size=16)
    run = make_model(tmp_path / "run", "resnet", data, seed=0, logs=False)
    (tmp_path / "empty").mkdir()
    (tmp_path / "info_only" / "generators").mkdir(parents=True)
    (tmp_path / "info_only" / "generators" / "info.json").write_text("{}")
    cases = [
        ([f"--model_dir={tmp_path / 'empty'}", f"--dataroot={data}"], "--model_dir"),
        ([f"--model_dir={run}", f"--model_dir={tmp_path / 'info_only'}", f"--dataroot={data}"],
         "holds neither AtoB.keras nor BtoA.keras"),
        ([f"--model_dir={run}", f"--dataroot={tmp_path / 'empty'}"], "--dataroot"),
        ([f"--model_dir={run}", f"--dataroot={data}", "--inception_weights=/no/file.h5"],
         "--inception_weights"),
        ([f"--model_dir={run}", f"--dataroot={data}", "--num_train=-1"], "--num_train"),
        ([f"--model_dir={run}", f"--dataroot={data}", "--tile=30"], "--tile"),
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    for args, flag in cases:
        proc = subprocess.run([sys.executable, "-m", "tfstyle.evaluate", *args,
                               f"--out={tmp_path / 'out'}"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0 and flag in proc.stderr, (args, proc.stderr[-1000:])
    assert not (tmp_path / "out").exists()


def test_every_documented_flag_is_a_flag_of_its_tool():
    """The flags docs/evaluation.md names (but those of the tfstyle.texture command it
    shows) are flags of tfstyle.evaluate or tfstyle.rate, generated from their settings or
    the tools' own."""
    lines, other_tool, previous = [], False, ""
    for line in (REPO / "docs" / "evaluation.md").read_text().splitlines():
        other_tool = "tfstyle.texture" in line or (other_tool and previous.endswith("\\"))
        lines.append("" if other_tool else line)
        previous = line
    documented = set(re.findall(r"--([a-z_]+)", "\n".join(lines)))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    defined = set()
    for tool in ("tfstyle.evaluate", "tfstyle.rate"):
        proc = subprocess.run([sys.executable, "-m", tool, "--helpfull"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
        defined |= set(re.findall(r"^  --(?:\[no\])?([a-z_]+)", proc.stdout, re.M))
    assert {"model_dir", "inception_weights", "kid_subsets", "report", "db", "summary",
            "question_train", "word_study", "timeout"} <= documented
    assert documented - defined <= {"helpfull", "flagfile"}, documented - defined
