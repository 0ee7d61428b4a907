"""The study server's rules through Flask's test client (the real app, in process): each annotator's
own order, votes only through the form the server issued (CSRF token, shown pairs only, no replays),
history on a second vote, a body size limit, and the tally only with the admin token."""

from __future__ import annotations

import re

import numpy as np
import pytest

from raven.evaluation.judgements import JudgementStore
from raven.evaluation.samples import write_samples
from raven.evaluation.userstudy import prepare
from raven.evaluation.webapp import MAX_BODY, create_app
from raven.world.render import render

PROMPTS = ["red square right slow on black", "blue triangle still on white", "green circle down slow on grey",
           "yellow square left slow on black"]
DIMS = ("quality", "semantic", "overall")
ADMIN = "an-admin-token-of-some-length"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("web")
    for method, freeze in (("raven", False), ("causvid", True)):
        videos = np.stack([render(p, i, 16, 16, 9, 8) for i, p in enumerate(PROMPTS)])
        if freeze:
            videos = np.repeat(videos[:, :1], 9, axis=1)
        write_samples(root / method, videos, PROMPTS, [0, 1, 2, 3], fps=8)
    manifest = prepare("raven", {"raven": root / "raven", "causvid": root / "causvid"}, root / "study", 1, 0)
    return root / "study", manifest


@pytest.fixture
def app(study, tmp_path):
    folder, manifest = study
    return create_app(manifest, folder, tmp_path / "votes.sqlite", admin_token=ADMIN), manifest, tmp_path


def login(app, annotator):
    client = app.test_client()
    assert client.get(f"/start?annotator={annotator}").status_code == 303
    return client


def shown(client, path="/"):
    """(prompt, csrf token) of the pair on the page."""
    page = client.get(path).get_data(as_text=True)
    return (re.search(r'id="prompt">([^<]*)<', page).group(1),
            re.search(r'name="csrf_token" value="([^"]+)"', page).group(1))


def test_each_annotator_has_an_own_order_and_resumes(app):
    flask_app, manifest, folder = app
    prompts = {p["pair"]: p["prompt"] for p in manifest["pairs"]}
    for annotator in ("alice", "bob"):
        client = login(flask_app, annotator)
        seen = []
        for _ in manifest["pairs"]:
            prompt, token = shown(client)
            assert shown(client)[1] == token  # a reload shows the same form
            seen.append(prompt)
            assert client.post("/judge", data={"csrf_token": token, **dict.fromkeys(DIMS, "tie")}).status_code == 303
        assert "all 4 comparisons are done" in client.get("/").get_data(as_text=True)
        order = JudgementStore(folder / "votes.sqlite", manifest).order(annotator)
        assert seen == [prompts[p] for p in order]
    store = JudgementStore(folder / "votes.sqlite", manifest)
    assert store.order("alice") != store.order("bob")


def test_refuses_forged_replayed_unshown_and_oversized_votes(app):
    flask_app, manifest, folder = app
    alice, bob = login(flask_app, "alice"), login(flask_app, "bob")
    answers = dict.fromkeys(DIMS, "A")
    _, token = shown(alice)
    assert flask_app.test_client().post("/judge", data={"csrf_token": token, **answers}).status_code == 403  # no session
    assert alice.post("/judge", data=answers).status_code == 403  # no CSRF token
    assert bob.post("/judge", data={"csrf_token": token, **answers}).status_code == 403  # shown to alice only
    assert alice.post("/judge", data={"csrf_token": token, "quality": "A"}).status_code == 400  # malformed
    assert alice.post("/judge", data={"csrf_token": token, **answers}).status_code == 303
    assert alice.post("/judge", data={"csrf_token": token, **answers}).status_code == 403  # replayed
    unshown = next(p for p in JudgementStore(folder / "votes.sqlite", manifest).order("alice")[1:])
    assert alice.get(f"/?pair={unshown}").status_code == 404  # a pair never shown cannot be opened
    _, token = shown(alice)
    oversized = alice.post("/judge", data={"csrf_token": token, **answers, "pad": "x" * (MAX_BODY + 1)})
    assert oversized.status_code == 413
    rows = JudgementStore(folder / "votes.sqlite", manifest).rows(history=True)
    assert len(rows) == 3 and {r["annotator"] for r in rows} == {"alice"}


def test_second_vote_is_history_and_the_tally_needs_the_admin_token(app):
    flask_app, manifest, folder = app
    alice = login(flask_app, "alice")
    first = JudgementStore(folder / "votes.sqlite", manifest).order("alice")[0]
    _, token = shown(alice)
    alice.post("/judge", data={"csrf_token": token, **dict.fromkeys(DIMS, "A")})
    page = alice.get("/").get_data(as_text=True)
    assert f'href="/?pair={first}"' in page  # "change my answer to the previous comparison"
    _, again = shown(alice, f"/?pair={first}")
    assert alice.post("/judge", data={"csrf_token": again, **dict.fromkeys(DIMS, "B")}).status_code == 303
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer "}):
        refused = flask_app.test_client().get("/tally", headers=headers)
        assert refused.status_code == 403 and "causvid" not in refused.get_data(as_text=True)
    tally = flask_app.test_client().get("/tally", headers={"Authorization": f"Bearer {ADMIN}"}).get_json()
    pair = next(p for p in manifest["pairs"] if p["pair"] == first)
    latest = "win" if pair["B"]["method"] == "raven" else "loss"
    assert tally["judgements"] == 3 and tally["votes"]["superseded"] == 3 and tally["votes"]["revised_pairs"] == 1
    assert tally["results"]["causvid"]["overall"]["counts"] == {"win": 0, "tie": 0, "loss": 0, latest: 1}
    no_admin = create_app(manifest, folder, folder / "votes.sqlite")
    assert no_admin.test_client().get("/tally", headers={"Authorization": "Bearer "}).status_code == 403
