"""The user-study page in headless Debian Chromium against `raven userstudy serve` (waitress): judge
several pairs, reload (resume), then check the answers in SQLite and in the analysis; then the
attacks over plain HTTP: a replayed form, a forged token (a pair never shown), no session, an
oversized body, the tally without the admin token."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from local_services import CHROME_FLAGS, free_port

from raven.evaluation.samples import write_samples
from raven.evaluation.judgements import JudgementStore
from raven.evaluation.userstudy import analyze, prepare
from raven.io import read_json
from raven.world.render import render

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PROMPTS = ["red square right slow on black", "blue triangle still on white", "green circle down slow on grey"]
ADMIN = "admin-token-for-the-browser-test"


@pytest.fixture
def server(tmp_path):
    for method, freeze in (("raven", False), ("causvid", True)):
        videos = np.stack([render(p, i, 16, 16, 9, 8) for i, p in enumerate(PROMPTS)])
        if freeze:
            videos = np.repeat(videos[:, :1], 9, axis=1)
        write_samples(tmp_path / method, videos, PROMPTS, [0, 1, 2], fps=8)
    prepare("raven", {"raven": tmp_path / "raven", "causvid": tmp_path / "causvid"}, tmp_path / "study", 1, 0)
    port = free_port()
    (tmp_path / "admin").write_text(ADMIN + "\n")
    process = subprocess.Popen([str(Path(sys.executable).with_name("raven")), "userstudy", "serve", "--study",
                                str(tmp_path / "study"), "--port", str(port), "--admin-token-file",
                                str(tmp_path / "admin")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                assert time.time() < deadline and process.poll() is None, "raven userstudy serve did not start"
                time.sleep(0.3)
        yield url, tmp_path / "study"
    finally:
        process.terminate()
        process.wait(30)


def wait_for_text(driver, element_id: str, wanted: str) -> str:
    """The element's text once it contains `wanted`; each submit loads a new page, so an element found
    on the old one may go stale while the browser navigates."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def text(driver):
        value = driver.find_element(By.ID, element_id).text
        return value if wanted in value else False

    return WebDriverWait(driver, 30, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(text)


def post(url: str, data: bytes, cookie: str = "") -> int:
    """HTTP status of a form POST sent outside the browser."""
    request = urllib.request.Request(f"{url}/judge", data=data, method="POST", headers={"Cookie": cookie})
    try:
        return urllib.request.urlopen(request, timeout=30).status
    except urllib.error.HTTPError as error:
        return error.code


def post_declaring(url: str, length: int, cookie: str) -> int:
    """HTTP status of a POST whose headers declare a `length`-byte body, read before any body is sent: the
    server refuses on the declared size (sending the megabyte as well races the server's close: a reset)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.putrequest("POST", "/judge")
        for name, value in (("Content-Length", str(length)), ("Cookie", cookie),
                            ("Content-Type", "application/x-www-form-urlencoded")):
            connection.putheader(name, value)
        connection.endheaders()
        return connection.getresponse().status
    finally:
        connection.close()


def test_judge_pairs_reload_attacks_and_tally(server, tmp_path):
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("needs Debian chromium and chromium-driver (make sysdeps)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    url, study = server
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in [*CHROME_FLAGS, f"--user-data-dir={tmp_path / 'chrome'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    manifest = read_json(study / "manifest.json")
    order = JudgementStore(study / "judgements.sqlite", manifest).order("alice")
    prompts = {p["pair"]: p["prompt"] for p in manifest["pairs"]}
    choices = [("A", "A", "A"), ("B", "tie", "B")]
    try:
        driver.get(url)
        driver.find_element(By.ID, "annotator").send_keys("alice")
        driver.find_element(By.ID, "start").click()
        for index, answer in enumerate(choices):
            assert wait_for_text(driver, "progress", f"Comparison {index + 1} of 3").startswith("Comparison")
            assert driver.find_element(By.ID, "prompt").text == prompts[order[index]]  # alice's own order
            for dimension, choice in zip(("quality", "semantic", "overall"), answer):
                driver.find_element(By.ID, f"{dimension}-{choice}").click()
            driver.find_element(By.ID, "submit").click()
        driver.refresh()  # a reload resumes at the first unjudged pair
        assert wait_for_text(driver, "progress", "Comparison 3 of 3").startswith("Comparison 3 of 3")
        assert driver.find_element(By.ID, "prompt").text == prompts[order[2]]
        assert "raven" not in driver.page_source and "causvid" not in driver.page_source
        token = driver.find_element(By.NAME, "csrf_token").get_attribute("value")
        cookie = f"session={driver.get_cookie('session')['value']}"
        for dimension in ("quality", "semantic", "overall"):
            driver.find_element(By.ID, f"{dimension}-tie").click()
        driver.find_element(By.ID, "submit").click()
        assert "all 3 comparisons are done" in wait_for_text(driver, "done", "all 3 comparisons are done")
    finally:
        driver.quit()
    form = f"csrf_token={token}&quality=A&semantic=A&overall=A".encode()
    assert post(url, form, cookie) == 403  # the browser's last form, replayed
    assert post(url, form.replace(token.encode(), b"forged"), cookie) == 403  # no pair was shown with this token
    assert post(url, form) == 403  # no session: a cross-site or scripted post
    assert post_declaring(url, 1 << 20, cookie) == 413  # a 1 MB body
    store = JudgementStore(study / "judgements.sqlite", manifest)
    rows = store.rows(history=True)
    assert len(rows) == 9 and {r["annotator"] for r in rows} == {"alice"}
    expected = {}
    by_id = {p["pair"]: p for p in manifest["pairs"]}
    for pair_id, answer in zip(order, [*choices, ("tie", "tie", "tie")]):
        for dimension, choice in zip(("quality", "semantic", "overall"), answer):
            outcome = "tie" if choice == "tie" else ("win" if by_id[pair_id][choice]["method"] == "raven" else "loss")
            expected.setdefault(dimension, []).append(outcome)
    result = analyze(manifest, rows, bootstrap=100)["results"]["causvid"]
    for dimension, outcomes in expected.items():
        assert result[dimension]["counts"] == {k: outcomes.count(k) for k in ("win", "tie", "loss")}
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}/tally")
    assert refused.value.code == 403
    tally = urllib.request.urlopen(urllib.request.Request(f"{url}/tally", headers={"Authorization": f"Bearer {ADMIN}"}))
    served = json.loads(tally.read())["results"]["causvid"]
    assert {d: served[d]["counts"] for d in expected} == {d: result[d]["counts"] for d in expected}
