"""The dashboard in a real browser: ``liqsim viz`` is started as a subprocess and the page is
driven by Playwright with the system's Chromium (never a downloaded browser).

Skipped when Chromium (``chromium`` on PATH or /usr/bin/chromium) or Playwright is missing,
unless ``LIQSIM_REQUIRE_BROWSER=1`` (CI sets it): then a missing browser is a failure.
Screenshots are written under the test's pytest tmp dir (the path is printed with ``-s``).
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "scenarios" / "tiny.toml"
REQUIRED = os.environ.get("LIQSIM_REQUIRE_BROWSER") == "1"
START_TIMEOUT_S = 120
UI_TIMEOUT_MS = 90_000
COUNTER = ".liqsim-block-counter"


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def _unavailable(reason: str):
    if REQUIRED:
        pytest.fail(f"{reason} (LIQSIM_REQUIRE_BROWSER=1: the browser test must run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    chromium = _chromium()
    if chromium is None:
        _unavailable("no Chromium: apt-get install chromium (or set PATH)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed: pip install -e '.[viz]'")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield b
        b.close()


def _serve(*args: str) -> Iterator[str]:
    """Start ``liqsim viz ARGS --port 0 --no-browser``; yield its URL; stop it."""
    cmd = [sys.executable, "-m", "sim.cli", "viz", *args, "--port", "0", "--no-browser"]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + START_TIMEOUT_S
    url = None
    try:
        while url is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"liqsim viz did not start: {''.join(seen)[-2000:]}")
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            seen.append(line)
            m = re.search(r"liqsim viz: (http://\S+)", line)
            url = m.group(1) if m else None
        yield url
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture(scope="module")
def live_url() -> Iterator[str]:
    yield from _serve(str(TINY))


@pytest.fixture(scope="module")
def replay_url(tiny_run) -> Iterator[str]:
    yield from _serve("--replay", str(tiny_run))


@pytest.fixture
def page(browser, tmp_path):
    context = browser.new_context(viewport={"width": 1500, "height": 1100})
    pg = context.new_page()
    pg.set_default_timeout(UI_TIMEOUT_MS)
    yield pg
    pg.screenshot(path=str(tmp_path / "final.png"), full_page=True)
    print(f"screenshots: {tmp_path}")
    context.close()


def _counter(page) -> str:
    return page.inner_text(COUNTER).strip()


def _wait_counter(page, text: str) -> None:
    page.wait_for_function(
        "t => { const e = document.querySelector('.liqsim-block-counter');"
        " return e !== null && e.innerText.trim() === t; }",
        arg=text,
        timeout=UI_TIMEOUT_MS,
    )


def _step(page, times: int, total: int) -> None:
    start = int(_counter(page).split()[1])
    for i in range(1, times + 1):
        page.get_by_role("button", name="Step").click()
        _wait_counter(page, f"block {start + i} / {total}")


# The panel's pixels, read in one go inside the page (the panel's element is replaced on every
# redraw, so a Playwright element screenshot can find it detached midway); null until loaded.
PANEL_PIXELS = """n => {
    const e = document.querySelector('.liqsim-panel-' + n);
    const img = e === null ? null : (e.tagName === 'IMG' ? e : e.querySelector('img'));
    if (img === null || !img.complete || img.naturalWidth === 0) return null;
    const c = document.createElement('canvas');
    c.width = img.naturalWidth;
    c.height = img.naturalHeight;
    c.getContext('2d').drawImage(img, 0, 0);
    return c.toDataURL();
}"""


def _panel_image(page, name: str) -> str:
    deadline = time.monotonic() + UI_TIMEOUT_MS / 1000
    while (pixels := page.evaluate(PANEL_PIXELS, name)) is None:
        assert time.monotonic() < deadline, f"the {name} panel never showed an image"
        time.sleep(0.25)
    return pixels


def test_live_page_steps_draws_and_resets_on_a_parameter_change(page, live_url, tmp_path):
    page.goto(live_url)
    _wait_counter(page, "block 0 / 40")
    body = page.inner_text("body")
    assert "tiny (seed 1)" in body
    assert re.search(r"crash duration \(blocks\) 20\b", body)  # loading sliders changed nothing
    before = _panel_image(page, "prices")
    _step(page, 1, 40)
    _step(page, 5, 40)
    page.screenshot(path=str(tmp_path / "live-6-blocks.png"), full_page=True)
    deadline = time.monotonic() + 30
    while _panel_image(page, "prices") == before:  # the image is replaced after the counter
        assert time.monotonic() < deadline, "the price panel did not change after 6 blocks"
        time.sleep(0.5)
    # a parameter: the seed slider one step to the right -> a new run at block 0
    seed = page.locator(".v-input:has(label:text-is('seed')) [role=slider]")
    seed.focus()
    seed.press("ArrowRight")
    _wait_counter(page, "block 0 / 40")
    page.wait_for_function("() => document.body.innerText.includes('tiny (seed 2)')")
    _step(page, 1, 40)
    page.screenshot(path=str(tmp_path / "live-after-reset.png"), full_page=True)


def test_replay_page_scrubs_through_the_run_folder(page, replay_url, tmp_path):
    page.goto(replay_url)
    _wait_counter(page, "block 0 / 40")
    assert "replay of tiny" in page.inner_text("body")
    _step(page, 3, 40)
    jump = page.locator(".v-input:has(label:text-is('jump to block')) [role=slider]")
    jump.focus()
    jump.press("End")
    _wait_counter(page, "block 40 / 40")
    page.screenshot(path=str(tmp_path / "replay-end.png"), full_page=True)
    page.get_by_role("button", name="Reset").click()
    _wait_counter(page, "block 0 / 40")
