#!/usr/bin/env python3
"""The web face in a real browser: headless Chromium (Debian's chromium-driver) through Selenium,
against a real `pollwire` process on 127.0.0.1.

- the widget, embedded by a page on another origin (CORS), votes with the keyboard only and then
  shows live results; its weight is checked (< 15 KB); on every dedupe mode, and as a signed voter
  (data-voter-token) on a poll with signedVoters;
- the presenter page moves after votes sent with plain HTTP, and after a vote in another browser
  (the time from that vote to the bar moving is printed), and draws the server's timeline
  (ballots per 10 s);
- the admin dashboard signs in with the API key and creates a poll;
- the pages' security headers (CSP without inline scripts, frame-ancestors per poll).

Usage: Tests/Browser/test_web.py PATH/TO/pollwire [SCREENSHOT_DIR]
Screenshots go to SCREENSHOT_DIR (default: a temporary directory); docs/screenshots holds the
committed ones. Exits 1 on the first failed check.
"""
import http.server
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

BINARY = os.path.abspath(sys.argv[1])
SHOTS = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(prefix="pollwire-shots-")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
failures = []


def check(condition, message):
    print(("ok   " if condition else "FAIL ") + message, flush=True)
    if not condition:
        failures.append(message)
        raise SystemExit(1)


