"""The user study's web page (Flask, served by waitress): two blinded videos side by side, A / B / tie
for Quality, Semantic and Overall.

- The annotator id lives in a signed, SameSite=Strict session cookie; each annotator gets their own
  deterministic pair order and resumes at their first unjudged pair.
- Every shown pair carries a single-use form token bound to the annotator (`JudgementStore.issue`):
  it is the CSRF token, and it limits votes to pairs shown to that annotator; a replayed form is
  refused (403). Re-opening an already shown pair gives a fresh token: a second vote is history.
- Bodies over `MAX_BODY` bytes are refused (413); malformed answers get 400.
- The tally (unblinded method names, live rates) needs the admin token: `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import Any

from flask import Flask, abort, redirect, render_template_string, request, send_from_directory, session, url_for

from raven.evaluation.judgements import CHOICES, DIMENSIONS, JudgementStore, RefusedError, SubmissionError
from raven.evaluation.userstudy import analyze

MAX_BODY = 16 * 1024  # bytes: a judgement form is under 200

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
 <form method="get" action="{{ url_for('start') }}">
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
  <input type="hidden" name="csrf_token" value="{{ token }}">
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
{% if previous %}<p><a id="previous" href="{{ url_for('page', pair=previous) }}">Change my answer to the previous
 comparison</a></p>{% endif %}
</body></html>"""


def create_app(manifest: dict[str, Any], study_dir: str | Path, database: str | Path,
               admin_token: str | None = None) -> Flask:
    """The app for one prepared study folder (`manifest.json`, `videos/`) and its SQLite database;
    without `admin_token` the tally is only available through `raven userstudy analyze`."""
    study_dir = Path(study_dir).resolve()
    pairs = {p["pair"]: p for p in manifest["pairs"]}
    videos = {p[side]["video"] for p in manifest["pairs"] for side in ("A", "B")}
    store = JudgementStore(database, manifest)
    app = Flask(__name__)
    # A fresh key per server start: a restart only asks annotators for their id again (they resume).
    app.config.update(SECRET_KEY=secrets.token_bytes(32), MAX_CONTENT_LENGTH=MAX_BODY,
                      SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_HTTPONLY=True)

    def show(pair_id: str | None, error: str | None = None, status: int = 200):
        annotator = session.get("annotator", "")
        token = store.issue(annotator, pair_id) if annotator and pair_id else None
        judged = store.judged_pairs(annotator) if annotator else set()
        previous = session.get("previous") if session.get("previous") in judged else None
        context = {"annotator": annotator, "pair": pairs.get(pair_id) if pair_id else None, "total": len(pairs),
                   "done": len(judged - {pair_id}), "error": error, "token": token, "previous": previous,
                   "dimensions": DIMENSIONS, "choices": CHOICES, "questions": QUESTIONS}
        return render_template_string(PAGE, **context), status

    @app.get("/start")
    def start():
        try:
            session["annotator"] = JudgementStore.check_annotator(request.args.get("annotator", ""))
        except SubmissionError as error:
            return str(error), 400
        return redirect(url_for("page"), code=303)

    @app.get("/")
    def page():
        annotator = session.get("annotator", "")
        wanted = request.args.get("pair")
        if not annotator or not wanted:
            return show(store.next_pair(annotator) if annotator else None)
        if wanted not in pairs or not store.was_shown(annotator, wanted):
            abort(404)  # only pairs already shown to this annotator can be reopened
        return show(wanted)

    @app.post("/judge")
    def judge():
        annotator = session.get("annotator", "")
        if not annotator:
            abort(403)
        answers = {key: value for key, value in request.form.items() if key != "csrf_token"}
        try:
            pair = store.record_shown(request.form.get("csrf_token", ""), annotator, answers)
        except RefusedError as error:
            return str(error), 403
        except SubmissionError as error:
            return show(store.next_pair(annotator), f"Not saved: {error}", 400)
        session["previous"] = pair
        return redirect(url_for("page"), code=303)

    @app.get("/video/<name>")
    def video(name: str):
        if name not in videos:
            abort(404)
        return send_from_directory(study_dir / "videos", name, mimetype="video/mp4")

    @app.get("/tally")
    def tally():
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not admin_token or not hmac.compare_digest(given.encode(), admin_token.encode()):
            return "the tally needs the admin token (raven userstudy serve --admin-token-file), " \
                   "or run `raven userstudy analyze`", 403
        return analyze(manifest, store.rows(), bootstrap=200, votes=store.summary())

    return app
