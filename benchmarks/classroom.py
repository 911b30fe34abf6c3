"""A class at once against a real server: real Chromium pages predict and explain while a class presses Start.

    python benchmarks/classroom.py [--sessions 10] [--trainers 30] [--backend local|ray] [--max-jobs N]

Starts ``streamlit run app.py`` (private runs and sessions folders; with ``--backend ray`` also a
Ray head and a second worker node on this machine, each ``--num-cpus 1``, and points the server
at it with ``RNN_DEMO_RAY_ADDRESS``), then drives headless Debian Chromium through Playwright:

- ``--sessions`` pages that never train: each opens the app, predicts and explains, then keeps
  predicting and explaining (a pause of ``--think`` s between actions) while the class trains;
- ``--trainers`` pages, one browser context (= one session) each: open the app, predict and
  explain once, go to Train (the Negation task, 1 epoch, a run name of their own), and then all
  press Start within about a second. With ``--light-trainers`` they are browser-less clients
  (``light_client.py``) that send the server the same messages, including the live panel's
  polling, without rendering: in a real class each browser runs on its student's own computer,
  here 30 Chromium renderers would take the server's two cores.

It reports the non-training sessions' interaction latency p50/p95 (from the key press to the
predicted label and then the explanation, timed inside the page), the time from Start to the first
loss point including the wait in line p50/p95, jobs finished per minute, server RSS per session
(the server process alone, before the pages opened and after, over the number of sessions), whether
every job left the line in the order it joined it (when its page first showed it running, allowing
``--order-slack`` s for the pages' polling) and whether their first training steps came in that
order too (the same slack; they add each worker's start-up), with nobody told to try again, and
whether each page showed only its own job.
It also counts the CPU seconds Chromium's renderers, its other processes and the server used per
timed interaction. ``--trainers 0 --browse-for 60`` times the browsing pages alone for 60 s: what
a prediction costs the browser and the server, without a class training beside them.
Prints a table and writes JSON to benchmarks/out/classroom-<backend>.json. Never part of the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from common import OUT_DIR, ROOT, load_average, log, percentile, write_result

from browser_support import CHROMIUM, CHROMIUM_ARGS, missing_browser_parts, streamlit_server  # noqa: E402

try:
    from playwright.async_api import TimeoutError as PlaywrightTimeout
except ImportError:  # reported by main() as a missing part
    PlaywrightTimeout = TimeoutError  # type: ignore[misc,assignment]

ACTION_TIMEOUT_MS = 300_000
PLACE = re.compile(r"Queued: you are (next|(\d+)(?:st|nd|rd|th)) in line")
FAILED = re.compile(r"Training failed: .*")
JOB_SIGNS = ("Queued: you are", "Stop training", "Leave the queue", "The loss curve appears", "Test accuracy")
# What only a job that has left the line shows: its progress line ("epoch 1/1 · step 3/40", "Starting … (2 s so
# far)"), the note before its first loss point, or its result.
RUNNING = re.compile(r"epoch \d+/\d+ · step \d+/\d+|so far\)|The loss curve appears|Test accuracy")
CLICK_CHECK_S = 60.0  # seconds after Start without any sign of a job before a student presses it again
SENTENCES = ["a gripping, funny and beautifully acted film that I would gladly watch again",
             "the plot is dull, the jokes never land and the ending drags on far too long"]
RAY_PORT = 6391


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10, help="pages that predict and explain, never train")
    parser.add_argument("--trainers", type=int, default=30, help="pages that each press Start once, all at once")
    parser.add_argument("--backend", choices=("local", "ray"), default="local")
    parser.add_argument("--max-jobs", type=int, default=None, help="RNN_DEMO_MAX_JOBS (default: the server's)")
    parser.add_argument("--think", type=float, default=1.0, help="seconds between a session's actions")
    parser.add_argument("--order-slack", type=float, default=3.0, help="seconds of polling (and start-up) jitter allowed in the order checks")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds the whole class may take")
    parser.add_argument("--browse-for", type=float, default=60.0,
                        help="with --trainers 0: seconds the browsing pages are timed (what a prediction costs)")
    parser.add_argument("--out", type=Path, default=None, help="JSON result (default benchmarks/out/classroom-*.json)")
    parser.add_argument("--light-trainers", action="store_true",
                        help="trainers speak Streamlit's protocol without a browser (benchmarks/light_client.py)")
    parser.add_argument("--trace", action="store_true",
                        help="record every training page's websocket messages (benchmarks/out/classroom-trace-*.json)")
    args = parser.parse_args(argv)
    if args.sessions < 0 or args.trainers < 0 or args.sessions + args.trainers == 0:
        parser.error("--sessions and --trainers must be 0 or more, and not both 0")
    return args


# ---- the server side: process tree memory, the Ray cluster ----------------------------------------------------


def tree_rss_mb(root: int, descendants: bool = True) -> float:
    """Resident memory of ``root`` and (unless not ``descendants``) all its descendants, in MB (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat") if descendants else ():
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return total


def cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by Chromium's renderers, by its other processes and by the server (from /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {"chromium renderers": 0.0, "chromium, other": 0.0, "server": 0.0}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kind = ("chromium renderers" if "--type=renderer" in command else "chromium, other") if "chromium" in command \
            else "server" if "streamlit run" in command else None
        if kind:
            used[kind] += (int(fields[11]) + int(fields[12])) / ticks
    return used


def server_pid(port: int) -> int:
    """The pid of the ``streamlit run`` on ``port`` that this process started."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            argv = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and b"streamlit" in argv and str(port).encode() in argv:
            return int(stat.parent.name)
    raise RuntimeError(f"no streamlit server of ours on port {port}")


@contextmanager
def ray_cluster(tmp: Path):
    """A Ray head and a second node on this machine, one CPU each; ``ray stop --force`` at the end.

    Token authentication is off for the nodes and for the server (inherited): a head that finds a
    ``~/.ray/auth_token`` turns it on by itself, and a node joining with ``ray start --address`` then
    fails with InvalidAuthToken.
    """
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    env = {**os.environ, "RAY_TMPDIR": str(tmp)}
    ray = str(Path(sys.executable).with_name("ray"))
    head = [ray, "start", "--head", "--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--port", str(RAY_PORT),
            "--include-dashboard", "false", "--disable-usage-stats"]
    node = [ray, "start", "--address", f"127.0.0.1:{RAY_PORT}", "--node-ip-address", "127.0.0.1", "--num-cpus", "1"]
    try:
        for command in (head, node):
            subprocess.run(command, env=env, check=True, capture_output=True, timeout=120)
        yield f"127.0.0.1:{RAY_PORT}"
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120)


def prepare_owner(sessions_dir: Path, dataset: str | None) -> str:
    """A new browser token; with ``dataset``, its saved dataset choice (as if chosen on the Data page before)."""
    from rnn_demo import sessions

    token = sessions.new_token()
    if dataset is not None:
        folder = sessions_dir / token
        folder.mkdir(parents=True)
        (folder / "choices.json").write_text(json.dumps({"dataset": {"name": dataset, "params": {}}}))
    return token


# ---- the browser side --------------------------------------------------------------------------------------------


def _describe(payload: bytes | str, sent: bool) -> dict[str, Any]:
    """One websocket message, decoded: its kind and what identifies its run or fragment."""
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    data = payload.encode() if isinstance(payload, str) else payload
    if sent:
        back = BackMsg.FromString(data)
        kind = back.WhichOneof("type")
        entry: dict[str, Any] = {"dir": "out", "type": kind}
        if kind == "rerun_script":
            entry.update(fragment=back.rerun_script.fragment_id, auto=back.rerun_script.is_auto_rerun,
                         page=back.rerun_script.page_name)
        return entry
    msg = ForwardMsg.FromString(data)
    kind = msg.WhichOneof("type")
    entry = {"dir": "in", "type": kind, "run": msg.metadata.run.script_run_id[-6:],
             "fragments": list(msg.metadata.run.fragment_ids)}
    if kind == "auto_rerun":
        entry.update(fragment=msg.auto_rerun.fragment_id, interval=msg.auto_rerun.interval)
    elif kind == "script_finished":
        entry["status"] = ForwardMsg.ScriptFinishedStatus.Name(msg.script_finished)
    elif kind == "session_status_changed":
        entry["running"] = msg.session_status_changed.script_is_running
    elif kind == "delta":
        entry["path"] = list(msg.metadata.delta_path)
        element = msg.delta.new_element
        shown = element.WhichOneof("type") if msg.delta.WhichOneof("type") == "new_element" else None
        if shown in ("markdown", "alert", "progress", "metric", "text"):
            body = getattr(element, shown)
            entry["text"] = (getattr(body, "body", "") or getattr(body, "text", "") or getattr(body, "label", ""))[:80]
    return entry


def trace_websockets(page: Any, log_to: list[dict[str, Any]]) -> None:
    """Appends every websocket message of ``page`` to ``log_to`` (time, direction, decoded kind)."""
    start = time.perf_counter()

    def on_socket(socket: Any) -> None:
        for event, sent in (("framesent", True), ("framereceived", False)):
            socket.on(event, lambda payload, sent=sent: log_to.append(
                {"t": round(time.perf_counter() - start, 3), **_describe(payload, sent)}))
        socket.on("close", lambda _: log_to.append({"t": round(time.perf_counter() - start, 3), "type": "closed"}))

    page.on("websocket", on_socket)


async def open_app(browser: Any, url: str, token: str, path: str = "predict", trace: list | None = None) -> Any:
    context = await browser.new_context(viewport={"width": 1200, "height": 900})
    # 40 pages share the server's 2 cores: a click may wait minutes for the page to settle.
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    page = await context.new_page()
    if trace is not None:
        trace_websockets(page, trace)
    await page.goto(f"{url}/{path}?s={token}")
    await page.get_by_text("Current dataset").first.wait_for(timeout=120_000)
    return page


# Times taken inside the page: Playwright's waits poll at 0, 20, 50, 100, 100, then every 500 ms,
# so a wait measured from Python rounds a latency of 0.6 s up to about 1 s. The page records when
# the key went down and when the result's element was added to the document.
ARM_TIMER = """() => {
  // The result on screen before this key press: the new one is the first that differs from it
  // (the sentences alternate, so the label, its confidence and the explanation's caption all change).
  const metric = () => document.querySelector('[data-testid="stMetric"]')?.textContent ?? null;
  const caption = () => [...document.querySelectorAll('[data-testid="stCaptionContainer"]')]
    .map(n => n.textContent).find(s => s.includes("computed in")) ?? null;
  window.__latency = {press: null, label: null, explained: null, before: [metric(), caption()]};
  if (!window.__latencyArmed) {
    window.__latencyArmed = true;
    document.addEventListener("keydown", e => {
      const t = window.__latency;
      if (e.key === "Enter" && e.ctrlKey && t.press === null) t.press = performance.now();
    }, true);
    new MutationObserver(() => {
      const t = window.__latency, now = performance.now();
      if (t.press === null) return;
      if (t.label === null && ![null, t.before[0]].includes(metric())) t.label = now;
      if (t.explained === null && ![null, t.before[1]].includes(caption())) t.explained = now;
    }).observe(document.body, {childList: true, subtree: true, characterData: true});
  }
}"""
TIMED = "() => window.__latency.label !== null && window.__latency.explained !== null"


async def predict_and_explain(page: Any, sentence: str) -> tuple[float, float]:
    """Sends ``sentence`` on Predict; seconds from the key press to the predicted label, and to the explanation.

    One rerun, as a student who replaces the text and presses Ctrl+Enter: the sentence is typed over
    the previous one, and the result counts as shown when it differs from the one before (callers
    alternate the two ``SENTENCES``). Both times are measured inside the page (see ``ARM_TIMER``);
    the Playwright wait only follows them, polling every 100 ms.
    """
    box = page.get_by_role("textbox", name="Text")
    await box.fill(sentence)
    await page.evaluate(ARM_TIMER)
    await box.press("Control+Enter")
    await page.wait_for_function(TIMED, polling=100, timeout=120_000)
    t = await page.evaluate("window.__latency")
    return (t["label"] - t["press"]) / 1000, (max(t["explained"], t["label"]) - t["press"]) / 1000


async def sidebar_jobs(page: Any) -> int:
    return await page.get_by_test_id("stSidebar").get_by_text("Your job").count()


async def browse(page: Any, index: int, class_started: asyncio.Event, class_over: asyncio.Event,
                 think: float) -> dict[str, Any]:
    """A session that never trains: predicts and explains until the class is over (timed while it trains)."""
    label, explained, timeouts = [], [], 0
    n = 0
    await predict_and_explain(page, SENTENCES[index % 2])  # loads the model for this session
    while not class_over.is_set():
        n += 1
        timed = class_started.is_set()
        try:
            a, b = await predict_and_explain(page, SENTENCES[(index + n) % 2])
        except PlaywrightTimeout:  # not answered in time: counted, the class goes on
            timeouts += 1
            continue
        if timed and not class_over.is_set():
            label.append(a)
            explained.append(b)
        await asyncio.sleep(think)
    return {"label_s": label, "explained_s": explained, "timeouts": timeouts,
            "saw_a_job": await sidebar_jobs(page) > 0}


async def train(page: Any, index: int, ready: asyncio.Barrier, go: asyncio.Event, timeout: float) -> dict[str, Any]:
    """A student: predicts once, prepares a 1-epoch run named ``class-NN``, presses Start with the class.

    A failure leaves a screenshot in benchmarks/out/ (the class waits for everyone, so it ends the run).
    """
    try:
        return await _train(page, index, ready, go, timeout)
    except Exception:
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=OUT_DIR / f"classroom-failed-class-{index:02d}.png", full_page=True)
        raise


async def _train(page: Any, index: int, ready: asyncio.Barrier, go: asyncio.Event, timeout: float) -> dict[str, Any]:
    await predict_and_explain(page, SENTENCES[index % 2])
    await page.get_by_test_id("stSidebarNav").get_by_role("link", name="Train").click()
    start = page.get_by_role("button", name="Start training")
    await start.wait_for(timeout=120_000)
    name = f"class-{index:02d}"
    for field, value in (("Epochs", "1"), ("Run name (optional)", name)):
        box = page.get_by_role("spinbutton" if field == "Epochs" else "textbox", name=field, exact=True)
        await box.fill(value)
        await box.press("Tab")
    log(f"class-{index:02d} is ready to start")
    await ready.wait()
    await go.wait()
    t0 = time.perf_counter()
    await start.click()
    clicked = time.time()
    # A 1-epoch job may end between two refreshes of the page: the first loss point's time comes
    # from the run's history.json (the server's clock) after the class; the page waits for the result.
    first_loss = asyncio.ensure_future(
        page.get_by_text("Test accuracy", exact=True).first.wait_for(timeout=timeout * 1000))
    places: list[int] = []
    told_to_retry, failed, clicks, seen_job, started = False, "", 1, False, None
    while not first_loss.done():  # what the page says while the job waits
        text = (await page.get_by_test_id("stMain").inner_text()).replace("\n", " ")
        if match := PLACE.search(text):
            places.append(1 if match.group(1) == "next" else int(match.group(2)))
        if started is None and RUNNING.search(text):
            started = time.time()
        told_to_retry |= "try again" in text.lower()  # the old refusal ("… busy … try again in 36 s")
        seen_job |= any(sign in text for sign in JOB_SIGNS)
        if match := FAILED.search(text):
            failed = match.group(0)[:200]
            first_loss.cancel()
            break
        if not seen_job and time.perf_counter() - t0 > CLICK_CHECK_S * clicks and await start.is_enabled():
            clicks += 1  # no sign of a job: the click was lost in a redraw, so press Start again, as a student would
            log(f"{name}: no job {CLICK_CHECK_S * (clicks - 1):.0f} s after Start; pressing it again")
            await start.click()
        await asyncio.wait([first_loss], timeout=3.0)  # reading 30 pages' text is work for the shared CPU
    if failed:
        log(f"{name}: the job failed: {failed}")
    else:
        await first_loss
        started = started or time.time()  # it started between two reads of the page: at the latest now
    done_s = time.perf_counter() - t0
    shown_at = time.time()
    if not failed:
        log(f"{name}: result shown after {done_s:.1f} s (place {places[:1]})")
    run, box = "", page.get_by_role("textbox", name="Run name", exact=True)
    for _ in range(0 if failed else 240):  # the result panel reruns once to make the run the current model (slow in a full class)
        if await box.count() and (run := await box.input_value(timeout=5_000)):
            break  # (input_value alone would wait for the box up to Playwright's default timeout)
        await asyncio.sleep(0.5)
    return {"name": name, "clicked_at": clicked, "first_place": places[0] if places else 0, "failed": failed,
            "start_clicks": clicks,
            "places_seen": sorted(set(places), reverse=True), "started_at": started, "first_loss_s": None,
            "finished_s": done_s, "shown_at": shown_at,
            "told_to_retry": told_to_retry, "run": run, "own_run": run == name or run.startswith(f"{name}-"),
            "jobs_in_sidebar": await sidebar_jobs(page)}


async def train_light(url: str, sessions_dir: Path, index: int, ready: asyncio.Barrier, go: asyncio.Event,
                      timeout: float) -> dict[str, Any]:
    """``train`` without a browser: the same messages to the server (``light_client.LightPage``), no rendering."""
    from light_client import LightPage

    page = await LightPage.open(url, "predict", f"s={prepare_owner(sessions_dir, 'negation')}")
    try:
        page.set("Text", SENTENCES[index % 2])
        await page.rerun()  # predicts (and explains) once, as the browser's student does
        await page.rerun(page_name="train")
        name = f"class-{index:02d}"
        page.set("Epochs", 1)
        page.set("Run name (optional)", name)
        log(f"{name} is ready to start (light client)")
        await ready.wait()
        await go.wait()
        t0 = time.perf_counter()
        read = len(page.texts)
        await page.press("Start training", wait=False)
        clicked = time.time()
        places: list[int] = []
        told_to_retry, failed, seen_job, done, started = False, "", False, False, None
        while not (done or failed):
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError(f"{name}: no result after {timeout:.0f} s")
            await asyncio.sleep(0.5)
            texts, read = page.texts[read:], len(page.texts)
            for text in texts:
                text = text.replace("*", "").replace("\n", " ")
                if match := PLACE.search(text):
                    places.append(1 if match.group(1) == "next" else int(match.group(2)))
                if started is None and RUNNING.search(text):
                    started = time.time()
                told_to_retry |= "try again" in text.lower()
                seen_job |= any(sign in text for sign in JOB_SIGNS)
                if match := FAILED.search(text):
                    failed = match.group(0)[:200]
                done |= text == "Test accuracy"
        done_s = time.perf_counter() - t0
        shown_at = time.time()
        log(f"{name}: the job failed: {failed}" if failed else
            f"{name}: result shown after {done_s:.1f} s (place {places[:1]})")
        run = ""
        for _ in range(0 if failed else 240):  # the result panel reruns once to make the run the current model
            if (widget := page.widgets.get("Run name")) is not None and widget.value:
                run = str(widget.value)
                break
            await asyncio.sleep(0.5)
        return {"name": name, "clicked_at": clicked, "first_place": places[0] if places else 0, "failed": failed,
                "start_clicks": 1, "places_seen": sorted(set(places), reverse=True), "started_at": started,
                "first_loss_s": None,
                "finished_s": done_s, "shown_at": shown_at, "told_to_retry": told_to_retry, "run": run,
                "own_run": run == name or run.startswith(f"{name}-"), "light_client": True,
                "fragment_reruns": page.fragment_runs,
                "jobs_in_sidebar": sum("Your job" in text for text in page.run_texts)}
    finally:
        await page.close()


def first_step_seconds(sessions_dir: Path, name: str, clicked_at: float) -> float | None:
    """Seconds from the click on Start to the run's first logged training step (its history.json)."""
    for history in sessions_dir.glob(f"*/runs/{name}/history.json"):
        steps = [e["time"] for e in json.loads(history.read_text()) if e.get("type") == "step"]
        if steps:
            return min(steps) - clicked_at
    return None


async def sample_rss(pid: int, samples: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append(tree_rss_mb(pid))
        await asyncio.sleep(2.0)


async def run_class(url: str, pid: int, args: argparse.Namespace, sessions_dir: Path) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        warm = await open_app(browser, url, prepare_owner(sessions_dir, None))
        await predict_and_explain(warm, SENTENCES[0])  # imports and caches of the server, not of a session
        await warm.context.close()
        await asyncio.sleep(6.0)  # the spare worker warms up
        # The sessions live in the server process: its own memory, before and after (the local back-end's
        # workers, a spare among them, come and go beside it and count only in the tree's peak).
        rss_before = tree_rss_mb(pid, descendants=False)
        log(f"server {rss_before:.0f} MB; opening {args.sessions} + {args.trainers} sessions")

        browsers = [await open_app(browser, url, prepare_owner(sessions_dir, None)) for _ in range(args.sessions)]
        traces: list[list[dict[str, Any]]] = [[] for _ in range(args.trainers)]
        students = [] if args.light_trainers else [
            await open_app(browser, url, prepare_owner(sessions_dir, "negation"), trace=traces[i] if args.trace else None)
            for i in range(args.trainers)]
        class_started, class_over, stop_sampling = asyncio.Event(), asyncio.Event(), asyncio.Event()
        ready = asyncio.Barrier(args.trainers + 1)
        rss: list[float] = []
        sampler = asyncio.ensure_future(sample_rss(pid, rss, stop_sampling))
        browsing = [asyncio.ensure_future(browse(page, i, class_started, class_over, args.think))
                    for i, page in enumerate(browsers)]
        if args.light_trainers:
            training = [asyncio.ensure_future(train_light(url, sessions_dir, i, ready, class_started, args.timeout))
                        for i in range(args.trainers)]
        else:
            training = [asyncio.ensure_future(train(page, i, ready, class_started, args.timeout))
                        for i, page in enumerate(students)]
        waiter = asyncio.ensure_future(ready.wait())
        done, _ = await asyncio.wait([waiter, *training], return_when=asyncio.FIRST_COMPLETED)
        for task in done - {waiter}:
            task.result()  # a student failed before Start: raise its error instead of waiting for ever
        await waiter
        log(f"{args.trainers} students press Start")
        started, cpu_before = time.time(), cpu_seconds()
        class_started.set()
        try:
            trained = await asyncio.gather(*training)
        finally:
            if args.trace:
                OUT_DIR.mkdir(parents=True, exist_ok=True)
                for i, trace in enumerate(traces):
                    (OUT_DIR / f"classroom-trace-class-{i:02d}.json").write_text(
                        "\n".join(json.dumps(entry) for entry in trace))
        if not args.trainers:
            await asyncio.sleep(args.browse_for)
        for student in trained:
            student["first_loss_s"] = first_step_seconds(sessions_dir, student["name"], student["clicked_at"])
        ended = max((t["shown_at"] for t in trained), default=time.time())  # not the wait for run names after it
        cpu_used = {kind: seconds - cpu_before[kind] for kind, seconds in cpu_seconds().items()}
        class_over.set()
        browsed = await asyncio.gather(*browsing)
        rss_after = tree_rss_mb(pid, descendants=False)
        stop_sampling.set()
        await sampler
        await browser.close()
    return {"trained": trained, "browsed": browsed, "started": started, "ended": ended, "cpu_s": cpu_used,
            "rss_before_mb": rss_before, "rss_after_mb": rss_after, "rss_peak_mb": max(rss, default=rss_after)}


# ---- the report --------------------------------------------------------------------------------------------------


def order_inversions(trained: list[dict[str, Any]], slack: float, when: str) -> list[tuple[str, str]]:
    """Pairs (earlier, later) in line that reached ``when`` the other way round by more than ``slack`` s.

    ``when``: "started" (the page first showed its job out of the line: the queue's order, seen
    through its 2 s polling) or "first_loss" (the run's first training step: adds the worker's start-up).
    """
    def at(t: dict[str, Any]) -> float | None:
        if when == "started":
            return t.get("started_at")
        return None if t["first_loss_s"] is None else t["clicked_at"] + t["first_loss_s"]

    timed = [t for t in trained if at(t) is not None]
    by_arrival = sorted(timed, key=lambda t: (t["first_place"], t["clicked_at"]))
    late = []
    for i, first in enumerate(by_arrival):
        for second in by_arrival[i + 1:]:
            if first["first_place"] < second["first_place"] and at(first) > at(second) + slack:
                late.append((first["name"], second["name"]))
    return late


def summarize(raw: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The figures of the report from the raw per-page observations."""
    trained, browsed = raw["trained"], raw["browsed"]
    label = [s for b in browsed for s in b["label_s"]]
    explained = [s for b in browsed for s in b["explained_s"]]
    loss = [t["first_loss_s"] for t in trained if t["first_loss_s"] is not None]
    finished = [t for t in trained if not t["failed"]]
    minutes = (raw["ended"] - raw["started"]) / 60
    sessions = args.sessions + args.trainers
    inversions = order_inversions(trained, args.order_slack, "started")
    step_inversions = order_inversions(trained, args.order_slack, "first_loss")

    def p(values: list[float], q: float) -> float | None:
        return round(percentile(values, q), 3) if values else None

    return {
        "backend": args.backend, "sessions": args.sessions, "trainers": args.trainers, "max_jobs": args.max_jobs,
        "interactions_timed": len(label), "interactions_timed_out": sum(b.get("timeouts", 0) for b in browsed),
        "interactions_per_s": round(len(label) / (minutes * 60), 2) if minutes > 0 else None,
        "cpu_s_per_interaction": {kind: round(seconds / len(label), 3) for kind, seconds in raw.get("cpu_s", {}).items()}
        if label else {},
        "predict_label_p50_s": p(label, 50), "predict_label_p95_s": p(label, 95),
        "explained_p50_s": p(explained, 50), "explained_p95_s": p(explained, 95),
        "first_loss_p50_s": p(loss, 50), "first_loss_p95_s": p(loss, 95),
        "jobs_finished": len(finished), "jobs_failed": [[t["name"], t["failed"]] for t in trained if t["failed"]],
        "start_pressed_again": sum(t["start_clicks"] > 1 for t in trained), "class_minutes": round(minutes, 2),
        "jobs_per_minute": round(len(finished) / minutes, 2) if minutes > 0 else None,
        "longest_line": max((t["first_place"] for t in trained), default=0),
        "rss_before_mb": round(raw["rss_before_mb"]), "rss_after_mb": round(raw["rss_after_mb"]),
        "rss_peak_mb": round(raw["rss_peak_mb"]),
        "rss_per_session_mb": round((raw["rss_after_mb"] - raw["rss_before_mb"]) / sessions, 1),
        "in_arrival_order": not inversions, "order_inversions": inversions,
        "first_steps_in_arrival_order": not step_inversions, "first_step_inversions": step_inversions,
        "nobody_told_to_retry": not any(t["told_to_retry"] for t in trained),
        "run_names_read": sum(bool(t["run"]) for t in trained),
        "only_own_jobs": not any(t["run"] and not t["own_run"] for t in trained)
        and all(t["jobs_in_sidebar"] == 1 for t in trained)
        and not any(b["saw_a_job"] for b in browsed),
    }


def table(summary: dict[str, Any]) -> str:
    rows = [
        ("back-end", summary["backend"]),
        ("sessions browsing / training", f"{summary['sessions']} / {summary['trainers']}"),
        ("interactions timed / timed out (5 min)", f"{summary['interactions_timed']} / {summary['interactions_timed_out']}"),
        ("predicted label p50 / p95 (s)", f"{summary['predict_label_p50_s']} / {summary['predict_label_p95_s']}"),
        ("label + explanation p50 / p95 (s)", f"{summary['explained_p50_s']} / {summary['explained_p95_s']}"),
        ("timed interactions a second", summary["interactions_per_s"]),
        ("CPU s per timed interaction", ", ".join(f"{kind} {seconds}" for kind, seconds
                                                 in summary["cpu_s_per_interaction"].items()) or "-"),
        ("Start → first loss point p50 / p95 (s)", f"{summary['first_loss_p50_s']} / {summary['first_loss_p95_s']}"),
        ("jobs finished / minutes / per minute",
         f"{summary['jobs_finished']} / {summary['class_minutes']} / {summary['jobs_per_minute']}"),
        ("jobs failed (message) / Start pressed again", f"{summary['jobs_failed'] or 'none'} / {summary['start_pressed_again']}"),
        ("longest line seen", summary["longest_line"]),
        ("server RSS before / after, its tree's peak (MB)",
         f"{summary['rss_before_mb']} / {summary['rss_after_mb']} / {summary['rss_peak_mb']}"),
        ("server RSS per session (MB)", summary["rss_per_session_mb"]),
        ("left the line in arrival order", summary["in_arrival_order"]),
        ("first training steps in arrival order", summary["first_steps_in_arrival_order"]),
        ("nobody told to try again", summary["nobody_told_to_retry"]),
        ("each page saw only its own job (run names read)", f"{summary['only_own_jobs']} ({summary['run_names_read']})"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if missing := missing_browser_parts():
        print("needs " + " and ".join(missing), file=sys.stderr)
        return 2
    out = args.out or OUT_DIR / f"classroom-{args.backend}.json"
    with tempfile.TemporaryDirectory(prefix="classroom-") as tmp, ExitStack() as stack:
        folder = Path(tmp)
        env = {"RNN_DEMO_RUNS": str(folder / "runs"), "RNN_DEMO_SESSIONS": str(folder / "sessions")}
        if args.max_jobs is not None:
            env["RNN_DEMO_MAX_JOBS"] = str(args.max_jobs)
        if args.backend == "ray":
            (folder / "ray").mkdir()
            env["RNN_DEMO_RAY_ADDRESS"] = stack.enter_context(ray_cluster(folder / "ray"))
        os.environ["RNN_DEMO_SESSIONS"] = env["RNN_DEMO_SESSIONS"]  # prepare_owner writes the choices there
        url = stack.enter_context(streamlit_server(env, folder / "server.log", start_timeout=120))
        pid = server_pid(int(url.rsplit(":", 1)[1]))
        try:
            raw = asyncio.run(asyncio.wait_for(run_class(url, pid, args, folder / "sessions"), args.timeout))
        finally:
            if args.trace:  # the server's side of the traced messages
                shutil.copyfile(folder / "server.log", OUT_DIR / f"classroom-server-{args.backend}.log")
    summary = summarize(raw, args)
    print(table(summary))
    write_result(out, {"summary": summary, "raw": raw, "environment": {"load_average_at_start": load_average()},
                       "command": " ".join(["python benchmarks/classroom.py", *(argv or sys.argv[1:])])})
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
