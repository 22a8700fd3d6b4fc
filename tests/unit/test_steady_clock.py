"""The serving clock (SteadyClock): a step of the system clock moves no deadline (review 36d:
a step back of an hour held off every heartbeat's and data feed's trip for an hour)."""

from __future__ import annotations

from ess_sidecar.ports import SteadyClock


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
