"""The web console in a real browser (headless Chromium through Selenium) against the local stack: a key typed
once, a dataset uploaded through the console's presigned uploads, a detector trained and followed to ready, a
prediction with its boxes drawn; a screenshot of each page, checked not to be blank.

Without Debian's chromium and chromium-driver (scripts/install_browser.sh installs them under ``make test``),
or without selenium, every test here is skipped, saying which is missing.
"""
from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from sightline_local import synthetic
from support import REPO, StackClient, running_stack

pytestmark = pytest.mark.e2e

API_KEY = "e2e-console-key-0123456789"
ARTIFACTS = REPO / "test-artifacts" / "console"
CHROMIUM = ("/usr/bin/chromium", "chromium")
CHROMEDRIVER = ("/usr/bin/chromedriver", "chromedriver")
WAIT = 30
TRAINING_WAIT = 240


def _executable(candidates: tuple[str, ...]) -> str | None:
    return next((found for name in candidates if (found := shutil.which(name))), None)


def browser_or_skip() -> tuple[str, str]:
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed (make install: it is pinned in requirements.txt)")
    chromium, driver = _executable(CHROMIUM), _executable(CHROMEDRIVER)
    missing = [name for name, path in (("chromium", chromium), ("chromium-driver", driver)) if not path]
    if missing:
        pytest.skip(f"no browser for the console tests: Debian's {' and '.join(missing)} not installed; "
                    "scripts/install_browser.sh installs them (as root, with apt-get) under make test")
    return chromium, driver


@pytest.fixture(scope="module")
def browser():
    chromium, chromedriver = browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,800", "--force-device-scale-factor=1", "--disable-extensions"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(chromedriver))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def stack(browser, tmp_path_factory):  # the browser first: without one nothing starts
    with running_stack(tmp_path_factory.mktemp("state"), API_KEY) as local:
        yield local


@pytest.fixture(scope="module")
def api(stack):
    return StackClient(stack.config.api_url, stack.api_key)


@pytest.fixture(scope="module")
def state() -> dict:
    return {}


def wait(browser, condition, timeout: float = WAIT, message: str = ""):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.25).until(condition, message)


def css(browser, selector: str):
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, selector)


def text_of(browser, selector: str) -> str:
    """The text shown in every match, read in one go (the pages re-render as they poll)."""
    return browser.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText).join(' ')", selector)


