"""The web console at /console (#17), driven in a real headless Chromium (Debian's chromium
and chromedriver, installed by test.sh) against a real `silt serve` whose topic is partly
archived in a real S3-compatible server: the topic page shows both offset ranges, the message
browser reads offset 0 from the archive, a group's lag shows and its offsets reset, configs
edit; at desktop and phone sizes, in both themes. Screenshots of every page go to
target/console-screenshots/."""

import json
import os
import shutil
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from conftest import wait_for
from helpers import confluent_produce, create_topic
from test_historical import TOPIC_CONFIG, only_in_the_archive, tiered_silt

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SHOTS = Path(__file__).resolve().parents[2] / "target" / "console-screenshots"


@pytest.fixture
def browser(tmp_path):
    for path in (CHROMIUM, CHROMEDRIVER):
        assert shutil.which(path), f"{path} is missing: ./test.sh installs Debian's chromium and chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # Headless, as root, with no calls home (this machine's network is closed).
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1280,800"]:
        options.add_argument(flag)
    os.environ.setdefault("SE_AVOID_STATS", "true")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def until(driver, condition, what, timeout=30):
    """Waits for `condition(driver)` to be truthy (the console refreshes every 2 s)."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d))
    except Exception as e:
        page = driver.execute_script("return [document.getElementById('error').innerText, document.getElementById('main').innerText.slice(0, 800)]")
        raise AssertionError(f"waiting for {what}: {e!r}; the console's error: {page[0]!r}; its page: {page[1]!r}") from None


def shot(driver, name):
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def texts(driver, selector):
    """The text of every element matching `selector`, read in one go (the console redraws
    its live tables every refresh, so elements found earlier go stale)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]), e => e.innerText)", selector)


def text(driver, selector):
    """The text of the one element matching `selector`, or None while there is none."""
    found = texts(driver, selector)
    return found[0] if len(found) == 1 else None


def again_if_redrawn(action, tries=3):
    """Does `action` on a page that redraws itself every refresh: once more if a redraw
    replaced an element between finding and using it."""
    for attempt in range(tries):
        try:
            return action()
        except StaleElementReferenceException:
            if attempt == tries - 1:
                raise


def reset_enabled(driver):
    return driver.execute_script("const b = document.getElementById('reset-button'); return !!b && !b.disabled")


def partition_rows(driver):
    """Each partition row's cells and the boxes of its two range bars, read in one go."""
    return driver.execute_script("""
        return Array.from(document.querySelectorAll('#partitions tr[data-partition]'), row => {
          const box = (s) => { const e = row.querySelector(s); if (!e) return null;
                               const r = e.getBoundingClientRect(); return {x: r.left, width: r.width}; };
          const text = (s) => row.querySelector(s).innerText;
          return {partition: row.dataset.partition, archive_start: text('.archive-start'), archived_to: text('.archived-to'),
                  local_start: text('.local-start'), hw: text('.hw'), archived: box('.bar .archived'), local: box('.bar .local')};
        })""")


