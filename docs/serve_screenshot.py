"""Take the README's screenshot of the ``vptune serve`` page (headless Chromium via Selenium).

    python docs/serve_screenshot.py TASK_DIR OUT.png   # TASK_DIR: e.g. the demo's digits vpt-deep task

Serves TASK_DIR as task ``digits`` on a free loopback port, uploads four test images of offline:digits
(seed 0) and saves the page.
"""

from __future__ import annotations

import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from vptune.data import load_data
from vptune.serve.app import create_app
from vptune.tasks.multitask import MultiTaskModel


def main(task_dir: str, out: str) -> None:
    tmp = Path(tempfile.mkdtemp())
    test = load_data("offline:digits", seed=0).split("test")
    samples = [test[i] for i in range(4)]
    files = []
    for i, (array, label) in enumerate(samples):
        path = tmp / f"digit{i}_label{label}.png"
        Image.fromarray(array).save(path)
        files.append(str(path))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bank = MultiTaskModel.from_dirs({"digits": task_dir})
    server = uvicorn.Server(uvicorn.Config(create_app(bank), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1180,820", f"--user-data-dir={tmp / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#tasks tbody tr"))
        driver.find_element(By.ID, "files").send_keys("\n".join(files))
        WebDriverWait(driver, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .card")) == 4)
        driver.save_screenshot(out)
    finally:
        driver.quit()
        server.should_exit = True
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