def screenshot(browser, name: str) -> Path:
    """Saved under test-artifacts/console/; a blank or one-colour page fails."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    assert browser.save_screenshot(str(path)), path
    with Image.open(path) as image:
        grey = image.convert("L")
        spread = ImageStat.Stat(grey).stddev[0]
        colours = len(image.convert("RGB").getcolors(maxcolors=1 << 20) or [])
    assert spread > 8 and colours > 16, f"{path} looks blank (stddev {spread:.1f}, {colours} colours)"
    return path


def problems_in_the_log(browser) -> list[str]:
    """What the page reported: CSP violations, script errors, failed loads. Not the 404s of a dataset the page
    waits for while its upload registers (the browser logs every refused request)."""
    waiting = re.compile(r"/v1/datasets/[^/ ]+ - Failed to load resource: .* 404")
    return [entry["message"] for entry in browser.get_log("browser")
            if entry["level"] == "SEVERE" and not waiting.search(entry["message"])]


def test_the_key_is_asked_once_and_kept_for_the_tab_only(browser, stack):
    from selenium.webdriver.common.keys import Keys

    browser.get(f"{stack.config.api_url}/console/")
    wait(browser, lambda b: css(b, "#api-key"), message="the key form did not appear")
    assert "#/key" in browser.current_url
    screenshot(browser, "01-key")
    # Keyboard first: each page moves focus to its content, from where Tab reaches the form's field and button.
    assert browser.switch_to.active_element.get_attribute("id") == "main"
    browser.switch_to.active_element.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("id") == "api-key"

    key = css(browser, "#api-key")[0]
    key.send_keys("not-the-key-0123456789")
    key.send_keys(Keys.ENTER)
    wait(browser, lambda b: css(b, ".error"), message="a wrong key showed no error")
    assert "403" in text_of(browser, ".error")
    browser.get_log("browser")  # that refusal was the point: the log checks below look at what follows
    key.clear()
    key.send_keys(API_KEY + Keys.ENTER)
    wait(browser, lambda b: "#/datasets" in b.current_url and css(b, "#upload-name"))
    assert browser.execute_script("return sessionStorage.getItem('sightline.apiKey')") == API_KEY
    assert browser.execute_script("return Object.keys(localStorage).filter(k => localStorage.getItem(k).includes(arguments[0]))", API_KEY) == []
    assert not problems_in_the_log(browser)


def test_a_dataset_uploaded_in_the_console_registers_with_its_classes_and_boxes(browser, stack, tmp_path_factory):
    folder = tmp_path_factory.mktemp("upload")
    archive = folder / "shapes-coco.zip"
    archive.write_bytes(synthetic.coco_zip(16, size=64, seed=7))
    css(browser, "#upload-name")[0].send_keys("shapes")
    css(browser, "#upload-files")[0].send_keys(str(archive))
    css(browser, "#upload-files")[0].find_element("xpath", "ancestor::form//button[@type='submit']").click()
    wait(browser, lambda b: "#/datasets/shapes" in b.current_url, message="the upload did not finish")
    wait(browser, lambda b: "ready" in text_of(b, ".facts .badge") and css(b, ".class-name"), timeout=120,
         message="the dataset did not become ready in the console")
    classes = {element.text for element in css(browser, ".class-name")}
    assert classes == {"circle", "square"}
    assert "coco" in text_of(browser, ".facts")
    # The image grid: thumbnails from presigned URLs (allowed by the CSP), boxes drawn over them.
    wait(browser, lambda b: css(b, ".grid .tile img") and css(b, ".grid .tile .overlay .box rect"),
         message="no thumbnails with boxes")
    wait(browser, lambda b: b.execute_script(
        "return [...document.querySelectorAll('.grid .tile img')].every(i => i.complete && i.naturalWidth > 0)"),
        message="thumbnails did not load")
    screenshot(browser, "02-dataset")
    browser.execute_script("document.querySelector('.grid').scrollIntoView()")
    screenshot(browser, "02-dataset-images")
    browser.get(f"{stack.config.api_url}/console/#/datasets")
    wait(browser, lambda b: "shapes" in text_of(b, "table"))
    assert "ready" in text_of(browser, "table") and "coco" in text_of(browser, "table")
    screenshot(browser, "03-datasets")
    assert not problems_in_the_log(browser)


def test_a_training_started_in_the_console_is_followed_until_ready(browser, stack, api, state):
    from selenium.webdriver.support.ui import Select

    browser.get(f"{stack.config.api_url}/console/#/models")
    wait(browser, lambda b: css(b, "#train-name"))
    css(browser, "#train-name")[0].send_keys("console detector")
    Select(css(browser, "#train-task")[0]).select_by_value("detection")
    css(browser, "#train-datasets")[0].send_keys("shapes")
    Select(css(browser, "#train-template")[0]).select_by_value("ssdlite320_mobilenet_v3_large")
    css(browser, "#train-epochs")[0].send_keys("1")
    css(browser, "#train-epochs")[0].submit()
    wait(browser, lambda b: "/versions/1" in b.current_url, message="training did not start")
    state["model_id"] = browser.current_url.split("#/models/")[1].split("/")[0]
    wait(browser, lambda b: css(b, ".facts .badge"), message="the version page did not render")
    if "training" in text_of(browser, ".facts .badge"):
        screenshot(browser, "04-training")  # the page follows the version by itself from here
    wait(browser, lambda b: "ready" in text_of(b, ".facts .badge"), timeout=TRAINING_WAIT,
         message="the version did not become ready in the console")
    wait(browser, lambda b: css(b, "a[download='model.onnx']"), message="no download link for model.onnx")
    version = api.get_version(state["model_id"], 1)
    assert version["status"] == "ready"
    # The loss curve of the per-epoch history, drawn as SVG; the per-class table from metrics.json.
    assert css(browser, "svg.chart path.series")
    assert {"circle", "square"} <= set(text_of(browser, "table").split())
    screenshot(browser, "05-version")
    browser.execute_script("document.querySelector('.charts').scrollIntoView()")
    screenshot(browser, "05-version-curves")
    browser.get(f"{stack.config.api_url}/console/#/models/{state['model_id']}")
    wait(browser, lambda b: "serving" in text_of(b, ".badge"))
    screenshot(browser, "06-model")
    assert not problems_in_the_log(browser)


def test_try_it_draws_the_boxes_of_a_prediction_and_the_threshold_filters_them(browser, stack, state, tmp_path_factory):
    from selenium.webdriver.common.keys import Keys

    image, _ = synthetic.shapes_image(random.Random(5), 160, 120, count=2)
    path = tmp_path_factory.mktemp("try") / "two-shapes.png"
    path.write_bytes(synthetic.encode(image, "PNG"))
    browser.get(f"{stack.config.api_url}/console/#/try?model={state['model_id']}")
    wait(browser, lambda b: css(b, "#try-file"))
    css(browser, "#try-file")[0].send_keys(str(path))
    wait(browser, lambda b: css(b, ".preview img"))
    slider = css(browser, "#threshold")[0]
    slider.send_keys(Keys.HOME)  # the keyboard moves the slider: threshold 0, every score returned
    assert css(browser, "#threshold-value")[0].text == "0.00"
    [button] = [b for b in css(browser, "button[type=submit]") if b.text == "Predict"]
    button.click()
    wait(browser, lambda b: css(b, ".result .overlay .box rect"), timeout=60, message="no boxes drawn")
    boxes = len(css(browser, ".result .overlay .box"))
    assert boxes >= 1 and css(browser, ".result .boxed img")[0].get_attribute("src").startswith("blob:")
    labels = {element.get_attribute("data-label") for element in css(browser, ".result .overlay .box")}
    assert labels <= {"circle", "square"}
    browser.execute_script("document.querySelector('.results').scrollIntoView()")
    screenshot(browser, "07-try-all-scores")
    # Moving the slider up filters on the page, without asking the API again: fewer boxes, then none.
    counts = []
    for _ in range(100):
        slider.send_keys(Keys.ARROW_RIGHT)
        counts.append(len(css(browser, ".result .overlay .box")))
        if 0 < counts[-1] <= 5 and counts.count(counts[-1]) == 1:
            screenshot(browser, "07-try-threshold")
    assert css(browser, "#threshold-value")[0].text == "1.00"
    assert counts == sorted(counts, reverse=True) and counts[-1] < boxes
    assert not problems_in_the_log(browser)


def test_compare_a_phone_width_and_the_dark_theme(browser, stack):
    browser.get(f"{stack.config.api_url}/console/#/compare")
    wait(browser, lambda b: css(b, "#compare-ids"))
    screenshot(browser, "08-compare")
    light = browser.execute_script("return getComputedStyle(document.body).backgroundColor")
    toggle = css(browser, "#theme-toggle")[0]
    while "dark" not in toggle.text:
        toggle.click()
    dark = browser.execute_script("return getComputedStyle(document.body).backgroundColor")
    assert dark != light
    browser.get(f"{stack.config.api_url}/console/#/datasets")
    wait(browser, lambda b: "shapes" in text_of(b, "table"))
    screenshot(browser, "09-datasets-dark")
    browser.set_window_size(390, 844)
    try:
        browser.get(f"{stack.config.api_url}/console/#/models")
        wait(browser, lambda b: "console detector" in text_of(b, "table"))
        # Nothing wider than the phone's screen but the tables, which scroll inside their own box.
        overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1
        screenshot(browser, "10-models-phone")
    finally:
        browser.set_window_size(1280, 800)
    assert not problems_in_the_log(browser)
