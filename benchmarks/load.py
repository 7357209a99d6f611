"""Load: `paperboy run` in Slack HTTP mode under bursts and a steady stream of signed slash commands.

Starts, each in its own process: a Hugging Face stand-in (every search answers 50 papers after
100 ms, fresh ones for each topic), a Slack stand-in (auth.test, users.info, response URLs; it
notes when each answer arrives) and `paperboy run` itself, on SQLite or PostgreSQL (a throwaway
server, started as the test suite does). Then fires signed `/papers <topic>` commands (100
distinct topics, one person each) and prints, per scenario:

  ack       time from sending the command to Paperboy's HTTP answer (the acknowledgement)
  answer    time from sending the command to the answer reaching the response URL
  CPU/cmd   CPU time of the Paperboy process divided by the commands of the scenario
  peak RSS  the Paperboy process's peak resident memory (VmHWM)

Scenarios (a fresh Paperboy process and database each): `seq` (50 distinct topics one after
another, cold, then the same 50 again, warm: CPU per command), bursts of 50, 200 and 500
commands sent at once, and a sustained 100 commands/s for 30 s.

`--compare REV` runs the same load against another git revision (default a940390, before the
load work) checked out into a temporary worktree and put first on PYTHONPATH, and prints both
side by side; each Paperboy process is checked to import the tree it is meant to.

Run: .venv/bin/python benchmarks/load.py [--compare a940390] [--db sqlite,postgresql]
                                         [--scenarios seq,50,200,500,sustained] [--sustained-seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SIGNING_SECRET = "load-benchmark-signing-secret"
BOT_TOKEN = "xoxb-load-benchmark"
TEAM = "TLOAD"
PAPERS_PER_SEARCH = 50
UPSTREAM_DELAY = 0.1
ANSWER_TIMEOUT = 120.0
DEFAULT_BEFORE = "a940390"


# --- stand-ins (each runs as `python benchmarks/load.py --serve hf|slack`) -----------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _search_items(query: str, records: list[dict[str, Any]]) -> bytes:
    """50 papers for ``query``: ids unique to the query, text from the bundled sample, the query
    words in every title (so each one matches)."""
    digest = int(hashlib.sha1(query.encode()).hexdigest()[:8], 16)
    prefix = 2000 + digest % 7000
    items = []
    for n in range(PAPERS_PER_SEARCH):
        record = records[(digest + n * 7) % len(records)]
        paper = {
            "id": f"{prefix}.{digest % 100 * 1000 + n:05d}",
            "title": f"{record['title']}: {query} revisited",
            "summary": record["summary"],
            "authors": [{"name": f"Author {k} {digest % 97}", "hidden": False} for k in range(5)],
            "publishedAt": "2026-11-20T08:00:00.000Z",
            "upvotes": (digest + n * 13) % 300,
            "ai_summary": record["summary"][:200],
            "ai_keywords": [query, "generalization", "benchmark"],
            "githubRepo": f"https://github.com/example/repo{n}" if n % 3 == 0 else None,
            "githubStars": n * 11 if n % 3 == 0 else None,
        }
        items.append({"paper": paper, "title": paper["title"], "summary": paper["summary"],
                      "publishedAt": paper["publishedAt"], "numComments": 0})
    return json.dumps(items).encode()


async def _serve_hf(port: int) -> None:
    from aiohttp import web

    from bot.sample import sample_records

    records = sample_records()
    answers: dict[str, bytes] = {}

    async def search(request: web.Request) -> web.Response:
        query = request.query.get("q", "")
        await asyncio.sleep(UPSTREAM_DELAY)
        body = answers.get(query)
        if body is None:
            body = answers[query] = _search_items(query, records)
        return web.Response(body=body, content_type="application/json")

    async def daily(request: web.Request) -> web.Response:
        await asyncio.sleep(UPSTREAM_DELAY)
        return web.Response(body=_search_items("daily", records), content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/papers/search", search)
    app.router.add_get("/api/daily_papers", daily)
    await _run_forever(app, port)


async def _serve_slack(port: int) -> None:
    from aiohttp import web

    answered: dict[str, float] = {}
    api_calls: dict[str, int] = {}
    connections: set[tuple[str, int]] = set()

    def seen(request: web.Request) -> None:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            connections.add((peer[0], peer[1]))

    async def api(request: web.Request) -> web.Response:
        seen(request)
        method = request.match_info["method"]
        api_calls[method] = api_calls.get(method, 0) + 1
        if method == "auth.test":
            return web.json_response({"ok": True, "url": "https://load.slack.test/", "team": "Load", "user": "paperboy",
                                      "team_id": TEAM, "user_id": "UBOT", "bot_id": "BBOT",
                                      "is_enterprise_install": False})
        if method == "users.info":
            params = dict(request.query)
            if request.can_read_body:
                params.update(await request.json() if request.content_type == "application/json"
                              else dict(await request.post()))
            user = str(params.get("user", "U0"))
            return web.json_response({"ok": True, "user": {"id": user, "team_id": TEAM, "tz": "Europe/Berlin",
                                                           "is_admin": False, "is_owner": False}})
        return web.json_response({"ok": True})

    async def response_url(request: web.Request) -> web.Response:
        seen(request)
        await request.read()
        answered.setdefault(request.match_info["key"], time.monotonic())
        return web.Response(text="ok")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"answered": answered, "api_calls": api_calls, "connections": len(connections)})

    async def reset(request: web.Request) -> web.Response:
        answered.clear()
        api_calls.clear()
        connections.clear()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/api/{method}", api)
    app.router.add_get("/api/{method}", api)
    app.router.add_post("/response/{key}", response_url)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    await _run_forever(app, port)


async def _run_forever(app: Any, port: int) -> None:
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=2048).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


# --- processes ----------------------------------------------------------------------------------


@dataclass
class Standin:
    process: subprocess.Popen[str]
    url: str

    def stop(self) -> None:
        self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)


def start_standin(kind: str) -> Standin:
    port = _free_port()
    process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve", kind, "--port", str(port)],
                               cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        raise RuntimeError(f"the {kind} stand-in did not start")
    return Standin(process, f"http://127.0.0.1:{port}")


def _hide_sniffio(directory: Path) -> Path:
    """A directory whose `sniffio` fails to import, as it did before sniffio was a dependency."""
    package = directory / "no-sniffio" / "sniffio"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'sniffio'\", name='sniffio')\n")
    return package.parent


def tree_environment(tree: Path, scratch: Path) -> dict[str, str]:
    """PYTHONPATH with ``tree`` first (ahead of the editable install) and, for a tree that does not
    declare sniffio, an import of sniffio that fails as it did there."""
    paths = [str(tree)]
    if "sniffio" not in (tree / "pyproject.toml").read_text():
        paths.append(str(_hide_sniffio(scratch)))
    return {"PYTHONPATH": os.pathsep.join(paths)}


def check_imports(tree: Path, env: dict[str, str]) -> None:
    """Fail unless a process started like Paperboy's imports the core and adapter from ``tree``."""
    probe = "import bot.core, adapters.slack.adapter as a; print(bot.core.__file__); print(a.__file__)"
    found = subprocess.run([sys.executable, "-c", probe], cwd=tree, env={**os.environ, **env}, check=True,
                           capture_output=True, text=True).stdout.split()
    for path in found:
        if not Path(path).resolve().is_relative_to(tree.resolve()):
            raise RuntimeError(f"a Paperboy process for {tree} imported {path}")


