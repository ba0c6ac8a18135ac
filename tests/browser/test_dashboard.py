"""The dashboard as a user sees it in Chromium: logging in, uploading a picture and a clip,
watching them finish, their previews, the download, cancelling, and what is refused."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import httpx
import numpy as np
from playwright.sync_api import Browser, Page

from frameq.samples import sample_clip
from tests.api.server import ApiServer
from tests.media import make_video

Shot = Callable[[Page, str], Path]
JOB_URL = re.compile(r".*/jobs/[0-9a-f]{12}$")


def person_photo(path: Path) -> Path:
    """A real picture: the first frame of the carphone sample clip (176x144, a man in a car)."""
    with av.open(str(sample_clip("carphone_pristine"))) as container:
        frame = next(container.decode(video=0))
    cv2.imwrite(str(path), cv2.cvtColor(frame.to_ndarray(format="rgb24"), cv2.COLOR_RGB2BGR))
    return path


def submit(client: httpx.Client, picture: Path, name: str) -> str:
    """A cartoon job of `picture` (uploaded as `name`) through the API; its id."""
    files = {"file": (name, picture.read_bytes())}
    answer = client.post("/v1/jobs", files=files, data={"recipe": "cartoon"})
    return str(answer.raise_for_status().json()["id"])


def log_in(page: Page, server: ApiServer, key: str) -> None:
    page.goto(f"{server.url}/")
    page.fill("#key", key)
    page.click("form[action='/login'] button")
    page.wait_for_url(f"{server.url}/jobs")


def upload(page: Page, server: ApiServer, media: Path, recipe: str) -> str:
    """Submit `media` from the new-job page; the job's id, once its page is open. The texts the
    upload's progress line showed are checked on the way."""
    shown: list[str] = []
    page.goto(f"{server.url}/jobs/new")
    page.select_option("#recipe", recipe)
    page.set_input_files("#file", str(media))
    page.expose_function("noteUpload", lambda text: shown.append(text))
    page.evaluate(
        """() => {
            const line = document.getElementById('upload-text');
            new MutationObserver(() => window.noteUpload(line.textContent))
                .observe(line, {childList: true, characterData: true, subtree: true});
        }"""
    )
    page.click("#submit")
    page.wait_for_url(JOB_URL)
    assert any(f"Uploading {media.name}: 100%" in text for text in shown), shown
    return page.url.rsplit("/", 1)[1]


def wait_done(page: Page, timeout_ms: int = 120_000) -> None:
    """The job page follows the job by itself (no reload from here) until it shows `done`."""
    # Predicates are functions, not expressions: the page's CSP forbids eval, which Playwright
    # needs for an expression.
    page.wait_for_function(
        "() => document.getElementById('job-state').textContent.trim() === 'done'"
        " && document.getElementById('preview-result') !== null",
        timeout=timeout_ms,
    )


def natural_size(page: Page, selector: str) -> tuple[int, int]:
    page.wait_for_function(
        "(s) => { const i = document.querySelector(s); return i.complete && i.naturalWidth > 0; }",
        arg=selector,
        timeout=60_000,  # the styles' sheet is drawn on its first request
    )
    size = page.eval_on_selector(selector, "i => [i.naturalWidth, i.naturalHeight]")
    return int(size[0]), int(size[1])


def test_login_refuses_a_wrong_key_then_lets_the_tenant_in(
    api: ApiServer, page: Page, console_errors: list[str], screenshot: Shot
) -> None:
    tenant, key = api.key()
    page.goto(f"{api.url}/jobs")
    assert page.url == f"{api.url}/?next=%2Fjobs"  # no cookie: the login page
    screenshot(page, "login")
    page.fill("#key", "fq_000000000000_" + "A" * 43)
    page.click("form[action='/login'] button")
    assert "unknown or revoked" in page.inner_text("#login-error")
    screenshot(page, "login-wrong-key")

    page.fill("#key", key)
    page.click("form[action='/login'] button")
    page.wait_for_url(f"{api.url}/jobs")
    assert page.inner_text(".who") == tenant
    assert "No jobs yet" in page.inner_text("main")
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "frameq_key"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert page.evaluate("document.cookie") == ""  # the page's script cannot read the key

    page.click("#logout")
    page.wait_for_url(f"{api.url}/")
    page.goto(f"{api.url}/jobs/new")
    assert page.url.startswith(f"{api.url}/?next=")  # logged out: back to the login page
    assert console_errors == []


