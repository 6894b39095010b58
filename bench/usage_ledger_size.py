"""How much usage history the stored ledger keeps under its size bound, by key count.

    python bench/usage_ledger_size.py [--keys 10,40,100,300,1000]

For N (queue, namespace) keys busy every hour for 100 days (compacted by age: 192
hourly and 83 daily buckets), prints the stored size before and after
`Ledger.stored_text` (bound: usage.MAX_LEDGER_BYTES; what a flush writes), the hourly
and daily buckets kept after the next flush,
how far back `shipyard usage --since` then reaches, the time that first write took
(catching up from unbounded) and that of the next flush, an hour later (bounded: the
steady cost every 30 s).
"""

from __future__ import annotations

import argparse
import json
import time

from shipyard.monitor.usage import DAY, HOUR, MAX_LEDGER_BYTES, Amount, Ledger


def stored(ledger: Ledger) -> int:
    return len(json.dumps(ledger.to_data(), separators=(",", ":")))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", default="10,40,100,300,1000")
    args = parser.parse_args()
    now, use = 1.7e9, Amount(3600.0, 7200.0, 1.0, 2.5)
    hour0, day0 = int(now // HOUR) * HOUR, int(now // DAY) * DAY
    print(f"bound {MAX_LEDGER_BYTES // 1024} KiB")
    print(f"{'keys':>6} {'before KiB':>11} {'after KiB':>10} {'hourly':>7} {'daily':>6} "
          f"{'reach days':>11} {'write ms':>9} {'next ms':>8}")
    for n in (int(k) for k in args.keys.split(",")):
        keys = [(f"team-{i % 30}", f"ns-{i}") for i in range(n)]
        ledger = Ledger({k: use.scaled(2400) for k in keys},
                        {hour0 - h * HOUR: dict.fromkeys(keys, use) for h in range(192)},
                        {day0 - (9 + d) * DAY: dict.fromkeys(keys, use.scaled(24))
                         for d in range(92)})
        ledger.compact(now)  # by age, as a flush does first
        before = stored(ledger)
        t0 = time.perf_counter()
        text = ledger.stored_text()
        ms = (time.perf_counter() - t0) * 1000
        for k in keys:
            ledger.add(k, use, now + HOUR)
        t0 = time.perf_counter()
        ledger.stored_text()
        next_ms = (time.perf_counter() - t0) * 1000
        reach = (now - (ledger.oldest or now)) / DAY
        print(f"{n:>6} {before / 1024:>11.0f} {len(text) / 1024:>10.0f} {len(ledger.hourly):>7} "
              f"{len(ledger.daily):>6} {reach:>11.1f} {ms:>9.0f} {next_ms:>8.0f}")


if __name__ == "__main__":
    main()