@dataclass
class Paperboy:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


async def start_paperboy(tree: Path, env: dict[str, str], database_url: str, hf: Standin, slack: Standin,
                         scratch: Path) -> Paperboy:
    port = _free_port()
    log = scratch / f"paperboy-{port}.log"
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DISCORD_", "PAPERBOY_"))},
        **env,
        "DATABASE_URL": database_url, "PAPERBOY_HF_URL": hf.url, "SLACK_API_URL": f"{slack.url}/api/",
        "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET, "PORT": str(port),
        "PAPERBOY_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "bot.cli", "run"]
    if os.environ.get("LOAD_PROFILE_DIR"):   # profile each Paperboy process's CPU time (cProfile file per port)
        target = Path(os.environ["LOAD_PROFILE_DIR"]) / f"paperboy-{port}.prof"
        command[1:] = ["-c", "import cProfile, runpy, sys, time\n"
                       "profile = cProfile.Profile(time.process_time)\nsys.argv = ['paperboy', 'run']\n"
                       "profile.enable()\ntry:\n    runpy.run_module('bot.cli', run_name='__main__')\n"
                       f"finally:\n    profile.disable()\n    profile.dump_stats({str(target)!r})\n"]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, cwd=scratch, env=environment,
                                   stdout=sink, stderr=subprocess.STDOUT)
    paperboy = Paperboy(process, port, log)
    import aiohttp

    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"paperboy exited: {log.read_text()[-2000:]}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return paperboy
            await asyncio.sleep(0.1)
    paperboy.stop()
    raise RuntimeError("paperboy did not start listening within 60 s")


