"""explorer.html and a report embedding it, in headless Chromium (selenium): no console errors,
every image decoded, a click on a patch redraws the map; screenshots into the test's tmp dir."""

import shutil
from pathlib import Path

import pytest

from vitscope.reporting.html import build_report

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1100,900")

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
    pytest.skip("chromium / chromedriver not installed (apt-get install chromium chromium-driver)",
                allow_module_level=True)


@pytest.fixture
def browser(tmp_path):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def severe(driver):
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def images_decoded(driver):
    """(count, [(alt, naturalWidth)] of the images not decoded) once every image finished loading."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(lambda d: d.execute_script(
        "return [...document.images].every(i => i.complete)"))
    state = driver.execute_script("return [...document.images].map(i => [i.alt, i.naturalWidth])")
    return len(state), [s for s in state if not s[1] > 0]


def click_patch(driver, row, col):
    """Click the centre of patch (row, col) of the explorer's canvas; return the canvas pixels after."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = driver.find_element(By.ID, "heat")
    gh, gw = driver.execute_script("return D.grid")
    w, h = canvas.size["width"], canvas.size["height"]
    # selenium 4 offsets are from the element's centre
    ActionChains(driver).move_to_element_with_offset(
        canvas, int((col + 0.5) * w / gw - w / 2), int((row + 0.5) * h / gh - h / 2)).click().perform()
    return driver.execute_script("return document.getElementById('heat').toDataURL()")


def check_explorer(driver):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    before = driver.execute_script("return document.getElementById('heat').toDataURL()")
    assert driver.find_element(By.ID, "query").text == "4,4"  # the centre of the 8×8 grid first
    after = click_patch(driver, 0, 7)
    assert driver.find_element(By.ID, "query").text == "0,7" and after != before
    nmi = driver.find_element(By.ID, "nmi").text
    assert 0 <= float(nmi) <= 1 and float(driver.find_element(By.ID, "dist").text) > 0
    Select(driver.find_element(By.ID, "head")).select_by_index(0)
    assert driver.execute_script("return document.getElementById('heat').toDataURL()") != after


def test_explorer_in_chromium(browser, inspected, tmp_path):
    out, _, _ = inspected
    browser.get((out / "explorer.html").as_uri())
    n, broken = images_decoded(browser)
    assert n >= 1 and not broken
    check_explorer(browser)
    assert browser.save_screenshot(str(tmp_path / "explorer.png"))
    assert not severe(browser)


def test_report_with_explorer_in_chromium(browser, inspected, tmp_path):
    out, _, _ = inspected
    page = build_report([out], tmp_path / "report.html", title="inspect report")
    browser.get(page.as_uri())
    n, broken = images_decoded(browser)
    assert n == len(list(out.glob("*.png"))) and not broken  # every figure, decoded
    from selenium.webdriver.common.by import By

    browser.switch_to.frame(browser.find_element(By.TAG_NAME, "iframe"))
    _, broken = images_decoded(browser)
    assert not broken
    check_explorer(browser)
    browser.switch_to.default_content()
    assert browser.save_screenshot(str(tmp_path / "report.png"))
    assert not severe(browser)


def test_explorer_menu_shows_image_names_as_text(browser, photo_folder, tmp_path):
    # regression: the image menu was filled through innerHTML, so a file name with markup became markup
    import shutil as sh

    from selenium.webdriver.common.by import By

    from vitscope.api import inspect
    from inspect_helpers import MODEL

    name = "<i id=injected>cat.png"
    sh.copy(sorted(photo_folder.rglob("*.png"))[0], tmp_path / name)
    out = tmp_path / "out"
    inspect(MODEL, [tmp_path / name], out=out, maps=1, device="cpu")
    browser.get((out / "explorer.html").as_uri())
    options = browser.find_elements(By.CSS_SELECTOR, "#image option")
    assert [o.text for o in options] == [name]
    assert not browser.find_elements(By.ID, "injected")