def request(method, url, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def start_server(data_dir, port=0):
    process = subprocess.Popen(
        [BINARY, "serve", "--data-dir", data_dir, "--http-host", "127.0.0.1", "--http-port", str(port),
         "--ratelimit-allow-list", "127.0.0.1", "--web-dir", os.path.join(ROOT, "Web")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    key = None
    port = None
    deadline = time.time() + 30
    while time.time() < deadline and port is None:
        line = process.stdout.readline()
        if not line:
            break
        match = re.search(r"(pw_[A-Za-z0-9_-]+)", line)
        if match:
            key = match.group(1)
        match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if match:
            port = int(match.group(1))
    threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
    if port is None:
        process.kill()
        raise SystemExit("pollwire did not start")
    return process, port, key


def host_page_server(api, poll_id, attributes=""):
    """A page on another origin (localhost:<other port>) that embeds the widget from the API's origin
    with the README's one tag (plus `attributes`, e.g. ' data-voter="u-1"')."""
    page = ("<!doctype html><html lang=en><head><meta charset=utf-8><title>Host page</title></head><body>"
            "<h1>A blog post</h1><p>What do you think?</p>"
            f'<script src="{api}/embed/pollwire.js" data-poll="{poll_id}"{attributes}></script>'
            "<p>Thanks for reading.</p></body></html>").encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def browser(width=1280, height=900):
    options = webdriver.ChromeOptions()
    for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}", "--force-prefers-reduced-motion"]:
        options.add_argument(argument)
    if os.path.exists("/usr/bin/chromium"):
        options.binary_location = "/usr/bin/chromium"
    service = webdriver.ChromeService(executable_path="/usr/bin/chromedriver") \
        if os.path.exists("/usr/bin/chromedriver") else None
    return webdriver.Chrome(options=options, service=service) if service else webdriver.Chrome(options=options)


README_POLL = {
    "title": "Lunch?",
    "questions": [{"id": "q1", "kind": "single", "prompt": "Where?",
                   "options": [{"id": "a", "label": "Pizza"}, {"id": "b", "label": "Sushi"}]}]}


def widget_votes_on_every_dedupe_mode(api, auth, driver):
    """The README's example poll (no settings: voter dedupe) and each other dedupe mode, embedded with
    the README's one tag on another origin, voted on with a click, counted by the server once."""
    cases = [("default (voter), no data-voter", None, ""),
             ("voter, with data-voter", {"dedupe": "voter"}, ' data-voter="reader-42"'),
             ("device", {"dedupe": "device"}, ""),
             ("none", {"dedupe": "none"}, "")]
    for name, settings, attributes in cases:
        definition = dict(README_POLL, **({"settings": settings} if settings else {}))
        status, _, body = request("POST", f"{api}/v1/polls", definition, auth)
        check(status == 201, f"{name}: poll created ({status})")
        poll = json.loads(body)["id"]
        message = vote_through_widget(api, poll, attributes, "b", driver)
        check("Thank you" in message, f"{name}: the widget votes ({message!r})")
        _, _, body = request("GET", f"{api}/v1/polls/{poll}/results")
        counts = {o["id"]: o["count"] for o in json.loads(body)["questions"][0]["options"]}
        check(counts == {"a": 0, "b": 1}, f"{name}: the server counted the widget's vote once ({counts})")


def vote_through_widget(api, poll, attributes, option, driver):
    """Embeds `poll` with the README's tag (plus `attributes`) on another origin, picks `option`, votes
    with a click and returns what the widget then says."""
    host = host_page_server(api, poll, attributes)
    try:
        driver.get(f"http://localhost:{host.server_address[1]}/")
        widget = WebDriverWait(driver, 10).until(lambda d: d.find_element(By.CSS_SELECTOR, ".pollwire-widget"))
        shadow = widget.shadow_root
        choice = f"input[value={option}]"
        WebDriverWait(driver, 10).until(lambda d: shadow.find_elements(By.CSS_SELECTOR, choice))
        shadow.find_element(By.CSS_SELECTOR, choice).click()
        shadow.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        # The widget replaces its form with the results: elements found before may go stale.
        WebDriverWait(driver, 10, ignored_exceptions=[StaleElementReferenceException]).until(
            lambda d: shadow.find_elements(By.CSS_SELECTOR, "[data-total='1']")
            or shadow.find_elements(By.CSS_SELECTOR, ".err"))
        return driver.execute_script("return arguments[0].shadowRoot.querySelector('.msg').textContent", widget)
    finally:
        host.shutdown()


def hs256_token(secret, claims):
    """A JWT signed with HMAC-SHA-256, as an embedding site's server makes one for its voter."""
    import base64
    import hashlib
    import hmac

    def part(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    signing = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + part(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest()
    return signing + "." + part(signature)


def widget_votes_as_a_signed_voter(api, auth, driver):
    """A poll with signedVoters: the widget carries the site's token (data-voter-token) and the vote
    counts for the voter the token names; without a token the widget shows the server's refusal."""
    secret = "the embedding site's secret, 32 bytes or more"
    status, _, body = request("POST", f"{api}/v1/voter-keys", {"algorithm": "HS256", "secret": secret}, auth)
    check(status == 201, f"signed voters: voter-token key registered ({status} {body})")
    definition = dict(README_POLL, settings={"signedVoters": True})
    status, _, body = request("POST", f"{api}/v1/polls", definition, auth)
    check(status == 201, f"signed voters: poll created ({status})")
    poll = json.loads(body)["id"]
    token = hs256_token(secret, {"sub": "reader-7", "poll": poll, "exp": int(time.time()) + 600})
    for name, attributes, expected in [("without a token", "", "signed voters only"),
                                       ("with data-voter-token", f' data-voter-token="{token}"', "Thank you")]:
        message = vote_through_widget(api, poll, attributes, "a", driver)
        check(expected in message, f"signed voters, {name}: the widget says {message!r}")
    _, _, body = request("GET", f"{api}/v1/polls/{poll}/results")
    check(json.loads(body)["total"] == 1, "signed voters: the server counted the signed vote only")
    status, _, _ = request("POST", f"{api}/v1/polls/{poll}/votes", {"voter": "reader-7", "answers": {"q1": ["b"]}},
                           {"Pollwire-Voter-Token": token})
    check(status == 409, f"signed voters: the token's voter has voted ({status})")


def main():
    os.makedirs(SHOTS, exist_ok=True)
    data_dir = tempfile.mkdtemp(prefix="pollwire-web-")
    server, port, key = start_server(data_dir)
    api = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {key}"}
    drivers = []
    try:
        size = os.path.getsize(os.path.join(ROOT, "Web/embed/pollwire.js"))
        check(size < 15 * 1024, f"the widget weighs {size} bytes uncompressed (< 15 KB)")

        status, _, body = request("POST", f"{api}/v1/polls", {
            "title": "Where should the team offsite be?",
            "questions": [{"id": "q1", "kind": "single", "prompt": "Pick one",
                           "options": [{"id": "a", "label": "Lisbon"}, {"id": "b", "label": "Kraków"},
                                       {"id": "c", "label": "Tallinn"}]}],
            "settings": {"dedupe": "device", "visibility": "public"}}, auth)
        check(status == 201, f"poll created ({status})")
        poll = json.loads(body)["id"]

        # The path a new user takes: the README's poll, the README's tag (and every other dedupe mode).
        first = browser(900, 700)
        drivers.append(first)
        widget_votes_on_every_dedupe_mode(api, auth, first)
        widget_votes_as_a_signed_voter(api, auth, first)

        # Security headers of the pages.
        for path in [f"/p/{poll}", "/admin", f"/embed/{poll}"]:
            _, headers, _ = request("GET", api + path)
            csp = headers.get("Content-Security-Policy", "")
            check("script-src 'self'" in csp and "unsafe-inline" not in csp, f"{path}: CSP without inline scripts")
        _, headers, _ = request("GET", f"{api}/embed/{poll}")
        check("frame-ancestors *" in headers["Content-Security-Policy"] and "X-Frame-Options" not in headers,
              "the embed page may be framed (the poll lists no origins)")
        _, headers, _ = request("GET", f"{api}/admin")
        check("frame-ancestors 'none'" in headers["Content-Security-Policy"], "the dashboard may not be framed")
        status, _, body = request("POST", f"{api}/v1/polls", {
            "title": "Framed", "settings": {"allowedOrigins": ["https://news.example"]},
            "questions": [{"id": "q1", "kind": "single", "prompt": "?",
                           "options": [{"id": "a", "label": "A"}, {"id": "b", "label": "B"}]}]}, auth)
        _, headers, _ = request("GET", f"{api}/embed/{json.loads(body)['id']}")
        check(headers["Content-Security-Policy"].endswith("frame-ancestors https://news.example"),
              "the embed page of a poll with allowed origins may be framed by them only")

        # The presenter, in its own browser, before anyone votes.
        presenter = browser(1600, 900)
        drivers.append(presenter)
        presenter.get(f"{api}/p/{poll}")
        WebDriverWait(presenter, 10).until(lambda d: d.find_element(By.ID, "status").text == "Live")
        check(presenter.find_element(By.ID, "title").text == "Where should the team offsite be?", "presenter shows the title")

        # The widget on another origin, voted with the keyboard only.
        host = host_page_server(api, poll)
        voter = browser(900, 700)
        drivers.append(voter)
        voter.get(f"http://localhost:{host.server_address[1]}/")
        widget = WebDriverWait(voter, 10).until(lambda d: d.find_element(By.CSS_SELECTOR, ".pollwire-widget"))
        shadow = widget.shadow_root
        WebDriverWait(voter, 10).until(lambda d: len(shadow.find_elements(By.CSS_SELECTOR, "input[type=radio]")) == 3)
        check(shadow.find_element(By.CSS_SELECTOR, "h2").text == "Where should the team offsite be?", "widget renders the poll")
        check(shadow.find_element(By.CSS_SELECTOR, "legend").text == "Pick one", "questions are labelled (fieldset legend)")
        voter.save_screenshot(os.path.join(SHOTS, "widget-form.png"))
        body = voter.find_element(By.TAG_NAME, "body")
        body.send_keys(Keys.TAB)  # into the widget: the first radio
        active = voter.switch_to.active_element
        check(active.get_attribute("class") == "pollwire-widget", "Tab moves focus into the widget")
        focused = voter.execute_script("return arguments[0].shadowRoot.activeElement.value", widget)
        check(focused == "a", f"the first option has the focus ({focused})")
        voter.switch_to.active_element.send_keys(Keys.ARROW_DOWN)  # radio group: the arrow selects Kraków
        voter.switch_to.active_element.send_keys(Keys.TAB)
        check(voter.execute_script("return arguments[0].shadowRoot.activeElement.textContent", widget) == "Vote",
              "Tab reaches the Vote button")
        before = presenter.find_element(By.TAG_NAME, "body").get_attribute("data-version")
        voted_at = time.time()
        voter.switch_to.active_element.send_keys(Keys.ENTER)
        WebDriverWait(presenter, 10, poll_frequency=0.01).until(
            lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-version") != before)
        moved = time.time() - voted_at
        print(f"vote in one browser -> presenter's bar moves in another: {moved * 1000:.0f} ms", flush=True)
        WebDriverWait(voter, 10).until(lambda d: shadow.find_elements(By.CSS_SELECTOR, "[data-total='1']"))
        check("Thank you" in shadow.find_element(By.CSS_SELECTOR, ".msg").text, "the widget confirms the vote")
        check(shadow.find_element(By.CSS_SELECTOR, "[data-option=b]").text.startswith("1 "), "the widget shows Kraków's vote")
        status, _, body = request("GET", f"{api}/v1/polls/{poll}/results")
        counts = {o["id"]: o["count"] for o in json.loads(body)["questions"][0]["options"]}
        check(counts == {"a": 0, "b": 1, "c": 0}, f"the server counted the widget's vote ({counts})")
        check(len(voter.execute_script("return Object.keys(localStorage)")) >= 2, "the widget keeps its device token")

        # A second vote from the same browser: the widget remembers and shows results at once.
        voter.refresh()
        shadow = WebDriverWait(voter, 10).until(lambda d: d.find_element(By.CSS_SELECTOR, ".pollwire-widget")).shadow_root
        WebDriverWait(voter, 10).until(lambda d: shadow.find_elements(By.CSS_SELECTOR, "[data-total]"))
        check(not shadow.find_elements(By.CSS_SELECTOR, "form"), "after voting the widget shows results, not the form")

        # Votes sent with plain HTTP move the presenter.
        token = json.loads(request("POST", f"{api}/v1/device-tokens")[2])["token"]
        for index, option in enumerate(["a", "a", "c", "a", "c"]):
            token = json.loads(request("POST", f"{api}/v1/device-tokens")[2])["token"]
            status, _, _ = request("POST", f"{api}/v1/polls/{poll}/votes", {"device": token, "answers": {"q1": [option]}})
            check(status == 201, f"curl-style vote {index + 1} accepted")
        WebDriverWait(presenter, 10).until(lambda d: d.find_element(By.ID, "total").text == "6")
        lisbon = presenter.find_element(By.CSS_SELECTOR, "[data-option=a] .count").text
        check(lisbon.startswith("3"), f"the presenter shows Lisbon's 3 votes ({lisbon})")
        # The presenter draws the server's timeline: every ballot in its 10 s bars, read from the store.
        WebDriverWait(presenter, 10).until(lambda d: d.find_element(By.ID, "spark").get_attribute("data-ballots") == "6")
        bars = presenter.find_elements(By.CSS_SELECTOR, "#spark rect.spark-bar")
        check(len(bars) >= 1, f"the presenter draws the timeline's bars ({len(bars)})")
        voter.save_screenshot(os.path.join(SHOTS, "widget-results.png"))
        time.sleep(0.6)
        presenter.save_screenshot(os.path.join(SHOTS, "presenter.png"))

        # The presenter says when it reconnects, and comes back by itself.
        server.terminate()
        server.wait(timeout=10)
        WebDriverWait(presenter, 10).until(lambda d: "Reconnecting" in d.find_element(By.ID, "status").text)
        check(True, "the presenter says it is reconnecting while the server is away")
        server, _, _ = start_server(data_dir, port)
        # Back on the same port: EventSource reconnects by itself (with Last-Event-ID).
        WebDriverWait(presenter, 15).until(lambda d: d.find_element(By.ID, "status").text == "Live")
        request("POST", f"{api}/v1/polls/{poll}/votes",
                {"device": json.loads(request("POST", f"{api}/v1/device-tokens")[2])["token"], "answers": {"q1": ["b"]}})
        WebDriverWait(presenter, 10).until(lambda d: d.find_element(By.ID, "total").text == "7")
        check(True, "the presenter reconnected by itself and shows the vote after the restart")

        # The dashboard: sign in, create a poll.
        admin = browser(1400, 1000)
        drivers.append(admin)
        admin.get(f"{api}/admin")
        admin.find_element(By.ID, "key").send_keys(key)
        admin.find_element(By.CSS_SELECTOR, "#signin button").click()
        WebDriverWait(admin, 10).until(lambda d: d.find_element(By.ID, "app").is_displayed())
        WebDriverWait(admin, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, f"tr[data-poll='{poll}']"))
        admin.find_element(By.ID, "c-title").send_keys("How was the talk?")
        admin.find_element(By.ID, "q1-prompt").send_keys("Rate it")
        admin.find_element(By.CSS_SELECTOR, "#q1-kind option[value=nps]").click()
        admin.find_element(By.ID, "c-add").click()
        admin.find_element(By.ID, "q2-prompt").send_keys("Best part?")
        admin.find_element(By.ID, "q2-options").send_keys("Demo\nQ&A\nSlides")
        admin.find_element(By.CSS_SELECTOR, "#create button[type=submit]").click()
        WebDriverWait(admin, 10).until(lambda d: "How was the talk?" in d.find_element(By.ID, "polls").text)
        status, _, body = request("GET", f"{api}/v1/polls", headers=auth)
        listed = json.loads(body)
        polls = listed if isinstance(listed, list) else listed.get("polls", [])
        created = [p for p in polls if p["title"] == "How was the talk?"]
        check(len(created) == 1 and [q["kind"] for q in created[0]["questions"]] == ["nps", "single"],
              "the dashboard created the poll with an NPS and a single-choice question")
        WebDriverWait(admin, 10).until(lambda d: d.find_element(By.ID, "detail-status").text == "Live")
        # The dashboard draws the poll's timeline and follows it live: votes cast now reach its
        # bars when their window ends (window events, 10 s windows), with no reload.
        talk = created[0]["id"]
        check(admin.find_element(By.ID, "detail-timeline").get_attribute("data-ballots") == "0",
              "the new poll's timeline starts empty")
        for index in range(3):
            token = json.loads(request("POST", f"{api}/v1/device-tokens")[2])["token"]
            status, _, body = request("POST", f"{api}/v1/polls/{talk}/votes",
                                      {"device": token, "answers": {"q1": 9, "q2": ["o1"]}})
            check(status == 201, f"a vote on the dashboard's poll ({status} {body[:120]})")
        WebDriverWait(admin, 15).until(
            lambda d: d.find_element(By.ID, "detail-timeline").get_attribute("data-ballots") == "3")
        bars = admin.find_elements(By.CSS_SELECTOR, "#detail-timeline rect.spark-bar")
        check(len(bars) >= 1, f"the dashboard draws the timeline's bars from window events ({len(bars)})")
        time.sleep(2.5)  # two metrics refreshes for the votes/s figure
        admin.execute_script("window.scrollTo(0, 0)")
        admin.save_screenshot(os.path.join(SHOTS, "admin.png"))
        check(admin.find_element(By.ID, "m-viewers").text != "–", "the system panel shows the server's metrics")
        print(f"screenshots in {SHOTS}", flush=True)
    finally:
        for driver in drivers:
            driver.quit()
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
    print("browser tests passed" if not failures else f"{len(failures)} failed")
