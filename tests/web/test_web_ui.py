"""The web UI (`icportrait serve`) end to end: a real headless Chromium driven by Selenium
uploads photos, clicks the buttons and reads the page. A tiny random model stands in for a
trained one, so the pictures are noise; what is checked is the plumbing and the safety.

Screenshots of each state are kept in tests/artifacts/web-ui/ (git-ignored).
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from icportrait.cli import main

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).parents[1] / "artifacts" / "web-ui"
UPLOAD_MB = 2

# Gradio's queue still calls pandas options that pandas 3 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:.*no_silent_downcasting",
                                        "ignore:The copy keyword is deprecated")

needs_browser = pytest.mark.skipif(
    not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
    reason=f"the browser test needs Debian's chromium and chromium-driver ({CHROMIUM}, "
           f"{CHROMEDRIVER}); install them with scripts/setup.sh as root")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def photos(tmp_path_factory, astronaut, grace_hopper) -> Path:
    d = tmp_path_factory.mktemp("web-photos")
    Image.fromarray(astronaut).save(d / "astronaut.png")
    Image.fromarray(grace_hopper).save(d / "grace.png")
    Image.fromarray(np.full((128, 128, 3), 180, np.uint8)).save(d / "wall.png")  # no face
    Image.fromarray(np.hstack([grace_hopper[:512], astronaut])).save(d / "group.png")
    return d


@pytest.fixture(scope="module")
def server(tmp_path_factory, dummy_model_dir):
    """`serve` with its defaults (host included) on a tiny model folder, in a thread."""
    from icportrait.app import serve

    root = tmp_path_factory.mktemp("web-server")
    demo, url = serve(model=dummy_model_dir, port=_free_port(), workdir=root / "work",
                      max_upload_mb=UPLOAD_MB, block=False)
    yield demo, url, (root / "work").resolve()
    demo.close()


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# ---- fast checks, no browser ------------------------------------------------------------


def test_serve_help_and_argument_checks(capsys):
    assert main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--model", "--host", "--port", "--share", "--max-upload-mb", "--workdir"):
        assert option in out
    assert "127.0.0.1" in out
    assert main(["serve", "--port", "0"]) == 2  # refused before the model is loaded
    assert "--port must be in" in capsys.readouterr().err


def test_requests_are_bounded(tmp_path):
    from icportrait.app import MAX_PROFILES, _Handlers
    from icportrait.errors import ICPortraitError

    h = _Handlers(pipe=None, outputs=tmp_path)
    with pytest.raises(ICPortraitError, match="at least one profile photo"):
        h.profiles([])
    with pytest.raises(ICPortraitError, match=f"at most {MAX_PROFILES} profile photos"):
        h.profiles([tmp_path / f"p{i}.png" for i in range(MAX_PROFILES + 1)])
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(ICPortraitError, match=r"profile photo notes\.png: "):
        h.profiles([tmp_path / "notes.png"])
    with pytest.raises(ICPortraitError, match="steps must be in"):
        h.settings(10_000, 0, 0.8)
    with pytest.raises(ICPortraitError, match=r"strength must be in \(0, 1\]"):
        h.settings(10, 0, 0.8, strength=1.5)
    assert h.settings(10, 0, 0.8, strength=0.5).strength == 0.5
    assert h.settings(10, 0, 0.8).strength is None   # the model's own default
    assert not h.settings(10, 0, 0.8).mirror_fill and not h.settings(10, 0, 0.8).photo_fill
    assert h.settings(10, 0, 0.8, mirror_fill=1, profile_tone=1).profile_tone is True
    assert h.settings(10, 0, 0.8, photo_fill=1).photo_fill is True


def test_binds_localhost_and_serves_nothing_outside_its_outputs(server):
    import psutil

    demo, url, workdir = server
    port = demo.server_port
    assert url == f"http://127.0.0.1:{port}/" and demo.share_url is None
    listening = [c.laddr for c in psutil.Process().net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
    assert listening and all(a.ip == "127.0.0.1" for a in listening), listening

    # The file route serves the outputs folder (positive control) and nothing else.
    (workdir / "outputs" / "ok.txt").write_text("result")
    (workdir / "secret.txt").write_text("private")
    assert _get(f"{url}gradio_api/file={workdir}/outputs/ok.txt") == (200, b"result")
    for path in ("/etc/passwd", f"{workdir}/secret.txt", f"{workdir}/outputs/../secret.txt",
                 str(Path(__file__).resolve()), "pyproject.toml", "../../../../etc/passwd"):
        code, body = _get(f"{url}gradio_api/file={path}")
        assert code in (403, 404), (path, code)
        assert b"root:" not in body and b"private" not in body

    # Uploads over --max-upload-mb are refused by the server itself.
    blob = b"\0" * (UPLOAD_MB * 1024 * 1024 + 1)
    boundary = "icportrait-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
            f"filename=\"big.png\"\r\nContent-Type: image/png\r\n\r\n").encode() + blob + \
        f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(f"{url}gradio_api/upload", data=body, method="POST", headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            code = r.status
    except urllib.error.HTTPError as exc:
        code = exc.code
    assert code == 413

    # One shared model slot and a bounded queue.
    model_fns = [f for f in demo.fns.values() if f.concurrency_id == "model"]
    assert len(model_fns) == 3 and all(f.concurrency_limit == 1 for f in model_fns)
    assert demo._queue.max_size is not None


# ---- the browser -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1400,2000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def _shot(driver, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def _wait(driver, condition, timeout: float = 40):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)


def _open(driver, url: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url)
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#generate"))


def _upload(driver, elem_id: str, path: Path) -> None:
    """Hand a file to the component's hidden <input type=file>, as a file picker would,
    and wait until the upload has reached the server."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=file]").send_keys(str(path))
    if elem_id == "template":
        _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#template img"))
    else:
        # The file list shows the name as stem and suffix on two lines.
        _wait(driver, lambda d: path.stem in d.find_element(By.ID, elem_id).text)


