"""The report of benchmarks/memory.py: its tables as text, and where the figures were taken."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from _harness import _table, _version, hnswlib_version, machine_base, mosquitto_version
from _memory_compression import (
    AOI,
    GOAL,
    GOAL_COMPRESSION,
    GOAL_KEPT,
    MAIN_SHARE,
    METHODS,
    SWEEP_SHARES,
)
from _memory_recall import K


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _short(fact: Sequence[str], width: int = 110) -> str:
    text = " | ".join(fact)
    return text if len(text) <= width else text[: width - 1] + "…"


def goal_met(reduction: dict[str, Any]) -> bool:
    return reduction["compression"] >= GOAL_COMPRESSION and reduction["facts_kept"] >= GOAL_KEPT


def render(doc: dict[str, Any]) -> str:
    machine = doc["machine"]
    out = [
        "Memory benchmark: extractive compression of real logs, recall at scale, remote recall",
        f"python {machine['python']}, {machine['cpu_count']} CPU(s), load average at start "
        f"{machine['load_average']}, fleetmind {machine['fleetmind']}, numpy {machine['numpy']}, "
        f"{machine['hnswlib']}, mosquitto {machine['mosquitto']}",
        "",
    ]
    compression = doc["compression"]
    if compression["logs"]:
        out.append(
            f"1. Compression to {_pct(MAIN_SHARE)} of each log's tokens (goal for compress: "
            f'"{GOAL}"); tokens by the packaged WordPiece tokenizer; a fact is kept when all its '
            "strings are in the result"
        )
        rows: list[tuple[str, ...]] = [
            (
                "log",
                "lines",
                "tokens",
                "facts",
                "method",
                "tokens after",
                "compression",
                "facts kept",
                "on one line",
                "ms",
            )
        ]
        main = [r for r in compression["reductions"] if r["budget_share"] == MAIN_SHARE]
        for summary in compression["logs"]:
            for n, method in enumerate(METHODS):
                r = next(x for x in main if x["log"] == summary["name"] and x["method"] == method)
                first = n == 0
                rows.append(
                    (
                        summary["name"] if first else "",
                        f"{summary['lines']:,}" if first else "",
                        f"{summary['tokens']:,}" if first else "",
                        f"{summary['facts']:,}" if first else "",
                        method,
                        f"{r['tokens_after']:,}",
                        _pct(r["compression"]),
                        _pct(r["facts_kept"]),
                        _pct(r["facts_kept_one_line"]),
                        f"{1e3 * r['seconds']:.0f}",
                    )
                )
        rows.append(
            (
                "AOI (published, not re-run)",
                "",
                "",
                "",
                "reference",
                "",
                _pct(AOI["compression"]),
                _pct(AOI["facts_kept"]),
                "",
                "",
            )
        )
        out += _table(rows, left=1)
        out.append("")
        verdicts = []
        for summary in compression["logs"]:
            r = next(x for x in main if x["log"] == summary["name"] and x["method"] == "fleetmind")
            verdicts.append(
                f"{summary['name']}: {'met' if goal_met(r) else 'NOT met'} "
                f"({_pct(r['compression'])}, {_pct(r['facts_kept'])})"
            )
        out.append(
            f"goal >= {_pct(GOAL_COMPRESSION)} compression with >= {_pct(GOAL_KEPT)} of critical "
            "facts kept (fleetmind compress): " + "; ".join(verdicts)
        )
        out.append("")
        out.append("Budget sweep: compression / facts kept")
        rows = [("log", "budget", "fleetmind", "truncate", "head+tail")]
        for summary in compression["logs"]:
            for n, share in enumerate(SWEEP_SHARES):
                cells = []
                for method in METHODS:
                    r = next(
                        x
                        for x in compression["reductions"]
                        if x["log"] == summary["name"]
                        and x["method"] == method
                        and x["budget_share"] == share
                    )
                    cells.append(f"{_pct(r['compression'])} / {_pct(r['facts_kept'])}")
                rows.append((summary["name"] if n == 0 else "", _pct(share), *cells))
        out += _table(rows, left=1)
        out.append("")
        out.append(f"Facts fleetmind compress lost at {_pct(MAIN_SHARE)} (by rule; examples):")
        for summary in compression["logs"]:
            r = next(x for x in main if x["log"] == summary["name"] and x["method"] == "fleetmind")
            split = f"; {len(r['split'])} more kept only across lines" if r["split"] else ""
            if not r["lost"]:
                out.append(f"  {summary['name']}: none{split}")
                for _rule, *fact in r["split"][:4]:
                    out.append(f"      (across lines) {_short(fact)}")
                continue
            by_rule: dict[str, int] = {}
            for rule, *_fact in r["lost"]:
                by_rule[rule] = by_rule.get(rule, 0) + 1
            out.append(
                f"  {summary['name']}: {len(r['lost'])} of {r['facts']} — "
                + ", ".join(f"{rule} {count}" for rule, count in by_rule.items())
                + split
            )
            for _rule, *fact in r["lost"][:4]:
                out.append(f"      {_short(fact)}")
        out.append("")
        out.append(
            "Logs: " + "; ".join(f"{s['name']} ({s['origin']})" for s in compression["logs"])
        )
    for note in doc["notes"]:
        out.append(f"note: {note}")
    if doc.get("fault_run"):
        out.append(f"fault run behind the Mosquitto log ({doc['fault_run']['seconds']:.0f} s):")
        out += [f"  {line.strip()}" for line in doc["fault_run"]["timeline"]]
    out.append("")

    recall = doc["recall"]
    out.append(
        f"2. Recall: MemoryStore.recall(query, layer=..., limit={K}) vs exact numpy search, one "
        "query at a time; recall@10 against the exact top 10 of the layer"
    )
    rows = [
        (
            "memories",
            "data",
            "index",
            "insert µs/item",
            "bytes/item",
            "layer",
            "items",
            "recall@10",
            "p50 ms",
            "p99 ms",
            "exact p50 ms",
            "exact p99 ms",
        )
    ]
    for result in recall["scale"] + ([recall["real_text"]] if recall.get("real_text") else []):
        for n, layer in enumerate(result["layers"]):
            first = n == 0
            rows.append(
                (
                    f"{result['memories']:,}" if first else "",
                    result["data"] if first else "",
                    result["index_mode"] if first else "",
                    f"{result['insert_us_per_item']:,.0f}" if first else "",
                    (f"{result['bytes_per_item']:,}" if result["bytes_per_item"] else "-")
                    if first
                    else "",
                    layer["layer"],
                    f"{layer['items']:,}",
                    f"{layer['recall_at_10']:.3f}",
                    f"{layer['store_p50_ms']:.3f}",
                    f"{layer['store_p99_ms']:.3f}",
                    f"{layer['exact_p50_ms']:.3f}",
                    f"{layer['exact_p99_ms']:.3f}",
                )
            )
    out += _table(rows, left=3)
    out.append("")
    for result in recall["scale"]:
        out.append(
            f"  {result['memories']:,}: inserted in {result['insert_s']:.1f} s, "
            f"{result['facts_merged']} facts merged as near-duplicates, RSS +"
            f"{result['rss_growth_mb']:.0f} MB; query similarity to its nearest / 10th memory "
            + ", ".join(
                f"{x['layer']} {x['query_top1_similarity']:.2f}/{x['query_top10_similarity']:.2f}"
                for x in result["layers"]
            )
        )
    real = recall.get("real_text")
    if real:
        embed = ", ".join(f"{x['layer']} {x['embed_p50_ms']:.1f}" for x in real["layers"])
        requested = real["memories"] + real["facts_merged"]
        out.append(
            f"  real text: {real['memories']:,} stored of {requested:,}"
            f" ({real['facts_merged']} facts merged as near-duplicates); recall p50 includes "
            f"embedding the query; embedding alone p50 (ms): {embed}; exact baseline times the "
            "search on a precomputed query vector"
        )
    out.append("")
    remote = doc.get("remote")
    if remote:
        out.append(
            f"3. Remote recall: {remote['queries']} recalls (limit {K}, semantic layer) over "
            f"{remote['memories']:,} memories of real log lines, {remote['model']}; request "
            f"{remote['request_bytes']} B, answer {remote['response_bytes']:,} B"
        )
        local = remote["local_store_p50_ms"]
        rows = [("path", "p50 ms", "p99 ms", "p50 / local store p50")]
        for name, p50, p99 in (
            ("local: MemoryStore.recall (orchestrator)", local, remote["local_store_p99_ms"]),
            (
                "local: AgentMemory.recall (ctx.memory in-process)",
                remote["local_agent_p50_ms"],
                remote["local_agent_p99_ms"],
            ),
            (
                "local: DeviceMemoryService.answer (no MQTT)",
                remote["local_service_p50_ms"],
                remote["local_service_p99_ms"],
            ),
            (
                "remote: ctx.memory.recall on a device, over MQTT",
                remote["remote_p50_ms"],
                remote["remote_p99_ms"],
            ),
            (
                "bare MQTT round trip (MqttConnection ping-pong)",
                remote["mqtt_rtt_p50_ms"],
                remote["mqtt_rtt_p99_ms"],
            ),
        ):
            rows.append((name, f"{p50:.2f}", f"{p99:.2f}", f"{p50 / local:.2f}x"))
        out += _table(rows, left=1)
        out.append(
            f"  remote - local: {remote['remote_p50_ms'] - local:+.2f} ms at p50, "
            f"{remote['paired_difference_p50_ms']:+.2f} ms median per query (each remote recall "
            "against the mean of the same query's two local ones); local recalls ran before and "
            f"after the remote ones ({2 * remote['queries']} samples); the device got the same "
            f"answers as the local recall for {remote['same_answers']} of {remote['queries']} "
            "queries"
        )
    return "\n".join(out)


def machine_info() -> dict[str, Any]:
    return {
        **machine_base(),
        "numpy": np.__version__,
        "hnswlib": hnswlib_version(missing="hnswlib unknown"),
        "fleetmind": _version("fleetmind"),
        "mosquitto": mosquitto_version(),
    }
