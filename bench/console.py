"""The console and the HTTP API at scale, each figure beside a floor measured in the same run.

  1. console page load (headless Chromium, Debian's): navigation start to the topic page's
     partition table drawn whole, for a topic of 1,000 partitions, beside the same for a topic
     of 1 partition (the floor: the page, its script and one round of API calls);
  2. the topic list of the REST Proxy API (GET /v3/clusters/{id}/topics) with 10,000 topics,
     p50 and p99 over sequential keep-alive requests, beside GET /v3/clusters/{id} (a constant
     answer: the floor of the HTTP stack) in the same run, and the answer's size; then the
     console's topics page drawing all of them.

Usage: bench/console.sh [--topics 10000] [--partitions 1000] (builds a release silt).
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from transactions import start_silt  # noqa: E402


def browser(profile: Path):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,800"]:
        options.add_argument(flag)
    os.environ.setdefault("SE_AVOID_STATS", "true")
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
    driver.set_script_timeout(120)
    return driver


# Waits in the page until `rows` elements match the selector (table rows drawn); answers the time since the
# navigation started (performance.now()) and the first contentful paint.
DRAWN = """
const [selector, rows, done] = arguments;
const check = () => document.querySelectorAll(selector).length >= rows;
const answer = () => {
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  done({drawn: performance.now(), fcp: fcp ? fcp.startTime : null});
};
if (check()) { answer(); return; }
const watch = new MutationObserver(() => { if (check()) { watch.disconnect(); answer(); } });
watch.observe(document.body, {childList: true, subtree: true});
"""


def page_load(driver, admin, topic, rows, runs, page=None, selector="#partitions tr[data-partition]"):
    """Milliseconds from navigation start to the table drawn whole, per run (a fresh load each)."""
    drawn, fcps = [], []
    for _ in range(runs):
        driver.get("about:blank")
        driver.get(f"http://{admin}/console#/{page or f'topic/{topic}'}")
        got = driver.execute_async_script(DRAWN, selector, rows)
        drawn.append(got["drawn"])
        if got["fcp"] is not None:
            fcps.append(got["fcp"])
    return drawn, fcps


def latencies(admin, path, requests):
    """Seconds per request over one keep-alive connection, and the answer's size."""
    host, port = admin.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    took, size = [], 0
    for _ in range(requests):
        start = time.perf_counter()
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        took.append(time.perf_counter() - start)
        assert response.status == 200, (path, response.status, body[:200])
        size = len(body)
    connection.close()
    return took, size


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def create_topics(admin, names, partitions=1):
    for start in range(0, len(names), 500):
        batch = names[start:start + 500]
        futures = admin.create_topics([NewTopic(n, partitions, 1) for n in batch], operation_timeout=120)
        for future in futures.values():
            future.result(300)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=str(ROOT / "target" / "release" / "silt"))
    parser.add_argument("--dir", default=str(ROOT / "target" / "bench-tmp"))
    parser.add_argument("--partitions", type=int, default=1000)
    parser.add_argument("--topics", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    base = Path(args.dir)
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=base))
    process, bootstrap, admin_addr = start_silt(Path(args.binary), work / "data", [])
    driver = None
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        create_topics(admin, ["one"], 1)
        create_topics(admin, ["wide"], args.partitions)
        # A record in every partition: each row has a range to draw.
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        for topic, count in (("one", 1), ("wide", args.partitions)):
            for p in range(count):
                producer.produce(topic, b"x" * 100, partition=p)
        producer.flush(60)

        # 1. The console's topic page.
        driver = browser(work / "chromium")
        page_load(driver, admin_addr, "one", 1, 2)  # warm: the browser's own first start
        floor, floor_fcp = page_load(driver, admin_addr, "one", 1, args.runs)
        wide, wide_fcp = page_load(driver, admin_addr, "wide", args.partitions, args.runs)
        f, w = statistics.median(floor), statistics.median(wide)
        print(f"console topic page, 1 partition (floor):     drawn in {f:7.0f} ms median  (first contentful paint {statistics.median(floor_fcp):5.0f} ms)", flush=True)
        print(f"console topic page, {args.partitions:,} partitions:      drawn in {w:7.0f} ms median  (first contentful paint {statistics.median(wide_fcp):5.0f} ms; "
              f"{w / f:.1f}x the floor; runs {', '.join(f'{x:.0f}' for x in wide)})", flush=True)

        # 2. The topic list with many topics.
        cluster = json.loads(http_get(admin_addr, "/v3/clusters"))["data"][0]["cluster_id"]
        topics_path, cluster_path = f"/v3/clusters/{cluster}/topics", f"/v3/clusters/{cluster}"
        few, few_size = latencies(admin_addr, topics_path, args.requests)
        started = time.monotonic()
        names = [f"t{i:05}" for i in range(args.topics)]
        create_topics(admin, names)
        made = time.monotonic() - started
        print(f"created {args.topics:,} topics in {made:.0f} s ({args.topics / made:.0f}/s)", flush=True)
        floor, _ = latencies(admin_addr, cluster_path, args.requests)
        many, many_size = latencies(admin_addr, topics_path, args.requests)
        ms = lambda v: v * 1000  # noqa: E731
        print(f"GET /v3/clusters/{{id}} (floor):                     p50 {ms(percentile(floor, .5)):7.2f} ms  p99 {ms(percentile(floor, .99)):7.2f} ms", flush=True)
        print(f"GET /v3/clusters/{{id}}/topics, 2 topics:             p50 {ms(percentile(few, .5)):7.2f} ms  p99 {ms(percentile(few, .99)):7.2f} ms  ({few_size:,} bytes)", flush=True)
        print(f"GET /v3/clusters/{{id}}/topics, {len(names) + 2:,} topics:        p50 {ms(percentile(many, .5)):7.2f} ms  p99 {ms(percentile(many, .99)):7.2f} ms  "
              f"({many_size:,} bytes; {percentile(many, .5) / percentile(floor, .5):.0f}x the floor's p50)", flush=True)
        # 3. The console's topic list drawing all of them.
        listed, _ = page_load(driver, admin_addr, None, len(names) + 2, 3, page="topics", selector="#topics tbody tr")
        print(f"console topics page, {len(names) + 2:,} topics:       drawn in {statistics.median(listed):7.0f} ms median "
              f"({statistics.median(listed) / f:.1f}x the one-partition topic page)", flush=True)
    finally:
        if driver is not None:
            driver.quit()
        process.send_signal(signal.SIGTERM)
        process.wait(120)
        shutil.rmtree(work, ignore_errors=True)


def http_get(admin, path):
    host, port = admin.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.request("GET", path)
    body = connection.getresponse().read()
    connection.close()
    return body


if __name__ == "__main__":
    sys.exit(main())
