r"""Texture word -> style transfer, from the command line.

    python -m tfstyle.texture --word=ふさふさ --images=DIR --content=IMG --out=OUT.png \
        [--cluster=auto|N] [--steps=1000] [--features=both|nsv|fc6] [--weights=imagenet|PATH]
    python -m tfstyle.texture --study_dir=STUDY --words=ふさふさ,ざらざら,... \
        --contents=A.jpg,B.jpg,C.jpg --images=DIR [the same options]

The second form writes the seed's word-recognition study, STUDY/<word>/<content>.png for every
word and content image (what ``python -m tfstyle.rate --word_study=STUDY`` lists), keeping the
images already there.

Images for the word come from DIR/<word>/ (``--provider=local``, default) or from a web image
search (``--provider=web``, API key in $TFSTYLE_SEARCH_API_KEY, downloads cached in
``--cache_dir``).  A contact sheet of the clusters is written next to OUT (``--contact_sheet``);
``--contact_sheet_only`` stops there so a person can choose ``--cluster=N`` for the real run.
The flags are generated from the fields of TextureCommand (below) and of TextureConfig
(tfstyle.texture_words.pipeline), GatysConfig (.gatys) and WebSearchSettings (.providers); the
work is done by tfstyle.texture_words.pipeline.  See docs/texture.md.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from absl import app, flags

from tfstyle.core import config, images, vgg
from tfstyle.core.config import Config, setting
from tfstyle.texture_words import pipeline, providers
from tfstyle.texture_words.gatys import GatysConfig


@dataclasses.dataclass(frozen=True)
class TextureCommand(Config):
    """The command's own arguments: what to render, where from and where to."""

    word: str = setting("", "Texture word, e.g. ふさふさ (fluffy).")
    content: str = setting("", "Content image file.")
    out: str = setting("", "Output PNG file.")
    provider: str = setting("local", "Where the word's images come from.",
                            choices=("local", "web"))
    images: str = setting("", "Folder with one sub-folder of images per word (DIR/<word>/); "
                          "used by --provider=local.")
    contact_sheet: str = setting("", "Contact sheet PNG (default: OUT_clusters.png).")
    cluster: str = setting("auto", "Cluster to use: 'auto' (most coherent in style) or its "
                           "number as shown on the contact sheet.")
    study_dir: str = setting("", "Write the seed's word-recognition study instead of one "
                             "image: every --contents image in the style of every --words "
                             "word, as STUDY_DIR/<word>/<content>.png (the layout python -m "
                             "tfstyle.rate --word_study reads); images already there are "
                             "kept.")
    words: tuple[str, ...] = setting((), "Texture words of --study_dir (comma-separated).")
    contents: tuple[str, ...] = setting((), "Content image files of --study_dir "
                                        "(comma-separated).")

    def validate(self):
        if self.study_dir:
            for name in ("word", "content", "out", "contact_sheet"):
                self.need(not getattr(self, name), name,
                          "not used with --study_dir (give --words and --contents)")
            self._check(pipeline.check_study_words, "words")
            self._check(pipeline.check_study_contents, "contents")
            missing = [c for c in self.contents if not Path(c).is_file()]
            self.need(not missing, "contents", f"no such file: {', '.join(missing)}")
        else:
            self.need(self.word.strip(), "word",
                      "give the word (or --study_dir with --words and --contents)")
            self.need(self.content, "content", "give the content image")
            self.need(Path(self.content).is_file(), "content", "no such file")
            self.need(self.out, "out", "give the output PNG file")
            self.need(Path(self.out).suffix.lower() == ".png", "out", "must end in .png")
            for name in ("words", "contents"):
                self.need(not getattr(self, name), name, "only with --study_dir")
        if self.provider == "local":
            self.need(self.images, "images",
                      "required with --provider=local (a folder holding DIR/<word>/)")
            self.need(Path(self.images).is_dir(), "images", "no such folder")
        self.need(self.cluster == "auto" or self.cluster.isdigit(), "cluster",
                  "'auto' or a cluster number")

    def _check(self, check, name):
        try:
            check(getattr(self, name))
        except ValueError as err:
            raise config.ConfigError(f"--{name}={','.join(getattr(self, name))}: {err}") \
                from None

    @property
    def cluster_index(self) -> int | None:
        return None if self.cluster == "auto" else int(self.cluster)


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the tool's flags on ``fv`` (when it runs as a program, or by
    :func:`parse_flags`); importing the module defines none."""
    config.define_flags(TextureCommand, fv)
    config.define_flags(pipeline.TextureConfig, fv)
    config.define_flags(GatysConfig, fv, skip=("seed",))  # one --seed, read by both
    config.define_flags(providers.WebSearchSettings, fv)


def parse_flags(argv: list[str]) -> flags.FlagValues:
    """``argv`` (argv[0] is the program name) parsed into a fresh FlagValues."""
    fv = flags.FlagValues()
    define_flags(fv)
    fv(argv)
    return fv


def settings(fv: flags.FlagValues = flags.FLAGS):
    """(command, TextureConfig, WebSearchSettings) from the flags; app.UsageError naming the
    flag for a bad value."""
    command, _ = config.from_flags(TextureCommand, fv)
    gatys_config, _ = config.from_flags(GatysConfig, fv)
    texture, _ = config.from_flags(pipeline.TextureConfig, fv, cluster=command.cluster_index,
                                   gatys_config=gatys_config)
    web, _ = config.from_flags(providers.WebSearchSettings, fv)
    if command.study_dir and command.provider == "local":  # a missing folder fails now
        for word in command.words:
            try:
                providers.LocalFolderProvider(command.images).word_dir(word)
            except FileNotFoundError as err:
                raise app.UsageError(f"--words: {err}") from None
    if texture.weights not in ("imagenet", "random") \
            and not Path(texture.weights).expanduser().is_file():
        raise app.UsageError(f"--weights={texture.weights}: VGG19 weights file not found")
    return command, texture, web


def _progress(step, steps, losses, seconds):
    print(
        f"step {step:5d}/{steps}  total {losses['total']:.4g}  content {losses['content']:.4g}"
        f"  style {losses['style']:.4g}  tv {losses['tv']:.4g}  ({seconds:.1f} s)",
        flush=True,
    )


def _log(message):
    print(message, flush=True)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    command, texture, web = settings()
    provider = providers.LocalFolderProvider(command.images) if command.provider == "local" \
        else providers.WebSearchProvider(web)
    if texture.weights == "random":
        print("WARNING: --weights=random: VGG19 is untrained, results are meaningless.",
              file=sys.stderr)
    try:
        if command.study_dir:
            images.check_writable_folder(command.study_dir)
            study = pipeline.word_study(command.words, provider, command.contents,
                                        command.study_dir, texture, log=_log,
                                        progress=_progress)
            if texture.contact_sheet_only:
                print(f"Study {command.study_dir}: {len(study.contact_sheets)} contact sheets "
                      "written (STUDY/<word>/<word>_clusters.png).")
            else:
                print(f"Study {command.study_dir}: {len(study.written)} images written, "
                      f"{len(study.kept)} kept. Next: python -m tfstyle.rate "
                      f"--word_study={command.study_dir}")
        else:
            out = Path(command.out)
            sheet = Path(command.contact_sheet) if command.contact_sheet else \
                out.with_name(out.stem + pipeline.CONTACT_SHEET_SUFFIX + ".png")
            pipeline.texture_transfer(command.word, provider, command.content, out, sheet,
                                      texture, log=_log, progress=_progress)
    except (OSError, ValueError, vgg.VGGWeightsUnavailableError,
            providers.SearchAPIError) as err:
        print(f"error: {err}", file=sys.stderr)
        if isinstance(err, (vgg.VGGWeightsUnavailableError, vgg.VGGWeightsMismatchError)) \
                and texture.features != "nsv":
            print("hint: --features=nsv needs only the convolutional VGG19 weights "
                  f"({vgg.imagenet_weights_file(include_top=False)[0]}, 80 MB); fc6 needs the "
                  "full file.", file=sys.stderr)
        return 1
    return 0


def run() -> None:
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
