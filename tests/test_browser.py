"""`serve`'s pages in a real browser: headless Chromium (Debian's chromium + chromium-driver) driven by
Selenium logs a participant in, uploads a file through the form and finds the row on the leaderboard.
Screenshots go to $BROWSER_SCREENSHOTS when set, else the test's temporary folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="no Chromium here: `apt-get install chromium "
                                 "chromium-driver` (Debian's; .ci/run installs them)")]
webdriver = pytest.importorskip("selenium.webdriver", reason="the test extra: pip install -e '.[test]'")
pytest.importorskip("uvicorn", reason="the serve extra: pip install -e '.[serve]'")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from benchmarks.serving import invite, live_server, random_submission  # noqa: E402
from competition.hosting.server import SESSION_COOKIE  # noqa: E402

# as a closed machine needs them: no first-run, sync or background fetches that would fail here
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1200,900"]


@pytest.fixture
def browser(tmp_path: Path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_a_participant_uploads_through_the_page_and_sees_the_row_on_the_leaderboard(digits_workspace, tmp_path,
                                                                                     browser):
    shots = Path(os.environ.get("BROWSER_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    root = digits_workspace.root
    upload, bad = tmp_path / "alice-first.csv", tmp_path / "broken.csv"
    upload.write_bytes(random_submission(root / "data/digits/private/solution.csv", seed=7))
    bad.write_text("ImageId,Label\n1,0\n")
    note = "<b>cnn</b> & friends"
    with live_server(root, "digits") as server:
        token = invite(root, "digits", "alice")
        wait = WebDriverWait(browser, 30)
        browser.get(server.url + "/login")
        browser.find_element(By.ID, "token").send_keys(token)
        browser.save_screenshot(str(shots / "1-login.png"))
        browser.find_element(By.ID, "login").click()
        wait.until(expected_conditions.presence_of_element_located((By.ID, "upload")))
        browser.find_element(By.ID, "file").send_keys(str(upload))
        browser.find_element(By.ID, "note").send_keys(note)
        browser.find_element(By.ID, "upload").click()
        scored = wait.until(expected_conditions.presence_of_element_located((By.ID, "scored")))
        assert "Submission 1 scored" in scored.text
        history = browser.find_element(By.ID, "history").text
        assert "alice-first.csv" in history and note in history         # shown as text, not as markup
        browser.save_screenshot(str(shots / "2-scored.png"))
        browser.find_element(By.ID, "file").send_keys(str(bad))
        browser.find_element(By.ID, "upload").click()
        error = wait.until(expected_conditions.presence_of_element_located((By.ID, "error")))
        assert error.text == "broken.csv: 359 ImageIds missing, the first is 2"   # the grader's reason, the user's file
        browser.save_screenshot(str(shots / "3-refused.png"))
        browser.get(server.url + "/")
        rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#public tr")][1:]
        assert len(rows) == 1 and rows[0].startswith("1 alice 0.") and "private" not in browser.page_source.lower() \
            .replace("private scores are sealed", "")
        browser.save_screenshot(str(shots / "4-leaderboard.png"))
    for name in ("1-login.png", "2-scored.png", "3-refused.png", "4-leaderboard.png"):
        assert (shots / name).stat().st_size > 1000, name


def test_the_organiser_invites_reveals_and_reads_the_private_board_in_the_browser(digits_workspace, tmp_path,
                                                                                 browser):
    shots = Path(os.environ.get("BROWSER_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    root = digits_workspace.root
    with live_server(root, "digits") as server:
        wait = WebDriverWait(browser, 30)
        browser.get(server.url + "/login")
        browser.find_element(By.ID, "token").send_keys(server.organiser)
        browser.find_element(By.ID, "login").click()
        wait.until(expected_conditions.presence_of_element_located((By.ID, "invite")))
        browser.find_element(By.ID, "name").send_keys("alice")
        browser.find_element(By.ID, "invite").click()
        token = wait.until(expected_conditions.presence_of_element_located((By.ID, "token"))).text
        browser.save_screenshot(str(shots / "5-organiser-invited.png"))
        assert len(token) == 48
        import httpx
        answer = httpx.post(server.url + "/api/submissions", headers={"Authorization": f"Bearer {token}"},
                            files={"file": ("a.csv", random_submission(root / "data/digits/private/solution.csv",
                                                                       seed=11))})
        assert answer.status_code == 201
        browser.get(server.url + "/organiser")
        assert "alice" in browser.find_element(By.ID, "participants").text
        browser.find_element(By.ID, "reveal").click()
        private = wait.until(expected_conditions.presence_of_element_located((By.ID, "private")))
        rows = [r.text for r in private.find_elements(By.CSS_SELECTOR, "tr")][1:]
        assert len(rows) == 1 and rows[0].startswith("1 alice 0.")
        browser.save_screenshot(str(shots / "6-organiser-revealed.png"))
        session = browser.get_cookie(SESSION_COOKIE)["value"]
        logout = browser.find_element(By.ID, "logout")
        logout.click()
        # the organiser page has a #public table too: wait for the page to go, not for an element on the next one
        wait.until(expected_conditions.staleness_of(logout))
        wait.until(expected_conditions.url_to_be(server.url + "/"))
        browser.get(server.url + "/organiser")
        assert "/login" in browser.current_url
        again = httpx.get(server.url + "/organiser", cookies={SESSION_COOKIE: session})
        assert again.status_code == 303 and again.headers["location"].endswith("/login")  # ended on the server too
    for name in ("5-organiser-invited.png", "6-organiser-revealed.png"):
        assert (shots / name).stat().st_size > 1000, name