# --- the load -------------------------------------------------------------------------------------


def _topics() -> list[str]:
    from benchmarks.commands import TOPICS

    return list(TOPICS)


def slash_body(text: str, *, user: str, key: str, slack: Standin) -> str:
    return urlencode({
        "token": "unused", "team_id": TEAM, "team_domain": "load", "channel_id": "CLOAD", "channel_name": "load",
        "user_id": user, "user_name": user.lower(), "command": "/papers", "text": text, "api_app_id": "ALOAD",
        "is_enterprise_install": "false", "response_url": f"{slack.url}/response/{key}", "trigger_id": "1.2.3",
    })


def signed(body: str) -> dict[str, str]:
    from slack_sdk.signature import SignatureVerifier

    stamp = str(int(time.time()))
    return {"X-Slack-Request-Timestamp": stamp, "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Signature": SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=stamp, body=body)}


@dataclass
class Figures:
    commands: int = 0
    acks: list[float] = field(default_factory=list)
    answers: list[float] = field(default_factory=list)
    busy: int = 0
    failed: int = 0
    unanswered: int = 0
    cpu_ms: float = float("nan")
    peak_rss: float = float("nan")
    extra: dict[str, float] = field(default_factory=dict)


class Load:
    """Fires commands at one Paperboy process and collects ack and answer times."""

    def __init__(self, paperboy: Paperboy, slack: Standin) -> None:
        self.paperboy = paperboy
        self.slack = slack
        self.sent: dict[str, float] = {}
        self.figures = Figures()
        self._keys = itertools.count()

    async def one(self, http: Any, topic: str, user: str) -> None:
        key = f"k{next(self._keys)}"
        body = slash_body(topic, user=user, key=key, slack=self.slack)
        headers = signed(body)
        started = time.monotonic()
        self.sent[key] = started
        try:
            async with http.post(self.paperboy.events_url, data=body.encode(), headers=headers) as response:
                text = await response.text()
                self.figures.acks.append(time.monotonic() - started)
                if response.status != 200:
                    self.figures.failed += 1
                    del self.sent[key]
                elif "busy" in text:
                    self.figures.busy += 1
                    del self.sent[key]
        except Exception:  # noqa: BLE001 - counted, the run goes on
            self.figures.failed += 1
            self.sent.pop(key, None)
        self.figures.commands += 1

    async def answers(self, http: Any) -> None:
        """Wait for every sent command's answer (or the time-out); record answer latencies."""
        deadline = time.monotonic() + ANSWER_TIMEOUT
        answered: dict[str, float] = {}
        while time.monotonic() < deadline:
            async with http.get(f"{self.slack.url}/stats") as response:
                stats = await response.json()
            answered = stats["answered"]
            if all(key in answered for key in self.sent):
                break
            await asyncio.sleep(0.2)
        self.figures.answers = [answered[k] - t for k, t in self.sent.items() if k in answered]
        self.figures.unanswered = sum(1 for k in self.sent if k not in answered)
        self.figures.extra["slack_connections"] = stats["connections"]
        self.figures.extra["auth_test_calls"] = stats["api_calls"].get("auth.test", 0)


