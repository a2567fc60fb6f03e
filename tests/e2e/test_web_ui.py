"""Issue 15 in a real browser (Debian's Chromium driven by Playwright) against a real `spacehost up`: a user
creates a Space from the browser, uploads an app.py, watches it build live, edits a file and sees the new
version, sets a secret, changes hardware, duplicates, revokes a token and deletes — each step asserted on what
the page shows. axe-core (from npm, tests/e2e/node_modules) checks every page: no serious or critical violation.
Screenshots of the home page, the tabs and the build phases go to docs/ (the README shows them)."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, FilePayload, Page, expect

from tests.e2e.harness import ROOT, Server
from tests.waits import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
DOCS = ROOT / "docs"
AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
APP = """import gradio as gr

def greet(name):
    return "Hello " + name + "!"

gr.Interface(fn=greet, inputs=gr.Textbox(label="name"), outputs=gr.Textbox(label="greeting")).launch()
"""


def hub(server: Server) -> str:
    return f"http://localhost:{server.port}"


def sign_in(browser: Browser, server: Server, token: str, *, width: int = 1280) -> Page:
    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
    page.goto(f"{hub(server)}/login")
    page.get_by_label("Access token").fill(token)
    page.get_by_role("button", name="Sign in").first.click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    return page


def axe_violations(page: Page) -> list[str]:
    """Serious and critical axe-core violations of the page as loaded, one line each."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in result if v["impact"] in ("serious", "critical")]


def shot(page: Page, name: str, full: bool = False) -> None:
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / f"{name}.png"), full_page=full)


@pytest.fixture(scope="module")
def made(server: Server, browser: Browser) -> Iterator[dict[str, object]]:
    """A Space created, filled and built from the browser: the first flow, shared by the later ones."""
    name = f"web-{uuid.uuid4().hex[:6]}"
    page = sign_in(browser, server, server.token)
    # New Space: the name is checked as it is typed.
    page.goto(f"{hub(server)}/new")
    page.get_by_label("Space name").fill("bad name!")
    expect(page.locator("#name-check")).to_contain_text("✗")
    page.get_by_label("Space name").fill(name)
    expect(page.locator("#name-check")).to_contain_text(f"admin/{name} is available")
    page.get_by_label("Short description").fill("Greets whoever asks")
    page.get_by_label("License").select_option("mit")
    page.get_by_label("gradio").check()
    page.get_by_role("button", name="Create Space").click()
    expect(page).to_have_url(f"{hub(server)}/spaces/admin/{name}")
    expect(page.locator("#stage")).to_have_text("NO_APP_FILE", timeout=30_000)
    # shown once the stage says so, also when the page was rendered while the first commit's build ran
    expect(page.locator("#get-started")).to_be_visible()
    expect(page.locator("#get-started")).to_contain_text(f"git clone {hub(server)}/spaces/admin/{name}")
    # A second tab stays on the App tab, never reloaded: it records each stage its badge shows.
    watcher = page.context.new_page()
    watcher.goto(f"{hub(server)}/spaces/admin/{name}")
    watcher.evaluate("""() => { window.seen = []; const s = document.getElementById('stage');
        new MutationObserver(() => window.seen.push(s.textContent)).observe(s, {childList: true}); }""")
    # Upload app.py from the browser (the file picker of the drop zone), committed in one commit.
    page.get_by_role("link", name="upload files from the browser").click()
    page.locator("#files").set_input_files([FilePayload(name="app.py", mimeType="text/x-python",
                                                        buffer=APP.encode())])
    expect(page.locator(".picked")).to_have_text("app.py")
    page.get_by_label("Commit message").fill("Add application file")
    page.get_by_role("button", name="Commit upload").click()
    expect(page.locator("#files")).to_contain_text("app.py")
    # Watch it build live: the watching tab goes from building to running, then shows the app.
    expect(watcher.locator("#stage")).to_have_text("RUNNING", timeout=240_000)
    seen = watcher.evaluate("window.seen")
    assert any(s in ("BUILDING", "APP_STARTING") for s in seen) and seen[-1] == "RUNNING", seen
    frame = watcher.frame_locator("iframe.app")
    frame.get_by_label("name").fill("Ada")
    frame.get_by_role("button", name="Submit").click()
    expect(frame.get_by_label("greeting")).to_have_value("Hello Ada!", timeout=30_000)
    shot(watcher, "web-space-app")
    watcher.close()
    yield {"sid": f"admin/{name}", "name": name, "page": page}
    page.context.close()


