"""Spend caps across runs: what the project's runs spent in a rolling day or week, from their journals, on a fake clock."""

import os

import pytest

import tests.runtime.runtime_import  # noqa: F401  (puts the runtime on sys.path)
from _orchestrate_kit import spend  # noqa: E402
from _orchestrate_kit.journal import journal_path, read_journal  # noqa: E402
from _orchestrate_kit.settings import Settings, UserError, load_settings  # noqa: E402
from tests.support.journals import FakeClock, journal_on

HOUR = 3600.0
DAY = 24 * HOUR
RUN_1, RUN_2 = "20260921T080000Z-aaaaaa", "20260921T200000Z-bbbbbb"


def two_runs(folder):
    """Run 1 at 08:00 spends 3 + 4 USD (attempts ending at 09:00 and 10:00); run 2 at 20:00 spends 2 USD at 21:00."""
    clock = FakeClock(wall=1_790_000_000.0)
    first = journal_on(folder, RUN_1, clock)
    clock.advance(HOUR)
    first.attempt_ended("A", 1, exit_code=0, signal=None, complete=True, cost_usd=3.0)
    first.attempt_started("B", 1)
    clock.advance(HOUR)
    first.attempt_ended("B", 1, exit_code=1, signal=None, complete=False, cost_usd=4.0)
    first.attempt_ended("C", 1, exit_code=1, signal=None, complete=False, cost_usd=None)  # a plain worker: no cost
    start = clock.wall - 2 * HOUR
    clock.advance(11 * HOUR)
    second = journal_on(folder, RUN_2, clock)
    second.attempt_ended("D", 1, exit_code=0, signal=None, complete=True, cost_usd=2.0)
    return start, [journal_path(folder, RUN_1), journal_path(folder, RUN_2)]


def journals(paths):
    return [read_journal(p) for p in paths]


def test_the_spending_of_two_runs_in_a_rolling_day_and_as_it_rolls_over(tmp_path):
    start, paths = two_runs(tmp_path)
    at = start + 14 * HOUR  # 22:00: every cost is in the last day
    assert spend.spent_in_period(journals(paths), at, "day") == pytest.approx(9.0)
    assert spend.spent_in_period(journals(paths), at, "day", live_usd=0.5) == pytest.approx(9.5)
    # 09:00 the next day: the 3 USD of 09:00 has just left the window (it ended exactly a day ago)
    assert spend.spent_in_period(journals(paths), start + HOUR + DAY, "day") == pytest.approx(6.0)
    assert spend.spent_in_period(journals(paths), start + 2 * HOUR + DAY, "day") == pytest.approx(2.0)
    assert spend.spent_in_period(journals(paths), start + 13 * HOUR + DAY, "day") == 0.0
    assert spend.spent_in_period(journals(paths), start + 13 * HOUR + DAY, "week") == pytest.approx(9.0)
    assert spend.spent_in_period(journals(paths), start + 2 * HOUR + 7 * DAY, "week") == pytest.approx(2.0)
    assert spend.spent_in_period(journals(paths), start, "day") == 0.0  # nothing had been spent yet


def test_at_the_cap_the_second_run_waits_until_enough_of_the_first_run_rolls_out(tmp_path):
    start, paths = two_runs(tmp_path)
    at = start + 14 * HOUR
    # A cap of 8: 9 USD spent; the first cost (3 USD, 09:00) leaving at 09:00 tomorrow brings it to 6.
    assert spend.cap_lifts_at(journals(paths), at, "day", 8.0) == start + HOUR + DAY
    # A cap of 5: both costs of the first run must roll out (3 USD at 09:00, then 4 USD at 10:00).
    assert spend.cap_lifts_at(journals(paths), at, "day", 5.0) == start + 2 * HOUR + DAY
    assert spend.cap_lifts_at(journals(paths), at, "day", 10.0) is None  # under the cap: nothing to wait for
    # Only live costs (running workers) hold it at the cap: they never roll out, so no time is given.
    assert spend.cap_lifts_at(journals(paths), at, "day", 1.0, live_usd=5.0) is None


def test_the_loop_s_window_loads_once_adds_as_attempts_end_and_forgets_what_rolled_out(tmp_path):
    start, paths = two_runs(tmp_path)
    at = start + 14 * HOUR
    for path in paths:  # journals are judged by when they were last written: these were written "now"
        os.utime(path, (at, at))
    window = spend.SpendWindow.load(tmp_path, at, "day")
    assert window.spent(at) == pytest.approx(9.0)
    window.add(at, 1.5)
    window.add(at, None)
    window.add(at, float("nan"))
    assert window.spent(at, live_usd=0.25) == pytest.approx(10.75)
    assert window.lifts_at(at, 8.0) == start + HOUR + DAY  # 10.5 - 3 = 7.5 < 8 once 09:00 rolls out
    assert window.spent(start + 2 * HOUR + DAY) == pytest.approx(3.5)
    assert len(window.costs) == 2  # what left the window is gone for good


def test_journals_last_written_before_the_window_are_never_opened(tmp_path):
    start, paths = two_runs(tmp_path)
    old, new = paths
    os.utime(old, (start, start))
    os.utime(new, (start + 13 * HOUR, start + 13 * HOUR))
    assert spend.journals_since(tmp_path, start + 12 * HOUR) == [new]
    window = spend.SpendWindow.load(tmp_path, start + 14 * HOUR, "week")
    assert window.spent(start + 14 * HOUR) == pytest.approx(9.0)


def test_the_period_is_day_or_week_in_the_settings_and_the_gauge_says_both_figures(tmp_path):
    conf = tmp_path / "orchestrator.local.conf"
    conf.write_text("spend_cap_usd = 25\nspend_cap_period = week\n")
    settings = load_settings([conf])
    assert (settings.spend_cap_usd, settings.spend_cap_period) == (25.0, "week")
    assert (Settings().spend_cap_usd, Settings().spend_cap_period) == (0.0, "day")
    conf.write_text("spend_cap_period = month\n")
    with pytest.raises(UserError, match="spend_cap_period must be one of day, week"):
        load_settings([conf])
    with pytest.raises(ValueError, match="day, week"):
        spend.period_seconds("month")
    assert spend.gauge_text(12.4, 20, "day") == "12.40 of 20.00 USD in the last day"
