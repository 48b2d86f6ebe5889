"""A real JupyterLab in headless Chromium: open the quickstart, run it, change a control, press Run.

Starts ``jupyter lab`` on loopback (a random port, a token, every Jupyter folder in the test's
temporary directory, a copy of the notebook so the repository's copy is never written), drives
Debian's Chromium with Playwright, and checks that the explorer's timeline re-rendered with the
new run. The explorer's screenshot is saved as ``<tmp_path>/explorer.png`` (its path is printed;
``LAB_BROWSER_ARTIFACTS=DIR`` copies it and a full-page screenshot there too).

Marked ``browser`` (deselected by ``pytest``'s default ``-m``; run with ``pytest -m browser``).
Skips when Chromium or Playwright is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "00_quickstart.ipynb"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
SERVER_START_S = 90
KERNEL_READY_MS = 120_000
RUN_MS = 90_000


def _chromium() -> str | None:
    for candidate in (os.environ.get("LAB_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Lab:
    """A running JupyterLab: its base URL, token and root folder."""

    url: str
    token: str
    root: Path
    log: Path


@pytest.fixture
def jupyterlab(tmp_path: Path) -> Iterator[Lab]:
    """``jupyter lab`` on 127.0.0.1 over a copy of the quickstart, isolated in ``tmp_path``."""
    root = tmp_path / "lab"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    home = tmp_path / "jupyter"
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        "IPYTHONDIR": str(home / "ipython"),
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    # no "get Jupyter news?" toast over the page (the network is not used anyway)
    notification = home / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}), encoding="utf-8")
    token = os.urandom(16).hex()
    port = _free_port()
    log = tmp_path / "jupyterlab.log"
    cmd = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.news_url=", "--LabServerApp.extension_manager=readonly",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers and CI often run as root
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5) as resp:
                    json.load(resp)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer in {SERVER_START_S} s:\n"
                                f"{log.read_text(errors='replace')[-3000:]}")
                time.sleep(0.5)
        yield Lab(url=url, token=token, root=root, log=log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and the kernels it started (its own group)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def _plot_titles(page: object, selector: str) -> list[str]:
    return page.eval_on_selector_all(  # type: ignore[attr-defined, no-any-return]
        f"{selector} .gtitle, {selector} .annotation-text", "els => els.map(e => e.textContent)")


def test_explorer_reruns_in_a_real_jupyterlab(jupyterlab: Lab, tmp_path: Path) -> None:
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium (apt-get install chromium, or set LAB_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")

    shot = tmp_path / "explorer.png"
    page_shot = tmp_path / "page.png"
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS, headless=True)
        try:
            # tall enough for the whole explorer (controls, two timelines, the metrics table)
            page = browser.new_page(viewport={"width": 1400, "height": 2000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            try:
                page.goto(f"{jupyterlab.url}/lab/tree/{NOTEBOOK.name}?token={jupyterlab.token}")
                # the notebook is open and its kernel idle
                page.wait_for_function(
                    """() => {
                        const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
                        const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
                        return !!k && k.status === 'idle' && w.content && w.content.widgets.length === 5;
                    }""",
                    timeout=KERNEL_READY_MS,
                )
                # Run > Run All Cells, through the menu bar as a user would
                page.get_by_role("menuitem", name="Run", exact=True).click()
                page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

                explorer = page.locator(".lab-explorer")
                explorer.wait_for(state="visible", timeout=RUN_MS)
                page.wait_for_function(
                    """() => [...document.querySelectorAll('.lab-explorer .gtitle')]
                              .some(e => e.textContent.startsWith('Timeline of run 1'))""",
                    timeout=RUN_MS,
                )
                # the last cell saved the findings of run 1: the whole notebook ran
                findings = jupyterlab.root / "results" / "00_quickstart.findings.json"
                deadline = time.monotonic() + RUN_MS / 1000
                while not findings.is_file() and time.monotonic() < deadline:
                    time.sleep(0.25)
                assert findings.is_file(), "the notebook's last cell did not save its findings"
                # once the browser has drawn the explorer, its figure becomes a live FigureWidget
                page.wait_for_selector(".lab-explorer.lab-explorer-live .js-plotly-plot", timeout=RUN_MS)
                page.wait_for_function(
                    """() => [...document.querySelectorAll('.lab-explorer-live .gtitle')]
                              .some(e => e.textContent.startsWith('Timeline of run 1'))""",
                    timeout=RUN_MS,
                )
                titles = _plot_titles(page, ".lab-explorer")
                assert not any("run 2" in t for t in titles), titles

                # change controls as a user: mode -> async, workers -> 4; then press Run
                explorer.locator(".lab-control-mode button", has_text="async").click()
                workers = explorer.locator(".lab-control-workers input")
                workers.fill("4")
                workers.press("Enter")
                run_button = explorer.locator("button.lab-explorer-run")
                page.wait_for_function("() => !document.querySelector('button.lab-explorer-run').disabled")
                run_button.click()

                page.wait_for_function(
                    """() => [...document.querySelectorAll('.lab-explorer .gtitle')]
                              .some(e => e.textContent.startsWith('Timeline of run 2'))""",
                    timeout=RUN_MS,
                )
                page.wait_for_function(
                    """() => document.querySelector('.lab-explorer-status').textContent.includes('req/s')""",
                    timeout=RUN_MS,
                )
                titles = _plot_titles(page, ".lab-explorer")
                assert any(t.startswith("run 2: async, workers=4") for t in titles), titles
                assert any(t.startswith("run 1: sync") for t in titles), titles
                status = explorer.locator(".lab-explorer-status").inner_text()
                assert "run 2: async, workers=4" in status and "0 errors" in status, status
                # two runs, one above the other: bars on both rows
                bars = page.eval_on_selector_all(".lab-explorer .js-plotly-plot .point", "els => els.length")
                assert bars > 20, bars
                metrics = explorer.locator(".lab-explorer-metrics").inner_text()
                assert "run 2" in metrics and "run 1" in metrics and "throughput" in metrics, metrics
                assert not page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                                        has_text="Traceback").count()
                explorer.scroll_into_view_if_needed()
                page.wait_for_timeout(500)  # let plotly finish its transition before the screenshot
                explorer.screenshot(path=str(shot))
            finally:
                page.screenshot(path=str(page_shot), full_page=True)
        finally:
            browser.close()
    assert not [e for e in errors if "lab" in e.lower() or "plotly" in e.lower()], errors
    assert shot.stat().st_size > 10_000
    print(f"explorer screenshot: {shot}")
    artifacts = os.environ.get("LAB_BROWSER_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / "explorer.png")
        shutil.copy(page_shot, Path(artifacts) / "page.png")
