"""Split and combine with the Python SDK: the sum of the squares of 1..N in PARTS tasks.

    pip install ./python
    python3 examples/python_sum_of_squares.py            # 333333833333500000
    python3 examples/python_sum_of_squares.py 2000 4     # N and PARTS

Each part runs on a worker as a Python function task; the combine task depends on all
of them and receives their values (in order) as its argument. The client finds the
local server, its token and its CA as the CLI does (or DROVER_SERVER, DROVER_TOKEN,
DROVER_CA).
"""

import sys
from typing import List

import drover


def part(lo: int, hi: int) -> int:
    """The sum of the squares of lo..hi-1."""
    return sum(i * i for i in range(lo, hi))


def combine(parts: List[int]) -> int:
    """The sum of the parts' sums."""
    return sum(parts)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    bounds = [1 + n * k // count for k in range(count + 1)]
    with drover.Client() as client:
        parts = client.map(part, bounds[:-1], bounds[1:])
        total = client.submit(combine, parts)
        print(f"{count} parts (tasks {parts[0].task_id}..{parts[-1].task_id}), combined in task {total.task_id}")
        print(total.result())


if __name__ == "__main__":
    main()
