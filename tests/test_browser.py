"""The app in a real browser (Debian's Chromium through Playwright): upload, train, classify, find and load a
published adapter, as a person would.

PTUNING_SCREENSHOTS=dir saves a picture of every tab there. PTUNING_BROWSER_BASE_MODEL sets the base model
(default: a tiny random BERT; "sentence-transformers/all-MiniLM-L6-v2" for a real run) and
PTUNING_BROWSER_EPOCHS the epochs (default 1).
"""

import os
import re
from pathlib import Path

import pytest

playwright = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect, sync_playwright  # noqa: E402

from app import build_app  # noqa: E402
from ptuning import PromptClassifier  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
MOVIES = Path(__file__).resolve().parents[1] / "examples" / "movie_sentiment.csv"

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)"),
    pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword):Warning"),
]


@pytest.fixture
def page():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            browser.close()


def screenshot(page, name: str) -> None:
    folder = os.environ.get("PTUNING_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.wait_for_timeout(500)  # let plots finish drawing
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def test_upload_train_and_classify(url, page, tiny):
    base_model = os.environ.get("PTUNING_BROWSER_BASE_MODEL") or tiny("bert")
    epochs = os.environ.get("PTUNING_BROWSER_EPOCHS", "1")
    page.goto(url)

    page.get_by_role("tab", name="Data").click()
    page.locator("#data-upload input[type=file]").set_input_files(str(MOVIES))
    expect(page.locator("#data-summary")).to_contain_text("400 examples", timeout=30_000)
    expect(page.locator("#data-summary")).to_contain_text("2 classes")
    expect(page.locator("#data-problems")).to_contain_text("Ready to train")
    expect(page.get_by_text("Examples per class")).to_be_visible()
    expect(page.get_by_role("gridcell", name=re.compile("impeccable screenplay")).first).to_be_visible()
    screenshot(page, "1-data")

    page.get_by_role("tab", name="Train").click()
    page.get_by_label("Base model").fill(base_model)
    page.get_by_label("Epochs (0 = automatic)").fill(epochs)
    page.get_by_role("button", name="Train", exact=True).click()
    expect(page.locator("#train-status")).to_contain_text("step", timeout=120_000)
    screenshot(page, "2-train-running")
    expect(page.locator("#train-status")).to_contain_text("Done", timeout=300_000)
    expect(page.locator("#train-metrics")).to_contain_text("accuracy")
    expect(page.get_by_text("Confusion matrix")).to_be_visible()
    expect(page.get_by_role("button", name="Download the adapter (.zip)")).to_be_visible()
    screenshot(page, "2-train-done")

    page.get_by_role("tab", name="Classify").click()
    expect(page.get_by_text("Adapter ready")).to_be_visible()
    page.get_by_label("Text", exact=True).fill("A gripping, beautifully acted film.")
    page.get_by_role("button", name="Classify", exact=True).click()
    prediction = page.locator("#prediction")
    expect(prediction).to_contain_text(re.compile(r"(positive|negative)[\s\S]*\d+%"), timeout=30_000)
    screenshot(page, "3-classify")

    page.get_by_role("tab", name="Hub").click()
    expect(page.get_by_role("button", name="Push to the Hub")).to_be_visible()
    screenshot(page, "4-hub")


def test_pasted_examples_with_problems_are_listed(url, page):
    page.goto(url)
    page.get_by_text("…or paste examples").click()
    page.get_by_placeholder("text,label").fill("text,label\ngreat film,pos\n,neg\nawful,\ngreat film,pos\n")
    page.get_by_role("button", name="Use pasted examples").click()
    problems = page.locator("#data-problems")
    expect(problems).to_contain_text("Cannot train on this data", timeout=30_000)
    expect(problems).to_contain_text("empty text in column 'text' at row 2")
    expect(problems).to_contain_text("missing label in column 'label' at row 3")
    expect(page.get_by_text("Traceback")).to_have_count(0)
    screenshot(page, "1-data-problems")


def open_train_tab(page, url: str, base_model: str, epochs: str) -> None:
    """The movie examples uploaded, the Train tab open with this base model and epochs."""
    page.goto(url)
    page.locator("#data-upload input[type=file]").set_input_files(str(MOVIES))
    expect(page.locator("#data-summary")).to_contain_text("400 examples", timeout=30_000)
    page.get_by_role("tab", name="Train").click()
    page.get_by_label("Base model").fill(base_model)
    page.get_by_label("Epochs (0 = automatic)").fill(epochs)


def test_stop_ends_training_and_keeps_the_best_adapter(url, page, tiny):
    open_train_tab(page, url, tiny("bert"), "300")
    # Never stop early: on 400 easy texts the tiny model's run could otherwise end by itself before the click.
    page.get_by_text("More settings").click()
    page.get_by_label("Early-stopping patience (empty: automatic)").fill("0")
    page.get_by_role("button", name="Train", exact=True).click()
    expect(page.locator("#train-status")).to_contain_text("Training", timeout=60_000)
    page.get_by_role("button", name="Stop", exact=True).click()
    expect(page.locator("#train-status")).to_contain_text("Stopped by you", timeout=60_000)
    expect(page.locator("#train-metrics")).to_contain_text("accuracy")
    expect(page.get_by_role("button", name="Train", exact=True)).to_be_enabled()
    page.get_by_role("tab", name="Classify").click()
    expect(page.get_by_text("Adapter ready")).to_be_visible()


def test_a_search_from_the_train_tab_shows_its_trials(url, page, tiny):
    open_train_tab(page, url, tiny("bert"), "1")
    page.get_by_label("Time budget in minutes (0 = none)").fill("2")
    page.get_by_label("Search the settings").check()
    page.get_by_label("Trials", exact=True).fill("2")
    expect(page.locator("#train-estimate")).to_contain_text("A search trains up to 2", timeout=60_000)
    page.get_by_role("button", name="Train", exact=True).click()
    expect(page.locator("#train-status")).to_contain_text("Search done", timeout=300_000)
    table = page.locator("#search-trials")
    expect(table).to_be_visible()
    expect(table).to_contain_text("accuracy")
    expect(page.get_by_role("button", name="Download the adapter (.zip)")).to_be_visible()
    screenshot(page, "2-train-search")


@pytest.fixture
def hub_url(hub_server, tiny, app_settings, launch):
    """The app on the test Hub, where two adapters on the tiny BERT are published."""
    published = {"test-user/movie-sentiment": ["negative", "positive"], "test-user/sms-spam": ["ham", "spam"]}
    for repo_id, labels in published.items():
        PromptClassifier(tiny("bert"), labels=labels).push_to_hub(repo_id, token=hub_server.token,
                                                                  endpoint=hub_server.endpoint)  # fmt: skip
    hub_server.repos["test-user/sms-spam"].downloads = 5
    return launch(build_app(hub_server.endpoint, settings=app_settings), app_settings)


def test_a_visitor_finds_an_adapter_by_a_word_loads_it_and_classifies(hub_url, page):
    page.goto(hub_url)

    page.get_by_role("tab", name="Browse").click()
    table = page.locator("#browse-table")
    expect(table).to_contain_text("test-user/sms-spam", timeout=30_000)  # the most used, as the tab opens
    page.get_by_label("Search", exact=True).fill("movie")
    page.get_by_label("Search", exact=True).press("Enter")
    expect(table).not_to_contain_text("sms-spam", timeout=30_000)
    expect(table).to_contain_text("negative, positive")
    screenshot(page, "5-browse")
    table.get_by_role("gridcell", name="test-user/movie-sentiment").click()

    expect(page.locator("#classify-notice")).to_contain_text("Loaded test-user/movie-sentiment", timeout=30_000)
    expect(page.locator("#classify-adapter")).to_contain_text("2 classes (negative, positive)")
    page.get_by_label("Text", exact=True).fill("A gripping, beautifully acted film.")
    page.get_by_role("button", name="Classify", exact=True).click()
    expect(page.locator("#prediction")).to_contain_text(re.compile(r"(positive|negative)[\s\S]*\d+%"), timeout=30_000)
    expect(page.get_by_text("Traceback")).to_have_count(0)


def test_a_cards_try_it_link_opens_classify_with_the_adapter(hub_url, page):
    page.goto(hub_url + "?adapter=test-user/sms-spam")

    expect(page.locator("#classify-notice")).to_contain_text("Loaded test-user/sms-spam from the link", timeout=30_000)
    expect(page.locator("#classify-adapter")).to_contain_text("2 classes (ham, spam)")
    expect(page.get_by_role("button", name="Classify", exact=True)).to_be_visible()
