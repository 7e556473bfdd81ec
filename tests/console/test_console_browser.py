"""The web console in a real browser (headless Chromium, Selenium): each page renders the seeded data,
the filter form narrows the list, a workitem claimed over DIMSE changes state on an open worklist page
without a reload, a reconciliation's findings and verification show, and an action without the right
is refused. Every test saves a screenshot of its page under its temporary folder. One server and one
browser for the module."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from browser import chromium_or_skip, screenshot, start_browser
from console_seed import seed
from testkit.db import new_database_url
from testkit.http import http_app
from testkit.ups import claim, ups_association
from workflow.access.tokens import Tokens

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    chromium_or_skip()
    with http_app(new_database_url("sqlite", tmp_path_factory.mktemp("console"), None)) as app:
        yield app, seed(app)


@pytest.fixture(scope="module")
def browser(server):
    driver = start_browser()
    try:
        yield driver
    finally:
        driver.quit()


def base(app) -> str:
    return f"http://127.0.0.1:{app.http.port}"


def shown_uids(driver) -> set[str]:
    return {tr.get_attribute("data-uid") for tr in driver.find_elements(By.CSS_SELECTOR, "#worklist tbody tr[data-uid]")}


def wait(driver, condition, timeout: float = 15.0):
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)


def test_worklist_page(server, browser, tmp_path):
    app, seeded = server
    browser.get(base(app) + "/")
    assert browser.current_url == base(app) + "/ui/worklist"
    assert shown_uids(browser) == set(seeded.workitems.values())
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-uid="{seeded.workitems["ct_head"]}"]')
    assert "Smith, Anna" in row.text and "HIGH" in row.text and "CT-NIGHT" in row.text
    assert browser.find_element(By.CSS_SELECTOR, "svg.chart").is_displayed()
    assert browser.find_element(By.ID, "chart-numbers").is_displayed()
    screenshot(browser, tmp_path, "worklist", docs=True)


def test_the_filter_form_narrows_the_list(server, browser, tmp_path):
    app, seeded = server
    browser.get(base(app) + "/ui/worklist")
    Select(browser.find_element(By.ID, "f-priority")).select_by_visible_text("HIGH")
    label = browser.find_element(By.ID, "f-label")
    label.send_keys("CT*", Keys.ENTER)  # the keyboard submits the form
    wait(browser, lambda d: "worklist_label=CT" in d.current_url)
    assert "priority=HIGH" in browser.current_url
    assert shown_uids(browser) == {seeded.workitems["ct_head"]}
    assert browser.find_element(By.ID, "f-label").get_attribute("value") == "CT*"  # the view keeps its filters
    screenshot(browser, tmp_path, "worklist-filtered")
    browser.find_element(By.LINK_TEXT, "Clear filters").click()
    wait(browser, lambda d: len(shown_uids(d)) == len(seeded.workitems))


def test_a_claim_over_dimse_shows_on_the_open_page(server, browser, tmp_path):
    app, seeded = server
    uid = seeded.workitems["ct_chest"]
    browser.get(base(app) + "/ui/worklist")
    wait(browser, lambda d: d.find_element(By.ID, "live-status").get_attribute("data-connected") == "1")
    browser.execute_script("window.notReloaded = true")
    cell = f'tr[data-uid="{uid}"] td.state'
    assert browser.find_element(By.CSS_SELECTOR, cell).text == "SCHEDULED"
    with ups_association(app.dicom.port, calling_ae="PERFORMER") as assoc:
        assert claim(assoc, uid)[0].Status == 0
    wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, cell).text == "IN PROGRESS")
    assert browser.execute_script("return window.notReloaded") is True
    screenshot(browser, tmp_path, "worklist-live")


def test_workitem_page(server, browser, tmp_path):
    app, seeded = server
    uid = seeded.workitems["ct_head"]
    browser.get(base(app) + "/ui/worklist")
    browser.find_element(By.LINK_TEXT, uid).click()
    wait(browser, lambda d: d.current_url.endswith(f"/ui/workitems/{uid}"))
    text = browser.find_element(By.TAG_NAME, "main").text
    assert uid in text and "VAULT: NEARLINE" in text and "Retrieve AE: PACS" in text
    assert browser.find_element(By.ID, "explain").is_displayed()
    assert "PatientName" in text and "Smith^Anna" in text
    screenshot(browser, tmp_path, "workitem")


def test_study_page(server, browser, tmp_path):
    app, seeded = server
    browser.get(base(app) + "/ui/studies")
    browser.find_element(By.ID, "q").send_keys("ACC100", Keys.ENTER)
    wait(browser, lambda d: "q=ACC100" in d.current_url)
    browser.find_element(By.LINK_TEXT, seeded.study_uid).click()
    wait(browser, lambda d: d.current_url.endswith(f"/ui/studies/{seeded.study_uid}"))
    counts = browser.find_element(By.ID, "availability-counts").text
    assert "PACS 5 0 0 0 0" in counts and "VAULT 0 2 0 0 3" in counts
    assert len(browser.find_elements(By.CSS_SELECTOR, "figure.grid svg rect")) == 10
    assert "MODALITY" in browser.find_element(By.ID, "notifications").text
    screenshot(browser, tmp_path, "study")


def test_reconciliation_pages(server, browser, tmp_path):
    app, seeded = server
    browser.get(base(app) + "/ui/reconciliations")
    assert "MISSING_IN_ARCHIVE: 3" in browser.find_element(By.ID, "runs").text
    screenshot(browser, tmp_path, "reconciliations")
    browser.find_element(By.LINK_TEXT, seeded.run_uid).click()
    wait(browser, lambda d: d.current_url.endswith(f"/ui/reconciliations/{seeded.run_uid}"))
    assert browser.find_element(By.ID, "verify").text.startswith("Verified: the stored findings match")
    findings = browser.find_element(By.ID, "findings").text
    assert f"Study {seeded.study_uid}: 3 finding(s)" in findings and seeded.other_study in findings
    counts = browser.find_element(By.ID, "reason-counts").text
    assert "MISSING_IN_ARCHIVE 3" in counts and "UNEXPECTED_IN_ARCHIVE 1" in counts
    screenshot(browser, tmp_path, "reconciliation", docs=True)
    Select(browser.find_element(By.ID, "f-reason")).select_by_visible_text("UNEXPECTED_IN_ARCHIVE")
    browser.find_element(By.CSS_SELECTOR, "#f-reason").submit()
    wait(browser, lambda d: "reason=UNEXPECTED_IN_ARCHIVE" in d.current_url)
    findings = browser.find_element(By.ID, "findings").text
    assert seeded.other_study in findings and seeded.study_uid not in findings


def test_events_and_status_pages(server, browser, tmp_path):
    app, _ = server
    browser.get(base(app) + "/ui/events")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Event reports owed"
    screenshot(browser, tmp_path, "events")
    browser.get(base(app) + "/ui/status")
    status = browser.find_element(By.ID, "status").text
    assert f"WFM at 127.0.0.1:{app.dicom.port}" in status and "Backlog: outbox" in status
    screenshot(browser, tmp_path, "status")


def test_an_action_without_the_right_is_refused(server, browser, tmp_path):
    app, seeded = server
    uid = seeded.workitems["xr_wrist"]
    tokens = Tokens(app.engine)
    admin, reader = tokens.create("ui-admin", "admin"), tokens.create("ui-reader", "query")
    app.tokens._open_checked = None
    try:
        # Tokens exist now: the page asks for one, and keeps it for the session.
        browser.get(base(app) + f"/ui/workitems/{uid}")
        wait(browser, lambda d: "/ui/login" in d.current_url)
        browser.find_element(By.ID, "token").send_keys(admin, Keys.ENTER)
        wait(browser, lambda d: d.current_url.endswith(f"/ui/workitems/{uid}"))
        assert browser.find_element(By.ID, "principal").text == "ui-admin"
        session = browser.get_cookie("wfm_token")
        assert session["httpOnly"] is True and session["sameSite"] == "Strict"
        Select(browser.find_element(By.ID, "a-priority")).select_by_visible_text("LOW")
        browser.find_element(By.XPATH, "//button[text()='Change priority']").click()
        wait(browser, lambda d: d.find_element(By.ID, "notice").text == "priority now LOW")
        assert browser.find_element(By.ID, "wi-priority").text == "LOW"
        # The page is open with the admin's forms; the session is now a read-only token's.
        browser.delete_cookie("wfm_token")
        browser.add_cookie({"name": "wfm_token", "value": reader, "path": "/", "httpOnly": True,
                            "sameSite": "Strict", "secure": True})
        Select(browser.find_element(By.ID, "a-priority")).select_by_visible_text("HIGH")
        browser.find_element(By.XPATH, "//button[text()='Change priority']").click()
        wait(browser, lambda d: d.find_elements(By.ID, "refusal"))
        assert "lacks the right 'admin'" in browser.find_element(By.ID, "refusal").text
        screenshot(browser, tmp_path, "refused")
        assert app.worklist.get(uid, None).dataset["00741200"]["Value"] == ["LOW"]
        browser.get(base(app) + f"/ui/workitems/{uid}")
        assert not browser.find_elements(By.ID, "a-priority")  # read-only: no form at all
        assert "Read-only" in browser.find_element(By.TAG_NAME, "main").text
    finally:
        tokens.revoke("ui-admin")
        tokens.revoke("ui-reader")
        app.tokens._open_checked = None
        browser.delete_all_cookies()