def test_the_console_shows_the_tiers_browses_the_archive_and_resets_a_group(silt_factory, s3, browser):
    silt = tiered_silt(silt_factory, s3)
    create_topic(silt.bootstrap, "orders", partitions=2, config=TOPIC_CONFIG)
    first = [(i % 2, b"order-%d" % i, json.dumps({"order": i, "item": "x" * 200}).encode(), [("source", b"test")], None)
             for i in range(1000)]
    confluent_produce(silt.bootstrap, "orders", first, **{"linger.ms": 10, "batch.size": 8192})
    wait_for(lambda: only_in_the_archive(silt, "orders"), timeout=240, what="orders archived and gone from the local log")
    # Newer records stay local (the local log now keeps a day): each partition has both ranges.
    admin = AdminClient({"bootstrap.servers": silt.bootstrap})
    resource = ConfigResource("topic", "orders", incremental_configs=[
        ConfigEntry("retention.local.target.ms", "86400000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([resource])[resource].result(10)
    confluent_produce(silt.bootstrap, "orders", [(i % 2, None, b"late-%d" % i, [], None) for i in range(10)])

    # Overview: the broker, the counts, the rate charts.
    browser.get(f"{silt.admin}/console")
    until(browser, lambda d: text(d, "#brokers-alive") == "1 / 1", "the broker on the overview")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#charts .chart")) == 4
    assert "orders" not in text(browser, "#error")
    shot(browser, "overview")

    # Topic: per partition a bar with the archived range and the local range on one axis.
    browser.get(f"{silt.admin}/console#/topic/orders")
    until(browser, lambda d: len(partition_rows(d)) == 2, "the partitions")
    for row in partition_rows(browser):
        # The late records' segment may be archived too by now; they stay local either way.
        assert (row["archive_start"], row["local_start"], row["hw"]) == ("0", "500", "505"), row
        assert row["archived_to"] in ("500", "505"), row
        # Both drawn, the archived range to the left of the local one.
        archived, local = row["archived"], row["local"]
        assert archived["width"] > local["width"] > 0, row
        assert archived["x"] < local["x"], row
    assert text(browser, "#archived-bytes").endswith("KiB")
    shot(browser, "topic")

    # Configs: edited in the page, as a Kafka client then sees them.
    row = browser.find_element(By.CSS_SELECTOR, '#configs tr[data-config="retention.ms"]')
    field = row.find_element(By.TAG_NAME, "input")
    field.clear()
    field.send_keys("864000000")
    row.find_element(By.CSS_SELECTOR, 'button[data-action="save"]').click()
    until(browser, lambda d: texts(d, '#configs tr[data-config="retention.ms"] .result') == ["saved"], "the config saved")
    resource = ConfigResource("topic", "orders")
    described = admin.describe_configs([resource])[resource].result(10)
    assert described["retention.ms"].value == "864000000"

    # Messages: offset 0 comes from the archive, and says so.
    browser.get(f"{silt.admin}/console#/messages/orders")
    until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '#records tr[data-offset="0"]'), "offset 0")
    assert text(browser, "#tier") == "archive"
    assert texts(browser, '#records tr[data-offset="0"] .key') == ["order-0"]
    (value,) = texts(browser, '#records tr[data-offset="0"] .value')
    assert json.loads(value) == {"order": 0, "item": "x" * 200}
    Select(browser.find_element(By.ID, "format")).select_by_value("hex")
    assert texts(browser, '#records tr[data-offset="0"] .key') == ["6f 72 64 65 72 2d 30"]
    shot(browser, "messages-archive")
    # The newest records of partition 1 come from the local log.
    Select(browser.find_element(By.ID, "partition")).select_by_value("1")
    Select(browser.find_element(By.ID, "mode")).select_by_value("newest")
    Select(browser.find_element(By.ID, "format")).select_by_value("text")
    limit = browser.find_element(By.ID, "limit")
    limit.clear()
    limit.send_keys("5")
    browser.find_element(By.CSS_SELECTOR, "#browse button").click()
    until(browser, lambda d: text(d, "#tier") == "local", "the local tier answering")
    assert texts(browser, "#records td.value") == ["late-%d" % i for i in (1, 3, 5, 7, 9)]

    # A consumer group: its lag shows live, then an offset reset once it is empty.
    consumer = Consumer({"bootstrap.servers": silt.bootstrap, "group.id": "billing", "client.id": "billing-1",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe(["orders"])
    wait_for(lambda: consumer.poll(0.2) is not None and consumer.assignment(), timeout=60, what="the consumer assigned")
    consumer.commit(offsets=[TopicPartition("orders", 0, 400), TopicPartition("orders", 1, 505)], asynchronous=False)
    browser.get(f"{silt.admin}/console#/group/billing")
    until(browser, lambda d: texts(d, "#total-lag") == ["105"], "the group's lag")
    lags = browser.execute_script("""return Object.fromEntries(Array.from(document.querySelectorAll('#lags tr[data-partition]'),
        r => [r.dataset.partition, r.querySelector('.lag').innerText]))""")
    assert lags == {"orders/0": "105", "orders/1": "0"}
    assert any("billing-1" in t for t in texts(browser, "#members td"))
    assert not reset_enabled(browser)
    shot(browser, "group")
    consumer.close()
    until(browser, lambda d: texts(d, "#group-state") == ["Empty"], "the group empty", timeout=60)
    until(browser, lambda d: reset_enabled(d), "the reset enabled")
    Select(browser.find_element(By.ID, "reset-to")).select_by_value("earliest")
    browser.find_element(By.ID, "reset-button").click()
    until(browser, lambda d: texts(d, "#reset-result") == ["reset 2 partition(s)"], "the reset done")
    until(browser, lambda d: texts(d, "#total-lag") == ["1,010"], "the lag after the reset")
    check = Consumer({"bootstrap.servers": silt.bootstrap, "group.id": "billing"})
    committed = check.committed([TopicPartition("orders", 0), TopicPartition("orders", 1)], timeout=10)
    check.close()
    assert [tp.offset for tp in committed] == [0, 0]

    # Archive: object counts, the cache, the topic's bytes in the bucket.
    browser.get(f"{silt.admin}/console#/archive")
    until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#archive-topics tr"), "the archive page")
    assert "orders" in text(browser, "#archive-topics")
    assert text(browser, "#cache-hit-ratio").endswith("%")
    # Verify the topic's archived objects from the page.
    def start_verify():
        Select(browser.find_element(By.ID, "verify-topic")).select_by_value("orders")
        browser.find_element(By.ID, "verify-button").click()
    again_if_redrawn(start_verify)
    until(browser, lambda d: d.execute_script("return document.getElementById('verify-state')?.dataset.state") == "ok",
          "the verification done", timeout=60)
    assert "all good" in text(browser, "#verify-state") and "topic orders" in text(browser, "#verify-state")
    shot(browser, "archive")

    # Dark theme, kept across pages; and a phone-sized window without sideways scrolling.
    browser.find_element(By.ID, "theme").click()
    theme = browser.execute_script("return document.documentElement.dataset.theme")
    browser.get(f"{silt.admin}/console#/topic/orders")
    until(browser, lambda d: partition_rows(d), "the topic again")
    assert browser.execute_script("return document.documentElement.dataset.theme") == theme
    shot(browser, f"topic-{theme}")
    browser.set_window_size(390, 844)
    until(browser, lambda d: d.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1"),
          "the page fitting a narrow screen")
    shot(browser, "topic-narrow")