def test_create_upload_and_watch_it_build_live(server: Server, made: dict[str, object]) -> None:
    page = made["page"]
    assert isinstance(page, Page)
    page.goto(f"{hub(server)}/spaces/{made['sid']}/logs")
    expect(page.locator("#build")).to_contain_text("==> Build finished", timeout=30_000)
    expect(page.locator("#run")).to_contain_text("==> Ready", timeout=30_000)
    phases = page.locator("#phases")
    for label in ("Queued", "Resolving", "Starting", "Running"):
        expect(phases).to_contain_text(label)
    shot(page, "web-build-phases")
    rt = server.runtime(str(made["sid"]))
    assert rt["phases"]["current"] == "running"
    names = [p["name"] for p in rt["phases"]["phases"]]
    assert names[0] == "queued" and "resolving" in names and names[-1] == "running"


def test_home_shows_the_card_and_filters(server: Server, browser: Browser, made: dict[str, object]) -> None:
    page = sign_in(browser, server, server.token)
    page.goto(f"{hub(server)}/?q={made['name']}")
    card = page.locator(f"a.card[href='/spaces/{made['sid']}']")
    expect(card).to_contain_text(str(made["name"]))
    expect(card).to_contain_text("Greets whoever asks")
    expect(card).to_contain_text("RUNNING")
    page.get_by_label("SDK").select_option("static")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator(f"a.card[href='/spaces/{made['sid']}']")).to_have_count(0)
    page.goto(f"{hub(server)}/?mine=true&sort=name")
    expect(page.locator(f"a.card[href='/spaces/{made['sid']}']")).to_have_count(1)
    shot(page, "web-home")
    phone = sign_in(browser, server, server.token, width=390)
    phone.goto(f"{hub(server)}/spaces/{made['sid']}")
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")  # no sideways scroll
    phone.context.close()
    page.context.close()


def test_edit_a_file_and_see_the_new_version(server: Server, made: dict[str, object]) -> None:
    page = made["page"]
    assert isinstance(page, Page)
    sid = made["sid"]
    page.goto(f"{hub(server)}/spaces/{sid}/tree/main")
    page.get_by_role("link", name="app.py").click()
    expect(page.locator("#code")).to_contain_text("def greet")
    shot(page, "web-files")
    page.get_by_role("link", name="Edit").click()
    page.get_by_label("Content").fill(APP.replace('"Hello "', '"Howdy "'))
    page.get_by_label("Commit message").fill("Say howdy")
    page.get_by_role("button", name="Commit changes").click()
    expect(page.locator("#code")).to_contain_text("Howdy")
    page.goto(f"{hub(server)}/spaces/{sid}/commits/main")
    page.get_by_role("link", name="Say howdy").click()
    expect(page.locator("#diff")).to_contain_text('+    return "Howdy " + name + "!"')
    page.get_by_role("link", name="App", exact=True).click()
    expect(page.locator("#stage")).to_have_text("RUNNING", timeout=240_000)
    frame = page.frame_locator("iframe.app")
    for _ in range(3):  # the running version changes under the page: retry until the new one answers
        frame.get_by_label("name").fill("Ada")
        frame.get_by_role("button", name="Submit").click()
        try:
            expect(frame.get_by_label("greeting")).to_have_value("Howdy Ada!", timeout=20_000)
            break
        except AssertionError:
            page.reload()
    expect(frame.get_by_label("greeting")).to_have_value("Howdy Ada!")


def run_log(server: Server, sid: str) -> str:
    with server.api() as c:
        return c.get(f"/api/spaces/{sid}/logs/run", params={"follow": "false"}).text


def test_set_a_secret_and_change_hardware(server: Server, made: dict[str, object]) -> None:
    page = made["page"]
    assert isinstance(page, Page)
    readies = run_log(server, str(made["sid"])).count("==> Ready")
    page.goto(f"{hub(server)}/spaces/{made['sid']}/settings")
    page.get_by_label("Name", exact=True).first.fill("API_KEY")
    page.locator("#secret-value").fill("s3cr3t-value-42")
    page.get_by_role("button", name="Add secret").click()
    expect(page.locator("#secret-list")).to_contain_text("API_KEY")
    assert "s3cr3t-value-42" not in page.content()
    page.get_by_label("Hardware", exact=True).select_option("cpu-upgrade")
    page.get_by_role("button", name="Change hardware").click()
    expect(page.locator("#hardware-current")).to_have_text("CPU upgrade")
    shot(page, "web-settings", full=True)
    rt = server.runtime(str(made["sid"]))
    assert rt["hardware"]["requested"] == "cpu-upgrade"
    # the Space restarts on its new hardware: the cases that share it (in any order) find it serving again
    eventually(lambda: (log := run_log(server, str(made["sid"]))).count("==> Ready") > readies
               and log.rfind("==> Ready") > log.rfind("==> Starting")
               and server.runtime(str(made["sid"]))["stage"] == "RUNNING", timeout=240)


