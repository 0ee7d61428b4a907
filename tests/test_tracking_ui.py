"""The MLflow UI (`make ui`) shows the table rows: headless Debian Chromium opens it and finds them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from local_services import CHROME_FLAGS, free_port

from raven.config import resolve_spec
from raven.tracking import experiment_name, log_row

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]



@pytest.fixture
def mlflow_ui(tmp_path):
    db = tmp_path / "mlflow.db"
    spec = resolve_spec(REPO / "config", "smoke", overrides={"tracking_uri": f"sqlite:///{db}"})
    for row, total in (("raven", 0.81), ("causvid", 0.74)):
        log_row(spec, "main", row, {"Total": total})
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).with_name("mlflow")), "ui", "--backend-store-uri",
                               f"sqlite:///{db}", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                assert time.time() < deadline and server.poll() is None, "mlflow ui did not start"
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(30)


def test_mlflow_ui_lists_the_table_rows(mlflow_ui, tmp_path):
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("needs Debian chromium and chromium-driver (make sysdeps)")
    from mlflow.tracking import MlflowClient
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    experiment = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_experiment_by_name(experiment_name("smoke"))
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in [*CHROME_FLAGS, f"--user-data-dir={tmp_path / 'chrome'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(f"{mlflow_ui}/#/experiments/{experiment.experiment_id}/runs")
        WebDriverWait(driver, 90).until(lambda d: "main/raven" in d.find_element("tag name", "body").text)
        assert "main/causvid" in driver.find_element("tag name", "body").text
    finally:
        driver.quit()