def test_an_uploaded_picture_is_processed_previewed_and_downloaded(
    api: ApiServer, page: Page, console_errors: list[str], screenshot: Shot, tmp_path: Path
) -> None:
    _, key = api.key()
    src = person_photo(tmp_path / "person.jpg")
    log_in(page, api, key)

    page.goto(f"{api.url}/jobs/new")
    assert page.is_visible("#style-options")  # cartoon paints: its style options are offered
    assert page.input_value("#style") == "cartoon"
    assert page.locator("#style option").count() == 30  # the 26 network styles and 4 filters
    width, height = natural_size(page, "#styles-sheet")  # every style drawn on the sample picture
    assert width > 600 and height > 500
    page.select_option("#recipe", "bg-replace")  # no style; a background, here required
    assert not page.is_visible("#style-options") and page.is_visible("#background-colour")
    assert page.is_disabled("#background-kind option[value=none]")
    page.select_option("#recipe", "cartoon")
    screenshot(page, "new-job")

    job_id = upload(page, api, src, "cartoon")
    wait_done(page)
    assert page.inner_text("#job-percent") == "100%"
    stages = page.locator("#stages tr")
    assert stages.count() == 1  # an image: one task runs its whole recipe
    assert all(t.strip().endswith("100%") for t in stages.locator("td.progress").all_inner_texts())
    assert page.is_visible("#download") and page.locator("#cancel").count() == 0
    assert natural_size(page, "#preview-input") == (176, 144)
    assert natural_size(page, "#preview-result") == (176, 144)
    screenshot(page, "job-picture-done")

    with page.expect_download() as started:
        page.click("#download")
    download = started.value
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert saved.name == "person-cartoon.png"  # a picture comes back as PNG unless asked otherwise
    result = cv2.imread(str(saved))
    assert result is not None and result.shape == (144, 176, 3)
    assert np.abs(result.astype(int) - cv2.imread(str(src)).astype(int)).mean() > 2  # it was changed

    page.goto(f"{api.url}/jobs?state=done")
    row = page.locator(f"tr[data-job='{job_id}']")
    assert "done" in row.inner_text() and "100%" in row.inner_text() and "person.jpg" in row.inner_text()
    screenshot(page, "jobs")
    page.goto(f"{api.url}/jobs?state=failed")
    assert page.locator("tr[data-job]").count() == 0 and "match these filters" in page.inner_text("main")
    assert console_errors == []


def test_a_video_job_shows_a_preview_clip_that_plays(
    api: ApiServer, page: Page, console_errors: list[str], screenshot: Shot, tmp_path: Path
) -> None:
    _, key = api.key()
    clip = make_video(tmp_path / "clip.mp4", width=160, height=120, frames=30, audio=False, flash_frame=None)
    log_in(page, api, key)
    upload(page, api, clip.path, "cartoon")
    wait_done(page)
    assert natural_size(page, "#preview-input") == (160, 120)
    assert natural_size(page, "#preview-result") == (160, 120)
    page.wait_for_function(
        "() => { const v = document.getElementById('preview-clip');"
        " return v.readyState >= 3 && v.currentTime > 0.2; }",  # it has data, and it is playing
        timeout=30_000,
    )
    duration, size = page.eval_on_selector(
        "#preview-clip", "v => [v.duration, [v.videoWidth, v.videoHeight]]"
    )
    assert abs(duration - 1.0) < 0.1 and size == [160, 120]
    page.eval_on_selector("#preview-clip", "v => { v.pause(); v.currentTime = 0.5; }")
    page.wait_for_function("() => !document.getElementById('preview-clip').seeking")
    screenshot(page, "job-video-done")
    assert console_errors == []


