"""The Python SDK in one screen. Run: python examples/sdk_quickstart.py"""

import asyncio
import re
from collections import Counter
from pathlib import Path

from fleetmind import Fleet, TaskGraph, agent


@agent(skills=["word-count"], max_concurrency=4)
async def counter(text: str) -> dict[str, int]:
    """Counts the words of one text."""
    return dict(Counter(re.findall(r"[a-z]{5,}", text.lower())))


@agent(skills=["merge"])
async def merger(**counts: dict[str, int]) -> list[tuple[str, int]]:
    """Adds word counts up; returns the five most common words."""
    return sum((Counter(c) for c in counts.values()), Counter()).most_common(5)


fleet = Fleet([counter, merger])
task = TaskGraph("word-frequencies")
task.add_subtask("merge", skill="merge")
for path in sorted(Path(__file__).parent.glob("*.py")):
    task.add_subtask(path.stem, skill="word-count", inputs={"text": path.read_text()})
    task.add_dependency(path.stem, "merge", kind="data", input=path.stem)


async def main() -> None:
    async with fleet:
        handle = fleet.submit(task)
        async for event in handle.events():  # any number of followers may stream them
            print(event.kind, getattr(event, "subtask_id", ""))
        print((await handle.result()).outputs["merge"])


if __name__ == "__main__":
    asyncio.run(main())
