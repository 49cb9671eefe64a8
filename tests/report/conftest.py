"""A real headless Chromium, one per test module (each page opens in a fresh tab)."""

import pytest

from tests.report.chromium import Chromium, find_chromium, why_no_chromium


@pytest.fixture(scope="module")
def chromium():
    program = find_chromium()
    if program is None:
        pytest.skip(why_no_chromium())
    browser = Chromium(program)
    yield browser
    browser.close()