def _status(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, "#status textarea").get_attribute("value")


def _set_slider(driver, elem_id: str, value: float) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=number]")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(str(value), Keys.TAB)
    _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=range]")
          .get_attribute("value") == str(value))


@needs_browser
def test_page_loads(server, browser):
    from selenium.webdriver.common.by import By

    _, url, _ = server
    _open(browser, url)
    assert browser.title == "IC-Portrait"
    for elem_id in ("profiles", "template", "yaw", "pitch", "roll", "pose-sweep",
                    "photo-fill", "mirror-fill", "profile-tone",
                    "light-sweep", "portrait", "flow", "used", "status"):
        assert browser.find_elements(By.ID, elem_id), elem_id
    assert _shot(browser, "01-page-loaded").stat().st_size > 0


@needs_browser
def test_generate_from_a_template_photo(server, browser, photos):
    from selenium.webdriver.common.by import By

    _, url, workdir = server
    _open(browser, url)
    _upload(browser, "profiles", photos / "astronaut.png")
    _upload(browser, "template", photos / "grace.png")
    _set_slider(browser, "steps", 2)
    for option in ("photo-fill", "mirror-fill", "profile-tone"):
        browser.find_element(By.CSS_SELECTOR, f"#{option} input[type=checkbox]").click()
    browser.find_element(By.ID, "generate").click()
    _wait(browser, lambda d: _status(d).startswith("Done"))
    assert "your template photo" in _status(browser)
    newest = max((workdir / "outputs").glob("*/run.json"), key=lambda p: p.stat().st_mtime)
    run = json.loads(newest.read_text())
    assert run["photo_fill"] and run["mirror_fill"] and run["profile_tone"]
    assert _status(browser).endswith("photo fill, mirror fill, profile skin tone.")
    for elem_id in ("portrait", "flow", "used"):
        img = browser.find_element(By.CSS_SELECTOR, f"#{elem_id} img")
        _wait(browser, lambda d, img=img: d.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth > 0", img))
    assert "portrait" in browser.find_element(By.ID, "downloads").text
    assert list((workdir / "outputs").glob("*/portrait.png"))
    _shot(browser, "02-generated-from-template")


@needs_browser
def test_generate_from_a_pose_and_sweep(server, browser, photos):
    from selenium.webdriver.common.by import By

    _, url, _ = server
    _open(browser, url)
    _upload(browser, "profiles", photos / "astronaut.png")
    _set_slider(browser, "yaw", 30)
    _set_slider(browser, "steps", 2)
    browser.find_element(By.ID, "generate").click()
    _wait(browser, lambda d: _status(d).startswith("Done"))
    assert "pose yaw +30°" in _status(browser)  # the slider reached the server
    assert browser.find_element(By.CSS_SELECTOR, "#portrait img").get_attribute("src")
    _shot(browser, "03-generated-from-pose")

    browser.find_element(By.ID, "pose-sweep").click()
    _wait(browser, lambda d: _status(d).startswith("Pose sweep done"))
    sweep = browser.find_element(By.CSS_SELECTOR, "#sweep img")
    _wait(browser, lambda d: d.execute_script("return arguments[0].naturalWidth", sweep) > 0)
    assert "pose-sweep" in browser.find_element(By.ID, "downloads").text
    _shot(browser, "04-pose-sweep")


@needs_browser
def test_a_photo_without_a_face_shows_a_clear_error(server, browser, photos):
    from selenium.webdriver.common.by import By

    _, url, _ = server
    _open(browser, url)
    _upload(browser, "profiles", photos / "wall.png")
    _upload(browser, "template", photos / "grace.png")
    _set_slider(browser, "steps", 2)
    browser.find_element(By.ID, "generate").click()
    body = lambda d: d.find_element(By.TAG_NAME, "body").text  # noqa: E731
    _wait(browser, lambda d: "no face found" in body(d))
    text = body(browser)
    assert "profile photo wall.png: no face found" in text
    assert "Traceback" not in text
    assert not browser.find_elements(By.CSS_SELECTOR, "#portrait img")
    _shot(browser, "05-no-face-error")


@needs_browser
def test_group_photo_faces_are_numbered_and_chosen(server, browser, photos):
    import json

    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _, url, workdir = server
    _open(browser, url)
    _upload(browser, "profiles", photos / "astronaut.png")
    _upload(browser, "template", photos / "group.png")
    note = lambda d: d.find_element(By.ID, "faces-note").text  # noqa: E731
    _wait(browser, lambda d: "template photo: 2 faces (0-1)" in note(d))
    assert browser.find_elements(By.CSS_SELECTOR, "#faces-found img")
    box = browser.find_element(By.CSS_SELECTOR, "#template-face input")
    box.send_keys("1", Keys.TAB)
    _set_slider(browser, "steps", 2)
    _set_slider(browser, "strength", 0.5)
    before = set((workdir / "outputs").glob("*/run.json"))
    browser.find_element(By.ID, "generate").click()
    _wait(browser, lambda d: _status(d).startswith("Done"))
    [run] = set((workdir / "outputs").glob("*/run.json")) - before
    record = json.loads(run.read_text())
    assert record["strength"] == 0.5    # the strength slider reaches the pipeline's settings
    assert record["template_face"] == 1 and record["faces"]["template"][0]["index"] == 1
    assert record["faces"]["template"][0]["box"][0] > 512   # the right-hand face: hers
    _shot(browser, "06-group-photo-face-chosen")
