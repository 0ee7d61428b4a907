"""The user study's web page (Flask): two blinded videos side by side, A / B / tie for Quality,
Semantic and Overall. Answers go to the SQLite `JudgementStore`; a reload resumes at the annotator's
first unjudged pair; malformed submissions are refused with HTTP 400."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask, abort, redirect, render_template_string, request, send_from_directory, url_for

from raven.evaluation.userstudy import CHOICES, DIMENSIONS, JudgementStore, SubmissionError, analyze

QUESTIONS = {
    "quality": "Which video has better visual quality (clean, stable, smooth motion)?",
    "semantic": "Which video matches the text prompt better?",
    "overall": "Which video do you prefer overall?",
}

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Video comparison</title>
<style>
 body { font-family: sans-serif; max-width: 900px; margin: 2em auto; }
 .videos { display: flex; gap: 2em; } .videos figure { margin: 0; text-align: center; }
 video { width: 256px; height: 256px; image-rendering: pixelated; background: #000; }
 fieldset { margin: 1em 0; } .error { color: #b00; }
</style></head><body>
{% if not annotator %}
 <h1>Video comparison study</h1>
 <form method="get" action="{{ url_for('page') }}">
  <label>Your annotator id <input name="annotator" id="annotator" required maxlength="64"></label>
  <button type="submit" id="start">Start</button>
 </form>
{% elif pair is none %}
 <h1 id="done">Thank you, {{ annotator }}: all {{ total }} comparisons are done.</h1>
{% else %}
 <p id="progress">Comparison {{ done + 1 }} of {{ total }} · annotator {{ annotator }}</p>
 <p>Prompt: <strong id="prompt">{{ pair.prompt }}</strong></p>
 {% if error %}<p class="error" id="error">{{ error }}</p>{% endif %}
 <div class="videos">
  <figure><video src="{{ url_for('video', name=pair.A.video) }}" autoplay loop muted playsinline></video>
   <figcaption>A</figcaption></figure>
  <figure><video src="{{ url_for('video', name=pair.B.video) }}" autoplay loop muted playsinline></video>
   <figcaption>B</figcaption></figure>
 </div>
 <form method="post" action="{{ url_for('judge') }}" id="judgement">
  <input type="hidden" name="pair" value="{{ pair.pair }}">
  <input type="hidden" name="annotator" value="{{ annotator }}">
  {% for dimension in dimensions %}
  <fieldset><legend>{{ questions[dimension] }}</legend>
   {% for choice in choices %}
   <label><input type="radio" name="{{ dimension }}" value="{{ choice }}" id="{{ dimension }}-{{ choice }}" required>
    {{ choice if choice != 'tie' else 'Tie' }}</label>
   {% endfor %}
  </fieldset>
  {% endfor %}
  <button type="submit" id="submit">Submit</button>
 </form>
{% endif %}
</body></html>"""


def create_app(manifest: dict[str, Any], study_dir: str | Path, database: str | Path) -> Flask:
    """The app for one prepared study folder (`manifest.json`, `videos/`) and its SQLite database."""
    study_dir = Path(study_dir).resolve()
    pairs = {p["pair"]: p for p in manifest["pairs"]}
    videos = {p[side]["video"] for p in manifest["pairs"] for side in ("A", "B")}
    store = JudgementStore(database, list(pairs))
    app = Flask(__name__)

    def show(annotator: str, error: str | None = None, status: int = 200):
        pair_id = store.next_pair(annotator) if annotator else None
        context = {"annotator": annotator, "pair": pairs.get(pair_id) if pair_id else None, "total": len(pairs),
                   "done": len(store.judged_pairs(annotator)) if annotator else 0, "error": error,
                   "dimensions": DIMENSIONS, "choices": CHOICES, "questions": QUESTIONS}
        return render_template_string(PAGE, **context), status

    @app.get("/")
    def page():
        return show(request.args.get("annotator", "").strip())

    @app.post("/judge")
    def judge():
        form = request.form
        annotator = form.get("annotator", "").strip()
        answers = {key: value for key, value in form.items() if key not in ("pair", "annotator")}
        try:
            store.record(form.get("pair", ""), annotator, answers)
        except SubmissionError as error:
            return show(annotator, f"Not saved: {error}", 400)
        return redirect(url_for("page", annotator=annotator), code=303)

    @app.get("/video/<name>")
    def video(name: str):
        if name not in videos:
            abort(404)
        return send_from_directory(study_dir / "videos", name, mimetype="video/mp4")

    @app.get("/tally")
    def tally():
        return analyze(manifest, store.rows(), bootstrap=200)

    return app
