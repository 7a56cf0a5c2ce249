"""The seeds' rating studies: a local web app for raters, and the summary of their answers.

    python -m tfstyle.rate --report=reports/caricature --db=ratings.sqlite --port=8080
    python -m tfstyle.rate --db=ratings.sqlite --summary [--report=reports/caricature]
    python -m tfstyle.rate --word_study=study/words      # writes the word study's manifest

The first serves a study folder to raters at http://HOST:PORT/: the outputs of an evaluation
report (python -m tfstyle.evaluate) for the caricature seed's study, scored -2..2 with the
seed's labels, models anonymised and shuffled per rater; or a word study (stylized images in
STUDY/<word>/<content>.png, listed by --word_study) where raters pick the texture word each
image shows. Every answer is stored in the SQLite file --db at once: stop the server with
Ctrl-C and start it again with the same --db, nothing is lost and raters continue where they
were. --summary prints the seed's table: mean and 95% interval per model of the train
similarity and test completeness, or the word study's accuracy per word and overall.
Every server option is a field of tfstyle.evaluation.rating.RatingSettings. See
docs/evaluation.md.
"""

import signal
import sys
from pathlib import Path

from absl import app, flags

from tfstyle.core.config import define_flags, from_flags
from tfstyle.evaluation import studies, summary
from tfstyle.evaluation.answers import RatingStore
from tfstyle.evaluation.rating import RatingSettings, make_server

flags.DEFINE_string("report", None, "Study folder: a report written by python -m "
                    "tfstyle.evaluate, or a word study (--word_study).")
flags.DEFINE_string("db", None, "SQLite file for the answers (created if missing).")
flags.DEFINE_bool("summary", False, "Print the summary of the stored answers and exit.")
flags.DEFINE_string("word_study", None, "Write STUDY/rating_manifest.json for the word "
                    "study from the stylized images STUDY/<word>/<content>.png and exit.")
define_flags(RatingSettings)
FLAGS = flags.FLAGS


def _write_word_study() -> int:
    try:
        manifest = studies.write_word_manifest(FLAGS.word_study)
    except (studies.RatingError, OSError) as err:
        raise app.UsageError(f"--word_study={FLAGS.word_study}: {err}") from err
    print(f"wrote {Path(FLAGS.word_study) / studies.MANIFEST}: {len(manifest.items)} images "
          f"of {len(manifest.words)} words ({', '.join(manifest.words)}) on "
          f"{len(manifest.contents)} content images")
    print(f"serve it: python -m tfstyle.rate --report={FLAGS.word_study} --db=words.sqlite")
    return 0


def _summary(db: Path, manifest) -> int:
    if not db.is_file():
        raise app.UsageError(f"--db={FLAGS.db}: no such file (no answers yet)")
    try:
        store = RatingStore(db, manifest.kind if manifest else None)
    except studies.RatingError as err:
        raise app.UsageError(f"--db={FLAGS.db}: {err}") from err
    if (manifest.kind if manifest else store.kind()) == "words":
        print(summary.format_word_summary(summary.summarize_words(
            store, manifest and manifest.words, manifest and manifest.contents)))
    else:
        print(summary.format_summary(summary.summarize(store, manifest and manifest.models)))
    print(f"{store.count()} answers stored in {db}")
    return 0


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    settings, _ = from_flags(RatingSettings)
    if FLAGS.word_study is not None:
        return _write_word_study()
    if FLAGS.db is None:
        raise app.UsageError("--db: required (the SQLite file of the answers)")
    db = Path(FLAGS.db)
    if not db.parent.is_dir():
        raise app.UsageError(f"--db={FLAGS.db}: folder {db.parent} does not exist")
    manifest = None
    if FLAGS.report is not None or not FLAGS.summary:
        if FLAGS.report is None:
            raise app.UsageError("--report: required to serve the rating study")
        try:
            manifest = studies.load_manifest(FLAGS.report, settings.directions)
        except studies.RatingError as err:
            raise app.UsageError(f"--report={FLAGS.report}: {err}") from err
    if FLAGS.summary:
        return _summary(db, manifest)

    try:
        server = make_server(FLAGS.report, db, settings)
    except studies.RatingError as err:
        raise app.UsageError(f"--db={FLAGS.db}: {err}") from err
    except OSError as err:
        raise app.UsageError(f"--port={settings.port}: cannot listen on {settings.host}: "
                             f"{err}") from err
    host, port = server.server_address
    study = server.app.manifest
    print(f"Rating study ({study.kind}): {len(study.items)} items"
          + (f" of {len(study.models)} models" if study.models else "")
          + f" from {FLAGS.report}; answers go to {db} ({server.app.store.count()} stored so "
          "far)")
    print(f"Serving on http://{host}:{port}/ (Ctrl-C to stop)", flush=True)

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    print("stopped; answers are saved", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(app.run(main))
