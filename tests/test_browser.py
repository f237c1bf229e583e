"""The page of ``vptune serve`` in a real browser: headless Chromium (Debian's chromium + chromium-driver) driven
by Selenium against a server on loopback. Uploading an image shows the same top-1 label as the task's Predictor.

Skipped, saying why, only where Chromium, its driver or Selenium is missing (``.ci/run`` installs them).
Set ``VPTUNE_SCREENSHOT=FILE.png`` to keep a screenshot of the page after the prediction.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install -e '.[dev]'")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402
from test_multitask import build_artifacts, make_images, reference  # noqa: E402
from test_seg_engine import seg_task, segfolder  # noqa: E402, F401  (fixtures: a trained segmentation task)

from vptune.serve.app import create_app  # noqa: E402
from vptune.serve.page import STATIC_FILES, read_static  # noqa: E402
from vptune.tasks.multitask import MultiTaskModel  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
KEY = "browser-key-0123456789"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1200,900",
)


def find_browser() -> tuple[str, str]:
    """(chromium binary, chromedriver) or skip naming what is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip(
            "headless Chromium is not installed (needs Debian's chromium and chromium-driver: "
            "apt-get install -y chromium chromium-driver; .ci/run installs them when it runs as root)"
        )
    return browser, driver


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopbackServer:
    """uvicorn in a thread on 127.0.0.1, stopped on exit."""

    def __init__(self, app) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary, driver_path = find_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    return build_artifacts(tmp_path_factory.mktemp("tasks"), ["deep", "shallow"])


@pytest.fixture(scope="module")
def image_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("upload") / "upload.png"
    make_images(1, seed=7)[0].resize((96, 96)).save(path)
    return path


def wait(driver, seconds: float = 60) -> WebDriverWait:
    return WebDriverWait(driver, seconds)


def test_static_files_ship_with_the_package():
    for name in STATIC_FILES:
        assert read_static(name).strip(), name
    html = read_static("index.html").decode()
    assert "http://" not in html and "https://" not in html  # nothing from a CDN


def test_page_predicts_an_uploaded_image(browser, artifacts, image_file):
    bank = MultiTaskModel.from_dirs({"deep": artifacts["deep"], "shallow": artifacts["shallow"]})
    expected = reference(artifacts["shallow"]).predict([str(image_file)], top_k=3)[0]
    with LoopbackServer(create_app(bank, max_wait_ms=1)) as url:
        browser.get(url + "/")
        rows = wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#tasks tbody tr"))
        assert not browser.find_element(By.ID, "key-box").is_displayed()  # no key on this server
        cells = [[c.text for c in r.find_elements(By.TAG_NAME, "td")] for r in rows]
        assert [(c[0], c[1], c[2], c[3]) for c in cells] == [
            ("deep", "vpt-deep", "3", "2"),
            ("shallow", "vpt-shallow", "4", "5"),
        ]
        Select(browser.find_element(By.ID, "task")).select_by_value("shallow")
        browser.find_element(By.ID, "top-k").clear()
        browser.find_element(By.ID, "top-k").send_keys("3")
        browser.find_element(By.ID, "files").send_keys(str(image_file))
        top = wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#results .bar-row.top .label")))
        labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#results .card .label")]
        assert top.text == expected[0]["label"]
        assert labels == [p["label"] for p in expected]
        score = browser.find_element(By.CSS_SELECTOR, "#results .bar-row.top .score").text
        assert score == f"{100 * expected[0]['score']:.1f}%"
        assert "Predicted 1 image(s)" in browser.find_element(By.ID, "status").text
        if os.environ.get("VPTUNE_SCREENSHOT"):
            browser.save_screenshot(os.environ["VPTUNE_SCREENSHOT"])


def test_page_asks_for_the_api_key_and_sends_it(browser, artifacts, image_file):
    bank = MultiTaskModel.from_dirs({"deep": artifacts["deep"]})
    expected = reference(artifacts["deep"]).predict([str(image_file)], top_k=1)[0]
    with LoopbackServer(create_app(bank, api_key=KEY, max_wait_ms=1)) as url:
        browser.get(url + "/")
        box = browser.find_element(By.ID, "key-box")
        wait(browser).until(lambda d: box.is_displayed())
        assert "API key" in browser.find_element(By.ID, "status").text
        assert not browser.find_elements(By.CSS_SELECTOR, "#tasks tbody tr")
        browser.find_element(By.ID, "api-key").send_keys(KEY)
        browser.find_element(By.ID, "key-save").click()
        wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#tasks tbody tr"))
        browser.find_element(By.ID, "files").send_keys(str(image_file))
        top = wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#results .bar-row.top .label")))
        assert top.text == expected[0]["label"]
        browser.execute_script("sessionStorage.clear()")


def test_page_and_assets_headers(artifacts):
    from fastapi.testclient import TestClient

    bank = MultiTaskModel.from_dirs({"deep": artifacts["deep"]})
    with TestClient(create_app(bank, api_key=KEY, trusted_hosts=("testserver",))) as client:
        page = client.get("/")  # the page holds no data: open without the key; the API behind it is not
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
        assert client.get("/static/style.css").status_code == 200
        assert client.get("/static/../task.json").status_code == 404
        assert client.get("/static/index.html").status_code == 404
        assert client.get("/v1/tasks").status_code == 401


def test_page_draws_a_segmentation_mask(browser, seg_task, segfolder):  # noqa: F811  (fixtures)
    import base64
    import io

    import httpx
    import numpy as np
    from PIL import Image

    image = segfolder / "images" / "test" / "s0.png"
    bank = MultiTaskModel.from_dirs({"shapes": seg_task})
    with LoopbackServer(create_app(bank, max_wait_ms=1)) as url:
        answer = httpx.post(
            url + "/v1/predict", files={"file": ("s0.png", image.read_bytes())}, data={"task": "shapes"}
        )
        mask = np.array(Image.open(io.BytesIO(base64.b64decode(answer.json()["mask_png"]))))  # (H, W) class indices
        classes = answer.json()["classes"]
        ids, counts = np.unique(mask, return_counts=True)
        ranked = sorted(zip(ids.tolist(), counts.tolist()), key=lambda t: (-t[1], t[0]))[:3]
        browser.get(url + "/")
        wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#tasks tbody tr"))
        method = browser.find_element(By.CSS_SELECTOR, "#tasks tbody tr td:nth-child(2)").text
        assert method == "vpt-deep (segmentation)"
        browser.find_element(By.ID, "top-k").clear()
        browser.find_element(By.ID, "top-k").send_keys("3")
        browser.find_element(By.ID, "files").send_keys(str(image))
        canvas = wait(browser).until(
            EC.presence_of_element_located((By.CSS_SELECTOR, "#results .card.seg canvas[data-pixels]"))
        )
        assert int(canvas.get_attribute("data-pixels")) == mask.size
        labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#results .card.seg .label")]
        shares = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#results .card.seg .score")]
        assert labels == [classes[c] for c, _ in ranked]
        assert shares == [f"{100 * n / mask.size:.1f}%" for _, n in ranked]
        if os.environ.get("VPTUNE_SCREENSHOT_SEG"):
            browser.save_screenshot(os.environ["VPTUNE_SCREENSHOT_SEG"])