def _client() -> Any:
    import aiohttp

    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True),
                                 timeout=aiohttp.ClientTimeout(total=60))


async def run_scenario(name: str, paperboy: Paperboy, slack: Standin, sustained_seconds: float) -> Figures:
    load = Load(paperboy, slack)
    topics = _topics()
    async with _client() as http:
        await http.post(f"{slack.url}/reset")
        cpu_before = paperboy.cpu_seconds()
        if name == "seq":
            cold = topics[:50]
            for n, topic in enumerate(cold):
                await load.one(http, topic, f"U{n}")
                await _wait_answered(http, slack, len(load.sent))
            cpu_cold = paperboy.cpu_seconds()
            for n, topic in enumerate(cold):
                await load.one(http, topic, f"U{n}")
                await _wait_answered(http, slack, len(load.sent))
            cpu_warm = paperboy.cpu_seconds()
            load.figures.extra["cold_cpu_ms"] = (cpu_cold - cpu_before) * 1000 / len(cold)
            load.figures.extra["warm_cpu_ms"] = (cpu_warm - cpu_cold) * 1000 / len(cold)
        elif name == "sustained":
            rate, count = 100, int(100 * sustained_seconds)
            start = time.monotonic()
            tasks = []
            for n in range(count):
                delay = start + n / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.ensure_future(load.one(http, topics[n % len(topics)], f"U{n % 1000}")))
            await asyncio.gather(*tasks)
        else:
            size = int(name)
            await asyncio.gather(*(load.one(http, topics[n % len(topics)], f"U{n}") for n in range(size)))
        await load.answers(http)
        await asyncio.sleep(0.3)   # the last answer's bookkeeping
        load.figures.cpu_ms = (paperboy.cpu_seconds() - cpu_before) * 1000 / max(1, load.figures.commands)
        load.figures.peak_rss = paperboy.peak_rss_mib()
    return load.figures


async def _wait_answered(http: Any, slack: Standin, count: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        async with http.get(f"{slack.url}/stats") as response:
            if len((await response.json())["answered"]) >= count:
                return
        await asyncio.sleep(0.005)


# --- databases ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def databases(kinds: list[str], scratch: Path) -> Iterator[dict[str, Any]]:
    """A factory of fresh database URLs per kind (PostgreSQL: one throwaway server)."""
    server = None
    makers: dict[str, Any] = {}
    counter = itertools.count()
    if "sqlite" in kinds:
        makers["sqlite"] = lambda: f"sqlite:///{scratch / f'load{next(counter)}.db'}"
    if "postgresql" in kinds:
        from tests.pg import PostgresServer, find_pg_bin

        bin_dir = find_pg_bin()
        if bin_dir is None:
            print("PostgreSQL server binaries not found: PostgreSQL runs skipped", file=sys.stderr)
        else:
            server = PostgresServer(bin_dir)
            server.start()
            makers["postgresql"] = lambda: server.create_database(f"load{next(counter)}")
    try:
        yield makers
    finally:
        if server is not None:
            server.stop()


@contextlib.contextmanager
def checkout(revision: str, scratch: Path) -> Iterator[Path]:
    """``revision`` of this repository in a temporary worktree."""
    target = scratch / f"tree-{revision}"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(target), revision], check=True,
                   capture_output=True)
    try:
        yield target
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(target)], capture_output=True)


# --- report ---------------------------------------------------------------------------------------------


def _ms(values: list[float], fraction: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))] * 1000:.0f}"