def test_volumes_and_dev_mode_from_the_settings_tab(server: Server, browser: Browser) -> None:
    """Mount two buckets (a bad mount path is refused with the API's reason), unmount them one by one, turn dev
    mode on and off, and set, fail to lower and delete the storage tier, from the Settings tab; the runtime API
    reads back each change."""
    name = f"vol-{uuid.uuid4().hex[:6]}"
    sid = f"admin/{name}"
    assert server.create_space(name, "static").status_code == 200
    page = sign_in(browser, server, server.token)
    page.goto(f"{hub(server)}/spaces/{sid}/settings")
    volumes = page.locator("#volume-list")
    expect(volumes).to_have_text("No volume.")
    page.get_by_label("Bucket (owner/name)").fill("admin/notes")
    page.get_by_label("Mount path").fill("/usr")
    page.get_by_role("button", name="Add volume").click()
    expect(page.locator("#storage-box .result")).to_contain_text("would hide or enter /usr")
    page.get_by_label("Mount path").fill("/data")
    page.get_by_role("button", name="Add volume").click()
    expect(volumes).to_contain_text("admin/notes")
    page.get_by_label("Bucket (owner/name)").fill("admin/models")
    page.get_by_label("Mount path").fill("/models")
    page.get_by_label("Read-only").check()
    page.get_by_role("button", name="Add volume").click()
    expect(volumes.locator("tr", has_text="/models")).to_contain_text("read-only")
    assert server.runtime(sid)["volumes"] == [
        {"type": "bucket", "source": "admin/notes", "mountPath": "/data", "readOnly": False},
        {"type": "bucket", "source": "admin/models", "mountPath": "/models", "readOnly": True}]
    page.get_by_role("button", name="Unmount /data").click()
    expect(volumes).not_to_contain_text("admin/notes")
    expect(volumes).to_contain_text("admin/models")
    page.get_by_role("button", name="Unmount /models").click()
    expect(volumes).to_have_text("No volume.")
    assert "volumes" not in server.runtime(sid)
    expect(page.locator("#dev-mode-state")).to_have_text("off")
    page.get_by_role("button", name="Turn dev mode on").click()
    expect(page.locator("#dev-mode-state")).to_have_text("on")
    assert server.runtime(sid)["devMode"] is True
    page.get_by_role("button", name="Turn dev mode off").click()
    expect(page.locator("#dev-mode-state")).to_have_text("off")
    assert server.runtime(sid)["devMode"] is False
    tier = page.locator("#storage-tier")
    expect(tier).to_have_text("none")
    page.get_by_label("Storage tier").select_option("medium")
    page.get_by_role("button", name="Request storage").click()
    expect(tier).to_have_text("medium")
    assert server.runtime(sid)["storage"] == "medium"
    page.get_by_label("Storage tier").select_option("small")
    page.get_by_role("button", name="Request storage").click()
    expect(page.locator("#storage-box .result")).to_contain_text("cannot downgrade storage from medium to small")
    page.get_by_role("button", name="Delete storage tier").click()
    expect(tier).to_have_text("none")
    assert server.runtime(sid)["storage"] is None
    page.context.close()


def test_duplicate_then_delete_after_typing_the_name(server: Server, made: dict[str, object]) -> None:
    page = made["page"]
    assert isinstance(page, Page)
    copy = f"{made['name']}-copy"
    page.goto(f"{hub(server)}/spaces/{made['sid']}")
    page.get_by_text("Duplicate this Space").click()
    page.get_by_label("New Space (owner/name)").fill(f"admin/{copy}")
    page.get_by_role("button", name="Duplicate").click()
    expect(page).to_have_url(f"{hub(server)}/spaces/admin/{copy}")
    expect(page.locator("#stage")).to_have_text("RUNNING", timeout=240_000)
    page.get_by_role("link", name="Settings").click()
    delete = page.get_by_role("button", name="Delete", exact=True)
    page.get_by_label("Space name").fill("wrong")
    expect(delete).to_be_disabled()
    page.get_by_label("Space name").fill(copy)
    delete.click()
    expect(page).to_have_url(f"{hub(server)}/")
    assert page.goto(f"{hub(server)}/spaces/admin/{copy}").status == 404  # type: ignore[union-attr]


def password_user(server: Server, password: str = "correct horse battery") -> str:
    """A new user with `password`, made as an operator does (`spacehost user create NAME --password`)."""
    user = f"web{uuid.uuid4().hex[:6]}"
    cli = subprocess.run([sys.executable, "-m", "spacehost.cli", "user", "create", user, "--password",
                          "--data-dir", str(server.data_dir)], input=password + "\n", text=True,
                         capture_output=True, cwd=ROOT, check=False)
    assert cli.returncode == 0, cli.stderr
    return user


