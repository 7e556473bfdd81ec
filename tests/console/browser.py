"""A real Chromium, headless, driven by Selenium through Debian's chromedriver. Skipped with the reason
when either is missing, unless WFM_REQUIRE_CHROMIUM=1 (CI), which makes a missing browser a failure."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REQUIRE_CHROMIUM = os.environ.get("WFM_REQUIRE_CHROMIUM") == "1"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# WFM_UPDATE_SCREENSHOTS=1: the README's screenshots are written from this run's seeded pages.
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
UPDATE_DOCS = os.environ.get("WFM_UPDATE_SCREENSHOTS") == "1"


def chromium_or_skip() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if not missing:
        return
    reason = f"browser tests need {', '.join(missing)} (apt-get install chromium chromium-driver)"
    if REQUIRE_CHROMIUM:
        pytest.fail(f"{reason}; WFM_REQUIRE_CHROMIUM=1 makes the browser tests mandatory")
    pytest.skip(reason)


def start_browser():
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager never downloads a driver: Debian's is used
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--disable-gpu", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver


def screenshot(driver, tmp_path: Path, name: str, *, docs: bool = False) -> Path:
    """Save the page as PNG under the test's folder (a reviewer looks at it); with WFM_UPDATE_SCREENSHOTS=1
    the README's copy too."""
    height = driver.execute_script("return Math.min(document.documentElement.scrollHeight, 2400)")
    driver.set_window_size(1400, max(800, height))
    path = tmp_path / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"no screenshot of {name}"
    if docs and UPDATE_DOCS:
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SCREENSHOTS / f"{name}.png")
    driver.set_window_size(1400, 1000)
    return path