def describe(figures: Figures) -> list[str]:
    acks, answers = figures.acks, figures.answers
    line = [f"ack p50/p99/max {_ms(acks, .5)}/{_ms(acks, .99)}/{_ms(acks, 1)} ms",
            f"answer p50/p99/max {_ms(answers, .5)}/{_ms(answers, .99)}/{_ms(answers, 1)} ms",
            f"CPU/cmd {figures.cpu_ms:.1f} ms", f"peak RSS {figures.peak_rss:.0f} MiB"]
    if "cold_cpu_ms" in figures.extra:
        line.append(f"CPU/cmd cold {figures.extra['cold_cpu_ms']:.1f} ms, warm {figures.extra['warm_cpu_ms']:.1f} ms")
    notes = []
    if figures.busy:
        notes.append(f"{figures.busy} answered busy")
    if figures.failed:
        notes.append(f"{figures.failed} failed")
    if figures.unanswered:
        notes.append(f"{figures.unanswered} unanswered")
    notes.append(f"auth.test {figures.extra.get('auth_test_calls', 0):.0f}")
    notes.append(f"connections to Slack {figures.extra.get('slack_connections', 0):.0f}")
    return [", ".join(line), "; ".join(notes)]


SCENARIO_TITLES = {"seq": "sequential, 50 cold then 50 warm", "50": "burst of 50", "200": "burst of 200",
                   "500": "burst of 500", "sustained": "sustained 100 commands/s"}


async def run_tree(label: str, tree: Path, env: dict[str, str], makers: dict[str, Any], scenarios: list[str],
                   hf: Standin, slack: Standin, scratch: Path, sustained_seconds: float,
                   results: dict[tuple[str, str, str], Figures]) -> None:
    for kind, make_url in makers.items():
        for scenario in scenarios:
            paperboy = await start_paperboy(tree, env, make_url(), hf, slack, scratch)
            try:
                figures = await run_scenario(scenario, paperboy, slack, sustained_seconds)
            finally:
                paperboy.stop()
            results[(kind, scenario, label)] = figures
            print(f"  [{label} {kind} {scenario}] " + " | ".join(describe(figures)), file=sys.stderr, flush=True)


async def main_async(args: argparse.Namespace) -> None:
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    kinds = [k.strip() for k in args.db.split(",") if k.strip()]
    scratch = Path(tempfile.mkdtemp(prefix="paperboy-load-"))
    results: dict[tuple[str, str, str], Figures] = {}
    hf, slack = start_standin("hf"), start_standin("slack")
    labels: list[str] = []
    try:
        with databases(kinds, scratch) as makers, contextlib.ExitStack() as stack:
            trees: list[tuple[str, Path]] = []
            if args.compare:
                trees.append((f"before ({args.compare})", stack.enter_context(checkout(args.compare, scratch))))
            trees.append(("after (this tree)" if args.compare else "this tree", ROOT))
            for label, tree in trees:
                env = tree_environment(tree, scratch)
                check_imports(tree, env)
                labels.append(label)
                await run_tree(label, tree, env, makers, scenarios, hf, slack, scratch, args.sustained_seconds,
                               results)
    finally:
        hf.stop()
        slack.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"benchmark: `paperboy run` in Slack HTTP mode, signed /papers <topic> commands, 100 distinct topics; "
          f"Hugging Face stand-in answers {PAPERS_PER_SEARCH} fresh papers per topic after "
          f"{UPSTREAM_DELAY * 1000:.0f} ms; {os.cpu_count()} CPUs")
    for kind in kinds:
        for scenario in scenarios:
            title = SCENARIO_TITLES.get(scenario, scenario)
            if scenario == "sustained":
                title = f"sustained 100 commands/s for {args.sustained_seconds:.0f} s"
            print(f"{kind}, {title}:")
            for label in labels:
                figures = results.get((kind, scenario, label))
                if figures is not None:
                    first, second = describe(figures)
                    print(f"  {label:<22} {first}")
                    print(f"  {'':<22} {second}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", choices=("hf", "slack"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--compare", nargs="?", const=DEFAULT_BEFORE, default=None, metavar="REV",
                        help=f"also run git revision REV (default {DEFAULT_BEFORE}) and print both side by side")
    parser.add_argument("--db", default="sqlite,postgresql", help="sqlite, postgresql or both (default both)")
    parser.add_argument("--scenarios", default="seq,50,200,500,sustained")
    parser.add_argument("--sustained-seconds", type=float, default=30.0)
    args = parser.parse_args()
    if args.serve == "hf":
        asyncio.run(_serve_hf(args.port))
    elif args.serve == "slack":
        asyncio.run(_serve_slack(args.port))
    else:
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
