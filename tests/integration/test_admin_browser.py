"""The operator's pages in a real browser: the admin on a finished execution, then the API docs.

Drives Debian's headless Chromium through its own chromedriver (bin/test installs both), so
Selenium Manager never downloads anything. Screenshots land in test-artifacts/screenshots/.
"""

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.wait import WebDriverWait

from devtools.devstack import ARTIFACTS, PYTHON, ROOT, Stack
from workflows.models import EventKind

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1600",
)
PAGE_DEADLINE_S = 30.0
SCREENSHOTS = ARTIFACTS / "screenshots"
ADMIN_USERNAME = "operator"
ADMIN_PASSWORD = "browser-test-only-password"
DIAMOND = {
    "name": "Diamond in the browser",
    "dag": {
        "nodes": [
            {"id": "A", "handler": "input", "dependencies": [], "config": {"topic": "cats"}},
            {
                "id": "B",
                "handler": "call_external_service",
                "dependencies": ["A"],
                "config": {"url": "http://b"},
            },
            {"id": "C", "handler": "llm", "dependencies": ["A"], "config": {"prompt": "About {{ A.topic }}"}},
            {"id": "D", "handler": "output", "dependencies": ["B", "C"], "config": {}},
        ]
    },
}
NODE_IDS = ["A", "B", "C", "D"]


@pytest.fixture(scope="module")
def superuser(stack: Stack) -> None:
    """The first admin user, created the way the README tells an operator to."""
    subprocess.run(
        [PYTHON, "manage.py", "createsuperuser", "--noinput", "--username", ADMIN_USERNAME, "--email", ""],
        cwd=ROOT,
        env={**stack.env, "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD},
        check=True,
        capture_output=True,
        text=True,
    )


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    options = Options()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: WebDriver, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str, shot: str) -> Any:
    """Wait for a condition; on time-out keep a screenshot of what the page showed instead."""
    try:
        return WebDriverWait(driver, PAGE_DEADLINE_S).until(condition)
    except TimeoutException:
        screenshot(driver, f"{shot}-timed-out")
        raise AssertionError(
            f"timed out after {PAGE_DEADLINE_S}s waiting for {what} on {driver.current_url}"
        ) from None


def texts(elements: list[WebElement]) -> list[str]:
    return [element.text.strip() for element in elements]


def log_in(driver: WebDriver, stack: Stack) -> None:
    driver.get(stack.url("/admin/login/?next=/admin/"))
    wait_for(driver, EC.presence_of_element_located((By.ID, "id_username")), "the login form", "login")
    driver.find_element(By.ID, "id_username").send_keys(ADMIN_USERNAME)
    driver.find_element(By.ID, "id_password").send_keys(ADMIN_PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "#login-form [type=submit]").click()
    wait_for(driver, EC.presence_of_element_located((By.ID, "logout-form")), "the admin index", "login")


def assert_admin_styled(driver: WebDriver) -> None:
    """The admin's CSS loaded (whitenoise serves it): its header has the admin's background."""
    header = driver.find_element(By.ID, "header")
    assert header.value_of_css_property("background-color") not in {"rgba(0, 0, 0, 0)", "transparent"}


@pytest.mark.usefixtures("superuser")
def test_admin_shows_a_finished_execution_with_its_dag_then_the_api_docs(
    stack: Stack, browser: WebDriver
) -> None:
    execution_id = stack.submit(DIAMOND, trigger=True)
    assert stack.wait_finished(execution_id)["status"] == "COMPLETED"
    log_in(browser, stack)

    browser.get(stack.url("/admin/workflows/execution/"))
    row = f"//tr[.//a[contains(@href, '{execution_id}')]]"
    wait_for(browser, EC.presence_of_element_located((By.XPATH, row)), "the execution's row", "admin-list")
    screenshot(browser, "admin-executions")
    assert_admin_styled(browser)
    assert texts(browser.find_elements(By.XPATH, f"{row}/td[contains(@class, 'field-state')]")) == [
        "COMPLETED"
    ]
    assert texts(browser.find_elements(By.XPATH, f"{row}/td[contains(@class, 'field-progress')]")) == ["4/4"]

    browser.get(stack.url(f"/admin/workflows/execution/{execution_id}/change/"))
    picture = wait_for(
        browser,
        EC.presence_of_element_located((By.CSS_SELECTOR, ".dag-picture svg")),
        "the DAG picture",
        "admin-execution",
    )
    screenshot(browser, "admin-execution")
    assert_admin_styled(browser)
    assert sorted(texts(picture.find_elements(By.CSS_SELECTOR, "g.node text"))) == sorted(
        [*NODE_IDS, "input", "call_external_service", "llm", "output"]
    )
    nodes = browser.find_element(By.ID, "nodes-group")
    assert texts(nodes.find_elements(By.CSS_SELECTOR, "td.field-node_id")) == NODE_IDS
    assert texts(nodes.find_elements(By.CSS_SELECTOR, "td.field-state")) == ["COMPLETED"] * len(NODE_IDS)
    events = browser.find_element(By.ID, "events-group")
    kinds = texts(events.find_elements(By.CSS_SELECTOR, "td.field-kind"))
    assert kinds[:2] == [EventKind.SUBMITTED.label, EventKind.TRIGGERED.label], kinds

    # Swagger UI draws the title with its JavaScript bundle, so this needs its assets served by the
    # app itself: no CDN is reachable from CI (drf-spectacular-sidecar serves them).
    browser.get(stack.url("/docs"))
    title = settings.SPECTACULAR_SETTINGS["TITLE"]
    wait_for(
        browser,
        EC.text_to_be_present_in_element((By.CSS_SELECTOR, ".swagger-ui .info .title"), title),
        f"Swagger UI to render the API title {title!r}",
        "api-docs",
    )
    screenshot(browser, "api-docs")
