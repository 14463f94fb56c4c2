#!/usr/bin/env python3
"""Word count combiner (the reducer, run on each map task's sorted output).

Input lines arrive sorted by key ("word<TAB>count"); consecutive lines with the same word are
summed and one "word<TAB>total" line is written per word.
"""
import sys


def main():
    current, total = None, 0
    out = sys.stdout
    for line in sys.stdin:
        word, _, count = line.rstrip("\n").partition("\t")
        if word != current:
            if current is not None:
                out.write(f"{current}\t{total}\n")
            current, total = word, 0
        total += int(count or 0)
    if current is not None:
        out.write(f"{current}\t{total}\n")


if __name__ == "__main__":
    main()
