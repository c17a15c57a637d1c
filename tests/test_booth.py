"""Live seats, the line, per-client time caps and failure reports (``demos/booth.py``)."""
from __future__ import annotations

import logging

import pytest

from demos.booth import Admission, LiveSeats, report, status_text
from realtime import UserError


def test_two_seats_then_a_line_in_arrival_order_with_an_honest_longest_wait():
    seats = LiveSeats(2, cap_s=300, idle_s=1000)  # nobody leaves early here
    assert seats.claim("a", 0).state == "live"
    assert seats.claim("b", 100).state == "live"
    c = seats.claim("c", 120)
    d = seats.claim("d", 121)
    assert (c.state, c.place, d.place) == ("waiting", 1, 2)
    assert c.wait_s == pytest.approx(180)  # a's visit ends at 300
    assert d.wait_s == pytest.approx(279)  # b's at 400
    e = seats.claim("e", 121)
    assert e.place == 3 and e.wait_s == pytest.approx(179 + 300)  # c takes a's seat in 179 s, for 300 s
    assert seats.counts() == (2, 3)


def test_a_seat_frees_at_the_cap_and_goes_to_the_first_in_line():
    seats = LiveSeats(1, cap_s=10, idle_s=3)
    for t in range(10):
        assert seats.claim("a", t).state == "live"
        assert seats.claim("b", t + 0.5).state == "waiting"
    assert seats.claim("a", 10) == Admission("over")
    assert seats.claim("b", 10.1).state == "live"
    assert seats.claim("a", 11) == Admission("over")  # a's visit stays over


def test_a_closed_tab_frees_its_seat_and_a_pause_does_not_reset_the_cap():
    seats = LiveSeats(1, cap_s=10, idle_s=3)
    for t in range(6):
        seats.claim("a", t)
    assert seats.claim("b", 9).state == "live"  # a sent nothing for 4 s: its seat went to b
    assert seats.claim("a", 9.5).state == "waiting"
    for t in range(10, 19):
        assert seats.claim("b", t).state == "live"
        assert seats.claim("a", t + 0.5).state == "waiting"
    assert seats.claim("b", 19).state == "over"
    again = seats.claim("a", 19.5)
    assert again.state == "live" and again.left_s == pytest.approx(5)  # 5 of a's 10 s were used


def test_a_script_that_stops_calling_frees_its_seat_and_its_visit_runs_on_meanwhile():
    seats = LiveSeats(1, cap_s=10, idle_s=3)
    for t in (0, 1):
        assert seats.claim("address:s", t, wall_clock=True).state == "live"
    assert seats.claim("b", 2).state == "waiting"
    assert seats.claim("b", 4.5).state == "live"  # the script sent nothing for 3.5 s: its seat went to b
    assert seats.claim("address:s", 5, wall_clock=True).state == "waiting"
    assert seats.claim("b", 6).state == "live"
    back = seats.claim("address:s", 9.5, wall_clock=True)  # b sent nothing for 3.5 s
    assert back.state == "live" and back.left_s == pytest.approx(0.5)  # wall clock: 9.5 s of its 10 are gone
    assert seats.claim("address:s", 10, wall_clock=True) == Admission("over")
    assert seats.counts() == (0, 0)


def test_status_lines_say_place_wait_and_time_left():
    assert "4:59 of your turn left" in status_text(Admission("live", left_s=299.4), 2)
    text = status_text(Admission("waiting", place=2, wait_s=95), 2)
    assert "all 2 camera seats are taken" in text and "number 2 in line" in text and "1:35 at most" in text
    assert "you are next" in status_text(Admission("waiting", place=1, wait_s=5), 1)


def test_a_failure_report_is_one_line_for_the_visitor_and_one_in_the_log(caplog, tmp_path):
    path = tmp_path / "secret" / "x.png"
    with caplog.at_level(logging.DEBUG, logger="demos.booth"):
        mine = report("style upload", UserError(f"{path}: not an image file"), "x.png", path)
        other = report("style upload", KeyError("boom"), "y.png")
    assert mine.startswith("⚠ x.png: not an image file (ref ") and str(tmp_path) not in mine
    assert "Something went wrong with y.png (KeyError)" in other
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(warnings) == 2 and all(r.exc_info is None for r in warnings)
    assert len(debug) == 2 and all(r.exc_info for r in debug)
    ref = mine.rsplit("(ref ", 1)[1][:6]
    assert ref in warnings[0].getMessage() and ref in debug[0].getMessage()
