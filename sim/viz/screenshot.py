"""The README's dashboard screenshot (docs/img/dashboard.png), taken with Playwright and the
system's Chromium on a running ``liqsim viz``:

    .venv/bin/liqsim viz --no-browser &            # prints its URL
    .venv/bin/python -m sim.viz.screenshot http://127.0.0.1:8765 docs/img/dashboard.png

It sets SolaraViz's render interval to its maximum (100 blocks per Step), steps to ``--blocks``
(default 400: into the default scenario's crash) and writes a palette PNG of the page.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

COUNTER = ".liqsim-block-counter"
RENDER_SLIDER = ".v-input:has(label:text-is('Render Interval (steps)')) [role=slider]"


def _block(page) -> int:
    return int(page.inner_text(COUNTER).split()[1])


def take(url: str, out: str, blocks: int, width: int = 1500, height: int = 1560) -> None:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": width, "height": height})
        page.set_default_timeout(600_000)
        page.goto(url)
        page.wait_for_selector(COUNTER)
        page.locator(RENDER_SLIDER).press("End")
        time.sleep(1)
        while _block(page) < blocks:
            shown = _block(page)
            page.get_by_role("button", name="Step").click()
            page.wait_for_function(
                f"() => parseInt(document.querySelector('{COUNTER}').innerText.split(' ')[1])"
                f" > {shown}"
            )
        time.sleep(3)  # the panels' images follow the counter
        raw = out + ".raw.png"
        page.screenshot(path=raw)
        browser.close()
    image = Image.open(raw).convert("RGB")
    image = image.resize((image.width * 4 // 5, image.height * 4 // 5), Image.LANCZOS)
    palette = image.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    palette.save(out, optimize=True)
    Path(raw).unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("out")
    parser.add_argument("--blocks", type=int, default=400)
    args = parser.parse_args()
    take(args.url, args.out, args.blocks)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