def password_sign_in(page: Page, server: Server, user: str, password: str) -> int:
    """Submit the user+password form; the status of the page it leads to."""
    page.goto(f"{hub(server)}/login")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation() as nav:
        page.get_by_role("button", name="Sign in").nth(1).click()
    response = nav.value
    assert response is not None
    return response.status


def test_tokens_create_and_revoke_and_password_sign_in(server: Server, browser: Browser) -> None:
    user = password_user(server)
    page = browser.new_context().new_page()
    page.goto(f"{hub(server)}/login")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").nth(1).click()
    expect(page.get_by_role("alert")).to_contain_text("did not work")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Sign in").nth(1).click()
    expect(page.locator("header")).to_contain_text(user)
    page.goto(f"{hub(server)}/settings/tokens")
    page.get_by_label("Name").fill("ci-bot")
    page.get_by_label("Role").select_option("read")
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#new-token code")).to_have_text(re.compile(r"^hf_\S{20,}$"))
    value = page.locator("#new-token code").inner_text()
    with server.api(value) as c:
        assert c.get("/api/whoami-v2").json()["name"] == user
    page.reload()
    row = page.locator("#tokens tr", has_text="ci-bot")
    expect(row).to_contain_text("read")
    shot(page, "web-tokens")
    row.get_by_role("button", name="Revoke ci-bot").click()
    expect(page.locator("#tokens")).not_to_contain_text("ci-bot")
    with server.api(value) as c:
        assert c.get("/api/whoami-v2").status_code == 401
    page.locator("#tokens tr", has_text="this session").get_by_role("button").click()
    expect(page).to_have_url(f"{hub(server)}/login")  # revoking the session's own token signs it out
    page.context.close()


def test_failed_passwords_are_throttled_and_others_sign_in(server: Server, browser: Browser) -> None:
    """Five wrong passwords for one account in a minute: the next try, the right password included, is a 429
    that says how long to wait; another account signs in from the same browser, and the throttled user's
    token still works."""
    victim, other = password_user(server), password_user(server)
    page = browser.new_context().new_page()
    for _ in range(5):
        assert password_sign_in(page, server, victim, "wrong password") == 200  # the form again, with an error
        expect(page.get_by_role("alert")).to_contain_text("did not work")
    assert password_sign_in(page, server, victim, "correct horse battery") == 429
    expect(page.get_by_role("alert")).to_contain_text(re.compile(r"Too many failed sign-ins for this account: "
                                                                 r"try the password again in \d+ seconds"))
    r = page.request.post(f"{hub(server)}/login", form={"username": victim, "password": "correct horse battery"},
                          headers={"Origin": hub(server)}, max_redirects=0)
    assert r.status == 429 and 0 < int(r.headers["retry-after"]) <= 60
    assert password_sign_in(page, server, other, "correct horse battery") == 200
    expect(page.locator("header")).to_contain_text(other)
    token = subprocess.run([sys.executable, "-m", "spacehost.cli", "token", "create", victim, "--data-dir",
                            str(server.data_dir)], text=True, capture_output=True, cwd=ROOT, check=True)
    with server.api(token.stdout.strip().split()[-1]) as c:
        assert c.get("/api/whoami-v2").json()["name"] == victim
    page.context.close()


def test_no_serious_accessibility_violation_on_any_page(server: Server, browser: Browser,
                                                        made: dict[str, object]) -> None:
    sid = made["sid"]
    page = sign_in(browser, server, server.token)
    with server.api() as c:
        c.post("/api/organizations/new", json={"name": f"org{uuid.uuid4().hex[:5]}"})
        org = next(o["name"] for o in c.get("/api/whoami-v2").json()["orgs"])
    paths = ["/", "/new", f"/spaces/{sid}", f"/spaces/{sid}/tree/main", f"/spaces/{sid}/blob/main/app.py",
             f"/spaces/{sid}/edit/main/app.py", f"/spaces/{sid}/upload/main", f"/spaces/{sid}/new-file/main",
             f"/spaces/{sid}/commits/main", f"/spaces/{sid}/logs", f"/spaces/{sid}/discussions",
             f"/spaces/{sid}/settings", "/settings/tokens", "/organizations", f"/organizations/{org}",
             "/settings/quota", "/admin"]
    page.goto(f"{hub(server)}/spaces/{sid}/commits/main")
    paths.append(page.locator("#commits a").first.get_attribute("href") or "")
    found = {}
    for path in paths:
        page.goto(hub(server) + path)
        if bad := axe_violations(page):
            found[path] = bad
    anonymous = browser.new_context().new_page()
    for path in ("/login", "/", f"/spaces/{sid}"):
        anonymous.goto(hub(server) + path)
        if bad := axe_violations(anonymous):
            found[f"{path} (signed out)"] = bad
    assert not found, found
