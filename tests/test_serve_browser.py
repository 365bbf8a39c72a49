"""The page of ``inpaint serve`` in a real browser: headless Chromium from the system's packages
(Debian's ``chromium`` and ``chromium-driver``) driven by selenium.

The test starts a server on a free loopback port, opens the page, loads a photo, paints a stroke
with pointer events, runs a classical method and a tiny diffusion model, waits for both, downloads
the results and the mask, and checks them: full size, known pixels equal to the input's, the hole
changed. Without a browser it is skipped with the reason — except in CI (``CI`` set), where a
missing browser fails. ``INPAINT_SCREENSHOT=FILE`` keeps the screenshot of the page with its
results (docs/images/serve.png is made that way).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inpaint import io

CHROMIUM = os.environ.get("INPAINT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = os.environ.get("INPAINT_CHROMEDRIVER") or shutil.which("chromedriver")


def _browser_or_skip() -> tuple[str, str]:
    missing = [name for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if not path]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[test]')")
    if missing:
        reason = f"no {' or '.join(missing)} here (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test: {reason}")
        pytest.skip(reason)
    return CHROMIUM, CHROMEDRIVER


@pytest.fixture
def served(tiny_unet7_dir):
    """A server on a free loopback port, in a thread of this process: ``(url, settings)``."""
    import uvicorn

    from inpaint.serve.app import create_app
    from inpaint.serve.settings import ServerSettings

    settings = ServerSettings(methods=["ddpm", "telea", "biharmonic"], weights={"ddpm": str(tiny_unet7_dir)})
    settings.options.device = "cpu"
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture
def browser(tmp_path):
    chromium, chromedriver = _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def _wait(condition, timeout: float = 120.0, what: str = "the page"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _downloaded(folder: Path, name: str) -> Path:
    path = folder / name
    _wait(lambda: path.is_file() and not list(folder.glob("*.crdownload")), 30, f"the download {name}")
    return path


def _brush_run_and_download(browser, url: str, photo: np.ndarray, photo_path: Path, methods: list[str]) -> None:
    """Open the page, load the photo, paint a stroke, run ``methods`` and check the downloads."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    browser.get(url)
    _wait(lambda: browser.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    browser.find_element(By.ID, "image-input").send_keys(str(photo_path))
    canvas = browser.find_element(By.ID, "mask-canvas")
    width = str(photo.shape[1])
    _wait(lambda: canvas.size["width"] > 0 and width in browser.find_element(By.ID, "image-info").text)
    # A stroke across the middle of the image, with the pointer (pointerdown, moves, pointerup).
    shown = canvas.size["width"]
    actions = ActionChains(browser)
    actions.move_to_element_with_offset(canvas, -shown // 4, 0).click_and_hold()
    for _ in range(8):
        actions.move_by_offset(shown // 16, 0)
    actions.release().perform()
    for box in browser.find_elements(By.CSS_SELECTOR, "input[name=model]"):
        if box.is_selected() != (box.get_attribute("value") in methods):
            box.click()
    if "ddpm" in methods:
        steps = browser.find_element(By.ID, "steps")
        steps.clear()
        steps.send_keys("2")
    browser.find_element(By.ID, "run").click()
    for name in methods:
        _wait(
            lambda name=name: browser.find_elements(By.CSS_SELECTOR, f".result[data-model={name}][data-state=done]"),
            what=f"the {name} result",
        )
    stem = photo_path.stem
    browser.find_element(By.ID, "download-mask").click()
    mask = np.asarray(Image.open(_downloaded(browser.downloads, f"{stem}_mask.png")).convert("L"))
    assert mask.shape == photo.shape[:2] and set(np.unique(mask)) == {0, 255}
    holes = mask == 255
    assert 0.005 < holes.mean() < 0.6  # the stroke, not nothing and not everything
    for name in methods:
        card = browser.find_element(By.CSS_SELECTOR, f".result[data-model={name}]")
        card.find_element(By.CSS_SELECTOR, "a.download-result").click()
        result = np.asarray(Image.open(_downloaded(browser.downloads, f"{stem}_{name}.png")).convert("RGB"))
        assert result.shape == photo.shape
        assert np.array_equal(result[~holes], photo[~holes]), name
        assert not np.array_equal(result[holes], photo[holes]), name
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors


def _astronaut(width: int, height: int) -> np.ndarray:
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((width, height), Image.BICUBIC))


def test_brush_run_two_methods_and_download(served, browser, tmp_path):
    from selenium.webdriver.common.by import By

    # A larger photo when the screenshot is kept for the docs, so that it shows something.
    keep = os.environ.get("INPAINT_SCREENSHOT")
    photo = _astronaut(*((384, 320) if keep else (96, 80)))
    photo_path = io.save_image(photo, tmp_path / "astronaut.png")
    _brush_run_and_download(browser, served, photo, photo_path, ["ddpm", "telea"])
    browser.find_element(By.ID, "outline").click()
    screenshot = tmp_path / "serve.png"
    browser.save_screenshot(str(screenshot))
    assert Image.open(screenshot).size[0] >= 1000
    if keep:
        shutil.copy(screenshot, keep)


def test_a_4k_photo(served, browser, tmp_path):
    """The mask has the photo's own 3840x2160 pixels however small the page shows it, and the
    result comes back at that size with the known pixels untouched."""
    photo = _astronaut(3840, 2160)
    photo_path = io.save_image(photo, tmp_path / "astronaut4k.png")
    _brush_run_and_download(browser, served, photo, photo_path, ["telea"])