def test_a_preview_that_cannot_be_made_says_so_on_the_page(
    api: ApiServer, browser: Browser, screenshot: Shot, tmp_path: Path
) -> None:
    """A done job whose input no longer decodes (its file in the store damaged after the job
    ran): the page shows why there is no picture before, and the result after as usual."""
    _, key = api.key()
    with api.client(key) as client:
        job_id = submit(client, person_photo(tmp_path / "person.jpg"), "person.jpg")
        assert api.wait_finished(client, job_id)["state"] == "done"
    folder = Path(api.env["FRAMEQ_HOME"]) / "store" / "jobs" / job_id
    (folder / "source.jpg").write_bytes(b"\xff\xd8\xff\xe0 no longer a JPEG")
    (folder / "previews" / "input.jpg").unlink(missing_ok=True)  # kept if it was made already
    context = browser.new_context()  # a browser that never cached this job's previews
    try:
        tab = context.new_page()
        log_in(tab, api, key)
        tab.goto(f"{api.url}/jobs/{job_id}")
        tab.wait_for_function(
            "() => document.getElementById('preview-input').textContent.startsWith('No preview of')"
        )
        said = tab.inner_text("#preview-input")
        assert said.startswith("No preview of person.jpg: "), said
        assert natural_size(tab, "#preview-result") == (176, 144)
        screenshot(tab, "job-no-preview")
    finally:
        context.close()


def test_a_queued_job_is_cancelled_from_its_page(
    idle_api: ApiServer, page: Page, console_errors: list[str], screenshot: Shot, tmp_path: Path
) -> None:
    _, key = idle_api.key()
    src = person_photo(tmp_path / "person.jpg")
    with idle_api.client(key) as client:  # no worker on this server: both stay queued
        ids = [submit(client, src, f"p{n}.jpg") for n in range(2)]
        log_in(page, idle_api, key)
        page.evaluate("window.sameDocument = true")
        assert page.locator("tr[data-job] .state").all_inner_texts() == ["queued", "queued"]
        client.delete(f"/v1/jobs/{ids[0]}").raise_for_status()
        # The list follows its unfinished jobs by itself: the row turns without a reload.
        page.wait_for_function(
            "(id) => document.querySelector(`tr[data-job='${id}'] .state`).textContent === 'cancelled'",
            arg=ids[0],
        )
        assert page.evaluate("window.sameDocument") is True

        page.goto(f"{idle_api.url}/jobs/{ids[1]}")
        assert page.inner_text("#job-state") == "queued" and page.inner_text("#job-percent") == "0%"
        screenshot(page, "job-queued")
        page.click("#cancel")
        page.wait_for_function("() => document.getElementById('job-state').textContent === 'cancelled'")
        assert page.locator("#cancel").count() == 0 and page.locator("#download").count() == 0
        assert page.inner_text("#job-error") == "cancelled"
        screenshot(page, "job-cancelled")
        assert client.get(f"/v1/jobs/{ids[1]}").json()["state"] == "cancelled"
    assert console_errors == []


def test_another_tenants_job_is_not_found(
    idle_api: ApiServer, page: Page, screenshot: Shot, tmp_path: Path
) -> None:
    _, owner = idle_api.key()
    _, other = idle_api.key()
    src = person_photo(tmp_path / "person.jpg")
    with idle_api.client(owner) as client:
        job_id = submit(client, src, "mine.jpg")
        assert client.get(f"/jobs/{job_id}/preview/input.jpg").status_code == 200  # the owner's own
    log_in(page, idle_api, other)
    answer = page.goto(f"{idle_api.url}/jobs/{job_id}")
    assert answer is not None and answer.status == 404
    assert job_id in page.inner_text("#problem") and "mine.jpg" not in page.content()
    screenshot(page, "job-not-found")
    preview = page.request.get(f"{idle_api.url}/jobs/{job_id}/preview/input.jpg")
    assert preview.status == 404 and preview.json() == {"detail": f"no job {job_id!r}"}
    page.goto(f"{idle_api.url}/jobs")
    assert page.locator("tr[data-job]").count() == 0  # nor is it in this tenant's list
