"""The serving clock (SteadyClock): a step of the system clock moves no deadline (review 36d:
a step back of an hour held off every heartbeat's and data feed's trip for an hour)."""

from __future__ import annotations

from ess_sidecar.domain.commands import ClockRead, TimersRan, Triggered
from ess_sidecar.ports import SteadyClock
from ess_sidecar.recovery import last_clock_read


class Readings:
    """The system's wall and monotonic clocks, set by the test."""

    def __init__(self, wall: float) -> None:
        self.wall, self.monotonic = wall, 500.0

    def elapse(self, seconds: float) -> None:
        self.wall += seconds
        self.monotonic += seconds

    def clock(self, floor: float = 0.0) -> SteadyClock:
        """A SteadyClock reading these, never earlier than `floor`."""
        return SteadyClock(floor, lambda: self.wall, lambda: self.monotonic)


def test_it_starts_at_the_system_time_and_runs_with_the_monotonic_clock() -> None:
    readings = Readings(1_000_000.0)
    clock = readings.clock()
    assert clock.now() == 1_000_000.0 and clock.ahead == 0.0
    readings.elapse(7.5)
    assert clock.now() == 1_000_007.5


def test_a_step_of_the_system_clock_either_way_moves_it_not() -> None:
    readings = Readings(1_000_000.0)
    clock = readings.clock()
    readings.wall -= 3_600.0  # NTP steps it back an hour
    readings.elapse(5.0)
    assert clock.now() == 1_000_005.0
    readings.wall += 86_400.0  # then a day forward
    readings.elapse(1.0)
    assert clock.now() == 1_000_006.0


def test_it_never_starts_before_the_state_on_disk() -> None:
    readings = Readings(1_000_000.0)
    clock = readings.clock(1_003_600.0)
    assert clock.now() == 1_003_600.0 and clock.ahead == 3_600.0 and clock.floored
    readings.elapse(2.0)
    assert clock.now() == 1_003_602.0
    later = readings.clock(999_000.0)
    assert later.now() == readings.wall and later.ahead == 0.0  # the state is older


def test_a_step_is_said_once_and_the_clock_behind_at_start_is_no_step() -> None:
    readings = Readings(1_000_000.0)
    clock = readings.clock(1_000_010.0)
    assert clock.stepped() is None  # 10 s behind from the start: said at start-up
    readings.wall += 0.5
    assert clock.stepped() is None  # within the tolerance
    readings.wall -= 60.0
    assert clock.stepped() == -69.5
    assert clock.stepped() is None  # said
    readings.wall += 120.0
    assert clock.stepped() == 50.5


def test_it_goes_on_from_the_time_it_kept_when_last_read_with_the_system_clock() -> None:
    """Review 43d: a step forward of the system clock it did not follow, then a restart:
    it goes on from its own time plus what the system clock says passed since, never
    before the state on disk."""
    readings = Readings(1_086_400.0)
    clock = SteadyClock(0.0, lambda: readings.wall, lambda: readings.monotonic,
                        last=(1_000_000.0, 1_086_390.0))
    assert clock.now() == 1_000_010.0 and clock.ahead == -86_390.0 and not clock.floored
    readings.elapse(2.0)
    assert clock.reading() == (1_000_012.0, 1_086_402.0)
    stepped_back = SteadyClock(1_000_000.0, lambda: readings.wall, lambda: readings.monotonic,
                               last=(1_000_000.0, 2_000_000.0))  # back during the stop
    assert stepped_back.now() == 1_000_000.0 and stepped_back.floored


def test_it_never_goes_on_ahead_of_both_the_system_clock_and_the_state() -> None:
    """Review 43g: the system clock stepped back a day while serving (journaled), then was
    put right while the sidecar was stopped: going on from the reading started a day
    ahead, and a trip's cooldown was over at once."""
    readings = Readings(1_000_005.0)  # put right: 5 s after the reading, really
    clock = SteadyClock(1_000_000.0, lambda: readings.wall, lambda: readings.monotonic,
                        last=(1_000_000.0, 913_600.0))  # read with the system a day behind
    assert clock.now() == 1_000_005.0 and clock.ahead == 0.0


def test_an_earlier_versions_journal_is_read_by_its_last_records_time_and_mtime(
        caplog) -> None:
    """Review 43h: a journal written before ClockRead existed holds no reading, so an
    upgrade after a step the earlier version absorbed took the system's time and aged
    everything by the step. Its latest record's time and the file's last write stand in;
    a ClockRead, where there is one, is taken as it is."""
    entries = [(TimersRan(1_000_000.0), ()), (Triggered(1_000_030.0), ())]
    assert last_clock_read(entries, 1_086_430.0) == ClockRead(1_000_030.0, 1_086_430.0)
    assert last_clock_read(entries) is None and last_clock_read([], 5.0) is None
    assert caplog.text.count("holds no clock reading") == 1  # the file's time, said
    read = ClockRead(1_000_010.0, 1_086_410.0)
    assert last_clock_read([(read, ()), *entries], 1_086_430.0) == read
    assert caplog.text.count("holds no clock reading") == 1
