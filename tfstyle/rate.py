"""The rating study of an evaluation report: a local web app, and its summary.

    python -m tfstyle.rate --report=reports/caricature --db=ratings.sqlite --port=8080
    python -m tfstyle.rate --db=ratings.sqlite --summary [--report=reports/caricature]

The first serves every output of the report (python -m tfstyle.evaluate) to raters at
http://HOST:PORT/ with the seed's 5-point scale (-2..2), models anonymised and shuffled per
rater, and stores each answer in the SQLite file --db at once. Stop it with Ctrl-C and start
it again with the same --db: nothing is lost and raters continue where they were.
The second prints the mean score and 95% interval per model for train and test images.
See docs/evaluation.md.
"""

import signal
import sys
from pathlib import Path

from absl import app, flags

flags.DEFINE_string("report", None, "Report folder written by python -m tfstyle.evaluate.")
flags.DEFINE_string("db", None, "SQLite file for the answers (created if missing).")
flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (0.0.0.0: the whole network).")
flags.DEFINE_integer("port", 8080, "Port to listen on (0: any free port).")
flags.DEFINE_enum("direction", "both", ["both", "AtoB", "BtoA"], "Which outputs to rate "
                  "(the caricature seed rated photo -> caricature, AtoB, only).")
flags.DEFINE_bool("summary", False, "Print the per-model summary of the stored answers and "
                  "exit.")
flags.DEFINE_string("question_train", None, "Question shown for train images (default: "
                    "similarity to the target style).")
flags.DEFINE_string("question_test", None, "Question shown for test images (default: "
                    "completeness of the translation).")
flags.mark_flag_as_required("db")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from tfstyle.evaluation import rating

    db = Path(FLAGS.db)
    if not db.parent.is_dir():
        raise app.UsageError(f"--db={FLAGS.db}: folder {db.parent} does not exist")
    directions = ("AtoB", "BtoA") if FLAGS.direction == "both" else (FLAGS.direction,)
    manifest = None
    if FLAGS.report is not None or not FLAGS.summary:
        if FLAGS.report is None:
            raise app.UsageError("--report: required to serve the rating study")
        try:
            manifest = rating.load_manifest(FLAGS.report, directions)
        except (rating.RatingError, ValueError, TypeError, KeyError) as err:
            raise app.UsageError(f"--report={FLAGS.report}: {err}") from err

    if FLAGS.summary:
        if not db.is_file():
            raise app.UsageError(f"--db={FLAGS.db}: no such file (no answers yet)")
        store = rating.RatingStore(db)
        print(rating.format_summary(rating.summarize(store, manifest and manifest.models)))
        print(f"{len(store.answers())} answers stored in {db}")
        return 0

    if not 0 <= FLAGS.port <= 65535:
        raise app.UsageError(f"--port={FLAGS.port}: must be in 0..65535")
    questions = {k: v for k, v in (("train", FLAGS.question_train),
                                   ("test", FLAGS.question_test)) if v}
    try:
        server = rating.make_server(FLAGS.report, db, FLAGS.host, FLAGS.port, questions,
                                    directions)
    except OSError as err:
        raise app.UsageError(f"--port={FLAGS.port}: cannot listen on {FLAGS.host}: {err}") \
            from err
    host, port = server.server_address[:2]
    print(f"Rating study: {len(server.app.manifest.items)} outputs of "
          f"{len(server.app.manifest.models)} models from {FLAGS.report}; answers go to {db} "
          f"({len(server.app.store.answers())} stored so far)")
    print(f"Serving on http://{host}:{port}/ (Ctrl-C to stop)", flush=True)

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print("stopped; answers are saved", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(app.run(main))
